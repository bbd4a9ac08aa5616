"""Bad option values as usage errors: the option's name and what it takes, in one line.

Commands validate their options through an action's pydantic model; its wording ("Input
should be greater than or equal to 1", "Value error, ...") names a field, not the flag
the operator typed, and would exit 1 as if a step had failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from irctl.errors import UsageError

if TYPE_CHECKING:
    from pydantic import ValidationError

_BOUNDS = {"ge": ">= {}", "gt": "> {}", "le": "<= {}", "lt": "< {}"}


def _allowed(err: Any) -> str:
    ctx = err.get("ctx") or {}
    bounds = [text.format(ctx[key]) for key, text in _BOUNDS.items() if key in ctx]
    if bounds:
        return "must be " + " and ".join(bounds)
    return str(err["msg"]).removeprefix("Value error, ")


def usage_error(exc: ValidationError, flags: dict[str, str], command: str) -> UsageError:
    """The first error of `exc` as `--flag VALUE: what is allowed`, exit code 2."""
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else ""
    flag = flags.get(field, f"--{field.replace('_', '-')}")
    value = err.get("input")
    shown = f" {value!r}" if isinstance(value, str | int | float) else ""
    return UsageError(f"{flag}{shown}: {_allowed(err)}", f"see `irctl {command} --help`")
