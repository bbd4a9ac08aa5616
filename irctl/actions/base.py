"""What every action is: the `Action` protocol, its plan and outcome, and the context it gets.

An action never prints and never reaches the outside world itself: it asks
`ctx.provider(SomeProvider)` for the provider that does, and returns data that
the engine journals and the UI renders.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict

from irctl.errors import IrctlError, one_line

if TYPE_CHECKING:
    from irctl.inventory import Inventory
    from irctl.journal import Journal
    from irctl.providers import Providers
    from irctl.settings import Settings
    from irctl.ui import UI


class Effect(StrEnum):
    READ = "read"  # runs for real in a drill
    MUTATE = "mutate"  # planned, not run, in a drill; journaled intent before, result after
    INTERACT = "interact"  # confirm, manual checklist


class Params(BaseModel):
    """Base for every action's parameters: unknown parameters are errors."""

    model_config = ConfigDict(extra="forbid")


# A nested `class Params(Params)` cannot name its own base; subclass `ActionParams` instead.
ActionParams = Params


@dataclass
class Plan:
    """The exact thing an action would do, computed without side effects."""

    summary: str
    details: list[str] = field(default_factory=list)  # exact API calls, nft batch text, servers
    targets: list[str] = field(default_factory=list)
    reversible: bool = False
    data: dict[str, Any] = field(default_factory=dict)  # machine-readable form of the plan
    warnings: list[str] = field(default_factory=list)  # e.g. blast radius, irreversible

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "details": self.details,
            "targets": self.targets,
            "reversible": self.reversible,
            "data": self.data,
            "warnings": self.warnings,
        }


@dataclass
class Outcome:
    """What a run (or undo, or reconcile) did. A failure is a recorded result, not a crash."""

    ok: bool
    output: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    targets: list[str] = field(default_factory=list)
    undo: dict[str, Any] | None = None  # the record `undo()` needs; None: nothing to undo
    error: str | None = None

    @classmethod
    def failed(cls, error: str, **output: Any) -> Outcome:
        return cls(ok=False, error=one_line(error), output=dict(output), summary=one_line(error))


@dataclass
class Reconciled:
    """After a crash between intent and result: what the world says happened."""

    state: Literal["applied", "not_applied", "unknown"]
    outcome: Outcome | None = None  # for `applied`: the result to record
    detail: str = ""


class Clock(Protocol):
    def now(self) -> float: ...
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall and monotonic time; `sleep` wakes early when the run is cancelled."""

    def __init__(self, cancel: threading.Event | None = None) -> None:
        self.cancel = cancel or threading.Event()

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if self.cancel.wait(max(0.0, seconds)):
            raise Cancelled("the step was cancelled (timeout or interrupt)")


class Cancelled(IrctlError):
    """Raised inside an action when its step timed out or the operator interrupted."""


@dataclass
class Context:
    """Everything an action may use. Tests build one with real servers or fakes."""

    inventory: Inventory
    settings: Settings
    providers: Providers
    ui: UI
    journal: Journal
    clock: Clock
    run_id: str
    operator: str
    dry_run: bool = False
    runbook: str | None = None
    step_id: str | None = None
    item_key: str | None = None  # set inside foreach
    assume_yes: bool = False
    # Run-scoped memory shared by steps (e.g. the Statuspage incident id of this run).
    run_state: dict[str, Any] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # monotonic; actions with waiters respect it

    def provider(self, kind: type[ProviderT]) -> ProviderT:
        return self.providers.get(kind)

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("the step was cancelled (timeout or interrupt)")
        if self.deadline is not None and self.clock.monotonic() > self.deadline:
            raise Cancelled("the step ran past its timeout")

    def for_step(self, step_id: str | None, item_key: str | None = None) -> Context:
        # A shallow copy: providers, journal and run_state stay shared across the run.
        clone = object.__new__(Context)
        clone.__dict__.update(self.__dict__)
        clone.step_id, clone.item_key = step_id, item_key
        return clone

    @contextmanager
    def mutation(
        self,
        operation: str,
        *,
        targets: list[str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Iterator[MutationRecord]:
        """Journal an `intent` before a change to the world and its `result` after.

        If the intent cannot be written the change does not start (JournalError).
        An exception inside the block is journaled as a failed result, then re-raised.
        """
        started = self.clock.monotonic()
        common: dict[str, Any] = {
            "scope": "call",
            "run_id": self.run_id,
            "operator": self.operator,
            "runbook": self.runbook,
            "step": self.step_id,
            "item": self.item_key,
            "action": operation,
        }
        intent = self.journal.append(
            "intent", **common, targets=targets or [], params=params or {}, dry_run=self.dry_run
        )
        record = MutationRecord(intent_seq=int(intent["seq"]))

        def result(**fields: Any) -> None:
            elapsed = int((self.clock.monotonic() - started) * 1000)
            self.journal.append(
                "result", **common, intent_seq=record.intent_seq, duration_ms=elapsed, **fields
            )

        try:
            yield record
        except BaseException as exc:
            result(targets=targets or [], ok=False, error=one_line(str(exc) or type(exc).__name__))
            raise
        result(
            targets=record.targets or targets or [],
            ok=record.ok,
            outcome=record.outcome,
            error=record.error,
        )


@dataclass
class MutationRecord:
    intent_seq: int
    ok: bool = True
    outcome: dict[str, Any] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    error: str | None = None

    def result(self, ok: bool = True, error: str | None = None, **outcome: Any) -> None:
        self.ok, self.error = ok, error
        self.outcome.update(outcome)


ProviderT = TypeVar("ProviderT")
ParamsT = TypeVar("ParamsT", bound=Params)


@runtime_checkable
class Action(Protocol):
    """One kind of step. `BaseAction` gives the defaults; actions live in `irctl.actions.*`."""

    name: ClassVar[str]
    description: ClassVar[str]
    effect: ClassVar[Effect]
    reversible: ClassVar[bool]
    Params: ClassVar[type[Params]]

    def effect_for(self, params: Any) -> Effect: ...
    def plan(self, params: Any, ctx: Context) -> Plan: ...
    def run(self, params: Any, ctx: Context) -> Outcome: ...
    def undo(self, record: dict[str, Any], ctx: Context) -> Outcome: ...
    def reconcile(self, intent: dict[str, Any], ctx: Context) -> Reconciled: ...


class BaseAction:
    """Defaults for the `Action` protocol: not reversible, reconcile says `unknown`."""

    name: ClassVar[str]
    description: ClassVar[str]
    effect: ClassVar[Effect] = Effect.READ
    reversible: ClassVar[bool] = False
    Params: ClassVar[type[Params]]

    def effect_for(self, params: Any) -> Effect:
        return self.effect

    def plan(self, params: Any, ctx: Context) -> Plan:
        return Plan(summary=f"{self.name}: {self.description}")

    def undo(self, record: dict[str, Any], ctx: Context) -> Outcome:
        return Outcome.failed(f"{self.name} cannot be undone")

    def reconcile(self, intent: dict[str, Any], ctx: Context) -> Reconciled:
        return Reconciled("unknown", detail=f"{self.name} cannot check whether it was applied")


RunFn = Callable[[Any, Context], Outcome]
