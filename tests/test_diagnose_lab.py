"""diagnose.cluster against real namespace hosts: each incident is created for real.

Three proxies (sshd + nutcracker) in front of two memcached backends (one per shard), and
four client namespaces that open real connections. Every test puts the lab back as it found it.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from irctl.actions.base import Context
from irctl.actions.diagnose import DiagnoseCluster, DiagnoseParams
from irctl.hashring.nutcracker import render_cluster
from irctl.inventory import Inventory
from irctl.lab.nshost import Host
from tests.lab_fixtures import Lab

pytest_plugins = ["tests.lab_fixtures"]
pytestmark = pytest.mark.root

PROXY_PORT = 22121
BACKEND_PORT = 11211

# Opens N connections to HOST:PORT from one process, reports how many, then holds them.
HOLDER = r"""
import socket, sys, time
host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
held = []
for _ in range(n):
    for _attempt in range(100):
        try:
            held.append(socket.create_connection((host, port), timeout=5))
            break
        except OSError:
            time.sleep(0.02)
open(ready + ".tmp", "w").write(str(len(held)))
__import__("os").replace(ready + ".tmp", ready)
time.sleep(600)
"""


class DiagLab:
    def __init__(self, lab: Lab, backends: list[Host]) -> None:
        self.lab = lab
        self.backends = backends
        self.backend_pids = {h.name: 0 for h in backends}
        self.holders: list[subprocess.Popen[bytes]] = []
        self._seq = itertools.count()

    @property
    def proxies(self) -> list[Host]:
        return self.lab.proxies

    @property
    def clients(self) -> list[Host]:
        return self.lab.clients

    def inventory(self, allowlist: list[str] | None = None, **cluster: Any) -> Inventory:
        data = self.lab.inventory_dict()
        data["allowlist"] = allowlist or []
        spec = data["clusters"]["lab"]
        spec["proxy_port"] = PROXY_PORT
        # Every lab host shares this machine's two cores: with a dozen processes busy at
        # once the scheduler alone delays 10-20 % of samples by 5-17 ms, which a fleet of
        # real machines does not. The loss test does not lean on this threshold: dropped
        # packets show as failed samples and 200 ms retransmissions.
        spec["thresholds"] = {"slow_ms": 25.0}
        spec["shards"] = [
            {"name": f"shard-{i}", "servers": [f"{h.address}:{BACKEND_PORT}"]}
            for i, h in enumerate(self.backends)
        ]
        spec.update(cluster)
        return Inventory.model_validate(data)

    def hold(self, client: Host, proxy: Host, count: int) -> None:
        """`count` established connections from `client` to `proxy`, held until `release()`."""
        ready = self.lab.network.workdir / f"ready-{next(self._seq)}"
        proc = subprocess.Popen(
            ["ip", "netns", "exec", client.netns, "python3", "-c", HOLDER,
             proxy.address, str(PROXY_PORT), str(count), str(ready)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.holders.append(proc)
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, "the connection holder died"
            assert time.monotonic() < deadline, "connections were not established in time"
            time.sleep(0.05)
        assert int(ready.read_text()) == count

    def release(self) -> None:
        for proc in self.holders:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(10)
        self.holders.clear()


@pytest.fixture(scope="module")
def dlab(lab_factory: Callable[..., Lab]) -> Iterator[DiagLab]:
    lab = lab_factory(proxies=3, clients=4, service="none", prefix="ird")
    backends = lab.network.add_hosts(["backend-1", "backend-2"])
    d = DiagLab(lab, backends)
    for h in backends:
        d.backend_pids[h.name] = h.start_memcached(BACKEND_PORT)
    config = d.inventory().clusters["lab"]
    for proxy in lab.proxies:
        text = render_cluster("lab", config, f"{proxy.address}:{PROXY_PORT}")
        proxy.start_nutcracker(text, listen_port=PROXY_PORT)
    yield d
    d.release()


def diagnose(
    make_ctx: Callable[..., Context], d: DiagLab, inventory: Inventory | None = None, **params: Any
) -> dict[str, Any]:
    ctx = make_ctx(inventory or d.inventory())
    p = DiagnoseParams.model_validate({"cluster": "lab", "samples": 10, "backend_samples": 6,
                                       **params})  # fmt: skip
    action = DiagnoseCluster()
    started = time.monotonic()
    outcome = action.run(p, ctx)
    assert outcome.ok, outcome.error
    outcome.output["_test_seconds"] = time.monotonic() - started
    return outcome.output


def _explain(report: dict[str, Any]) -> str:
    return f"{report['classification']}: {report['evidence']} {report['findings']}"


# Where a healthy verdict is asserted: a probe stalled past the default 500 ms by this
# shared 2-core machine's scheduler fails a sample and degrades its path, which is not the
# network under test. A dropped packet is still a failure at 2 s (a SYN retry takes 1 s
# and then 3 s).
HEALTHY_TIMEOUT = 2.0


def diagnose_healthy(
    make_ctx: Callable[..., Context], d: DiagLab, attempts: int = 3, **params: Any
) -> dict[str, Any]:
    """`diagnose` until healthy, at most `attempts` whole measurements: the last report.

    One measurement samples a random process; a cluster that is really read as unhealthy
    is read so every time.
    """
    report: dict[str, Any] = {}
    for _ in range(attempts):
        report = diagnose(make_ctx, d, timeout=HEALTHY_TIMEOUT, **params)
        if report["classification"] == "healthy":
            break
    return report


def test_healthy_cluster(make_ctx: Callable[..., Context], dlab: DiagLab) -> None:
    dlab.hold(dlab.clients[0], dlab.proxies[0], 20)
    dlab.hold(dlab.clients[1], dlab.proxies[1], 20)
    try:
        report = diagnose_healthy(make_ctx, dlab)
    finally:
        dlab.release()
    assert report["classification"] == "healthy", _explain(report)
    assert report["recommended_runbook"] is None
    hosts = {h["name"]: h for h in report["hosts"]}
    assert set(hosts) == {"proxy-1", "proxy-2", "proxy-3"}
    p1 = hosts["proxy-1"]
    # The operator's own probe may hold one connection at the moment ss looks.
    assert 20 <= p1["established"] <= 21
    assert p1["top_clients"][0] == {"address": dlab.clients[0].address, "count": 20}
    assert p1["sockstat"]["tcp_inuse"] >= 20
    assert p1["fds"]["allocated"] > 0 and p1["loadavg"]
    assert "RetransSegs" in p1["tcp"] and "ListenOverflows" in p1["tcp"]
    assert p1["operator_path"]["samples"] == 10
    assert len(p1["backend_paths"]) == 2 and all(b["samples"] == 6 for b in p1["backend_paths"])
    # Nothing is lost here; one sample in 22 may still miss even 2 s when this shared
    # machine stalls a process, which is no fault of the probe being checked.
    paths = [p1["operator_path"], *p1["backend_paths"]]
    assert sum(round(x["failed_share"] * x["samples"]) for x in paths) <= 1, paths
    assert {b["shard"] for b in report["backends"]} == {"shard-0", "shard-1"}
    assert all(b["reachable"] and b["curr_connections"] >= 1 for b in report["backends"])


def test_client_storm_names_the_client(make_ctx: Callable[..., Context], dlab: DiagLab) -> None:
    storm, target = dlab.clients[0], dlab.proxies[0]
    for client in dlab.clients[1:]:
        for proxy in dlab.proxies:
            dlab.hold(client, proxy, 15)
    # Thousands of connections, spread over processes (20,000 fds per process at most).
    dlab.hold(storm, target, 1500)
    dlab.hold(storm, target, 1500)
    try:
        report = diagnose(make_ctx, dlab)
        allowed = diagnose(make_ctx, dlab, dlab.inventory(allowlist=[f"{storm.address}/30"]))
    finally:
        dlab.release()
    assert report["classification"] == "client_storm", _explain(report)
    assert report["storm_sources"] == [f"{storm.address}/32"]
    assert report["recommended_runbook"] == "client-connection-storm"
    hosts = {h["name"]: h for h in report["hosts"]}
    assert 3045 <= hosts[target.name]["established"] <= 3046
    assert hosts[target.name]["top_clients"][0] == {"address": storm.address, "count": 3000}
    # An allowlisted client is never a storm source; its proxy is still named as overloaded.
    assert allowed["storm_sources"] == []
    assert allowed["classification"] == "single_proxy_overload", _explain(allowed)
    assert allowed["unhealthy_proxies"] == [target.name]
    assert any(f["kind"] == "allowlisted_heavy_client" for f in allowed["findings"])


def test_many_clients_loading_one_proxy(make_ctx: Callable[..., Context], dlab: DiagLab) -> None:
    loaded = dlab.proxies[1]
    for client in dlab.clients:
        dlab.hold(client, loaded, 250)
        for proxy in dlab.proxies:
            if proxy is not loaded:
                dlab.hold(client, proxy, 10)
    try:
        report = diagnose(make_ctx, dlab)
    finally:
        dlab.release()
    assert report["classification"] == "single_proxy_overload", _explain(report)
    assert report["unhealthy_proxies"] == [loaded.name]
    assert report["storm_sources"] == []
    assert report["recommended_runbook"] == "single-proxy-overload"
    row = next(h for h in report["hosts"] if h["name"] == loaded.name)
    assert 1000 <= row["established"] <= 1001
    assert {c["address"]: c["count"] for c in row["top_clients"][:4]} == {
        c.address: 250 for c in dlab.clients
    }
    assert row["status"] == "unhealthy"


LOSS = """table inet irctl_test_loss {
  chain input {
    type filter hook input priority -10; policy accept;
    numgen random mod 100 < 15 drop
  }
}
"""


def test_packet_loss_everywhere_is_cluster_wide_network(
    make_ctx: Callable[..., Context], dlab: DiagLab
) -> None:
    hosts = dlab.proxies + dlab.backends
    for h in hosts:
        h.run(["nft", "-f", "-"], input=LOSS)
    try:
        # 30 operator samples: nutcracker forwards `version` to a backend, so a sample
        # crosses four filtered packets and is clean with P = 0.85^4 = 0.52; ten clean
        # samples on one of three paths (the last assert) happen 0.4 % of the time, thirty
        # 1e-8. Proxy -> backend paths keep 6 samples: they are not the point here.
        report = diagnose(make_ctx, dlab, samples=30)
    finally:
        for h in hosts:
            h.run(["nft", "delete", "table", "inet", "irctl_test_loss"], check=False)
    assert report["classification"] == "cluster_wide_network", _explain(report)
    assert report["paths"]["degraded"] * 2 > report["paths"]["total"]
    assert report["recommended_runbook"] in ("cluster-wide-failure", "network-degradation")
    # Loss on every host: every proxy is on degraded paths, so every proxy is named.
    assert sorted(report["unhealthy_proxies"]) == sorted(p.name for p in dlab.proxies)
    assert report["storm_sources"] == []
    shares = [h["operator_path"]["failed_share"] + h["operator_path"]["slow_share"]
              for h in report["hosts"]]  # fmt: skip
    assert all(s > 0 for s in shares), shares


def test_stopped_memcached_is_backend_failure(
    make_ctx: Callable[..., Context], dlab: DiagLab
) -> None:
    victim = dlab.backends[1]
    pid = dlab.backend_pids[victim.name]
    os.kill(pid, signal.SIGTERM)
    dlab.lab.network._children.pop(pid).wait(10)
    victim.pids.remove(pid)
    try:
        report = diagnose(make_ctx, dlab)
    finally:
        dlab.backend_pids[victim.name] = victim.start_memcached(BACKEND_PORT)
    assert report["classification"] == "backend_failure", _explain(report)
    assert report["failed_shards"] == ["shard-1"]
    assert report["recommended_runbook"] == "backend-failure"
    down = next(b for b in report["backends"] if b["shard"] == "shard-1")
    assert not down["reachable"]
    assert any(victim.address in line for line in report["evidence"])


def test_unreachable_proxy_is_reported_and_the_rest_diagnosed(
    make_ctx: Callable[..., Context], dlab: DiagLab
) -> None:
    gone = dlab.proxies[2]
    gone.run(["ip", "link", "set", "eth0", "down"])
    try:
        report = diagnose(make_ctx, dlab)
    finally:
        gone.run(["ip", "link", "set", "eth0", "up"])
    rows = {h["name"]: h for h in report["hosts"]}
    assert rows[gone.name]["reachable"] is False and rows[gone.name]["error"]
    assert rows[gone.name]["operator_path"]["failed_share"] == 1.0
    for proxy in dlab.proxies[:2]:
        assert rows[proxy.name]["reachable"], rows[proxy.name]["error"]
        assert len(rows[proxy.name]["backend_paths"]) == 2
    assert report["classification"] == "single_proxy_overload", _explain(report)
    assert report["unhealthy_proxies"] == [gone.name]
    assert any(f["kind"] == "unreachable" and f["subject"] == gone.name for f in report["findings"])


def test_cli_json_and_table(dlab: DiagLab, tmp_path: Path) -> None:
    import json
    import sys

    import yaml

    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(dlab.inventory().model_dump(mode="json")))
    env = {**os.environ, "IRCTL_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"}
    base = [sys.executable, "-m", "irctl", "--inventory", str(inventory), "diagnose",
            "--cluster", "lab", "--samples", "5", "--backend-samples", "3",
            "--timeout", f"{HEALTHY_TIMEOUT:g}s"]  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], capture_output=True, text=True, env=env,
                              timeout=60)  # fmt: skip

    for _ in range(3):  # see diagnose_healthy: a measurement may read wrong by chance
        out = run("--output", "json")
        if out.returncode == 0:
            break
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["classification"] == "healthy", doc["evidence"]
    assert {"classification", "hosts", "findings", "unhealthy_proxies", "storm_sources",
            "failed_shards", "recommended_runbook"} <= set(doc)  # fmt: skip
    assert [h["name"] for h in doc["hosts"]] == ["proxy-1", "proxy-2", "proxy-3"]
    for _ in range(3):
        text = run("--expect-healthy")
        if text.returncode == 0:
            break
    assert text.returncode == 0, text.stdout + text.stderr
    assert "cluster lab: healthy" in text.stdout and "proxy-3" in text.stdout
    bad = run("--threshold", "slow_msec=3")
    assert bad.returncode == 2 and "unknown diagnosis threshold" in bad.stderr


RUNBOOK = """
apiVersion: irctl/v1
kind: Runbook
name: diagnose-drill
title: branch on the diagnosis
inputs:
  cluster: {type: string, required: true}
