"""Stopping a run from outside, against real `irctl run` processes: a broken lock, Ctrl-C on
a terminal during a read-only wait, and SIGTERM/SIGHUP (a `kill`, a dropped SSH session).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.cli_helpers import cli_env, irctl, run_json, write_runbook

TOUCH = "test.touch"
pytestmark = pytest.mark.timeout(90)


def records(state: Path) -> list[dict[str, Any]]:
    path = state / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(state: Path, what: Any, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in records(state) if what(r)]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("the journal never showed the expected record")


def start_run(state: Path, rb: Path, *params: str, **env: str) -> subprocess.Popen[str]:
    args = [a for p in params for a in ("-p", p)]
    return subprocess.Popen(
        [sys.executable, "-m", "irctl", "--output", "json", "run", str(rb), *args, "--yes"],
        env=cli_env(state, **env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_breaking_a_live_runs_lock_needs_force_and_the_run_then_stops(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    steps = [
        {
            "id": "items",
            "action": TOUCH,
            "foreach": "['a', 'b', 'c']",
            "concurrency": 1,
            "with": {"path": "{{ inputs.dir }}/{{ item }}", "sleep": 2},
        },
        {"id": "after", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/after"}},
    ]
    rb = write_runbook(tmp_path, "held", steps)
    state = tmp_path / "s"
    holder = start_run(state, rb, f"dir={work}", "cluster=c1")
    try:
        wait_for(state, lambda r: r["event"] == "intent" and r.get("item") == '"a"')
        refused = irctl(state, "lock", "break", "c1", "--reason", "stuck?", "--yes")
        assert refused.returncode == 1
        assert "still running here" in refused.stderr and "--force" in refused.stderr
        assert (state / "locks" / "c1.lock").exists()
        code, broke = run_json(
            state, "lock", "break", "c1", "--reason", "took over", "--yes", "--force",
            IRCTL_OPERATOR="bob",
        )  # fmt: skip
        assert code == 0 and broke["forced"] and broke["previous"]["pid"] == holder.pid
        # Another run may now take the cluster while the broken one is still alive.
        other = write_runbook(tmp_path, "other", [{"id": "x", "action": TOUCH,
                              "with": {"path": "{{ inputs.dir }}/other"}}])  # fmt: skip
        code, done = run_json(state, "run", str(other), "-p", f"dir={work}", "-p",
                              "cluster=c1", "--yes", IRCTL_OPERATOR="bob")  # fmt: skip
        assert code == 0 and done["status"] == "succeeded"
        out, _ = holder.communicate(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert holder.returncode == 1
    result = json.loads(out)
    assert result["status"] == "aborted"
    assert result["error"] == (
        "lock on c1 was broken by bob (took over); this run stops before changing anything else"
    )
    # Item a was in flight and finished; b, c and the next step were never started.
    assert sorted(p.name for p in work.iterdir()) == ["a", "other"]
    held = [r for r in records(state) if r.get("run_id") == result["run_id"]]
    assert [r.get("item") for r in held if r["event"] == "intent"] == ['"a"']
    assert [r["event"] for r in held][-3:] == ["lock_lost", "step_finished", "run_finished"]
    assert held[-1]["status"] == "aborted" and "broken by bob" in held[-1]["error"]
    assert not any(r.get("step") == "after" for r in held)
    broken = [r for r in records(state) if r["event"] == "lock_broken"]
    assert broken[0]["forced"] is True and broken[0]["operator"] == "bob"
    # The broken run's exit did not remove the lock it no longer owned (bob's run released it).
    assert not (state / "locks" / "c1.lock").exists()


def test_a_broken_lock_stops_the_run_before_its_next_step(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    steps = [
        {"id": "slow", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/slow", "sleep": 5}},
        {"id": "next", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/next"}},
    ]
    rb = write_runbook(tmp_path, "two", steps)
    state = tmp_path / "s"
    holder = start_run(state, rb, f"dir={work}", "cluster=c2")
    try:
        wait_for(state, lambda r: r["event"] == "intent" and r.get("step") == "slow")
        code, _ = run_json(state, "lock", "break", "c2", "--reason", "r", "--yes", "--force")
        assert code == 0
        holder.communicate(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert holder.returncode == 1
    assert sorted(p.name for p in work.iterdir()) == ["slow"]
    last = records(state)[-2:]
    assert [r["event"] for r in last] == ["lock_lost", "run_finished"]
    assert last[1]["status"] == "aborted" and "was broken by alice (r)" in last[1]["error"]


def test_first_ctrl_c_stops_a_long_wait_at_once(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    steps = [
        {"id": "first", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/first"}},
        {"id": "hold", "action": "wait", "with": {"duration": "5m", "reason": "let it settle"}},
        {"id": "never", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/never"}},
    ]
    rb = write_runbook(tmp_path, "waits", steps)
    state = tmp_path / "s"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "irctl", "run", str(rb), "-p", f"dir={work}", "-p", "cluster=c3", "--yes"],
        env=cli_env(state),
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 160),
    )
    wait_for(state, lambda r: r["event"] == "step_started" and r["step"] == "hold")
    time.sleep(0.5)
    sent = time.monotonic()
    child.sendintr()
    child.expect("interrupted: stopping the step")
    stopped = time.monotonic() - sent
    child.expect(r"Roll back the 1 change\(s\)")
    child.sendline("n")
    child.expect("irctl resume")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert stopped < 20, f"the wait took {stopped:.1f}s to stop"  # not the wait's 5 minutes
    assert "letting the action in flight finish" not in (child.before or "")
    assert sorted(p.name for p in work.iterdir()) == ["first"]
    recs = records(state)
    hold = [r for r in recs if r["event"] == "step_finished" and r["step"] == "hold"]
    assert hold[0]["status"] == "interrupted" and hold[0]["duration_ms"] < 60_000
    assert recs[-1]["event"] == "run_finished" and recs[-1]["status"] == "aborted"
    assert recs[-1]["error"] == "interrupted by the operator"
    assert not (state / "locks" / "c3.lock").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_the_run_like_ctrl_c(tmp_path: Path, sig: signal.Signals) -> None:
    work = tmp_path / "w"
    work.mkdir()
    steps = [
        {"id": "slow", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/slow", "sleep": 5}},
        {"id": "never", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/never"}},
    ]
    rb = write_runbook(tmp_path, "killed", steps)
    state = tmp_path / "s"
    proc = start_run(state, rb, f"dir={work}", "cluster=c4")
    try:
        wait_for(state, lambda r: r["event"] == "intent" and r.get("step") == "slow")
        assert (state / "locks" / "c4.lock").exists()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    result = json.loads(out)
    assert result["status"] == "aborted" and result["error"] == f"interrupted by {sig.name}"
    # The change in flight finished and was journaled; nothing after it ran.
    assert sorted(p.name for p in work.iterdir()) == ["slow"]
    recs = records(state)
    slow = [r for r in recs if r.get("step") == "slow" and r["event"] in ("intent", "result")]
    assert [r["event"] for r in slow] == ["intent", "result"] and slow[1]["ok"]
    assert recs[-1]["event"] == "run_finished" and recs[-1]["status"] == "aborted"
    assert recs[-1]["signal"] == sig.name
    assert not (state / "locks" / "c4.lock").exists()
    assert f"irctl rollback {result['run_id']}" in err  # the way back, on a stderr still open


def test_sighup_on_a_terminal_ends_the_run_without_a_terminal(tmp_path: Path) -> None:
    """A dropped SSH session: the terminal is gone, the rollback question must not hang."""
    work = tmp_path / "w"
    work.mkdir()
    steps = [
        {"id": "first", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/first"}},
        {"id": "hold", "action": "wait", "with": {"duration": "5m"}},
    ]
    rb = write_runbook(tmp_path, "hup", steps)
    state = tmp_path / "s"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "irctl", "run", str(rb), "-p", f"dir={work}", "-p", "cluster=c5", "--yes"],
        env=cli_env(state),
        encoding="utf-8",
        timeout=30,
    )
    wait_for(state, lambda r: r["event"] == "step_started" and r["step"] == "hold")
    child.kill(signal.SIGHUP)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    recs = records(state)
    assert recs[-1]["event"] == "run_finished" and recs[-1]["status"] == "aborted"
    assert recs[-1]["signal"] == "SIGHUP"
    assert not (state / "locks" / "c5.lock").exists()
    assert (work / "first").exists()  # not rolled back: nobody was there to say yes


def test_nohup_keeps_ignoring_sighup(tmp_path: Path) -> None:
    steps = [{"id": "hold", "action": "wait", "with": {"duration": "2s"}}]
    rb = write_runbook(tmp_path, "nohup", steps)
    state = tmp_path / "s"
    proc = subprocess.Popen(
        ["nohup", sys.executable, "-m", "irctl", "--output", "json", "run", str(rb),
         "-p", "dir=/", "--yes"],
        env=cli_env(state), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(state, lambda r: r["event"] == "step_started")
        proc.send_signal(signal.SIGHUP)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and json.loads(out)["status"] == "succeeded"


def test_wait_stops_within_a_slice_even_on_a_clock_the_cancel_does_not_wake(
    make_ctx: Any,
) -> None:
    import threading
    from dataclasses import replace

    from irctl.actions.base import Cancelled, SystemClock
    from irctl.actions.builtin import Wait

    ctx = make_ctx()
    ctx = replace(ctx, clock=SystemClock(threading.Event()), cancel=threading.Event())
    threading.Timer(0.3, ctx.cancel.set).start()
    began = time.monotonic()
    with pytest.raises(Cancelled):
        Wait().run(Wait.Params(duration="5m"), ctx)
    assert time.monotonic() - began < 0.8


def test_wait_respects_the_steps_deadline(make_ctx: Any) -> None:
    from irctl.actions.base import Cancelled
    from irctl.actions.builtin import Wait

    ctx = make_ctx()
    ctx.deadline = ctx.clock.monotonic() + 0.3
    began = time.monotonic()
    with pytest.raises(Cancelled):
        Wait().run(Wait.Params(duration="1m"), ctx)
    assert time.monotonic() - began < 0.8
