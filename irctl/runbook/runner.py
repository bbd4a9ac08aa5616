"""Core entry points the CLI calls: start, resume and roll back runs; run one action as a run.

Everything that changes the world goes through here, so every CLI command gets
the same journal, lock, plan display, confirmation and dry-run behaviour.
"""

from __future__ import annotations

import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from irctl.actions.base import Context, SystemClock
from irctl.errors import InputError, RefusedError
from irctl.inventory import Inventory
from irctl.journal import Journal
from irctl.providers import Providers
from irctl.runbook.engine import Engine, new_run_id, rollback
from irctl.runbook.model import InputSpec, Runbook, Step
from irctl.runbook.results import RunResult, StepResult
from irctl.runbook.state import load_run
from irctl.settings import Settings
from irctl.ui import UI

INLINE = "inline_runbook"


def write_crash(settings: Settings, exc: BaseException) -> Path | None:
    """Write a traceback to the state folder; the operator sees only its path."""
    try:
        folder = settings.state_dir / "crash"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}.txt"
        path.write_text("".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


def build_context(
    settings: Settings,
    inventory: Inventory,
    ui: UI,
    *,
    dry_run: bool,
    yes: bool,
    run_id: str | None = None,
    overrides: dict[type[Any], Any] | None = None,
    runbook: str | None = None,
) -> Context:
    journal = Journal(settings.journal_path)
    return Context(
        inventory=inventory,
        settings=settings,
        providers=Providers(inventory, settings, overrides),
        ui=ui,
        journal=journal,
        clock=SystemClock(),
        run_id=run_id or new_run_id(),
        operator=settings.operator,
        dry_run=dry_run,
        runbook=runbook,
        assume_yes=yes,
    )


def _engine(runbook: Runbook, ctx: Context, path: Path | None, literal: bool = False) -> Engine:
    settings = ctx.settings
    return Engine(
        runbook,
        ctx,
        runbook_path=path,
        on_crash=lambda exc: write_crash(settings, exc),
        literal_params=literal,
    )


def start_run(
    settings: Settings,
    inventory: Inventory,
    ui: UI,
    runbook: Runbook,
    path: Path | None,
    inputs: dict[str, Any],
    *,
    dry_run: bool,
    yes: bool,
    overrides: dict[type[Any], Any] | None = None,
) -> RunResult:
    ctx = build_context(
        settings, inventory, ui, dry_run=dry_run, yes=yes, overrides=overrides, runbook=runbook.name
    )
    try:
        return _engine(runbook, ctx, path).start(inputs)
    finally:
        ctx.providers.close()


def command_runbook(action: str, params: dict[str, Any], title: str | None) -> Runbook:
    """A one-step runbook for a CLI command like `irctl filter block`."""
    slug = action.replace(".", "-").replace("_", "-")
    return Runbook.model_validate(
        {
            "apiVersion": "irctl/v1",
            "kind": "Runbook",
            "name": f"command-{slug}",
            "title": title or f"irctl {action}",
            "inputs": {"cluster": InputSpec().model_dump()},
            "steps": [
                Step.model_validate({"id": slug, "action": action, "with": params}).model_dump(
                    by_alias=True
                )
            ],
        }
    )


def run_single_action(
    settings: Settings,
    inventory: Inventory,
    ui: UI,
    action: str,
    params: dict[str, Any],
    *,
    dry_run: bool,
    yes: bool,
    lock_cluster: str | None,
    title: str | None = None,
    overrides: dict[type[Any], Any] | None = None,
) -> RunResult:
    runbook = command_runbook(action, params, title)
    ctx = build_context(
        settings, inventory, ui, dry_run=dry_run, yes=yes, overrides=overrides, runbook=runbook.name
    )
    try:
        engine = _engine(runbook, ctx, None, literal=True)
        engine.extra_started = {INLINE: runbook.model_dump(mode="json", by_alias=True)}
        return engine.start({"cluster": lock_cluster} if lock_cluster else {})
    finally:
        ctx.providers.close()


def runbook_of(state_started: dict[str, Any], find: Any) -> tuple[Runbook, Path | None, bool]:
    """The runbook a journaled run used: inline (CLI command) or the file it named."""
    if isinstance(state_started.get(INLINE), dict):
        return Runbook.model_validate(state_started[INLINE]), None, True
    path_text = state_started.get("runbook_path")
    path = Path(path_text) if path_text else None
    if path is None or not path.is_file():
        path = find(str(state_started.get("runbook")))
    from irctl.runbook.loader import load_runbook

    assert path is not None
    return load_runbook(path), path, False


def resume_run(
    settings: Settings,
    inventory: Inventory,
    ui: UI,
    run_id: str,
    *,
    yes: bool,
    find: Any,
    overrides: dict[type[Any], Any] | None = None,
    inputs: dict[str, Any] | None = None,
) -> RunResult:
    journal = Journal(settings.journal_path)
    state = load_run(journal, run_id)
    runbook, path, literal = runbook_of(state.started, find)
    ctx = build_context(
        settings,
        inventory,
        ui,
        dry_run=False,
        yes=yes,
        run_id=run_id,
        overrides=overrides,
        runbook=runbook.name,
    )
    try:
        return _engine(runbook, ctx, path, literal).resume(state, inputs)
    finally:
        ctx.providers.close()


def rollback_run(
    settings: Settings,
    inventory: Inventory,
    ui: UI,
    run_id: str,
    *,
    yes: bool,
    dry_run: bool = False,
    overrides: dict[type[Any], Any] | None = None,
) -> RunResult:
    """Undo a run's reversible changes newest first; `dry_run` only says what that would do."""
    from irctl.lock import ClusterLock
    from irctl.runbook.rollback import show_plan, undo_plan

    journal = Journal(settings.journal_path)
    state = load_run(journal, run_id)
    if state.dry_run:
        raise RefusedError(f"run {run_id} was a drill and changed nothing", "nothing to roll back")
    result = RunResult(
        run_id, state.runbook, "rolled_back", dry_run, journal=str(journal.path), is_rollback=True
    )
    if dry_run:  # no lock, no journal record: a look, like `irctl run --dry-run`
        plan = undo_plan(state)
        show_plan(plan, ui, run_id)
        result.status, result.plan = "planned", plan
        result.steps = _plan_steps(plan)
        return result
    # The lock the run itself took: a rollback never races the run, or another rollback.
    key = state.started.get("lock") or state.inputs.get("cluster")
    lock = ClusterLock(settings.locks_dir, str(key)) if key else None
    if lock:
        lock.acquire(settings.operator, run_id, step="rollback")
    ctx = build_context(
        settings,
        inventory,
        ui,
        dry_run=False,
        yes=yes,
        run_id=run_id,
        overrides=overrides,
        runbook=state.runbook,
    )
    common = {"run_id": run_id, "operator": settings.operator, "runbook": state.runbook}
    try:
        state = load_run(journal, run_id)  # again, under the lock: what is still to undo
        plan = result.plan = undo_plan(state)
        show_plan(plan, ui, run_id)
        kept = [f"{r['step']} ({r['action']})" for r in plan["irreversible"]]
        if not plan["undo"]:
            ctx.journal.check_writable()
            # Journaled all the same: the postmortem shows someone tried, and what stayed.
            note = "nothing to undo" + (f"; cannot be undone: {', '.join(kept)}" if kept else "")
            ctx.journal.append("rollback_started", **common, pending=0, irreversible=kept)
            ctx.journal.append(
                "run_rolled_back", **common, status="rolled_back", undone=0, note=note
            )
            result.error = note
            result.steps = _plan_steps(plan, irreversible_only=True)
            return result
        if not ui.confirm(
            f"Undo these {len(plan['undo'])} change(s) of run {run_id}, newest first?"
        ):
            result.status, result.error = "aborted", "the operator declined"
            return result
        ctx.journal.check_writable()
        ctx.journal.append(
            "rollback_started", **common, pending=len(plan["undo"]), irreversible=kept
        )
        result.undone = rollback(state, ctx)
        failed = sum(1 for u in result.undone if not u["ok"])
        ctx.journal.append(
            "run_rolled_back", **common, status="failed" if failed else "rolled_back",
            undone=len(result.undone) - failed, failed=failed or None,
        )  # fmt: skip
    finally:
        ctx.providers.close()
        if lock:
            lock.release()
    result.steps = [
        StepResult(
            str(u["step"]),
            str(u["action"]),
            "undone" if u["ok"] else "failed",
            output=u["output"],
            error=u["error"],
        )
        for u in result.undone
    ] + _plan_steps(plan, irreversible_only=True)
    if not all(u["ok"] for u in result.undone):
        result.status, result.error = "failed", "some undo steps failed; see the journal"
    return result


def _plan_steps(plan: dict[str, Any], irreversible_only: bool = False) -> list[StepResult]:
    """Rows for the run table: what would be undone, and what never can be."""
    rows = []
    if not irreversible_only:
        for u in plan["undo"]:
            rows.append(StepResult(str(u["step"]), str(u["action"]), "planned", note=u["undo"]))
    for r in plan["irreversible"]:
        rows.append(StepResult(str(r["step"]), str(r["action"]), "irreversible", note=r["why"]))
    return rows


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`-p key=value` pairs; values stay strings and the runbook's input types coerce them."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"bad parameter {pair!r}", "write -p key=value")
        out[key.strip()] = value
    return out
