"""Run state, derived from the journal alone (one source of truth for resume and rollback)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from irctl.errors import InputError
from irctl.journal import Journal

STEP_DONE = {"succeeded", "not_run"}


@dataclass
class ItemState:
    key: str
    intent: dict[str, Any] | None = None
    result: dict[str, Any] | None = None

    @property
    def in_doubt(self) -> bool:
        return self.intent is not None and self.result is None

    @property
    def ok(self) -> bool:
        # A change that happened but missed its `expect` is not done: resume runs it again.
        return bool(self.result and self.result.get("ok") and self.result.get("expect_met", True))


@dataclass
class StepState:
    status: str | None = None
    output: Any = None
    error: str | None = None
    items: dict[str, ItemState] = field(default_factory=dict)


@dataclass
class RunState:
    run_id: str
    started: dict[str, Any]
    finished: dict[str, Any] | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    undoable: list[dict[str, Any]] = field(default_factory=list)  # step results with an undo record
    undone: set[int] = field(default_factory=set)  # seqs of results already undone
    run_state: dict[str, Any] = field(default_factory=dict)

    @property
    def runbook(self) -> str:
        return str(self.started.get("runbook", ""))

    @property
    def inputs(self) -> dict[str, Any]:
        value = self.started.get("inputs") or {}
        return dict(value) if isinstance(value, dict) else {}

    @property
    def dry_run(self) -> bool:
        return bool(self.started.get("dry_run"))

    @property
    def status(self) -> str:
        return str(self.finished.get("status")) if self.finished else "interrupted"

    def pending_undo(self) -> list[dict[str, Any]]:
        """Results of this run that can still be undone, newest first."""
        return [r for r in reversed(self.undoable) if int(r["seq"]) not in self.undone]


def changed_anything(journal: Journal, run_id: str) -> bool:
    """Whether the run journaled a change that may have happened: an intent whose result
    does not say it failed (one in doubt counts). Only then are resume and undo worth
    offering."""
    records = list(journal.records(run_id))
    failed = {
        r.get("intent_seq") for r in records if r.get("event") == "result" and r.get("ok") is False
    }
    return any(r.get("event") == "intent" and r.get("seq") not in failed for r in records)


def load_run(journal: Journal, run_id: str) -> RunState:
    state: RunState | None = None
    for rec in journal.records(run_id, check=True, expand=False):
        event = rec.get("event")
        if event == "run_started":
            state = RunState(
                run_id=run_id, started={**rec, "inputs": journal.load_blob(rec.get("inputs"))}
            )
            continue
        if state is None:
            continue
        step_id = rec.get("step")
        step = state.steps.setdefault(str(step_id), StepState()) if step_id else None
        if event == "run_finished":
            state.finished = rec
        elif event == "step_finished" and step is not None:
            step.status = rec.get("status")
            step.output = journal.load_blob(rec.get("output"))
            step.error = rec.get("error")
            run_state = journal.load_blob(rec.get("run_state"))
            if isinstance(run_state, dict):
                state.run_state = dict(run_state)
        elif event in ("intent", "result") and rec.get("scope") == "step" and step is not None:
            key = str(rec.get("item") or "")
            item = step.items.setdefault(key, ItemState(key))
            if event == "intent":
                item.intent = {**rec, "params": journal.load_blob(rec.get("params"))}
                item.result = None
            else:
                item.result = {**rec, "output": journal.load_blob(rec.get("output"))}
                if rec.get("ok") and rec.get("undo") is not None:
                    state.undoable.append({**rec, "undo": journal.load_blob(rec["undo"])})
        elif event == "undo" and rec.get("ok") and rec.get("undoes") is not None:
            state.undone.add(int(rec["undoes"]))
    if state is None:
        raise InputError(
            f"no run {run_id!r} in the journal {journal.path}", "list runs with `irctl log`"
        )
    return state
