"""Prompts on a real terminal (pexpect): confirmation, a manual checklist, Ctrl-C mid-step."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pexpect

from tests.cli_helpers import cli_env, write_runbook


def spawn(state: Path, *args: str) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "irctl", *args],
        env=cli_env(state),
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 160),
    )


def test_confirm_shows_plan_then_no_aborts_and_yes_applies(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    rb = write_runbook(
        tmp_path,
        "ask",
        [{"id": "make", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/a"}}],
    )
    child = spawn(tmp_path / "s", "run", str(rb), "-p", f"dir={work}")
    child.expect(f"touch {work}/a")  # the plan comes before the question
    child.expect(r"Run step 'make'")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert not (work / "a").exists()

    child = spawn(tmp_path / "s", "run", str(rb), "-p", f"dir={work}")
    child.expect(r"Run step 'make'")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (work / "a").exists()


def test_manual_checklist_item_by_item(tmp_path: Path) -> None:
    steps = [
        {
            "id": "page",
            "action": "manual",
            "with": {
                "instructions": "Tell the incident channel.",
                "checklist": ["posted in #incident", "paged the backend owner"],
            },
        }
    ]
    rb = write_runbook(tmp_path, "manual", steps)
    child = spawn(tmp_path / "s", "run", str(rb), "-p", "dir=/")
    child.expect("Tell the incident channel.")
    child.expect(r"\[1/2\] posted in #incident")
    child.sendline("y")
    child.expect(r"\[2/2\] paged the backend owner")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1  # an unacknowledged item fails the step

    child = spawn(tmp_path / "s", "--output", "json", "run", str(rb), "-p", "dir=/")
    child.expect(r"\[1/2\]")
    child.sendline("y")
    child.expect(r"\[2/2\]")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_finishes_action_in_flight_then_offers_rollback(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    steps = [
        {"id": "first", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/first"}},
        {
            "id": "slow",
            "action": "test.touch",
            "with": {"path": "{{ inputs.dir }}/slow", "sleep": 5},
        },
        {"id": "never", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/never"}},
    ]
    rb = write_runbook(tmp_path, "interrupt", steps)
    state = tmp_path / "s"
    child = spawn(state, "run", str(rb), "-p", f"dir={work}", "--yes")
    child.expect(f"touch {work}/slow")
    # In flight once its intent is journaled (fsynced before the action's thread starts).
    journal = state / "journal.jsonl"
    deadline = time.monotonic() + 20
    while not any(
        '"event":"intent"' in line.replace(" ", "") and '"step":"slow"' in line.replace(" ", "")
        for line in journal.read_text().splitlines()
    ):
        assert time.monotonic() < deadline, "the slow step never started"
        time.sleep(0.05)
    time.sleep(0.3)
    child.sendintr()
    child.expect("letting the action in flight finish")
    child.expect(r"Roll back the 2 change\(s\)")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert list(work.iterdir()) == []  # slow finished, was journaled, and both were undone
    records = [json.loads(x) for x in (state / "journal.jsonl").read_text().splitlines()]
    slow = [r for r in records if r.get("step") == "slow" and r["event"] in ("intent", "result")]
    assert [r["event"] for r in slow] == ["intent", "result"] and slow[1]["ok"]
    assert [r["step"] for r in records if r["event"] == "undo"] == ["slow", "first"]
    assert records[-1]["event"] == "run_finished" and records[-1]["status"] == "rolled_back"
