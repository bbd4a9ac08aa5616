"""`irctl rollback` of a scale-out against moto in server mode: the instance ids it will
terminate are shown before the question, and the timeline shows the rollback."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from irctl.actions.base import Context
from irctl.cli.timeline import render_markdown
from irctl.runbook.runner import rollback_run, run_single_action
from irctl.timeline import build_timeline
from irctl.ui import QuietUI

if TYPE_CHECKING:
    from tests.moto_fixtures import AwsWorld

pytest_plugins = ["tests.moto_fixtures"]


class Said(QuietUI):
    """Records what the operator saw, questions included, in order."""

    def __init__(self) -> None:
        super().__init__(assume_yes=True)
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    def confirm(self, question: str, default: bool = False, always_ask: bool = False) -> bool:
        self.lines.append(f"? {question}")
        return True


def test_rollback_of_a_scale_out_names_the_instances_first(
    aws: AwsWorld, make_ctx: Callable[..., Context]
) -> None:
    world = aws.build(2)
    ctx = make_ctx(world.inventory())
    run = run_single_action(
        ctx.settings, ctx.inventory, QuietUI(assume_yes=True), "aws.scale_proxies",
        {"cluster": "use1-a", "add": 1}, dry_run=False, yes=True, lock_cluster="use1-a",
    )  # fmt: skip
    assert run.status == "succeeded", run.to_dict()
    (added,) = set(world.states()) - set(world.instance_ids)

    ui = Said()
    plan = rollback_run(ctx.settings, ctx.inventory, ui, run.run_id, yes=True, dry_run=True)
    assert plan.status == "planned" and world.states()[added] == "running"
    assert f"      {added}" in ui.lines and not any(x.startswith("? ") for x in ui.lines)

    ui = Said()
    done = rollback_run(ctx.settings, ctx.inventory, ui, run.run_id, yes=True)
    assert done.status == "rolled_back", done.to_dict()
    assert world.states()[added] == "terminated"
    asked = next(i for i, x in enumerate(ui.lines) if x.startswith("? Undo these 1 change(s)"))
    assert ui.lines.index(f"      {added}") < asked  # the target, then the question

    t = build_timeline(ctx.journal, run.run_id)
    assert t.status == "succeeded" and t.final_state == "rolled back"
    md = render_markdown(t).splitlines()
    assert "- **Final state:** **rolled back**" in md
    at = md.index("- **Proxies added:** 1 (1 undone by a rollback)")
    assert "— **undone** at" in md[at + 1]
