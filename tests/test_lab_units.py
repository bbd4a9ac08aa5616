"""The lab's parts that need no namespaces: load generator, health checks, state, faults' text.

The load generator and the health checker run against real servers on loopback.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from irctl.errors import InputError
from irctl.lab import requirements
from irctl.lab.faults import hosts_for, loss_ruleset
from irctl.lab.loadgen import Conn, Targets
from irctl.lab.reconciler import HealthChecker
from irctl.lab.state import FaultRecord, HostRecord, LabState, read_state, updating, write_state


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"port {port} never opened"
            time.sleep(0.02)


@pytest.fixture
def memcached() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    if not shutil.which("memcached"):
        pytest.skip("memcached not installed")
    port = free_port()
    proc = start_memcached(port)
    yield port, proc
    proc.terminate()
    proc.wait(5)


def start_memcached(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["memcached", "-u", "root", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "8"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_port(port)
    return proc


def stats(port: int) -> dict[str, int]:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            data += sock.recv(65536)
    out = {}
    for line in data.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            out[parts[1]] = int(parts[2])
    return out


def test_loadgen_prefills_then_keeps_a_steady_bounded_load_and_reconnects(
    memcached: tuple[int, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port, proc = memcached
    counters = tmp_path / "stats.json"
    gen = subprocess.Popen(
        [sys.executable, "-m", "irctl.lab.loadgen", "--target", f"127.0.0.1:{port}",
         "--rate", "200", "--keys", "300", "--prefill", "--stats", str(counters)],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while stats(port)["curr_items"] < 300:
            assert time.monotonic() < deadline, "prefill did not finish"
            time.sleep(0.1)
        first, t1 = stats(port), time.monotonic()
        time.sleep(2.0)
        second, dt = stats(port), time.monotonic() - t1
        assert second["curr_items"] == 300  # steady load sets known keys only
        # The rate is bounded (200/s here), over two connections (plus the one asking). The
        # window is measured, and wide enough that a short stall of either side averages out.
        window = (second["cmd_get"] + second["cmd_set"]) - (first["cmd_get"] + first["cmd_set"])
        assert 100 * dt <= window <= 300 * dt + 50, (window, dt)
        # No reconnect churn: between the two stats calls the only new connection is the
        # second stats call itself. curr_connections would lag (closed sockets are reaped
        # asynchronously), total_connections only counts accepts.
        assert second["total_connections"] - first["total_connections"] == 1
        ops = second["cmd_get"] + second["cmd_set"]
        proc.terminate()
        proc.wait(5)
        time.sleep(0.5)
        restarted = start_memcached(port)
        try:
            # The generator notices, reconnects both connections and carries on; its
            # counters file is rewritten about once a second, so poll rather than sleep.
            deadline = time.monotonic() + 15
            while True:
                again = stats(port)
                doc = json.loads(counters.read_text())
                if (
                    again["cmd_get"] + again["cmd_set"] > 50
                    and doc["failed"] > 0
                    and doc["ok"] > ops - 300
                    and doc["connects"] >= 4
                ):
                    break
                assert time.monotonic() < deadline, (again, doc)
                time.sleep(0.2)
        finally:
            restarted.terminate()
            restarted.wait(5)
    finally:
        gen.terminate()
        gen.wait(5)


def test_targets_file_moves_connections_to_new_proxies(tmp_path: Path) -> None:
    path = tmp_path / "proxies.txt"
    path.write_text("198.18.0.2:22121\n198.18.0.3:22121\n")
    targets = Targets(path)
    conns = targets.refresh([], 2)
    assert sorted({(c.address, c.port) for c in conns}) == [
        ("198.18.0.2", 22121), ("198.18.0.3", 22121)
    ]  # fmt: skip
    assert len(conns) == 4
    assert targets.refresh(conns, 2) is conns  # unchanged file: nothing rebuilt
    path.write_text("198.18.0.3:22121\n198.18.0.9:22121\n")
    time.sleep(0.01)
    path.touch()
    kept = [c for c in conns if c.address == "198.18.0.3"]
    after = targets.refresh(conns, 2)
    assert sorted({c.address for c in after}) == ["198.18.0.3", "198.18.0.9"]
    assert all(any(c is k for c in after) for k in kept)  # connections to staying proxies kept
    assert isinstance(after[0], Conn)


def test_health_checker_reports_initial_healthy_then_unhealthy() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    checker = HealthChecker(port, timeout=0.5)
    assert checker.state("127.0.0.1")[0] == "initial"
    checker.check(["127.0.0.1"])
    assert checker.state("127.0.0.1") == ("healthy", None, None)
    listener.close()
    checker.check(["127.0.0.1"])
    assert checker.state("127.0.0.1")[0] == "healthy"  # one failed check is not enough
    checker.check(["127.0.0.1"])
    assert checker.state("127.0.0.1")[:2] == ("unhealthy", "Target.Timeout")
    checker.check([])  # a proxy that left is forgotten: a new one at its address starts over
    assert checker.state("127.0.0.1")[0] == "initial"


def lab_state(directory: Path) -> LabState:
    state = LabState(
        directory=str(directory), prefix="lab", token="abc123", bridge="irbabc123",
        subnet="198.18.7.0/24", gateway="198.18.7.1", proxy_port=22121, backend_port=11211,
    )  # fmt: skip
    for i, (name, role) in enumerate(
        [
            ("proxy-1", "proxy"),
            ("proxy-2", "proxy"),
            ("proxy-10", "proxy"),
            ("backend-1", "backend"),
            ("client-1", "client"),
        ]
    ):
        state.hosts[name] = HostRecord(
            name, role, f"lab-abc123-{name}", f"198.18.7.{i + 2}", f"irvabc123{i + 1}",
            instance_id=f"i-{i:017x}",
        )  # fmt: skip
    return state


def test_state_round_trips_and_updates_under_the_lock(tmp_path: Path) -> None:
    state = lab_state(tmp_path)
    state.faults.append(FaultRecord("storm", ["client-1", "proxy-1"], [123], {"connections": 9}))
    write_state(state)
    loaded = read_state(tmp_path)
    assert loaded == state
    assert [h.name for h in loaded.by_role("proxy")] == ["proxy-1", "proxy-2", "proxy-10"]
    with updating(tmp_path) as st:
        st.hosts["proxy-1"].pids["nutcracker"] = 42
    assert read_state(tmp_path).hosts["proxy-1"].pids == {"nutcracker": 42}  # type: ignore[union-attr]
    assert read_state(tmp_path / "none") is None


def test_loss_targets_by_name_address_id_and_role_word(tmp_path: Path) -> None:
    state = lab_state(tmp_path)
    names = lambda refs: [h.name for h in hosts_for(state, refs)]  # noqa: E731
    assert names([]) == ["proxy-1", "proxy-2", "proxy-10"]
    assert names(["backends", "198.18.7.2"]) == ["backend-1", "proxy-1"]
    assert names([state.hosts["client-1"].instance_id or ""]) == ["client-1"]
    assert len(names(["all"])) == 5
    with pytest.raises(InputError, match="no lab host 'nosuch'"):
        hosts_for(state, ["nosuch"])


def test_loss_ruleset_replaces_its_own_table_only() -> None:
    text = loss_ruleset(15)
    assert text.startswith("table inet irctl_lab_fault\ndelete table inet irctl_lab_fault\n")
    assert "numgen random mod 100 < 15 counter drop" in text
    assert "inet irctl " not in text and "inet irctl\n" not in text


def test_requirements_name_each_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requirements, "missing_tools", lambda *t: ["nutcracker", "nft"])
    monkeypatch.setattr(requirements.os, "geteuid", lambda: 1000)
    with pytest.raises(InputError) as err:
        requirements.check_requirements()
    assert err.value.message == (
        "irctl lab needs root (network namespaces need it); nutcracker, nft "
        "(apt-get install nftables nutcracker)"
    )


def test_lab_status_says_faults_as_text_not_a_dict() -> None:
    from irctl.cli.lab import fault_line

    loss = {"kind": "loss", "hosts": ["proxy-1", "proxy-2"], "processes": 0, "percent": 30}
    assert fault_line(loss) == "30% packet loss on proxy-1, proxy-2"
    storm = {"kind": "storm", "hosts": ["client-1", "proxy-1"], "processes": 2,
             "connections": 2000, "gone": ["proxy-3"]}  # fmt: skip
    assert fault_line(storm) == (
        "storm of 2000 connections (client-1, proxy-1); 2 process(es); replaced since: proxy-3"
    )
    killed = {"kind": "kill-backend", "hosts": ["backend-2"], "processes": 0, "pid": 4242}
    assert fault_line(killed) == "memcached stopped on backend-2 (was pid 4242)"
    for fault in (loss, storm, killed, {"kind": "new", "hosts": [], "processes": 0, "x": 1}):
        assert "{" not in fault_line(fault) and "'" not in fault_line(fault)
