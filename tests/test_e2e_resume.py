"""A live cluster-wide-failure run killed mid-replacement, then resumed, against the lab.

The `irctl` process gets SIGKILL (no chance to clean up) the moment the journal shows the
replacement's launch: either its `intent` (the instance may or may not exist yet) or its
`result` (it exists, the old one still serves). `irctl resume RUN_ID --yes` must
reconcile with moto before going on: the run finishes, the cluster is healthy, and no
proxy got a second replacement instance (instances tagged `irctl:replaces=<old id>`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_e2e_helpers import LOSS_PERCENT, E2eLab, lab_fixture, lab_journal, step

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def e2e_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2eLab]:
    yield from lab_fixture(tmp_path_factory)


def launch_record(journal: Path, seen: int, event: str) -> dict[str, Any] | None:
    """The first `event` record of the replacement's launch after line `seen`, if written."""
    try:
        lines = journal.read_text().splitlines()[seen:]
    except FileNotFoundError:
        return None
    for line in lines:
        try:
            rec: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written
        if (
            rec.get("event") == event
            and rec.get("action") == "ec2.run_instances"
            and rec.get("step") == "replace"
        ):
            return rec
    return None


def kill_at_launch(lab: E2eLab, event: str, tmp_path: Path) -> dict[str, Any]:
    journal = lab_journal(lab)
    seen = len(journal.read_text().splitlines()) if journal.exists() else 0
    with open(tmp_path / "killed-run.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "irctl", "run", "cluster-wide-failure", "-p", "cluster=lab",
             "-p", "settle=3s", "--yes"],
            env=lab.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while (rec := launch_record(journal, seen, event)) is None:
            assert proc.poll() is None, (tmp_path / "killed-run.log").read_text()
            assert time.monotonic() < deadline, "no launch in the journal"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return rec


def replacements_of(lab: E2eLab, old_id: str) -> list[str]:
    reservations = lab.ec2().describe_instances(
        Filters=[{"Name": "tag:irctl:replaces", "Values": [old_id]}]
    )["Reservations"]
    return [i["InstanceId"] for r in reservations for i in r["Instances"]]


@pytest.mark.parametrize("event", ["intent", "result"])
def test_killed_mid_replacement_resumes_without_a_second_instance(
    e2e_lab: E2eLab, event: str, tmp_path: Path
) -> None:
    lab = e2e_lab
    lab.start_clean()
    lab.fault("loss", "--percent", LOSS_PERCENT)
    old = {h["instance_id"] for h in lab.proxies()}
    rec = kill_at_launch(lab, event, tmp_path)
    run_id = rec["run_id"]
    victim = rec["targets"][0]
    assert victim in old

    rc, doc, stderr = lab.run_json("resume", run_id, "--yes", timeout=300)
    assert rc == 0 and doc["status"] == "succeeded", stderr[-3000:]
    assert step(doc, "replace")["status"] == "succeeded"
    # One replacement per replaced proxy, the interrupted one included, none of them twice.
    for old_id in old:
        assert len(replacements_of(lab, old_id)) == 1, (old_id, replacements_of(lab, old_id))
    states = {i["InstanceId"]: i["State"]["Name"] for i in lab.instances()}
    assert all(states[i] == "terminated" for i in old), states
    report = lab.healthy_report()
    assert report["classification"] == "healthy", report["evidence"]
    lab.log_verify()
    # Steps done before the kill are not done again: customers saw one incident, resolved.
    incidents = [r for r in lab.notifications(run_id) if r["path"].startswith("/v1/")]
    assert [(r["method"], r["body"]["incident"]["status"]) for r in incidents] == [
        ("POST", "investigating"),
        ("PATCH", "identified"),
        ("PATCH", "monitoring"),
        ("PATCH", "resolved"),
    ]
