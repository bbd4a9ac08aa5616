"""The engine: steps in order, the run journaled, the cluster locked, failures handled
by `on_failure`, resume after a crash, rollback newest first.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from irctl import signals
from irctl.actions import get_action
from irctl.actions.base import BaseAction, Context, Effect
from irctl.errors import InputError, JournalError, RefusedError
from irctl.inventory import as_plain
from irctl.journal import REDACTED, SECRET_KEY
from irctl.lock import ClusterLock, LockLost
from irctl.runbook.executor import StepContext, StepInterrupted, execute_step
from irctl.runbook.model import Runbook, resolve_inputs
from irctl.runbook.reconcile import reconcile_step
from irctl.runbook.results import RunResult, StepResult
from irctl.runbook.rollback import rollback
from irctl.runbook.state import STEP_DONE, RunState, changed_anything, load_run
from irctl.runbook.templating import TemplateFailure, render, step_key

__all__ = ["Engine", "new_run_id", "rollback"]


def may_mutate(action: Any) -> bool:
    # An action whose effect depends on its params (ssh.run) may mutate.
    return bool(
        action.effect is Effect.MUTATE or type(action).effect_for is not BaseAction.effect_for
    )


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def file_digest(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Engine:
    runbook: Runbook
    ctx: Context
    runbook_path: Path | None = None
    on_crash: Any = None
    results: dict[str, StepResult] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    lock: ClusterLock | None = None
    literal_params: bool = False  # CLI commands: operator text is never a template
    extra_started: dict[str, Any] = field(default_factory=dict)
    _last_undone: list[dict[str, Any]] = field(default_factory=list)
    _inventory: dict[str, Any] | None = field(default=None, repr=False)
    _finished: bool = field(default=False, repr=False)  # run_finished is journaled

    # -- public --------------------------------------------------------------
    def start(self, given_inputs: dict[str, Any]) -> RunResult:
        self.inputs = resolve_inputs(self.runbook, given_inputs)
        self._register_secrets()
        self._take_lock()
        try:
            self._journal(
                "run_started",
                lock=self.lock.cluster if self.lock else None,
                runbook_path=str(self.runbook_path) if self.runbook_path else None,
                runbook_sha256=file_digest(self.runbook_path),
                inputs=self.inputs,
                dry_run=self.ctx.dry_run,
                host=socket.gethostname(),
                pid=os.getpid(),
                **self.extra_started,
            )
            self._note_takeover()
            return self._guarded_loop(None)
        finally:
            self._release()

    def resume(self, state: RunState, given: dict[str, Any] | None = None) -> RunResult:
        if state.undone:
            raise RefusedError(
                f"run {state.run_id} was rolled back (in part); resuming would redo half of it",
                "start a new run instead",
            )
        if state.dry_run:
            raise RefusedError(f"run {state.run_id} was a drill", "start a new drill instead")
        if state.finished and state.status in ("succeeded", "rolled_back", "planned"):
            raise RefusedError(
                f"run {state.run_id} already ended {state.status}", "start a new run instead"
            )
        digest = file_digest(self.runbook_path)
        if digest and state.started.get("runbook_sha256") not in (None, digest):
            self.ctx.ui.warn(f"runbook {self.runbook.name} changed since the run started")
            # Finished steps keep their journaled results; the rest follow the new file.
            if not self.ctx.ui.confirm("Resume with the changed runbook?"):
                raise RefusedError(
                    f"runbook {self.runbook.name} changed since run {state.run_id} started",
                    "restore the file, or start a new run",
                )
        inputs = {**state.inputs, **(given or {})}
        hidden = sorted(k for k, v in inputs.items() if v == REDACTED)
        if hidden:
            raise RefusedError(
                f"input {hidden[0]!r} is a secret and the journal does not keep it",
                f"pass it again: irctl resume {state.run_id} -p {hidden[0]}=...",
            )
        self.inputs = resolve_inputs(self.runbook, inputs)
        self._register_secrets()
        self.ctx.run_state.update(state.run_state)
        self._take_lock()
        try:
            self._journal("run_resumed", host=socket.gethostname(), pid=os.getpid())
            self._note_takeover()
            return self._guarded_loop(state)
        finally:
            self._release()

    # -- the loop --------------------------------------------------------------
    def _guarded_loop(self, state: RunState | None) -> RunResult:
        try:
            return self._loop(state)
        except KeyboardInterrupt:
            # Ctrl-C/SIGTERM/SIGHUP between steps (not inside one, where the executor
            # handles it): the run still ends with a record saying how.
            if not self._finished:
                sig = {"signal": signals.received[-1]} if signals.received else {}
                self._journal(
                    "run_finished", status="aborted", error=signals.interrupted_by(), **sig
                )
            raise

    def _loop(self, state: RunState | None) -> RunResult:
        ctx = self.ctx
        status, error, interrupted = "succeeded", None, False
        after_planned = False
        refused: str | None = None
        for step in self.runbook.steps:
            prior = state.steps.get(step.id) if state else None
            if prior is not None and prior.status in STEP_DONE:
                self.results[step.id] = StepResult(
                    step.id, step.action, prior.status, output=prior.output, note="from the journal"
                )
                ctx.ui.step(step.id, prior.status, "(from the journal)")
                continue
            done_items: dict[str, Any] = {}
            if prior is not None:
                done_items, refusal = reconcile_step(
                    self.ctx, self._journal, step.id, step.action, prior.items
                )
                if refusal:
                    status, error = "aborted", refusal
                    break
            if self.lock:
                try:
                    if may_mutate(get_action(step.action)):
                        self.lock.verify()
                except LockLost as exc:
                    status, error = "aborted", self._lock_lost(exc)
                    break
                self.lock.update_step(step.id)
            ctx.ui.step(step.id, "running", step.title or step.action)
            self._journal("step_started", step=step.id, action=step.action)
            sc = StepContext(
                step=step,
                ctx=ctx.for_step(step.id),
                scope=self._scope(),
                dry_run=ctx.dry_run,
                after_planned=after_planned,
                done_items=done_items,
                on_crash=self.on_crash,
                literal_params=self.literal_params,
                guard=self.lock.verify if self.lock else None,
            )
            try:
                result = execute_step(sc)
            except StepInterrupted as exc:
                result, interrupted = exc.result, True
            except KeyboardInterrupt:
                result = StepResult(step.id, step.action, "interrupted", error="interrupted")
                interrupted = True
            except (RefusedError, JournalError) as exc:
                # No terminal to confirm on, or no journal to record in: the step refuses,
                # the refusal is recorded, and the run stops whatever on_failure says.
                result = StepResult(step.id, step.action, "declined", error=str(exc))
                refused = str(exc)
                if isinstance(exc, LockLost):
                    result.status = "failed"
                    refused = self._lock_lost(exc)
            self.results[step.id] = result
            if result.status == "planned":
                after_planned = True
            self._journal(
                "step_finished",
                step=step.id,
                action=step.action,
                status=result.status,
                output=result.output,
                error=result.error,
                reason=result.reason,
                duration_ms=result.duration_ms,
                run_state=dict(ctx.run_state) or None,
            )
            ctx.ui.step(step.id, result.status, result.error or result.reason or result.note or "")
            if interrupted:
                status, error = "aborted", signals.interrupted_by()
                break
            if refused is not None:
                status, error = "aborted", refused
                break
            if result.status == "declined":
                status = "aborted"
                error = refused or f"step {step.id!r} declined by the operator"
                break
            if result.status == "failed":
                mode = step.on_failure or self.runbook.on_failure
                if mode == "continue":
                    ctx.ui.warn(f"step {step.id} failed; continuing (on_failure: continue)")
                    continue
                error = f"step {step.id!r} failed: {result.error}"
                status = "failed"
                if mode == "rollback" and not ctx.dry_run:
                    status = "rolled_back" if self._rollback_all() else "failed"
                break
        undone: list[dict[str, Any]] = []
        if interrupted and not ctx.dry_run:
            undone = self._offer_rollback()
            if undone and all(u["ok"] for u in undone):
                status = "rolled_back"
        if status == "succeeded" and ctx.dry_run:
            status = "planned"
        extra = {"signal": signals.received[-1]} if interrupted and signals.received else {}
        self._journal("run_finished", status=status, error=error, **extra)
        self._finished = True
        if ctx.journal.secrets:
            # What is printed must not show what the journal hides.
            for res in self.results.values():
                res.output = ctx.journal.redact(res.output)
                res.plan = ctx.journal.redact(res.plan)
                res.error = ctx.journal.redact(res.error)
            error = ctx.journal.redact(error)
        run = RunResult(
            ctx.run_id,
            self.runbook.name,
            status,
            ctx.dry_run,
            steps=[self.results[s.id] for s in self.runbook.steps if s.id in self.results],
            error=error,
            interrupted=interrupted,
            journal=str(ctx.journal.path),
        )
        run.undone = undone or self._last_undone
        if status in ("failed", "aborted") and not ctx.dry_run:
            run.changed = changed_anything(ctx.journal, ctx.run_id)
        return run

    def _inventory_view(self) -> dict[str, Any]:
        # Dumped once per run: templates read it, nothing in a run changes it.
        if self._inventory is None:
            self._inventory = as_plain(self.ctx.inventory)
        return self._inventory

    def _scope(self) -> dict[str, Any]:
        steps: dict[str, Any] = {}
        for sid, res in self.results.items():
            # Templates see the status a live run would have: a drill's `executed` read is
            # `succeeded`, and a `planned` change is assumed to succeed (its output stays
            # unknown, so a template reading it makes the step `not_run` with that reason).
            shown = "succeeded" if res.status in ("executed", "planned") else res.status
            entry: dict[str, Any] = {"status": shown}
            if res.status not in ("planned", "not_run"):
                entry["output"] = res.output if res.output is not None else {}
            steps[sid] = entry
            steps[step_key(sid)] = entry
        return {
            "inputs": self.inputs,
            "steps": steps,
            "inventory": self._inventory_view(),
            "run": {
                "id": self.ctx.run_id,
                "operator": self.ctx.operator,
                "dry_run": self.ctx.dry_run,
                "runbook": self.runbook.name,
            },
        }

    # -- rollback ----------------------------------------------------------------
    def _rollback_all(self) -> bool:
        self.ctx.ui.warn("rolling back what this run did, newest first")
        undone = rollback(load_run(self.ctx.journal, self.ctx.run_id), self.ctx)
        self._last_undone = undone
        return all(u["ok"] for u in undone)

    def _offer_rollback(self) -> list[dict[str, Any]]:
        state = load_run(self.ctx.journal, self.ctx.run_id)
        pending = state.pending_undo()
        if not pending:
            return []
        ui = self.ctx.ui
        # After SIGTERM/SIGHUP the process was told to end (or its terminal is gone): it
        # does not sit on a question; the hint below says how to undo.
        if ui.interactive and not signals.received:
            try:
                question = f"Roll back the {len(pending)} change(s) this run made?"
                if ui.confirm(question, always_ask=True):
                    return rollback(state, self.ctx)
            except (KeyboardInterrupt, EOFError):
                pass
        ui.warn(f"to undo what this run did: irctl rollback {self.ctx.run_id}")
        return []

    # -- plumbing ----------------------------------------------------------------
    def _register_secrets(self) -> None:
        """Inputs named like secrets are redacted wherever they later appear (plans, outputs)."""
        for name, value in self.inputs.items():
            if isinstance(value, str) and SECRET_KEY.search(name):
                self.ctx.journal.add_secret(value)

    def _journal(self, event: str, **fields: Any) -> None:
        fields.setdefault("dry_run", self.ctx.dry_run)
        self.ctx.journal.append(
            event,
            run_id=self.ctx.run_id,
            operator=self.ctx.operator,
            runbook=self.runbook.name,
            **fields,
        )

    def _lock_key(self) -> str | None:
        if self.runbook.lock:
            try:
                value = render(self.runbook.lock, self._scope())
            except TemplateFailure as exc:
                raise InputError(f"runbook lock: {exc.message}") from None
            return str(value) if value else None
        cluster = self.inputs.get("cluster")
        return str(cluster) if cluster else None

    def _lock_lost(self, exc: LockLost) -> str:
        """Journal that another operator broke (or took) this run's lock; the run stops."""
        self._journal("lock_lost", cluster=self.lock.cluster if self.lock else None,
                      error=exc.message)  # fmt: skip
        self.ctx.ui.warn(exc.message)
        return exc.message

    def _mutates(self) -> bool:
        return any(may_mutate(get_action(s.action)) for s in self.runbook.steps)

    def _take_lock(self) -> None:
        if self.ctx.dry_run or not self._mutates():
            return
        self.ctx.journal.check_writable()
        key = self._lock_key()
        if key is None:
            return
        self.lock = ClusterLock(self.ctx.settings.locks_dir, key)
        self.lock.acquire(self.ctx.operator, self.ctx.run_id)

    def _note_takeover(self) -> None:
        if self.lock and self.lock.taken_over:
            old = self.lock.taken_over
            self._journal(
                "lock_takeover",
                cluster=old.cluster,
                previous_run=old.run_id,
                previous_operator=old.operator,
                previous_pid=old.pid,
            )
            self.ctx.ui.warn(
                f"took over the lock of run {old.run_id} ({old.operator}, pid {old.pid} is gone)"
            )

    def _release(self) -> None:
        if self.lock:
            self.lock.release()
