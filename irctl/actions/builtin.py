"""Built-in actions: `confirm`, `manual`, `wait`, `assert`."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from irctl.actions.base import ActionParams, BaseAction, Context, Effect, Outcome, Plan
from irctl.durations import format_duration, parse_duration
from irctl.errors import InputError

WAIT_SLICE_S = 0.2


class Confirm(BaseAction):
    name = "confirm"
    description = "ask the operator a yes/no question; no stops the run"
    effect = Effect.INTERACT

    class Params(ActionParams):
        message: str = Field(min_length=1)
        default: bool = False

    def run(self, params: Any, ctx: Context) -> Outcome:
        if ctx.ui.confirm(params.message, default=params.default):
            return Outcome(ok=True, output={"answer": "yes"}, summary="confirmed")
        return Outcome.failed("the operator answered no", answer="no")


class Manual(BaseAction):
    name = "manual"
    description = "show instructions and a checklist the operator acknowledges item by item"
    effect = Effect.INTERACT

    class Params(ActionParams):
        instructions: str = ""
        checklist: list[str] = Field(default_factory=list)

    def run(self, params: Any, ctx: Context) -> Outcome:
        if params.instructions:
            ctx.ui.info(params.instructions)
        items = params.checklist or ["done"]
        if ctx.ui.checklist(ctx.step_id or "manual step", items):
            return Outcome(
                ok=True, output={"acknowledged": items}, summary="all items acknowledged"
            )
        return Outcome.failed("the checklist was not completed", acknowledged=[])


class Wait(BaseAction):
    name = "wait"
    description = "pause for a while (lets a change settle before the next measurement)"
    effect = Effect.READ

    class Params(ActionParams):
        duration: str | float
        reason: str = ""

        @field_validator("duration")
        @classmethod
        def _duration(cls, value: Any) -> Any:
            try:
                parse_duration(value)
            except InputError as exc:
                raise ValueError(exc.message) from None
            return value

    def run(self, params: Any, ctx: Context) -> Outcome:
        seconds = parse_duration(params.duration)
        if ctx.dry_run:
            # A drill does not sit through waits; the output says so rather than pretending.
            return Outcome(
                ok=True,
                output={"waited_s": 0, "would_wait_s": seconds},
                summary=f"drill: would wait {format_duration(seconds)}",
            )
        with ctx.ui.progress(f"waiting {format_duration(seconds)} {params.reason}".strip()):
            # Slices, not one long sleep: a Ctrl-C, a SIGTERM or the step's timeout stops a
            # wait within a slice even on a clock that is not woken by the cancel event.
            end = ctx.clock.monotonic() + seconds
            while (left := end - ctx.clock.monotonic()) > 0:
                ctx.check_cancelled()
                ctx.clock.sleep(min(WAIT_SLICE_S, left))
        return Outcome(
            ok=True, output={"waited_s": seconds}, summary=f"waited {format_duration(seconds)}"
        )

    def plan(self, params: Any, ctx: Context) -> Plan:
        return Plan(summary=f"wait {format_duration(parse_duration(params.duration))}")


class Assert(BaseAction):
    name = "assert"
    description = "fail the step unless a condition (a rendered template) holds"
    effect = Effect.READ

    class Params(ActionParams):
        that: Any
        message: str = "assertion failed"

    def run(self, params: Any, ctx: Context) -> Outcome:
        if params.that in (True, "True", "true", 1):
            return Outcome(ok=True, output={"holds": True}, summary="holds")
        if params.that in (False, "False", "false", 0, None, ""):
            return Outcome.failed(params.message, holds=False)
        return Outcome.failed(
            f"{params.message} (the condition gave {params.that!r}, not a boolean)", holds=False
        )
