"""Running one step: `when`, `foreach` with a failure budget, params, plan, confirmation,
intent/result records, retries, `expect`, timeouts, and Ctrl-C that lets the action in
flight finish and be journaled before anything else happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from irctl import signals
from irctl.actions import get_action
from irctl.actions.base import Action, Context, Effect, Outcome, SystemClock
from irctl.durations import format_duration, parse_duration
from irctl.errors import IrctlError, JournalError
from irctl.lock import LockLost
from irctl.runbook.attempts import attempts, summarize
from irctl.runbook.results import StepResult
from irctl.runbook.templating import TemplateFailure, evaluate, render
from irctl.runbook.work import StepContext, StepInterrupted, Work, elapsed_ms, item_key

__all__ = ["ABANDONED", "StepContext", "StepInterrupted", "execute_step", "item_key"]

GRACE_SECONDS = 10.0  # how long a timed-out action gets to notice its cancel event
READ_GRACE_SECONDS = 2.0  # how long a cancelled read gets before it is abandoned


def execute_step(sc: StepContext) -> StepResult:
    step, ctx = sc.step, sc.ctx
    started = time.monotonic()
    action = get_action(step.action)

    def finish(status: str, **kw: Any) -> StepResult:
        return StepResult(step.id, step.action, status, duration_ms=elapsed_ms(started), **kw)

    try:
        if step.when is not None and not evaluate(step.when, sc.scope):
            return finish("not_run", reason=f"when: {step.when!r} was false")
        works = _prepare(sc, action)
    except TemplateFailure as exc:
        if sc.dry_run and sc.after_planned:
            return finish(
                "not_run",
                reason="depends on a planned step's result, known only in a live run: "
                f"{exc.source or exc.message}",
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
            more = f" (+{len(plans) - 1} more)" if len(plans) > 1 else ""
            return finish("planned", plan=plans, summary=f"{plans[0]['summary']}{more}")
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


Running = dict[Future[None], tuple[Work, float, threading.Event]]


def _interrupt(
    ctx: Context, action: Action, running: Running, abandon: Callable[[Future[None], str], None]
) -> None:
    """First Ctrl-C (or SIGTERM/SIGHUP): reads and waits stop now; a change in flight finishes.

    Cancelling a read loses nothing: it changed nothing and the journal needs no result.
    A change half made is what must not happen, so only mutations are waited for.
    """
    reads = {
        f: v for f, v in running.items() if action.effect_for(v[0].params) is not Effect.MUTATE
    }
    for _, _, cancel in reads.values():
        cancel.set()  # the clock's sleep and check_cancelled() wake on it
    changes = [f for f in running if f not in reads]
    if changes:
        ctx.ui.warn(
            "interrupted: letting the action in flight finish and journaling it "
            "(Ctrl-C again to stop waiting)"
        )
    else:
        ctx.ui.warn("interrupted: stopping the step (it changes nothing)")
    try:
        wait(list(reads), timeout=READ_GRACE_SECONDS)
        for fut in [f for f in reads if not f.done()]:
            abandon(fut, "interrupted and the read did not stop")
        wait(changes)
    except KeyboardInterrupt:
        for _, _, cancel in running.values():
            cancel.set()
        wait(list(running), timeout=GRACE_SECONDS)
        for fut in [f for f in running if not f.done()]:
            abandon(fut, "interrupted twice and the action did not stop")


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
            attempts(sc, action, work, effect, ctx.for_step(step.id, work.key or None))
        failures = sum(1 for w in works if w.status == "failed")
        return summarize(sc, works, effect, started, failures)
    failures = 0
    interrupted = False
    journal_error: JournalError | LockLost | None = None
    running: Running = {}
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

    def collect(done: set[Future[None]]) -> None:
        nonlocal failures, journal_error
        for fut in done:
            work, _, _ = running.pop(fut)
            exc = fut.exception()
            if isinstance(exc, JournalError | LockLost):
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

    try:
        while queue or running:
            # An interrupt (Ctrl-C, SIGTERM, SIGHUP) lands only in `wait` or where `deferred`
            # ends, both inside this try: every thread started is in `running` by then.
            try:
                with signals.deferred():
                    while (
                        queue
                        and len(running) < step.concurrency
                        and not interrupted
                        and failures <= step.max_failures
                    ):
                        work = queue.pop(0)
                        cancel = threading.Event()
                        clock = (
                            SystemClock(cancel) if isinstance(ctx.clock, SystemClock) else ctx.clock
                        )
                        wctx = replace(
                            ctx.for_step(step.id, work.key or None), cancel=cancel, clock=clock
                        )
                        if timeout is not None:
                            wctx.deadline = wctx.clock.monotonic() + timeout
                        fut = pool.submit(attempts, sc, action, work, effect, wctx)
                        running[fut] = (work, time.monotonic(), cancel)
                if not running:
                    break
                done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                with signals.deferred():
                    collect(done)
            except KeyboardInterrupt:
                interrupted = True
                queue.clear()
                _interrupt(ctx, action, running, abandon)
                with signals.deferred():
                    collect({f for f in running if f.done()})
            if interrupted:
                queue.clear()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if journal_error is not None:
        # No record (or no lock), no mutation: the engine stops the run whatever on_failure says.
        raise journal_error
    for work in queue:
        work.status, work.note = "not_run", "failure budget exhausted"
    result = summarize(sc, works, effect, started, failures)
    if interrupted:
        result.status = "interrupted"
        raise StepInterrupted(result)
    return result
