"""YAML loading that remembers where every value came from.

PyYAML's composer gives nodes with marks; we build plain Python data from the
node tree ourselves and keep a map from each value's path to its line and
column, so validation errors point at `file:line:col` instead of a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    col: int
    message: str

    def render(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


Path_ = tuple[str | int, ...]


@dataclass
class Positions:
    """Path in the data -> (line, col), both 1-based. Keys are marked at the key itself."""

    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def at(self, path: Path_, prefer_key: bool = False) -> tuple[int, int]:
        """The nearest known position for `path`, walking up to a parent when needed."""
        probe = tuple(path)
        while True:
            if prefer_key and probe in self.keys:
                return self.keys[probe]
            if probe in self.values:
                return self.values[probe]
            if probe in self.keys:
                return self.keys[probe]
            if not probe:
                return (1, 1)
            probe = probe[:-1]

    def locate(self, file: str, path: Path_, prefer_key: bool = False) -> str:
        line, col = self.at(path, prefer_key)
        return f"{file}:{line}:{col}"


try:  # libyaml composes ~9x faster; marks and errors carry the same line and column
    from yaml import CSafeLoader as _Base
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Base  # type: ignore[assignment]


class _Loader(_Base):
    pass


class _Stop(Exception):
    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line, self.col, self.message = line, col, message


def _scalar(loader: _Loader, node: yaml.ScalarNode) -> Any:
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError:
        raise
    except Exception as exc:  # PyYAML's constructors fail oddly on odd input (`!!timestamp ''`)
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise _Stop(line, col, f"YAML value {node.value[:40]!r} is not a valid {tag}") from exc


# A runbook or an inventory is a few thousand values; an alias bomb ("billion laughs")
# expands a few hundred bytes into billions. Stop building well before memory goes.
MAX_NODES = 200_000


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit
        self.open: set[int] = set()  # nodes being built: an alias back to one is a cycle


def _build(
    loader: _Loader,
    node: yaml.Node,
    path: Path_,
    pos: Positions,
    file: str,
    problems: list[Problem],
    budget: _Budget,
) -> Any:
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    budget.left -= 1
    if budget.left < 0:
        raise _Stop(line, col, f"YAML too large: more than {MAX_NODES} values (alias bomb?)")
    pos.values[path] = (line, col)
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        if id(node) in budget.open:
            raise _Stop(line, col, "YAML alias refers to a value that contains it")
        budget.open.add(id(node))
        try:
            return _build_collection(loader, node, path, pos, file, problems, budget)
        finally:
            budget.open.discard(id(node))
    assert isinstance(node, yaml.ScalarNode)
    return _scalar(loader, node)


def _build_collection(
    loader: _Loader,
    node: yaml.MappingNode | yaml.SequenceNode,
    path: Path_,
    pos: Positions,
    file: str,
    problems: list[Problem],
    budget: _Budget,
) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*path, i), pos, file, problems, budget)
            for i, item in enumerate(node.value)
        ]
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key_at = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        key = _scalar(loader, key_node) if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str | int | float | bool) or key is None:
            problems.append(Problem(file, *key_at, "keys must be plain scalars"))
            continue
        child = (*path, key if isinstance(key, str) else str(key))
        if child[-1] in out:
            problems.append(Problem(file, *key_at, f"duplicate key {key!r}"))
        pos.keys[child] = key_at
        out[child[-1]] = _build(loader, value_node, child, pos, file, problems, budget)
    return out


def load_with_positions(text: str, file: str) -> tuple[Any, Positions, list[Problem]]:
    """(data, positions, problems). On a YAML syntax error data is None and one problem names it."""
    pos = Positions()
    problems: list[Problem] = []
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader checks characters here already
        node = loader.get_single_node()
        if node is None:
            return None, pos, problems
        data = _build(loader, node, (), pos, file, problems, _Budget(MAX_NODES))
    except _Stop as exc:
        problems.append(Problem(file, exc.line, exc.col, exc.message))
        return None, pos, problems
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        char = exc.character
        label = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        problems.append(Problem(file, line, col, f"YAML: character {label} is not allowed"))
        return None, pos, problems
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problems.append(Problem(file, line, col, f"YAML syntax: {exc.problem or exc.context}"))
        return None, pos, problems
    except yaml.YAMLError as exc:
        problems.append(Problem(file, 1, 1, f"YAML: {' '.join(str(exc).split())}"))
        return None, pos, problems
    except RecursionError:
        problems.append(Problem(file, 1, 1, "YAML nested too deeply"))
        return None, pos, problems
    except (ValueError, TypeError, OverflowError) as exc:
        # Constructors raise these for values like a timestamp out of range.
        problems.append(Problem(file, 1, 1, f"YAML value: {' '.join(str(exc).split())[:200]}"))
        return None, pos, problems
    finally:
        if loader is not None:
            loader.dispose()
    return data, pos, problems


def _line_col(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1
