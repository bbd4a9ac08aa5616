"""The engine against small real actions (files on disk): fidelity, branches, budgets, recovery."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from irctl.actions.base import Context
from irctl.runbook.engine import Engine
from irctl.runbook.model import Runbook
from irctl.runbook.state import load_run
from tests.engine_actions import TEST_ACTIONS


@pytest.fixture(autouse=True)
def _test_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test actions exist only inside these tests (the schema test counts actions)."""
    from irctl.actions import ACTIONS

    for name, target in TEST_ACTIONS.items():
        monkeypatch.setitem(ACTIONS, name, target)


def book(steps: list[dict[str, Any]], **extra: Any) -> Runbook:
    return Runbook.model_validate(
        {
            "apiVersion": "irctl/v1",
            "kind": "Runbook",
            "name": "t",
            "title": "t",
            "inputs": {"dir": {"required": True}},
            "steps": steps,
            **extra,
        }
    )


def run(make_ctx: Callable[..., Context], rb: Runbook, folder: Path, **kw: Any) -> Any:
    ctx = make_ctx(step_id=None, **kw)
    return Engine(rb, ctx).start({"dir": str(folder)}), ctx


STEPS = [
    {"id": "count", "action": "test.count", "with": {"folder": "{{ inputs.dir }}"}},
    {
        "id": "create",
        "action": "test.touch",
        "when": "steps.count.output.count == 0",
        "with": {"path": "{{ inputs.dir }}/a"},
    },
    {
        "id": "never",
        "action": "test.touch",
        "when": "steps.count.output.count > 5",
        "with": {"path": "{{ inputs.dir }}/b"},
    },
]


