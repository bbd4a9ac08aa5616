"""Running one step: `when`, `foreach` with a failure budget, params, plan, confirmation,
intent/result records, retries, `expect`, timeouts, and Ctrl-C that lets the action in
flight finish and be journaled before anything else happens.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from irctl.actions import get_action
from irctl.actions.base import Action, Cancelled, Context, Effect, Outcome, Plan, SystemClock
from irctl.durations import format_duration, parse_duration
from irctl.errors import IrctlError, JournalError, one_line
from irctl.runbook.model import Step
from irctl.runbook.results import StepResult
from irctl.runbook.templating import TemplateFailure, evaluate, render

GRACE_SECONDS = 10.0  # how long a timed-out action gets to notice its cancel event


def item_key(index: int | None, item: Any) -> str:
    """A stable key for one foreach item, so resume matches items across processes.

    A readable prefix and a hash of the whole item: items that differ only late in
    their JSON never share a key. `_prepare` tells duplicates apart by occurrence.
    """
    if index is None:
        return ""
    text = json.dumps(item, sort_keys=True, default=str)
    if len(text) <= 64:
        return text
    return f"{text[:48]}#{hashlib.sha256(text.encode()).hexdigest()[:16]}"


@dataclass
class Work:
    key: str
    item: Any
    params: Any
    plan: Plan | None = None
    outcome: Outcome | None = None
    attempts: int = 0
    status: str = "pending"
    note: str | None = None
    abandoned: bool = False  # the engine gave up waiting; the thread must not overwrite status


@dataclass
class StepContext:
    """What the engine hands the executor for one step."""

    step: Step
    ctx: Context
    scope: dict[str, Any]
    dry_run: bool
    after_planned: bool  # a mutating step was only planned earlier in this drill
    done_items: dict[str, Any] = field(default_factory=dict)  # key -> output, from the journal
    on_crash: Any = None  # callable(exc) -> str: writes a traceback file, returns its path
    literal_params: bool = False


class StepInterrupted(Exception):
    def __init__(self, result: StepResult) -> None:
        self.result = result


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def execute_step(sc: StepContext) -> StepResult:
    step, ctx = sc.step, sc.ctx
    started = time.monotonic()
    action = get_action(step.action)

    def finish(status: str, **kw: Any) -> StepResult:
        return StepResult(step.id, step.action, status, duration_ms=_elapsed_ms(started), **kw)

    try:
        if step.when is not None and not evaluate(step.when, sc.scope):
            return finish("not_run", reason=f"when: {step.when!r} was false")
        works = _prepare(sc, action)
    except TemplateFailure as exc:
        if sc.dry_run and sc.after_planned:
            return finish(
                "not_run",
                reason="depends on a planned step's result, known only in a live run "
                f"({exc.message})",
            )
        return finish("failed", error=f"template error: {exc.message}")
    except IrctlError as exc:
        return finish("failed", error=str(exc))  # message and hint

    # One item that mutates makes the whole step mutating: planned in a drill, confirmed live.
    effects = {action.effect_for(w.params) for w in works} or {action.effect}
    effect = next(
        (e for e in (Effect.MUTATE, Effect.INTERACT, Effect.READ) if e in effects), Effect.READ
    )
    if not works:
        return finish(
            "succeeded" if not sc.dry_run else "executed",
            output={"items": []},
            note="foreach gave no items",
        )

    if effect is Effect.MUTATE:
        try:
            for work in works:
                work.plan = action.plan(work.params, ctx.for_step(step.id, work.key or None))
        except IrctlError as exc:
            if sc.dry_run and sc.after_planned:
                # The drill measured a world without its planned changes; a live run decides
                # this step after them. Say so instead of failing the drill on a guess.
                return finish(
                    "not_run",
                    reason=f"could not be planned on a world without the planned changes: {exc}",
                )
            return finish("failed", error=str(exc))  # message and hint
        plans = [w.plan.to_dict() for w in works if w.plan is not None]
        if sc.dry_run:
            # One record per step, however many items: a drill over 1,000 proxies must not
            # become 1,000 fsyncs (the journal moves a large plan list to a side file).
            ctx.journal.append(
                "planned",
                run_id=ctx.run_id,
                operator=ctx.operator,
                runbook=ctx.runbook,
                step=step.id,
                action=step.action,
                dry_run=True,
                targets=sorted({t for w in works if w.plan for t in w.plan.targets}),
                plan=plans if step.foreach is not None else plans[0],
            )
            _show_plans(ctx, f"{step.label} (planned)", works)
            return finish("planned", plan=plans)
        pending = [w for w in works if w.key not in sc.done_items]
        if pending and step.confirm is not False:
            _show_plans(ctx, step.label, pending)
            # An action may ask its own, stronger question (cache.flush: type the shard names).
            custom = getattr(action, "confirm_plan", None)
            if callable(custom):
                agreed = bool(custom([w.params for w in pending], ctx))
            else:
                agreed = ctx.ui.confirm(f"Run step {step.id!r} ({len(pending)} change(s))?")
            if not agreed:
                return finish("declined", plan=plans, reason="the operator declined")
        ctx.journal.check_writable()
        # Asked and answered (or `confirm: false`): the action must not ask again.
        sc.ctx = ctx.for_step(step.id)
        sc.ctx.assume_yes = True
    return _run_works(sc, action, works, effect, started)


SHOWN_PLANS = 5


def _show_plans(ctx: Context, title: str, works: list[Work]) -> None:
    """The first few plans in full, then a count: the journal and JSON hold them all."""
    for work in works[:SHOWN_PLANS]:
        if work.plan is not None:
            ctx.ui.show_plan(title, work.plan)
    if len(works) > SHOWN_PLANS:
        ctx.ui.info(f"    … and {len(works) - SHOWN_PLANS} more like these")


def _prepare(sc: StepContext, action: Action) -> list[Work]:
    step = sc.step
    if step.foreach is None:
        items: list[tuple[int | None, Any]] = [(None, None)]
    else:
        value = evaluate(step.foreach, sc.scope)
        if not isinstance(value, list | tuple):
            raise IrctlError(f"foreach {step.foreach!r} gave {type(value).__name__}, not a list")
        items = list(enumerate(value))
    works = []
    seen: dict[str, int] = {}
    for index, item in items:
        scope = sc.scope if index is None else {**sc.scope, "item": item}
        raw = step.with_ if sc.literal_params else render(step.with_, scope)
        try:
            params = action.Params.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "with"
            raise IrctlError(f"step {step.id!r}: {where}: {err['msg']}") from None
        key = item_key(index, item)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            key = f"{key}@{seen[key]}"  # the same item twice is two items
        works.append(Work(key, item, params))
    return works


ABANDONED: list[str] = []  # items whose thread outlived its timeout or a second Ctrl-C


def _run_works(
    sc: StepContext, action: Action, works: list[Work], effect: Effect, started: float
) -> StepResult:
    step, ctx = sc.step, sc.ctx
    timeout = parse_duration(step.timeout) if step.timeout is not None else None
    for work in works:
        if work.key in sc.done_items:
            work.status, work.outcome = "done", Outcome(ok=True, output=sc.done_items[work.key])
    queue = [w for w in works if w.status == "pending"]
    if effect is Effect.INTERACT:
        # Prompts belong to the main thread, where Ctrl-C arrives.
        for work in queue:
            _attempts(sc, action, work, effect, ctx.for_step(step.id, work.key or None))
        failures = sum(1 for w in works if w.status == "failed")
        return _summarize(sc, works, effect, started, failures)
    failures = 0
    interrupted = False
    journal_error: JournalError | None = None
    running: dict[Future[None], tuple[Work, float, threading.Event]] = {}
    # Not a `with` block: leaving one waits for every thread, and a hung action must not
    # hold the run hostage past its timeout or a second Ctrl-C.
    pool = ThreadPoolExecutor(max_workers=step.concurrency, thread_name_prefix=f"step-{step.id}")

    def abandon(fut: Future[None], why: str) -> None:
        work, _, cancel = running.pop(fut)
        cancel.set()
        work.abandoned = True
        work.status = "failed"
        work.outcome = Outcome.failed(f"{why}; its outcome is unknown (irctl resume reconciles it)")
        ABANDONED.append(f"{step.id}{'[' + work.key + ']' if work.key else ''}")

    try:
        while queue or running:
            while (
                queue
                and len(running) < step.concurrency
                and not interrupted
                and failures <= step.max_failures
            ):
                work = queue.pop(0)
                cancel = threading.Event()
                clock = SystemClock(cancel) if isinstance(ctx.clock, SystemClock) else ctx.clock
                wctx = replace(ctx.for_step(step.id, work.key or None), cancel=cancel, clock=clock)
                if timeout is not None:
                    wctx.deadline = wctx.clock.monotonic() + timeout
                fut = pool.submit(_attempts, sc, action, work, effect, wctx)
                running[fut] = (work, time.monotonic(), cancel)
            if not running:
                break
            try:
                done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                interrupted = True
                ctx.ui.warn(
                    "interrupted: letting the action in flight finish and journaling it "
                    "(Ctrl-C again to stop waiting)"
                )
                try:
                    wait(list(running))
                except KeyboardInterrupt:
                    for _, _, cancel in running.values():
                        cancel.set()
                    wait(list(running), timeout=GRACE_SECONDS)
                    for fut in [f for f in running if not f.done()]:
                        abandon(fut, "interrupted twice and the action did not stop")
                done = {f for f in running if f.done()}
            for fut in done:
                work, _, _ = running.pop(fut)
                exc = fut.exception()
                if isinstance(exc, JournalError):
                    journal_error = exc
                    work.status, work.outcome = "failed", Outcome.failed(exc.message)
                elif exc is not None:
                    work.status, work.outcome = "failed", Outcome.failed(f"internal error: {exc}")
                if work.status == "failed":
                    failures += 1
            if journal_error is not None:
                queue.clear()
            if timeout is not None:
                for fut, (_work, began, cancel) in list(running.items()):
                    elapsed = time.monotonic() - began
                    if elapsed > timeout:
                        cancel.set()  # cooperative actions stop at their next sleep or check
                    if elapsed > timeout + min(GRACE_SECONDS, max(1.0, timeout)):
                        abandon(fut, f"timed out after {format_duration(timeout)} and did not stop")
                        failures += 1
            if interrupted:
                queue.clear()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if journal_error is not None:
        # No record, no mutation: the engine stops the run whatever on_failure says.
        raise journal_error
    for work in queue:
        work.status, work.note = "not_run", "failure budget exhausted"
    result = _summarize(sc, works, effect, started, failures)
    if interrupted:
        result.status = "interrupted"
        raise StepInterrupted(result)
    return result


def _attempts(sc: StepContext, action: Action, work: Work, effect: Effect, wctx: Context) -> None:
    step = sc.step
    delay = parse_duration(step.retry_delay)
    for attempt in range(1, step.retries + 2):
        work.attempts = attempt
        outcome, note = _one_attempt(sc, action, work, effect, wctx)
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


def _check_expect(sc: StepContext, work: Work, outcome: Outcome) -> tuple[Outcome, str | None]:
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


def _one_attempt(
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
    outcome, note = _check_expect(sc, work, outcome)
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
            duration_ms=_elapsed_ms(began),
        )
    return outcome, note


def _summarize(
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
            duration_ms=_elapsed_ms(started),
            attempts=attempts,
            note=notes[0] if notes else None,
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
        duration_ms=_elapsed_ms(started),
        attempts=attempts,
        note=notes[0] if notes else None,
    )
