"""Undoing a run: its reversible changes, newest first, each journaled."""

from __future__ import annotations

from typing import Any

from irctl.actions import get_action
from irctl.actions.base import Context, Outcome
from irctl.errors import IrctlError, one_line
from irctl.runbook.state import RunState
from irctl.ui import UI


def rollback(state: RunState, ctx: Context) -> list[dict[str, Any]]:
    """Undo `state`'s reversible results, newest first, each journaled; returns what was done."""
    done: list[dict[str, Any]] = []
    for rec in state.pending_undo():
        action = get_action(str(rec["action"]))
        step, item = rec.get("step"), rec.get("item")
        ictx = ctx.for_step(step, item)
        common = dict(
            run_id=state.run_id,
            operator=ctx.operator,
            runbook=state.runbook,
            step=step,
            item=item,
            action=rec["action"],
            undoes=rec["seq"],
        )
        ctx.journal.append("undo_intent", **common, record=rec["undo"])
        try:
            outcome = action.undo(rec["undo"], ictx)
        except IrctlError as exc:
            outcome = Outcome.failed(str(exc))
        except Exception as exc:  # an undo that crashes is a recorded failure, not a crash
            outcome = Outcome.failed(f"internal error: {type(exc).__name__}: {one_line(str(exc))}")
        ctx.journal.append(
            "undo", **common, ok=outcome.ok, output=outcome.output, error=outcome.error
        )
        ctx.ui.step(
            str(step), "undone" if outcome.ok else "failed", outcome.summary or outcome.error or ""
        )
        done.append(
            {
                "step": step,
                "item": item,
                "action": rec["action"],
                "ok": outcome.ok,
                "error": outcome.error,
                "output": outcome.output,
            }
        )
    return done


SHOWN_TARGETS = 20


def _short(values: Any, limit: int = 10) -> str:
    items = [str(v) for v in values] if isinstance(values, list) else [str(values)]
    return ", ".join(items[:limit]) + (
        f" … {len(items) - limit} more" if len(items) > limit else ""
    )


def undo_targets(record: dict[str, Any]) -> tuple[str, list[str]]:
    """What undoing a change will touch, read from its undo record: (words, targets)."""
    if "filter_ids" in record:
        hosts = [f"{h.get('name')} ({h.get('address')})" for h in record.get("hosts") or []]
        return f"revert filter(s) {_short(record['filter_ids'])} on {len(hosts)} host(s)", hosts
    if "new_instance_id" in record:
        old, new = record.get("old_instance_id"), record.get("new_instance_id")
        return (
            f"start {old} ({record.get('old_address')}) again as {record.get('proxy')}, then "
            f"deregister and terminate the replacement {new} ({record.get('new_address')})",
            [str(new), str(old)],
        )
    if "instance_ids" in record:
        ids = [str(i) for i in record.get("instance_ids") or []]
        where = f" from {record['cluster']}" if record.get("cluster") else ""
        return f"deregister and terminate added instance(s) {_short(ids)}{where}", ids
    return f"undo with {one_line(str(record), 200)}", []


def undo_plan(state: RunState) -> dict[str, Any]:
    """What a rollback of `state` would do, newest first, and what no rollback can undo."""
    undo = []
    for rec in state.pending_undo():
        words, targets = undo_targets(rec["undo"] if isinstance(rec["undo"], dict) else {})
        undo.append(
            {
                "step": rec.get("step"),
                "item": rec.get("item"),
                "action": rec["action"],
                "done_at": rec.get("ts"),
                "undo": words,
                "targets": targets,
            }
        )
    irreversible = []
    for step_id, step in state.steps.items():
        for item in step.items.values():
            res = item.result
            if res and res.get("ok") and res.get("undo") is None:
                irreversible.append(
                    {
                        "step": step_id,
                        "item": item.key or None,
                        "action": res.get("action"),
                        "done_at": res.get("ts"),
                        "seq": res.get("seq"),
                        "why": "irreversible: "
                        + (
                            "a notification cannot be unsent"
                            if str(res.get("action", "")).startswith("notify.")
                            else "its action keeps no undo record (e.g. flushed data, "
                            "a terminated instance)"
                        ),
                    }
                )
    irreversible.sort(key=lambda r: -int(r.pop("seq") or 0))
    already = len(state.undone)
    return {"undo": undo, "irreversible": irreversible, "already_undone": already}


def show_plan(plan: dict[str, Any], ui: UI, run_id: str) -> None:
    """Print the undo plan: concrete targets first, so the operator knows before saying yes."""
    if plan["undo"]:
        ui.info(f"Rollback of run {run_id} would undo, newest first:")
        for u in plan["undo"]:
            where = f"{u['step']}" + (f"[{u['item']}]" if u.get("item") else "")
            ui.info(f"  {where} ({u['action']}, done {u['done_at']}): {u['undo']}")
            # One target a line: an operator checks ids and addresses before saying yes.
            for target in u["targets"][:SHOWN_TARGETS]:
                ui.info(f"      {target}")
            if len(u["targets"]) > SHOWN_TARGETS:
                ui.info(f"      … {len(u['targets']) - SHOWN_TARGETS} more")
    else:
        ui.info(f"Rollback of run {run_id}: nothing reversible left to undo")
    if plan["already_undone"]:
        ui.info(f"  ({plan['already_undone']} change(s) were undone already)")
    if plan["irreversible"]:
        ui.info("Cannot be undone (irreversible):")
        for r in plan["irreversible"]:
            where = f"{r['step']}" + (f"[{r['item']}]" if r.get("item") else "")
            ui.info(f"  {where} ({r['action']}, done {r['done_at']}): {r['why']}")
