"""Reporting runbook problems: one located line each, pydantic errors folded, close-match hints."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from irctl.errors import one_line
from irctl.runbook.yamlpos import Path_, Positions, Problem

_KINDS = {
    "string_type": "a string",
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}

Errors = list[dict[str, Any]]


class Report:
    """Problems of one file, located through the YAML positions."""

    def __init__(self, file: str, pos: Positions) -> None:
        self.file, self.pos = file, pos
        self.problems: list[Problem] = []

    def add(self, path: Path_, message: str, *, at_key: bool = False) -> None:
        line, col = self.pos.at(path, prefer_key=at_key)
        # One bounded line each, whatever an exception or a validator put in the message.
        self.problems.append(Problem(self.file, line, col, one_line(message, limit=1000)))


def group_errors(errors: Errors, data: Any) -> Iterator[tuple[str, Path_, Errors]]:
    """(kind, path, errors) per place: union branches of one value fold into one message."""
    grouped: dict[tuple[str, Path_], Errors] = {}
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "missing":
            key = ("missing", loc)
        elif err["type"] == "extra_forbidden":
            key = ("extra", loc)
        else:
            key = ("value", existing_prefix(data, loc))
        grouped.setdefault(key, []).append(err)
    for (kind, loc), errs in grouped.items():
        yield kind, loc, errs


def fold(errs: Errors) -> str:
    kinds = [_KINDS.get(e["type"]) for e in errs]
    if all(kinds):
        got = type(errs[0]["input"]).__name__
        return f"expected {' or '.join(dict.fromkeys(k for k in kinds if k))}, got {got}"
    return "; ".join(dict.fromkeys(str(e["msg"]).removeprefix("Value error, ") for e in errs))


def existing_prefix(data: Any, loc: Path_) -> Path_:
    """The longest prefix of a pydantic `loc` that is a real path in the data (drops union tags)."""
    node, kept = data, 0
    for part in loc:
        found = isinstance(node, dict) and part in node
        found = found or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if not found:
            break
        node = node[part]
        kept += 1
    return loc[:kept]


def field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def strings(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    """Every string inside nested dicts and lists, iteratively (no recursion limit to hit)."""
    stack: list[tuple[Path_, Any]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            yield where, node
        elif isinstance(node, dict):
            stack.extend(((*where, str(k)), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend(((*where, i), v) for i, v in enumerate(node))
