"""`irctl run/resume/rollback/log` as real processes: crashes, locks, tampering, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.cli_helpers import cli_env, hold_lock, irctl, run_json, write_runbook

TOUCH = "test.touch"


def test_dry_run_json_only_on_stdout(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    rb = write_runbook(
        tmp_path,
        "drill",
        [
            {"id": "count", "action": "test.count", "with": {"folder": "{{ inputs.dir }}"}},
            {"id": "make", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/a"}},
        ],
    )
    code, doc = run_json(tmp_path / "s", "run", str(rb), "-p", f"dir={work}", "--dry-run")
    assert code == 0
    assert doc["status"] == "planned"
    assert [s["status"] for s in doc["steps"]] == ["executed", "planned"]
    assert doc["steps"][1]["plan"][0]["details"] == [f"touch {work}/a"]
    assert list(work.iterdir()) == []


def test_no_terminal_without_yes_refuses(tmp_path: Path) -> None:
    rb = write_runbook(
        tmp_path, "needs-yes", [{"id": "m", "action": TOUCH, "with": {"path": str(tmp_path / "x")}}]
    )
    proc = irctl(tmp_path / "s", "run", str(rb), "-p", f"dir={tmp_path}")
    assert proc.returncode == 1
    assert "no terminal" in proc.stderr and "--yes" in proc.stderr
    assert not (tmp_path / "x").exists()
    assert "Traceback" not in proc.stderr


def test_crash_after_change_resume_does_not_redo(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    rb = write_runbook(
        tmp_path,
        "crashy",
        [
            {"id": "a", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/a"}},
            {
                "id": "b",
                "action": TOUCH,
                "with": {"path": "{{ inputs.dir }}/b", "crash_after": True},
            },
            {"id": "c", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/c"}},
        ],
    )
    state = tmp_path / "s"
    proc = irctl(state, "run", str(rb), "-p", f"dir={work}", "--yes")
    assert proc.returncode == 99  # died between b's change and its result record
    journal = [json.loads(line) for line in (state / "journal.jsonl").read_text().splitlines()]
    run_id = journal[0]["run_id"]
    last = journal[-1]
    assert (last["event"], last["step"]) == ("intent", "b")
    code, doc = run_json(state, "resume", run_id, "--yes")
    assert code == 0, doc
    assert doc["status"] == "succeeded"
    assert sorted(p.name for p in work.iterdir()) == ["a", "b", "b.crashed", "c"]
    records = [json.loads(line) for line in (state / "journal.jsonl").read_text().splitlines()]
    reconciled = [r for r in records if r["event"] == "reconciled"]
    assert [(r["step"], r["state"]) for r in reconciled] == [("b", "applied")]
    intents_b = [r for r in records if r["event"] == "intent" and r.get("step") == "b"]
    assert len(intents_b) == 1  # b was not run a second time
    # Everything the run did, including the reconciled step, can be rolled back.
    code, doc = run_json(state, "rollback", run_id, "--yes")
    assert code == 0 and doc["status"] == "rolled_back"
    assert [u["step"] for u in doc["undone"]] == ["c", "b", "a"]
    assert sorted(p.name for p in work.iterdir()) == ["b.crashed"]
    assert irctl(state, "log", "verify").returncode == 0


def test_crash_before_change_resume_reruns(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    marker = tmp_path / "marker"
    rb = write_runbook(
        tmp_path,
        "crash-early",
        [
            {
                "id": "a",
                "action": TOUCH,
                "with": {"path": "{{ inputs.dir }}/a", "crash_once": str(marker)},
            },
        ],
    )
    state = tmp_path / "s"
    assert irctl(state, "run", str(rb), "-p", f"dir={work}", "--yes").returncode == 98
    run_id = json.loads((state / "journal.jsonl").read_text().splitlines()[0])["run_id"]
    code, doc = run_json(state, "resume", run_id, "--yes")
    assert code == 0 and doc["status"] == "succeeded"
    assert (work / "a").exists()
    records = [json.loads(x) for x in (state / "journal.jsonl").read_text().splitlines()]
    assert [r["state"] for r in records if r["event"] == "reconciled"] == ["not_applied"]


def test_lock_second_operator_refused_then_stale_lock_taken_over(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    state = tmp_path / "s"
    first = hold_lock(tmp_path, state, "use1-a", operator="alice")
    try:
        rb = write_runbook(
            tmp_path, "slow", [{"id": "x", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/x"}}]
        )
        proc = irctl(
            state,
            "run",
            str(rb),
            "-p",
            f"dir={work}",
            "-p",
            "cluster=use1-a",
            "--yes",
            IRCTL_OPERATOR="bob",
        )
        assert proc.returncode == 1
        assert "locked by alice" in proc.stderr
        assert f"pid {first.pid}" in proc.stderr and "on step hold" in proc.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    rb2 = write_runbook(
        tmp_path, "quick", [{"id": "q", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/q"}}]
    )
    code, doc = run_json(
        state,
        "run",
        str(rb2),
        "-p",
        f"dir={work}",
        "-p",
        "cluster=use1-a",
        "--yes",
        IRCTL_OPERATOR="bob",
    )
    assert code == 0, doc
    records = [json.loads(x) for x in (state / "journal.jsonl").read_text().splitlines()]
    takeover = [r for r in records if r["event"] == "lock_takeover"]
    assert len(takeover) == 1 and takeover[0]["previous_operator"] == "alice"
    assert not (state / "locks" / "use1-a.lock").exists()


def _journal_with_records(tmp_path: Path) -> Path:
    rb = write_runbook(
        tmp_path, "j", [{"id": "c", "action": "test.count", "with": {"folder": str(tmp_path)}}]
    )
    state = tmp_path / "s"
    for _ in range(2):
        assert irctl(state, "run", str(rb), "-p", f"dir={tmp_path}").returncode == 0
    return state / "journal.jsonl"


def test_log_verify_catches_edit_removal_reorder(tmp_path: Path) -> None:
    path = _journal_with_records(tmp_path)
    state = path.parent
    original = path.read_text().splitlines(keepends=True)
    assert irctl(state, "log", "verify").returncode == 0
    cases = {
        "edited": [*original[:2], original[2].replace('"alice"', '"mallory"'), *original[3:]],
        "removed": original[:2] + original[3:],
        "reordered": [*original[:2], original[3], original[2], *original[4:]],
    }
    for name, lines in cases.items():
        path.write_text("".join(lines))
        proc = irctl(state, "log", "verify")
        assert proc.returncode == 1, name
        assert ":3:" in proc.stdout, (name, proc.stdout)
    path.write_text("".join(original))


def test_log_filters_by_run(tmp_path: Path) -> None:
    path = _journal_with_records(tmp_path)
    runs = {json.loads(x)["run_id"] for x in path.read_text().splitlines()}
    assert len(runs) == 2
    one = sorted(runs)[0]
    code, records = run_json(path.parent, "log", "--run", one)
    assert code == 0 and {r["run_id"] for r in records} == {one}


def test_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    state = tmp_path / "s"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: irctl/v1\nkind: Runbook\nname: bad\ntitle: x\n"
        "steps:\n  - id: a\n    action: nope\n"
    )
    good = write_runbook(
        tmp_path, "good", [{"id": "c", "action": "test.count", "with": {"folder": "/"}}]
    )
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("clusters:\n  c1:\n    proxy_port: lots\n")
    cases = [
        (["resume", "no-such-run"], "no run 'no-such-run'"),
        (["run", str(bad), "--dry-run"], "bad.yaml:7"),
        (
            ["--inventory", str(inventory), "run", str(good), "-p", "dir=/", "--dry-run"],
            "inv.yaml:3",
        ),
        (["run", "no-such-runbook"], "no-such-runbook"),
    ]
    for args, expected in cases:
        proc = irctl(state, *args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert expected in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert proc.stderr.startswith("error: ")


def test_usage_error_exit_2(tmp_path: Path) -> None:
    proc = irctl(tmp_path / "s", "run")
    assert proc.returncode == 2


def test_help_does_not_import_heavy_modules(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "irctl", "--help"],
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert not {"boto3", "botocore", "paramiko", "pymemcache"} & imported
    assert os.environ.get("IRCTL_NEVER_SET") is None


def test_lock_list_and_break_are_journaled(tmp_path: Path) -> None:
    state = tmp_path / "s"
    holder = hold_lock(tmp_path, state, "c9")
    try:
        code, locks = run_json(state, "lock", "list")
        assert code == 0 and [(lk["cluster"], lk["holder_alive"]) for lk in locks] == [("c9", True)]
        refused = irctl(state, "lock", "break", "c9", "--reason", "host died", "--force")
        assert refused.returncode == 1 and "no terminal" in refused.stderr
        # Its holder is alive here: refused without --force, whatever --yes says.
        alive = irctl(state, "lock", "break", "c9", "--reason", "host died", "--yes")
        assert alive.returncode == 1 and "--force" in alive.stderr
        assert (state / "locks" / "c9.lock").exists()
        code, done = run_json(
            state, "lock", "break", "c9", "--reason", "host died", "--yes", "--force"
        )
        assert code == 0 and done["previous"]["pid"] == holder.pid and done["forced"]
    finally:
        holder.kill()
        holder.wait()
    assert not (state / "locks" / "c9.lock").exists()
    records = [json.loads(x) for x in (state / "journal.jsonl").read_text().splitlines()]
    broken = [r for r in records if r["event"] == "lock_broken"]
    assert len(broken) == 1 and broken[0]["reason"] == "host died" and broken[0]["forced"]
    assert broken[0]["previous_pid"] == holder.pid


def test_resume_with_a_changed_runbook_asks(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    marker = tmp_path / "marker"
    steps = [{"id": "a", "action": TOUCH,
              "with": {"path": "{{ inputs.dir }}/a", "crash_once": str(marker)}}]  # fmt: skip
    rb = write_runbook(tmp_path, "changes", steps)
    state = tmp_path / "s"
    assert irctl(state, "run", str(rb), "-p", f"dir={work}", "--yes").returncode == 98
    run_id = json.loads((state / "journal.jsonl").read_text().splitlines()[0])["run_id"]
    rb.write_text(rb.read_text() + "description: edited during the incident\n")
    refused = irctl(state, "resume", run_id)
    assert refused.returncode == 1 and "changed since the run started" in refused.stderr
    assert not (work / "a").exists()
    code, doc = run_json(state, "resume", run_id, "--yes")
    assert code == 0 and doc["status"] == "succeeded"


def test_failure_hints_follow_what_the_run_changed(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    state = tmp_path / "s"
    # Refused before any change: no resume/undo hint, which would suggest there is
    # something to resume or undo.
    rb = write_runbook(
        tmp_path,
        "refused",
        [
            {
                "id": "make",
                "action": TOUCH,
                "with": {"path": "{{ inputs.dir }}/a", "refuse_plan": True},
            }
        ],
    )
    first = irctl(state, "run", str(rb), "-p", f"dir={work}", "--yes")
    assert first.returncode == 1
    assert "nothing was changed: fix the cause and run it again" in first.stdout
    assert "irctl rollback" not in first.stdout
    # A change was made, then a step failed: resume and undo are the way on.
    steps = [
        {"id": "make", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/a"}},
        {"id": "boom", "action": TOUCH, "with": {"path": "{{ inputs.dir }}/b", "fail": True}},
    ]
    rb = write_runbook(tmp_path, "half", steps)
    second = irctl(state, "run", str(rb), "-p", f"dir={work}", "--yes")
    assert second.returncode == 1
    assert "resume: irctl resume" in second.stdout and "undo: irctl rollback" in second.stdout


def test_a_refused_one_step_command_is_one_line(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "clusters:\n  c1:\n    proxy_port: 22121\n"
        "    proxies: [{name: proxy-1, address: 198.18.250.2}]\n"
        "    shards: [{name: shard-0, servers: ['198.18.250.5:11211']}]\n"
    )
    proc = irctl(
        tmp_path / "s", "cache", "flush", "--cluster", "c1", "--shard", "shard-7", "--yes",
        IRCTL_INVENTORY=str(inventory),
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout.strip() == (
        "failed: unknown shard 'shard-7' in cluster 'c1' (shards: shard-0)"
    )
