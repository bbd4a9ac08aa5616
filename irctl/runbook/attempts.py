"""One item of a step: its attempts with retries, `expect`, intent and result records,
and the step's result summed up from its items.
"""

from __future__ import annotations

import time
from typing import Any

from irctl.actions.base import Action, Cancelled, Context, Effect, Outcome
from irctl.durations import format_duration, parse_duration
from irctl.errors import IrctlError, JournalError, one_line
from irctl.runbook.results import StepResult
from irctl.runbook.templating import TemplateFailure, evaluate
from irctl.runbook.work import StepContext, Work, elapsed_ms


def attempts(sc: StepContext, action: Action, work: Work, effect: Effect, wctx: Context) -> None:
    step = sc.step
    delay = parse_duration(step.retry_delay)
    for attempt in range(1, step.retries + 2):
        work.attempts = attempt
        outcome, note = one_attempt(sc, action, work, effect, wctx)
        if work.abandoned:
            return  # the engine gave up on this item and recorded why
        work.outcome = outcome
        if outcome.ok:
            work.status, work.note = "done", note
            return
        if attempt <= step.retries:
            wctx.ui.step(
                step.id,
                "retrying",
                f"attempt {attempt} failed: {outcome.error}; again in {format_duration(delay)}",
            )
            try:
                wctx.clock.sleep(delay)
            except Cancelled:
                break
    if not work.abandoned:
        work.status = "failed"


def check_expect(sc: StepContext, work: Work, outcome: Outcome) -> tuple[Outcome, str | None]:
    """(outcome, drill note): a missed `expect` fails the attempt (the change stays undoable)."""
    step = sc.step
    if not outcome.ok or step.expect is None:
        return outcome, None
    try:
        met = bool(evaluate(step.expect, {**sc.scope, "item": work.item, "output": outcome.output}))
    except TemplateFailure as exc:
        return Outcome(ok=False, output=outcome.output, error=f"expect: {exc.message}",
                       undo=outcome.undo), None  # fmt: skip
    if met:
        return outcome, None
    if sc.dry_run and sc.after_planned:
        return outcome, (
            f"expect {step.expect!r} not met in the drill: the planned changes "
            "were not made; a live run retries after them"
        )
    return Outcome(ok=False, output=outcome.output, error=f"expect {step.expect!r} not met",
                   undo=outcome.undo), None  # fmt: skip


def one_attempt(
    sc: StepContext, action: Action, work: Work, effect: Effect, wctx: Context
) -> tuple[Outcome, str | None]:
    step, journal = sc.step, wctx.journal
    intent_seq = None
    began = time.monotonic()
    common = dict(
        run_id=wctx.run_id,
        operator=wctx.operator,
        runbook=wctx.runbook,
        step=step.id,
        item=work.key or None,
        action=step.action,
        scope="step",
    )
    if effect is Effect.MUTATE:
        if sc.guard is not None:
            sc.guard()  # LockLost: another operator broke the lock; change nothing more
        targets = work.plan.targets if work.plan else []
        intent = journal.append(
            "intent",
            **common,
            targets=targets,
            params=work.params.model_dump(mode="json"),
            dry_run=False,
        )
        intent_seq = intent["seq"]
    try:
        outcome = action.run(work.params, wctx)
    except JournalError:
        raise  # no record, no mutation: the engine stops the run
    except Cancelled as exc:
        timed_out = wctx.deadline is not None and wctx.clock.monotonic() >= wctx.deadline
        outcome = Outcome.failed(
            f"timed out after {format_duration(parse_duration(step.timeout))}"
            if timed_out and step.timeout is not None
            else exc.message
        )
    except IrctlError as exc:
        outcome = Outcome.failed(str(exc))
    except Exception as exc:  # a bug in an action is a failed step, recorded, not a crash
        where = sc.on_crash(exc) if sc.on_crash else None
        outcome = Outcome.failed(
            f"internal error in {step.action}: {type(exc).__name__}: {one_line(str(exc), 200)}"
            + (f" (traceback in {where})" if where else "")
        )
    changed = outcome.ok
    undo = outcome.undo
    outcome, note = check_expect(sc, work, outcome)
    if intent_seq is not None:
        journal.append(
            "result",
            **common,
            intent_seq=intent_seq,
            # ok: the change happened (and is undoable); expect_met: it did what was asked.
            ok=changed,
            expect_met=None if step.expect is None else outcome.ok,
            output=outcome.output,
            undo=undo if changed else None,
            targets=outcome.targets,
            error=outcome.error,
            duration_ms=elapsed_ms(began),
        )
    return outcome, note


def summarize(
    sc: StepContext, works: list[Work], effect: Effect, started: float, failures: int
) -> StepResult:
    step = sc.step
    ok_status = "executed" if sc.dry_run else "succeeded"
    notes = [w.note for w in works if w.note and w.status == "done"]
    attempts = max((w.attempts for w in works), default=0)
    if step.foreach is None:
        work = works[0]
        outcome = work.outcome or Outcome.failed("not run")
        return StepResult(
            step.id,
            step.action,
            ok_status if work.status == "done" else "failed",
            output=outcome.output,
            error=None if work.status == "done" else outcome.error,
            duration_ms=elapsed_ms(started),
            attempts=attempts,
            note=notes[0] if notes else None,
            summary=outcome.summary or None,
        )
    items = []
    for work in works:
        entry: dict[str, Any] = {"item": work.item, "status": work.status}
        if work.outcome is not None:
            entry["output"] = work.outcome.output
            if work.outcome.error:
                entry["error"] = work.outcome.error
        if work.note:
            entry["note"] = work.note
        items.append(entry)
    succeeded = sum(1 for w in works if w.status == "done")
    failed_items = [w for w in works if w.status == "failed"]
    within_budget = failures <= step.max_failures and all(w.status != "not_run" for w in works)
    error = None
    if failed_items:
        first = failed_items[0].outcome
        error = f"{len(failed_items)} of {len(works)} items failed" + (
            f"; first: {first.error}" if first and first.error else ""
        )
    return StepResult(
        step.id,
        step.action,
        ok_status if within_budget else "failed",
        output={
            "items": items,
            "succeeded": succeeded,
            "failed": len(failed_items),
            "not_run": sum(1 for w in works if w.status == "not_run"),
        },
        error=error if not within_budget or failed_items else None,
        duration_ms=elapsed_ms(started),
        attempts=attempts,
        note=notes[0] if notes else None,
        summary=f"{succeeded} of {len(works)} item(s) done",
    )
