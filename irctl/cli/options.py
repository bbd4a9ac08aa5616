"""Bad option values as usage errors: the option's name and what it takes, in one line.

Commands validate their options through an action's pydantic model; its wording ("Input
should be greater than or equal to 1", "Value error, ...") names a field, not the flag
the operator typed, and would exit 1 as if a step had failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from irctl.errors import UsageError

if TYPE_CHECKING:
    from pydantic import ValidationError

_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_BOUNDS = {"ge": ">= {}", "gt": "> {}", "le": "<= {}", "lt": "< {}"}


def _allowed(err: Any, field: Any) -> str:
    """The whole allowed range from the field's constraints, not only the bound it broke."""
    bounds = []
    for item in getattr(field, "metadata", None) or []:
        for key, text in _BOUNDS.items():
            if getattr(item, key, None) is not None:
                bounds.append(text.format(getattr(item, key)))
    ctx = err.get("ctx") or {}
    if not bounds:
        bounds = [text.format(ctx[key]) for key, text in _BOUNDS.items() if key in ctx]
    if bounds and err["type"] in _RANGE_ERRORS:
        return "must be " + " and ".join(bounds)
    return str(err["msg"]).removeprefix("Value error, ")


def usage_error(
    exc: ValidationError, flags: dict[str, str], command: str, model: Any = None
) -> UsageError:
    """The first error of `exc` as `--flag VALUE: what is allowed`, exit code 2."""
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else ""
    info = (getattr(model, "model_fields", None) or {}).get(field)
    flag = flags.get(field, f"--{field.replace('_', '-')}")
    value = err.get("input")
    shown = f" {value!r}" if isinstance(value, str | int | float) else ""
    return UsageError(f"{flag}{shown}: {_allowed(err, info)}", f"see `irctl {command} --help`")


def in_range(low: int, high: int) -> Callable[[int | None], int | None]:
    """A typer callback for an integer option: this typer's own `min=`/`max=` report through
    pydantic ("Input should be greater than or equal to 1")."""

    def check(value: int | None) -> int | None:
        if value is not None and not low <= value <= high:
            raise typer.BadParameter(f"must be {low}..{high}, not {value}")
        return value

    return check