def test_live_run_applies_and_journals(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    result, ctx = run(make_ctx, book(STEPS), tmp_path)
    assert result.status == "succeeded"
    assert [s.status for s in result.steps] == ["succeeded", "succeeded", "not_run"]
    assert "was false" in (result.step("never").reason or "")
    assert (tmp_path / "a").exists()
    events = [r["event"] for r in ctx.journal.records(result.run_id)]
    assert events.index("intent") < events.index("result")
    assert ctx.journal.verify().ok


def test_dry_run_plans_same_branch_and_changes_nothing(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    result, ctx = run(make_ctx, book(STEPS), tmp_path, dry_run=True)
    assert result.status == "planned"
    assert [s.status for s in result.steps] == ["executed", "planned", "not_run"]
    assert result.step("create").plan[0]["details"] == [f"touch {tmp_path}/a"]
    assert result.step("create").summary == f"create {tmp_path}/a"  # the table's detail
    assert list(tmp_path.iterdir()) == []
    assert not any(r["event"] == "intent" for r in ctx.journal.records(result.run_id))


def test_foreach_budget_stops_at_failures(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    steps = [
        {
            "id": "each",
            "action": "test.touch",
            "foreach": "[1, 2, 3, 4]",
            "concurrency": 1,
            "max_failures": 1,
            "with": {"path": "{{ inputs.dir }}/f{{ item }}", "fail": "{{ item in [2, 3] }}"},
        }
    ]
    result, _ = run(make_ctx, book(steps), tmp_path)
    out = result.step("each").output
    assert result.status == "failed"
    assert [i["status"] for i in out["items"]] == ["done", "failed", "failed", "not_run"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f1"]


def test_retries_then_expect(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    steps = [
        {
            "id": "c",
            "action": "test.count",
            "retries": 2,
            "retry_delay": "10ms",
            "with": {"folder": str(tmp_path), "flaky_file": str(flag)},
            "expect": "output.count == 1",
        }
    ]
    result, _ = run(make_ctx, book(steps), tmp_path)
    assert result.status == "succeeded"
    assert result.step("c").attempts == 2


def test_timeout_fails_step(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    import time

    steps = [
        {
            "id": "slow",
            "action": "test.touch",
            "timeout": "0.3s",
            "with": {"path": "{{ inputs.dir }}/s", "sleep": 30},
        }
    ]
    began = time.monotonic()
    result, _ = run(make_ctx, book(steps), tmp_path)
    assert time.monotonic() - began < 5
    assert result.status == "failed"
    assert result.step("slow").error == "timed out after 300ms"
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "mode,expected,left",
    [
        ("abort", "failed", ["a"]),
        ("continue", "succeeded", ["a", "c"]),
        ("rollback", "rolled_back", []),
    ],
)
def test_on_failure_modes(
    make_ctx: Callable[..., Context], tmp_path: Path, mode: str, expected: str, left: list[str]
) -> None:
    steps = [
        {"id": "a", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/a"}},
        {"id": "b", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/b", "fail": True}},
        {"id": "c", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/c"}},
    ]
    result, ctx = run(make_ctx, book(steps, on_failure=mode), tmp_path)
    assert result.status == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == left
    assert ctx.journal.verify().ok


def test_rollback_newest_first_and_once(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    from irctl.runbook.engine import rollback

    steps = [
        {"id": "a", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/a"}},
        {"id": "b", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/b"}},
    ]
    result, ctx = run(make_ctx, book(steps), tmp_path)
    undone = rollback(load_run(ctx.journal, result.run_id), ctx)
    assert [u["step"] for u in undone] == ["b", "a"]
    assert list(tmp_path.iterdir()) == []
    assert rollback(load_run(ctx.journal, result.run_id), ctx) == []


def test_declined_confirmation_aborts(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    from irctl.ui import QuietUI

    class No(QuietUI):
        def confirm(self, question: str, default: bool = False, always_ask: bool = False) -> bool:
            return False

    steps = [{"id": "a", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/a"}}]
    result, _ = run(make_ctx, book(steps), tmp_path, ui=No(), yes=False)
    assert result.status == "aborted"
    assert list(tmp_path.iterdir()) == []


def test_no_terminal_no_yes_refuses(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    steps = [{"id": "a", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/a"}},
             {"id": "b", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/b"},
              "on_failure": "continue"}]  # fmt: skip
    result, ctx = run(make_ctx, book(steps), tmp_path, yes=False)
    assert result.status == "aborted"  # a refusal stops the run whatever on_failure says
    assert result.step("a").status == "declined"
    assert "no terminal" in (result.error or "") and "--yes" in (result.error or "")
    assert [s.id for s in result.steps] == ["a"]
    assert list(tmp_path.iterdir()) == []
    events = [r["event"] for r in ctx.journal.records(result.run_id)]
    assert events[-1] == "run_finished" and "intent" not in events


def test_template_error_at_run_time_fails_cleanly(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    steps = [{"id": "a", "action": "test.touch", "with": {"path": "{{ inputs.nope }}"}}]
    result, _ = run(make_ctx, book(steps), tmp_path)
    assert result.status == "failed"
    assert "template error" in (result.step("a").error or "")


def test_unwritable_journal_refuses_mutation(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    """A journal whose folder cannot be made (a file in the way) refuses before any change."""
    from irctl.errors import JournalError
    from irctl.journal import Journal

    ctx = make_ctx(step_id=None)
    (tmp_path / "blocker").write_text("")
    ctx.journal = Journal(tmp_path / "blocker" / "journal.jsonl")
    steps = [{"id": "a", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/a"}}]
    with pytest.raises(JournalError):
        Engine(book(steps), ctx).start({"dir": str(tmp_path)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_journal_on_full_disk_refuses(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    """/dev/full fails every write with ENOSPC, like a full disk."""
    from irctl.errors import JournalError
    from irctl.journal import Journal

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    ctx = make_ctx(step_id=None)
    ctx.journal = Journal(Path("/dev/full"))
    steps = [{"id": "a", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/a"}}]
    with pytest.raises(JournalError, match="cannot write"):
        Engine(book(steps), ctx).start({"dir": str(tmp_path)})
    assert list(tmp_path.iterdir()) == []


def test_yaml_roundtrip_of_book() -> None:
    text = yaml.safe_dump(
        {
            "apiVersion": "irctl/v1",
            "kind": "Runbook",
            "name": "x",
            "title": "x",
            "steps": [{"id": "w", "action": "wait", "with": {"duration": "1s"}}],
        }
    )
    assert Runbook.model_validate(yaml.safe_load(text)).steps[0].with_ == {"duration": "1s"}


def test_drill_plan_refused_after_planned_change_is_not_run(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    """A plan computed on a world the drill did not change is a guess: reported, not failed."""
    steps = [
        {"id": "a", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/a"}},
        {"id": "b", "action": "test.touch",
         "with": {"path": "{{ inputs.dir }}/b", "refuse_plan": True}},
    ]  # fmt: skip
    drill, _ = run(make_ctx, book(steps), tmp_path, dry_run=True)
    assert drill.status == "planned"
    assert drill.step("b").status == "not_run"
    assert "refusing to create" in (drill.step("b").reason or "")
    live, _ = run(make_ctx, book(steps), tmp_path)
    assert live.status == "failed" and "refusing to create" in (live.step("b").error or "")


def test_drill_names_the_template_that_waits_for_a_planned_result(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    steps = [
        {"id": "a", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/a"}},
        {"id": "b", "action": "test.touch", "with": {"path": "{{ steps.a.output.path }}.b"}},
    ]
    result, _ = run(make_ctx, book(steps), tmp_path, dry_run=True)
    b = result.step("b")
    assert b.status == "not_run"
    # The template as written, not Jinja's "'dict object' has no attribute" noise.
    assert b.reason == (
        "depends on a planned step's result, known only in a live run: {{ steps.a.output.path }}.b"
    )
