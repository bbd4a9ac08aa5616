"""Resume, rollback and drills where they are easiest to get wrong (found in review)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from irctl.actions.base import Context
from irctl.errors import JournalError, RefusedError
from irctl.journal import Journal
from irctl.runbook.engine import Engine, rollback
from irctl.runbook.model import Runbook
from irctl.runbook.state import load_run
from tests.engine_actions import TEST_ACTIONS


@pytest.fixture(autouse=True)
def _test_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    from irctl.actions import ACTIONS

    for name, target in TEST_ACTIONS.items():
        monkeypatch.setitem(ACTIONS, name, target)


def book(steps: list[dict[str, Any]], **inputs: Any) -> Runbook:
    declared = {"dir": {"required": True}, **{k: {"type": "string"} for k in inputs}}
    return Runbook.model_validate({"apiVersion": "irctl/v1", "kind": "Runbook", "name": "t",
                                   "title": "t", "inputs": declared, "steps": steps})  # fmt: skip


def start(make_ctx: Callable[..., Context], rb: Runbook, folder: Path, **kw: Any) -> Any:
    inputs = {"dir": str(folder), **kw.pop("inputs", {})}
    ctx = make_ctx(step_id=None, **kw)
    return Engine(rb, ctx).start(inputs), ctx


def test_long_undo_records_survive_whole(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    ids = [f"i-{n:04d}" for n in range(120)]
    steps = [
        {"id": "a", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/a", "ids": ids}}
    ]
    result, ctx = start(make_ctx, book(steps), tmp_path)
    state = load_run(ctx.journal, result.run_id)
    assert state.pending_undo()[0]["undo"]["ids"] == ids  # not cut at 50 by the record bound
    assert ctx.journal.verify().ok


def test_resume_after_rollback_is_refused(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    steps = [{"id": "a", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/a"}},
             {"id": "b", "action": "test.touch",
              "with": {"path": "{{ inputs.dir }}/b", "fail": True}}]  # fmt: skip
    result, ctx = start(make_ctx, book(steps), tmp_path)
    assert result.status == "failed"
    rollback(load_run(ctx.journal, result.run_id), ctx)
    with pytest.raises(RefusedError, match="rolled back"):
        Engine(book(steps), ctx).resume(load_run(ctx.journal, result.run_id))


def test_foreach_items_differing_late_have_their_own_keys(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    pad = "x" * 300
    items = [{"pad": pad, "z": n} for n in range(3)] + [{"pad": pad, "z": 0}]
    steps = [{"id": "e", "action": "test.touch", "foreach": json.dumps(items),
              "with": {"path": "{{ inputs.dir }}/f{{ item.z }}"}}]  # fmt: skip
    result, ctx = start(make_ctx, book(steps), tmp_path)
    keys = [r["item"] for r in ctx.journal.records(result.run_id) if r["event"] == "intent"]
    assert len(keys) == len(set(keys)) == 4


def test_missed_expect_is_not_done_on_resume(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    steps = [{"id": "a", "action": "test.touch", "expect": "output.path == 'elsewhere'",
              "with": {"path": "{{ inputs.dir }}/a"}}]  # fmt: skip
    result, ctx = start(make_ctx, book(steps), tmp_path)
    assert result.status == "failed"
    state = load_run(ctx.journal, result.run_id)
    assert not state.steps["a"].items[""].ok  # happened, but did not do what was asked
    assert len(state.pending_undo()) == 1  # and it can still be undone


def test_tampered_record_stops_rollback(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    steps = [{"id": "a", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/a"}}]
    result, ctx = start(make_ctx, book(steps), tmp_path)
    path = ctx.journal.path
    path.write_text(path.read_text().replace(f"{tmp_path}/a", str(precious)))
    with pytest.raises(JournalError, match="changed after it was written"):
        load_run(ctx.journal, result.run_id)
    assert precious.read_text() == "keep me"


def test_secret_inputs_never_reach_journal_or_result(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    uses = {"path": "{{ inputs.dir }}/a", "token": "{{ inputs.api_token }}"}
    fails = {"path": "{{ inputs.dir }}/b", "fail": True}
    steps = [
        {"id": "a", "action": "test.touch", "with": uses},
        {"id": "b", "action": "test.touch", "with": fails},
    ]
    rb = book(steps, api_token="")
    secret = {"api_token": "S3CRETVALUE"}
    result, ctx = start(make_ctx, rb, tmp_path, inputs=secret, dry_run=True, run_id="drill")
    assert "S3CRETVALUE" not in ctx.journal.path.read_text()
    assert "S3CRETVALUE" not in json.dumps(result.to_dict())
    live, ctx = start(make_ctx, rb, tmp_path, inputs=secret, run_id="live")
    assert live.status == "failed"
    assert "S3CRETVALUE" not in ctx.journal.path.read_text()
    with pytest.raises(RefusedError, match="api_token"):
        Engine(rb, ctx).resume(load_run(ctx.journal, live.run_id))


def test_drill_never_runs_an_item_that_mutates(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    with_ = {"path": "{{ inputs.dir }}/m{{ item }}", "mutate": "{{ item }}"}
    steps = [{"id": "d", "action": "test.dyn", "foreach": "[false, true]", "with": with_}]
    result, _ = start(make_ctx, book(steps), tmp_path, dry_run=True)
    assert result.step("d").status == "planned"
    assert list(tmp_path.iterdir()) == []


def test_drill_sees_statuses_a_live_run_would(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    steps = [{"id": "c", "action": "test.count", "with": {"folder": "{{ inputs.dir }}"}},
             {"id": "t", "action": "test.touch", "when": "steps.c.status == 'succeeded'",
              "with": {"path": "{{ inputs.dir }}/t"}}]  # fmt: skip
    drill, _ = start(make_ctx, book(steps), tmp_path, dry_run=True)
    live, _ = start(make_ctx, book(steps), tmp_path)
    assert drill.step("t").status == "planned" and live.step("t").status == "succeeded"


def test_timeout_bounds_a_stuck_action(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    from irctl.runbook import executor

    steps = [{"id": "stuck", "action": "test.touch", "timeout": "0.5s",
              "with": {"path": "{{ inputs.dir }}/s", "hang": 12}}]  # fmt: skip
    began = time.monotonic()
    try:
        result, _ = start(make_ctx, book(steps), tmp_path)
        assert time.monotonic() - began < 9  # well before the action's own 12 s
        assert result.status == "failed" and "did not stop" in (result.step("stuck").error or "")
        assert executor.ABANDONED
    finally:
        # Left set, it would make a later in-process CLI call exit the test process.
        executor.ABANDONED.clear()


def test_torn_last_line_is_set_aside_and_chain_goes_on(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.append("x", run_id="r")
    with open(journal.path, "ab") as fh:
        fh.write(b'{"seq": 2, "half a rec')
    assert [r["event"] for r in journal.records()] == ["x"]  # readers skip the torn tail
    assert not journal.verify().ok
    rec = journal.append("y", run_id="r")
    assert rec["repaired_torn_tail"]["bytes"] == len(b'{"seq": 2, "half a rec')
    assert journal.verify().ok and journal.verify().records == 2


def test_verify_catches_records_cut_off_the_end(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    for n in range(5):
        journal.append("x", run_id="r", n=n)
    lines = journal.path.read_text().splitlines(keepends=True)
    journal.path.write_text("".join(lines[:3]))
    result = journal.verify()
    assert not result.ok and "removed from its end" in (result.reason or "")
    journal.path.write_text("")  # emptied
    assert "removed from its end" in (journal.verify().reason or "")
    journal.path.unlink()  # deleted: the head file beside it still knows
    result = journal.verify()
    assert not result.ok and "journal is missing but had reached record 5" in (result.reason or "")
    assert Journal(tmp_path / "never-written.jsonl").verify().ok  # no journal, no head: fine


def test_templates_cannot_hang_the_process() -> None:
    from irctl.runbook.templating import TemplateFailure, evaluate

    for expression in ("9 ** (9 ** 9)", "'x' * 10 ** 9", "[0] * 100000000"):
        with pytest.raises(TemplateFailure, match="too large"):
            evaluate(expression, {})
    assert evaluate("2 ** 10 * 3", {}) == 3072


def test_lock_of_a_reused_pid_is_stale(tmp_path: Path) -> None:
    import os

    from irctl.lock import ClusterLock

    first = ClusterLock(tmp_path, "c1")
    info = first.acquire("alice", "run-1")
    assert info.started is not None
    # Same pid, another process start time: the pid was reused, the holder is gone.
    first.path.write_text(
        first.path.read_text().replace(f'"started": "{info.started}"', '"started": "1"')
    )
    second = ClusterLock(tmp_path, "c1")
    second.acquire("bob", "run-2")
    assert second.taken_over is not None and second.taken_over.pid == os.getpid()


def test_readers_get_spilled_fields_back_whole(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.append("intent", run_id="r", params={"filter_ids": [f"flt-{n}" for n in range(80)]})
    raw = next(journal.records(expand=False))
    assert set(raw["params"]) == {"_blob"}  # the line stays small
    assert len(next(journal.records())["params"]["filter_ids"]) == 80