steps:
  - id: diagnose
    action: diagnose.cluster
    with: {cluster: "{{ inputs.cluster }}", samples: 5, backend_samples: 3, timeout: 2s,
           thresholds: {storm_share: 0.4}}
  - id: storm-only
    when: "steps.diagnose.output.classification == 'client_storm'"
    action: assert
    with: {that: "{{ steps.diagnose.output.storm_sources | length > 0 }}"}
  - id: healthy
    action: assert
    with: {that: "{{ steps.diagnose.output.classification == 'healthy' }}"}
"""


def test_runbook_drill_runs_the_diagnosis_for_real_and_branches(
    dlab: DiagLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from irctl.runbook.loader import load_runbook
    from irctl.runbook.runner import start_run
    from irctl.settings import Settings
    from irctl.ui import QuietUI

    monkeypatch.setenv("IRCTL_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "diagnose-drill.yaml"
    path.write_text(RUNBOOK)
    for _ in range(3):  # see diagnose_healthy: a measurement may read wrong by chance
        result = start_run(
            Settings.resolve(operator="tester"), dlab.inventory(), QuietUI(assume_yes=True),
            load_runbook(path), path, {"cluster": "lab"}, dry_run=True, yes=True,
        )  # fmt: skip
        steps = {s.id: s for s in result.steps}
        if steps["diagnose"].output.get("classification") == "healthy":
            break
    assert result.status in ("succeeded", "planned"), (result.error, steps)
    # A read runs for real in a drill: the drill branches exactly as a live run would.
    assert steps["diagnose"].output["classification"] == "healthy"
    assert steps["diagnose"].output["thresholds"]["storm_share"] == 0.4
    assert steps["storm-only"].status == "not_run"
    assert steps["healthy"].status in ("succeeded", "executed")


def test_diagnose_host_measures_one_proxy(make_ctx: Callable[..., Context], dlab: DiagLab) -> None:
    from irctl.actions.diagnose import DiagnoseHost, DiagnoseHostParams

    target = dlab.proxies[1]
    params = DiagnoseHostParams.model_validate(
        {"cluster": "lab", "proxy": target.address, "samples": 5, "backend_samples": 3,
         "timeout": HEALTHY_TIMEOUT}
    )  # fmt: skip
    for _ in range(3):  # see diagnose_healthy: a measurement may read wrong by chance
        outcome = DiagnoseHost().run(params, make_ctx(dlab.inventory()))
        if outcome.ok and outcome.output["classification"] == "healthy":
            break
    assert outcome.ok and outcome.targets == [target.name]
    out = outcome.output
    assert [h["name"] for h in out["hosts"]] == [target.name]
    assert out["hosts"][0]["reachable"] and len(out["hosts"][0]["backend_paths"]) == 2
    assert out["classification"] == "healthy", _explain(out)
    assert any("one proxy measured" in f["message"] for f in out["findings"])
