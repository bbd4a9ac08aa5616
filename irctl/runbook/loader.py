"""Finding runbooks by name, reading them, and describing them for `runbooks list|show`.

A runbook's name is its file name without `.yaml`/`.yml`; when two runbook folders
hold the same name, the later folder wins (your `./runbooks` over the shipped ones).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from irctl.errors import InputError
from irctl.runbook.model import Runbook
from irctl.runbook.templating import is_template
from irctl.runbook.validate import validate_text
from irctl.runbook.yamlpos import Problem

SUFFIXES = (".yaml", ".yml")
# A runbook is a few KB; anything far larger is a mistake or an attack on the parser.
MAX_BYTES = 1024 * 1024


class RunbookInvalid(InputError):
    """A runbook with problems; `.problems` holds all of them, the message the first."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0].render() if problems else "invalid runbook"
        more = f" ({len(problems) - 1} more)" if len(problems) > 1 else ""
        file = problems[0].file if problems else "the runbook"
        super().__init__(first + more, f"see them all with `irctl validate {file}`")
        self.problems = problems


def find_runbooks(dirs: Sequence[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix in SUFFIXES and path.is_file() and not path.name.startswith("."):
                found[path.stem] = path
    return found


def resolve_runbook(name_or_path: str, dirs: Sequence[Path]) -> Path:
    """The file for a runbook name, or the file given as a path."""
    candidate = Path(name_or_path).expanduser()
    looks_like_path = "/" in name_or_path or candidate.suffix in SUFFIXES
    if candidate.is_file() and (looks_like_path or not _named(name_or_path, dirs)):
        return candidate
    if looks_like_path:
        raise InputError(f"no runbook file {name_or_path}", "check the path")
    known = find_runbooks(dirs)
    if name_or_path in known:
        return known[name_or_path]
    close = difflib.get_close_matches(name_or_path, sorted(known), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    listed = ", ".join(sorted(known)) or "none"
    where = ", ".join(str(d) for d in dirs) or "no folder"
    raise InputError(
        f"no runbook named {name_or_path!r} in {where}",
        f"{hint}known runbooks: {listed} (or pass a file path, or --runbooks DIR)",
    )


def _named(name: str, dirs: Sequence[Path]) -> bool:
    return name in find_runbooks(dirs)


def validate_file(path: Path) -> tuple[Runbook | None, list[Problem]]:
    """(the runbook if valid, every problem). Never raises for anything in the file."""
    file = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        return None, [Problem(file, 1, 1, f"cannot read: {exc.strerror or exc}")]
    if len(raw) > MAX_BYTES:
        return None, [Problem(file, 1, 1, f"larger than {MAX_BYTES // 1024} KiB: not a runbook")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Problem(file, line, col, "not UTF-8 text")]
    return validate_text(text, file)


def load_runbook(path: Path) -> Runbook:
    runbook, problems = validate_file(path)
    if runbook is None:
        raise RunbookInvalid(problems)
    return runbook


def validate_paths(paths: Sequence[Path], dirs: Sequence[Path]) -> dict[str, list[Problem]]:
    """File -> its problems, for files and folders given, else every runbook in `dirs`."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in sorted(path.iterdir()) if p.suffix in SUFFIXES and p.is_file())
        else:
            files.append(path)
    if not paths:
        files = list(find_runbooks(dirs).values())
        if not files:
            where = ", ".join(str(d) for d in dirs) or "no folder"
            raise InputError(f"no runbooks in {where}", "pass files to check, or --runbooks DIR")
    return {str(path): validate_file(path)[1] for path in files}


# -- catalog -----------------------------------------------------------------------------------


def list_runbooks(dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """One entry per runbook found: name, title, severity, file, and problems if it is broken."""
    entries: list[dict[str, Any]] = []
    for name, path in sorted(find_runbooks(dirs).items()):
        runbook, problems = validate_file(path)
        entry: dict[str, Any] = {"name": name, "title": None, "severity": None, "file": str(path)}
        if runbook is not None:
            entry.update(title=runbook.title, severity=runbook.severity, steps=len(runbook.steps))
        else:
            entry["problems"] = len(problems)
        entries.append(entry)
    return entries


def describe_runbook(runbook: Runbook, path: Path | None = None) -> dict[str, Any]:
    """What `runbooks show` prints: inputs, then each step with its effect and targets."""
    steps = [_describe_step(step, runbook.on_failure) for step in runbook.steps]
    return {
        "name": runbook.name,
        "title": runbook.title,
        "severity": runbook.severity,
        "description": runbook.description,
        "file": str(path) if path else None,
        "on_failure": runbook.on_failure,
        "lock": runbook.lock or ("{{ inputs.cluster }}" if "cluster" in runbook.inputs else None),
        "inputs": {name: spec.model_dump() for name, spec in runbook.inputs.items()},
        "steps": steps,
        "mutating_steps": [s["id"] for s in steps if s["effect"] == "mutate"],
    }


def _describe_step(step: Any, default_on_failure: str) -> dict[str, Any]:
    from irctl.actions import get_action

    description, effect, reversible = "", "unknown", False
    try:
        action = get_action(step.action)
        description, reversible = action.description, bool(action.reversible)
        effect = _effect(action, step.with_)
    except Exception:  # an unloadable action still gets described
        effect = "unknown"
    touches = ", ".join(f"{k}={_short(v)}" for k, v in step.with_.items())
    confirm = step.confirm if step.confirm is not None else effect == "mutate"
    return {
        "id": step.id,
        "title": step.title,
        "action": step.action,
        "action_description": description,
        "effect": effect,
        "reversible": reversible,
        "touches": touches,
        "with": step.with_,
        "when": step.when,
        "foreach": step.foreach,
        "concurrency": step.concurrency if step.foreach else None,
        "max_failures": step.max_failures if step.foreach else None,
        "expect": step.expect,
        "retries": step.retries,
        "timeout": step.timeout,
        "confirm": confirm,
        "on_failure": step.on_failure or default_on_failure,
        "description": step.description,
    }


def _effect(action: Any, with_: dict[str, Any]) -> str:
    """The declared effect; one that depends on params (ssh.run) is asked with literal params."""
    effect = action.effect
    if not any(isinstance(v, str) and is_template(v) for v in with_.values()):
        try:
            effect = action.effect_for(action.Params.model_validate(with_))
        except Exception:  # fall back to the declared effect
            effect = action.effect
    return str(getattr(effect, "value", effect))


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
