"""Checking a runbook: every problem at once, each as `file:line:col: message`, never a traceback.

Structure and types come from the pydantic models; the checks pydantic cannot do
(actions and their parameters, step references, names in templates) walk the raw
data, so one broken field does not hide the problems after it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from irctl.errors import InputError
from irctl.runbook.model import InputSpec, Runbook, Step, coerce_input
from irctl.runbook.templating import is_template, step_key
from irctl.runbook.validate_params import check_params
from irctl.runbook.validate_report import (
    Errors,
    Report,
    field_names,
    fold,
    group_errors,
    strings,
    suggest,
)
from irctl.runbook.validate_templates import EXPRESSIONS, Site, check_template
from irctl.runbook.yamlpos import Path_, Problem, load_with_positions


def validate_text(text: str, file: str) -> tuple[Runbook | None, list[Problem]]:
    """(the runbook when there is no problem, every problem sorted by position)."""
    data, pos, problems = load_with_positions(text, file)
    report = Report(file, pos)
    report.problems.extend(problems)
    runbook: Runbook | None = None
    if problems:
        pass  # the YAML did not parse: nothing more can be said reliably
    elif not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        report.add((), f"a runbook is a mapping of apiVersion, kind, name, title, steps; got {got}")
    else:
        runbook = _check_model(data, report)
        _check_inputs(data, report)
        _check_steps(data, report)
    ordered = sorted(set(report.problems), key=lambda p: (p.line, p.col, p.message))
    return (runbook if not ordered else None), ordered


# -- structure and types -------------------------------------------------------------------


def _check_model(data: dict[str, Any], report: Report) -> Runbook | None:
    try:
        return Runbook.model_validate(data)
    except ValidationError as exc:
        errors: Errors = [dict(e) for e in exc.errors(include_url=False)]
    for kind, loc, errs in group_errors(errors, data):
        where = _context(data, loc)
        if kind == "missing":
            report.add(loc[:-1], f"{where}missing required field {loc[-1]!r}")
        elif kind == "extra":
            hint = suggest(str(loc[-1]), field_names(_model_at(loc[:-1])))
            report.add(loc, f"{where}unknown field {loc[-1]!r}{hint}", at_key=True)
        else:
            report.add(loc, f"{where}{_field(loc)}: {fold(errs)}")
    return None


def _field(loc: Path_) -> str:
    return next((str(p) for p in reversed(loc) if isinstance(p, str)), "value")


def _model_at(loc: Path_) -> type[BaseModel]:
    if len(loc) == 2 and loc[0] == "steps":
        return Step
    if len(loc) == 2 and loc[0] == "inputs":
        return InputSpec
    return Runbook


def _context(data: dict[str, Any], loc: Path_) -> str:
    if len(loc) >= 3 and loc[0] == "steps" and isinstance(loc[1], int):
        return f"step {_step_label(data, loc[1])}: "
    if len(loc) >= 3 and loc[0] == "inputs":
        return f"input {loc[1]!r}: "
    return ""


def _step_label(data: dict[str, Any], index: int) -> str:
    steps = data.get("steps")
    if isinstance(steps, list) and 0 <= index < len(steps) and isinstance(steps[index], dict):
        sid = steps[index].get("id")
        if isinstance(sid, str):
            return repr(sid)
    return f"#{index + 1}"


def _check_inputs(data: dict[str, Any], report: Report) -> None:
    inputs = data.get("inputs")
    if not isinstance(inputs, dict):
        return
    for name, raw in inputs.items():
        if not isinstance(raw, dict) or raw.get("default") is None:
            continue
        default = raw["default"]
        if isinstance(default, str) and is_template(default):
            continue
        try:
            coerce_input(name, InputSpec.model_validate(raw), default)
        except ValidationError:
            continue  # the model check reports the spec itself
        except InputError as exc:
            report.add(("inputs", name, "default"), exc.message)


# -- steps: ids, references, templates, actions ------------------------------------------------


def _check_steps(data: dict[str, Any], report: Report) -> None:
    raw_inputs = data.get("inputs")
    declared = set(raw_inputs) if isinstance(raw_inputs, dict) else set()
    steps = data.get("steps")
    step_list: list[Any] = steps if isinstance(steps, list) else []
    order: dict[str, int] = {}  # step id and its template key -> index of the step
    ids: set[str] = set()
    for index, step in enumerate(step_list):
        sid = step.get("id") if isinstance(step, dict) else None
        if not isinstance(sid, str):
            continue
        if sid in order or step_key(sid) in order:
            first = order.get(sid, order.get(step_key(sid), 0))
            line = report.pos.at(("steps", first, "id"))[0]
            what = (
                f"duplicate step id {sid!r}"
                if sid in ids
                else f"step id {sid!r} is the same to templates (steps.{step_key(sid)})"
                " as an earlier one"
            )
            report.add(("steps", index, "id"), f"{what} (first at line {line})")
            continue
        ids.add(sid)
        order[sid] = order[step_key(sid)] = index
    lock = data.get("lock")
    if isinstance(lock, str):
        check_template(Site(("lock",), lock, "lock", -1, False), declared, order, report)
    for index, step in enumerate(step_list):
        if isinstance(step, dict):
            _check_step(index, step, declared, order, report)


def _check_step(
    index: int, step: dict[str, Any], declared: set[str], order: dict[str, int], report: Report
) -> None:
    at: Path_ = ("steps", index)
    loops = isinstance(step.get("foreach"), str)
    for field in EXPRESSIONS:
        value = step.get(field)
        if isinstance(value, str):
            site = Site((*at, field), value, field, index, loops and field == "expect")
            check_template(site, declared, order, report)
    with_ = step.get("with")
    if isinstance(with_, dict):
        for path, text in strings(with_, (*at, "with")):
            if is_template(text):
                check_template(Site(path, text, "with", index, loops), declared, order, report)
    action = step.get("action")
    if isinstance(action, str):
        check_params(action, with_ if isinstance(with_, dict) else {}, at, report)
