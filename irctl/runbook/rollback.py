"""Undoing a run: its reversible changes, newest first, each journaled."""

from __future__ import annotations

from typing import Any

from irctl.actions import get_action
from irctl.actions.base import Context, Outcome
from irctl.errors import IrctlError, one_line
from irctl.runbook.state import RunState


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
