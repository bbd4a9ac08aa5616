"""Checking a step's `with` against its action's Params, without running the action."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from irctl.errors import IrctlError
from irctl.runbook.templating import is_template
from irctl.runbook.validate_report import (
    Errors,
    Report,
    field_names,
    fold,
    group_errors,
    strings,
    suggest,
)
from irctl.runbook.yamlpos import Path_


def check_params(name: str, with_: dict[str, Any], at: Path_, report: Report) -> None:
    """`with` against the action's Params; values that are templates are checked at run time."""
    from irctl.actions import ACTIONS, get_action

    if name not in ACTIONS:
        known = suggest(name, ACTIONS) or f" (known: {', '.join(sorted(ACTIONS))})"
        report.add((*at, "action"), f"unknown action {name!r}{known}")
        return
    try:
        model = get_action(name).Params
    except Exception as exc:  # an action module is someone's code: report it, don't crash
        report.add(
            (*at, "action"), f"action {name!r} cannot be loaded: {type(exc).__name__}: {exc}"
        )
        return
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return
    templated = {k for k, v in with_.items() if any(is_template(s) for _, s in strings(v, ()))}
    literal = {k: v for k, v in with_.items() if k not in templated}
    accepted = set(field_names(model)) | set(model.model_fields)
    where: Path_ = (*at, "with")
    if model.model_config.get("extra") == "forbid":
        for key in sorted(templated - accepted):
            _unknown_param(name, key, accepted, (*where, key), report)
    try:
        model.model_validate(literal)
        return
    except ValidationError as exc:
        errors: Errors = [dict(e) for e in exc.errors(include_url=False)]
    except IrctlError as exc:
        # A validator that raised our own error instead of ValueError: find its field.
        culprit = next((k for k in literal if _raises_irctl(model, {k: literal[k]})), None)
        place, label = ((*where, culprit), f"{name}: {culprit}") if culprit else (where, "with")
        report.add(place, f"{label}: {exc.message}")
        return
    except Exception as exc:  # a Params validator that raised something odd: say so
        report.add(where, f"with: {name} parameters could not be checked: {type(exc).__name__}")
        return
    for kind, loc, errs in group_errors(errors, literal):
        if (loc and loc[0] in templated) or (not loc and templated):
            continue  # depends on a value known only at run time
        if kind == "missing":
            place = where if where in report.pos.keys else at
            report.add(place, f"action {name!r} needs parameter {loc[-1]!r}", at_key=True)
        elif kind == "extra":
            _unknown_param(name, str(loc[-1]), accepted, (*where, *loc), report)
        else:
            label = ".".join(str(p) for p in loc) or "with"
            report.add((*where, *loc), f"{name}: {label}: {fold(errs)}")


def _raises_irctl(model: type[BaseModel], data: dict[str, Any]) -> bool:
    try:
        model.model_validate(data)
    except IrctlError:
        return True
    except Exception:  # the field's other problems are reported elsewhere
        return False
    return False


def _unknown_param(name: str, key: str, accepted: set[str], path: Path_, report: Report) -> None:
    hint = suggest(key, accepted) or f" (it takes: {', '.join(sorted(accepted)) or 'nothing'})"
    report.add(path, f"action {name!r} takes no parameter {key!r}{hint}", at_key=True)
