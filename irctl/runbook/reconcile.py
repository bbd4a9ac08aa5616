"""Resume: decide, for each item of an interrupted step, whether the world already has it.

Finished items keep their outputs. An item whose intent has no result asks its action's
`reconcile`, which reads the world: `applied` is journaled as a reconciled result,
`not_applied` runs again, `unknown` asks the operator (and refuses without a terminal),
because re-running a change that did happen can be worse than stopping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from irctl.actions import get_action
from irctl.actions.base import Context, Outcome, Reconciled
from irctl.errors import IrctlError, one_line


def reconcile_step(
    ctx: Context,
    journal: Callable[..., None],
    step_id: str,
    action_name: str,
    items: dict[str, Any],
) -> tuple[dict[str, Any], str | None]:
    """Finished items keep their outputs; an intent without a result asks the world."""
    action = get_action(action_name)
    done: dict[str, Any] = {}
    for key, item in items.items():
        if item.ok:
            done[key] = item.result.get("output") if item.result else None
            continue
        if not item.in_doubt:
            continue
        ictx = ctx.for_step(step_id, key or None)
        verdict: Reconciled | None = None
        try:
            verdict = action.reconcile(item.intent or {}, ictx)
            detail = verdict.detail
        except IrctlError as exc:
            detail = exc.message
        except Exception as exc:  # a reconcile that crashes knows nothing: ask the operator
            detail = f"reconcile failed: {type(exc).__name__}: {one_line(str(exc), 200)}"
        state = verdict.state if verdict is not None else "unknown"
        journal(
            "reconciled",
            step=step_id,
            item=key or None,
            action=action_name,
            state=state,
            detail=detail,
            intent_seq=item.intent.get("seq"),
        )
        ctx.ui.info(
            f"reconcile {step_id}{'[' + key + ']' if key else ''}: {state}"
            + (f" ({detail})" if detail else "")
        )
        if state == "applied":
            outcome = verdict.outcome if verdict and verdict.outcome else Outcome(ok=True)
            journal(
                "result",
                scope="step",
                step=step_id,
                item=key or None,
                action=action_name,
                intent_seq=item.intent.get("seq"),
                ok=True,
                output=outcome.output,
                undo=outcome.undo,
                targets=outcome.targets,
                reconciled=True,
            )
            done[key] = outcome.output
        elif state == "unknown":
            question = (
                f"Cannot tell whether step {step_id!r} was applied before the crash "
                f"({detail or 'no detail'}). Run it again?"
            )
            if not (ctx.ui.interactive and ctx.ui.confirm(question, always_ask=True)):
                return done, (
                    f"step {step_id!r} may have been applied; check it by hand, "
                    "then resume in a terminal to decide"
                )
    return done, None
