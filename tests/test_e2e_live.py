"""Every shipped runbook, live, against its incident's real fault in the lab.

For each: the fault injected with `irctl lab fault`, the runbook run by a real `irctl`
process (`--yes`; backend-failure in a terminal, because its operator must bring the
backend back before the runbook goes on), then `irctl diagnose` measures the fault
mitigated, `irctl log verify` passes, and the notifications reached the lab's sink.
Replaced and added proxies stay for the next test; faults do not (`start_clean`).
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pexpect
import pytest

from tests.test_e2e_helpers import LOSS_PERCENT, E2eLab, lab_fixture, step
from tests.test_lab import memcached_stats, wait_for

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def e2e_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2eLab]:
    yield from lab_fixture(tmp_path_factory)


def run_live(lab: E2eLab, runbook: str, *params: str) -> dict[str, Any]:
    rc, doc, stderr = lab.runbook(runbook, *params)
    assert rc == 0 and doc["status"] == "succeeded", stderr[-3000:]
    return doc


def assert_mitigated(lab: E2eLab, fault_class: str) -> dict[str, Any]:
    report = lab.healthy_report()
    assert report["classification"] != fault_class, report["evidence"]
    assert report["classification"] == "healthy", report["evidence"]
    return report


def delivered(lab: E2eLab, run_id: str) -> list[tuple[str, str, int]]:
    """(method, channel, status) of every request the sink received from this run."""
    rows = lab.notifications(run_id)
    return [(r["method"], r["path"].split("/")[1], r["status"]) for r in rows]


def assert_one_incident(lab: E2eLab, run_id: str, phases: list[str]) -> None:
    """The run opened one Statuspage incident and moved it through `phases`, in order."""
    rows = [r for r in lab.notifications(run_id) if r["path"].startswith("/v1/")]
    assert [r["body"]["incident"]["status"] for r in rows] == phases
    assert rows[0]["method"] == "POST" and rows[0]["status"] == 201
    opened = rows[0]["path"] + "/"
    assert all(r["method"] == "PATCH" and r["path"].startswith(opened) for r in rows[1:]), rows
    assert all(r["status"] == 200 for r in rows[1:]), rows


def test_cluster_wide_failure_recovers_from_loss_on_every_proxy(e2e_lab: E2eLab) -> None:
    lab = e2e_lab
    lab.start_clean()
    lab.fault("loss", "--percent", LOSS_PERCENT)
    old = {h["instance_id"] for h in lab.proxies()}
    doc = run_live(lab, "cluster-wide-failure", "settle=3s")
    assert step(doc, "diagnose")["output"]["classification"] == "cluster_wide_network"
    replaced = step(doc, "replace")
    assert replaced["status"] == "succeeded"
    assert step(doc, "add-capacity")["status"] == "succeeded"
    # Every proxy that carried the loss was replaced, and one more was added.
    wait_for(lambda: not {h["instance_id"] for h in lab.proxies()} & old, what="old hosts gone")
    assert len(lab.proxies()) == len(old) + 1
    assert_mitigated(lab, "cluster_wide_network")
    lab.log_verify()
    run_id = doc["run_id"]
    assert_one_incident(lab, run_id, ["investigating", "identified", "monitoring", "resolved"])
    # Customers read words, the team reads the class name.
    rows = lab.notifications(run_id)
    page = [r["body"]["incident"] for r in rows if r["path"].startswith("/v1/")]
    assert page[1]["body"] == (
        "We have identified network degradation between our cache servers in lab and are fixing it."
    )
    assert all("cluster_wide_network" not in str(p) for p in page)
    slack = [r for r in lab.notifications(run_id) if r["path"].startswith("/slack/")]
    assert [r["status"] for r in slack] == [200, 200]
    assert "cluster_wide_network" in slack[0]["body"]["text"]


def test_network_degradation_replaces_and_adds_proxies(e2e_lab: E2eLab) -> None:
    lab = e2e_lab
    lab.start_clean()
    lab.fault("loss", "--percent", LOSS_PERCENT)
    before = len(lab.proxies())
    doc = run_live(lab, "network-degradation")
    assert step(doc, "escalate")["status"] == "not_run"
    wait_for(lambda: len(lab.proxies()) == before + 1, what="replaced machines gone")
    assert_mitigated(lab, "cluster_wide_network")
    lab.log_verify()
    assert_one_incident(lab, doc["run_id"], ["investigating", "resolved"])


def test_single_proxy_overload_replaces_the_loaded_proxy(e2e_lab: E2eLab) -> None:
    lab = e2e_lab
    lab.start_clean()
    target = sorted(lab.proxies(), key=lambda h: str(h["address"]))[0]
    lab.fault("overload", "--proxy", target["name"], "--per-client", "300")
    doc = run_live(lab, "single-proxy-overload")
    assert step(doc, "confirm-verdict")["status"] == "not_run"
    # The old instance is terminated; the reconciler then removes its machine.
    wait_for(
        lambda: target["instance_id"] not in {h["instance_id"] for h in lab.proxies()},
        what="the overloaded proxy's machine gone",
    )
    assert_mitigated(lab, "single_proxy_overload")
    lab.log_verify()
    assert delivered(lab, doc["run_id"]) == [("POST", "slack", 200)]


def test_client_connection_storm_is_filtered_then_the_filter_reverted(e2e_lab: E2eLab) -> None:
    lab = e2e_lab
    lab.start_clean()
    storm = lab.fault("storm", "--connections", "2000")
    client = lab.host(storm["client"])["address"]
    doc = run_live(lab, "client-connection-storm", "hold=1s")
    assert step(doc, "diagnose")["output"]["storm_sources"] == [f"{client}/32"]
    filter_ids = step(doc, "block")["output"]["filter_ids"]
    assert filter_ids and step(doc, "revert")["status"] == "succeeded"
    assert_mitigated(lab, "client_storm")
    # Temporary means gone: nothing of the filter is left on any proxy.
    _, listed, _ = lab.run_json("filter", "list", "--cluster", "lab")
    assert not [f for f in listed if f["id"] in filter_ids and f.get("state") == "active"], listed
    for host in lab.proxies():
        ruleset = lab.netns_run(host["name"], "nft", "list", "ruleset")
        assert client not in ruleset, (host["name"], ruleset)
    lab.log_verify()
    assert delivered(lab, doc["run_id"]) == [("POST", "slack", 200)]


def test_backend_failure_in_a_terminal_after_the_backend_is_back(e2e_lab: E2eLab) -> None:
    lab = e2e_lab
    lab.start_clean()
    killed = lab.fault("kill-backend", "--backend", "2")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "irctl", "run", "backend-failure", "-p", "cluster=lab"],
        env=lab.env,
        encoding="utf-8",
        timeout=120,
        dimensions=(50, 250),
    )
    transcript: list[str] = []
    try:
        child.expect(r"Run step 'tell-identified'")
        child.sendline("y")
        child.expect(r"\[1/1\] memcached is running again")
        # The operator's part of the runbook, done for real before acknowledging it.
        restarted = lab.fault("clear")
        assert restarted["cleared"] == ["kill-backend"]
        child.sendline("y")
        child.expect(r"Type the shard name\(s\) to flush \(([^)]*)\)")
        shards = child.match.group(1)
        assert shards == "shard-1"
        child.sendline(shards)
        child.expect(r"Run step 'tell-resolved'")
        child.sendline("y")
        child.expect(pexpect.EOF)
    finally:
        transcript.append(child.before or "")
        child.close()
    assert child.exitstatus == 0, transcript
    assert memcached_stats(killed["address"])["cmd_flush"] >= 1  # the restored shard, flushed
    assert_mitigated(lab, "backend_failure")
    lab.log_verify()
    run_id = last_live_run(lab, "backend-failure")
    assert_one_incident(lab, run_id, ["identified", "resolved"])


def last_live_run(lab: E2eLab, runbook: str) -> str:
    proc = lab.irctl("--output", "json", "log", "--tail", "500")
    records = json.loads(proc.stdout)
    done = [
        r
        for r in records
        if r.get("event") == "run_finished" and not r.get("dry_run") and r.get("runbook") == runbook
    ]
    assert done, "no finished live run in the journal"
    return str(done[-1]["run_id"])


def test_lab_status_counts_the_notifications(e2e_lab: E2eLab) -> None:
    status = e2e_lab.json("lab", "status")
    assert status["sink"]["alive"] and status["sink"]["url"].startswith("http://127.0.0.1:")
    # One more, sent here, so the count does not depend on which tests ran before.
    before = status["sink"]["notifications"]
    request = urllib.request.Request(
        status["sink"]["url"] + "/slack/T0LAB/B0LAB/lab",
        data=json.dumps({"text": "status count"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200
    status = e2e_lab.json("lab", "status")
    assert status["sink"]["notifications"] == before + 1 == len(e2e_lab.notifications())
    shown = e2e_lab.irctl("lab", "status")
    text = shown.stdout + shown.stderr
    assert re.search(r"notification sink http://\S+: \d+ received", text), text
