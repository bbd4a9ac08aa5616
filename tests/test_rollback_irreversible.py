"""Rollback of runs with irreversible changes, through the real engine, notifications to a
real local HTTP server: what cannot be undone is said, and the attempt is journaled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer

from irctl.actions.base import Context
from irctl.cli.timeline import render_markdown
from irctl.providers.http import HttpProvider
from irctl.runbook.engine import Engine
from irctl.runbook.model import Runbook
from irctl.runbook.runner import rollback_run
from irctl.timeline import build_timeline
from irctl.ui import QuietUI
from tests.test_timeline_engine import RUNBOOK, _test_actions, notify_inventory, server

__all__ = ["_test_actions", "server"]  # fixtures, used by name


class Said(QuietUI):
    def __init__(self) -> None:
        super().__init__(assume_yes=True)
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)


def live(
    make_ctx: Callable[..., Context], server: HTTPServer, steps: list[str], folder: Path
) -> Any:
    book = {**RUNBOOK, "steps": [s for s in RUNBOOK["steps"] if s["id"] in steps]}
    ctx = make_ctx(
        notify_inventory(server),
        step_id=None,
        overrides={HttpProvider: HttpProvider(timeout=2, retries=1, backoff=0.01)},
    )
    result = Engine(Runbook.model_validate(book), ctx).start({"dir": str(folder)})
    assert result.status == "succeeded", result.to_dict()
    return result, ctx


def test_all_irreversible_says_what_stays_and_is_journaled(
    make_ctx: Callable[..., Context], server: HTTPServer, tmp_path: Path
) -> None:
    result, ctx = live(make_ctx, server, ["open", "close"], tmp_path)
    sent = len(server.log)
    ui = Said()
    rb = rollback_run(ctx.settings, ctx.inventory, ui, result.run_id, yes=True)
    assert rb.status == "rolled_back" and rb.exit_code == 0
    assert rb.error == (
        "nothing to undo; cannot be undone: close (notify.statuspage), open (notify.statuspage)"
    )
    assert [(s.id, s.status) for s in rb.steps] == [
        ("close", "irreversible"),
        ("open", "irreversible"),
    ]
    assert "Cannot be undone (irreversible):" in ui.lines
    assert len(server.log) == sent  # nothing was sent again, nothing "unsent"
    events = [r["event"] for r in ctx.journal.records(result.run_id)]
    assert events[-2:] == ["rollback_started", "run_rolled_back"]
    md = render_markdown(build_timeline(ctx.journal, result.run_id)).splitlines()
    section = md[md.index("## Rollback") :]
    assert section[2].endswith("by tester: rolled back, 0 change(s) undone")
    assert section[3] == "  - nothing was reversible"
    assert sum(1 for line in section if line.startswith("  - cannot be undone:")) == 2
    assert "- **Final state:** **succeeded**" in md  # nothing was taken back


def test_dry_run_lists_undo_and_irreversible_then_live_rollback(
    make_ctx: Callable[..., Context], server: HTTPServer, tmp_path: Path
) -> None:
    result, ctx = live(make_ctx, server, ["open", "fix", "close"], tmp_path)
    before = list(ctx.journal.records())
    ui = Said()
    plan = rollback_run(ctx.settings, ctx.inventory, ui, result.run_id, yes=True, dry_run=True)
    assert plan.status == "planned" and plan.exit_code == 0
    assert plan.plan is not None
    assert [u["step"] for u in plan.plan["undo"]] == ["fix"]
    assert [r["step"] for r in plan.plan["irreversible"]] == ["close", "open"]  # newest first
    assert (tmp_path / "fixed").exists() and list(ctx.journal.records()) == before
    assert ui.lines[0] == f"Rollback of run {result.run_id} would undo, newest first:"

    rb = rollback_run(ctx.settings, ctx.inventory, Said(), result.run_id, yes=True)
    assert rb.status == "rolled_back" and not (tmp_path / "fixed").exists()
    assert [(s.id, s.status) for s in rb.steps] == [
        ("fix", "undone"),
        ("close", "irreversible"),
        ("open", "irreversible"),
    ]
    t = build_timeline(ctx.journal, result.run_id)
    assert t.final_state == "rolled back"
    (r,) = t.rollbacks
    assert [c.step for c in r.undone] == ["fix"]
    assert [c.step for c in r.irreversible] == ["open", "close"]


def test_second_rollback_has_nothing_left(
    make_ctx: Callable[..., Context], server: HTTPServer, tmp_path: Path
) -> None:
    result, ctx = live(make_ctx, server, ["fix"], tmp_path)
    first = rollback_run(ctx.settings, ctx.inventory, Said(), result.run_id, yes=True)
    assert [s.status for s in first.steps] == ["undone"]
    ui = Said()
    second = rollback_run(ctx.settings, ctx.inventory, ui, result.run_id, yes=True)
    assert second.status == "rolled_back" and second.error == "nothing to undo"
    assert second.plan is not None and second.plan["already_undone"] == 1
    assert "  (1 change(s) were undone already)" in ui.lines
    t = build_timeline(ctx.journal, result.run_id)
    assert [len(r.undone) for r in t.rollbacks] == [1, 0] and t.final_state == "rolled back"


def test_undo_targets_name_the_instances() -> None:
    from irctl.runbook.rollback import undo_targets

    words, targets = undo_targets(
        {"cluster": "c1", "mode": "launch_template", "instance_ids": ["i-a", "i-b"]}
    )
    assert words == "deregister and terminate added instance(s) i-a, i-b from c1"
    assert targets == ["i-a", "i-b"]
    words, targets = undo_targets(
        {"proxy": "proxy-1", "old_instance_id": "i-old", "old_address": "198.18.0.2",
         "new_instance_id": "i-new", "new_address": "198.18.0.9", "kept_old": True}
    )  # fmt: skip
    assert words == (
        "start i-old (198.18.0.2) again as proxy-1, then deregister and terminate the "
        "replacement i-new (198.18.0.9)"
    )
    assert targets == ["i-new", "i-old"]
