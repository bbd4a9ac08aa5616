"""The runbook format, v1: what a codified incident procedure may say.

pydantic models with `extra="forbid"`, so a typo in a field name is an error
at validation time, not a silently ignored key at 3 a.m.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from irctl.durations import parse_duration
from irctl.errors import InputError

OnFailure = Literal["abort", "continue", "rollback"]
InputType = Literal["string", "integer", "number", "boolean", "list", "duration"]
STEP_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def _duration(value: Any) -> str | float:
    try:
        parse_duration(value)
    except InputError as exc:
        raise ValueError(exc.message) from None
    return value  # type: ignore[no-any-return]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class InputSpec(_Strict):
    type: InputType = "string"
    default: Any = None
    required: bool = False
    description: str = ""
    choices: list[Any] | None = None


class Step(_Strict):
    id: str = Field(pattern=STEP_ID)
    title: str | None = None
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    when: str | None = None
    foreach: str | None = None
    concurrency: int = Field(default=1, ge=1, le=256)
    max_failures: int = Field(default=0, ge=0)
    expect: str | None = None
    retries: int = Field(default=0, ge=0, le=100)
    retry_delay: str | float = "5s"
    timeout: str | float | None = None
    confirm: bool | None = None  # None: mutating steps confirm, others don't
    on_failure: OnFailure | None = None
    description: str | None = None

    _check_delay = field_validator("retry_delay")(_duration)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        return None if value is None else _duration(value)

    @property
    def label(self) -> str:
        return self.title or self.id


class Runbook(_Strict):
    apiVersion: Literal["irctl/v1"]
    kind: Literal["Runbook"]
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    severity: Literal["sev1", "sev2", "sev3", "sev4"] | None = None
    description: str = ""
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    # Template naming the cluster this run locks; defaults to the `cluster` input when declared.
    lock: str | None = None
    steps: list[Step] = Field(min_length=1)
    on_failure: OnFailure = "abort"

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


def coerce_input(name: str, spec: InputSpec, raw: Any) -> Any:
    """An input value of the declared type; InputError naming the input when it doesn't fit."""
    try:
        if spec.type == "string":
            value: Any = str(raw)
        elif spec.type == "integer":
            if isinstance(raw, bool):
                raise ValueError
            value = int(raw)
        elif spec.type == "number":
            value = float(raw)
        elif spec.type == "boolean":
            if isinstance(raw, bool):
                value = raw
            elif str(raw).lower() in ("1", "true", "yes", "on"):
                value = True
            elif str(raw).lower() in ("0", "false", "no", "off"):
                value = False
            else:
                raise ValueError
        elif spec.type == "list":
            value = raw if isinstance(raw, list) else [p for p in str(raw).split(",") if p]
        else:
            parse_duration(raw)
            value = raw
    except (ValueError, TypeError, InputError):
        raise InputError(
            f"input {name!r}: {raw!r} is not a valid {spec.type}", f"pass -p {name}=<{spec.type}>"
        ) from None
    if spec.choices is not None and value not in spec.choices:
        raise InputError(
            f"input {name!r}: {raw!r} is not one of {spec.choices}", f"pass -p {name}=<choice>"
        )
    return value


def resolve_inputs(runbook: Runbook, given: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(runbook.inputs))
    if unknown:
        raise InputError(
            f"runbook {runbook.name!r} takes no input {unknown[0]!r}",
            f"its inputs: {', '.join(runbook.inputs) or 'none'}",
        )
    values: dict[str, Any] = {}
    for name, spec in runbook.inputs.items():
        if name in given:
            values[name] = coerce_input(name, spec, given[name])
        elif spec.default is not None:
            values[name] = coerce_input(name, spec, spec.default)
        elif spec.required:
            raise InputError(
                f"runbook {runbook.name!r} needs input {name!r}", f"pass -p {name}=..."
            )
        else:
            values[name] = None
    return values
