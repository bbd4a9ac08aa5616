"""Diagnosis logic on recorded text: parsers of /proc and ss output, statistics, the classifier."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from irctl.diagnosis.classify import classify
from irctl.diagnosis.latency import Sample, distribution, parse_probe_lines, percentile, summarize
from irctl.diagnosis.measure import (
    _AGGREGATE,
    decode_proc_address,
    parse_clients,
    parse_header_pairs,
    parse_measurement,
    parse_sockstat,
    remote_script,
)
from irctl.diagnosis.model import BackendReport, ProxyReport, Verdict, thresholds_for
from irctl.errors import InputError

RECORDED = """@@clients
total 3047 4
3000 198.18.7.20
20 ::ffff:198.18.7.21
15 198.18.7.21
12 2001:db8::5
@@sockstat
sockets: used 3210
TCP: inuse 3060 orphan 2 tw 118 alloc 3071 mem 190
UDP: inuse 1 mem 2
@@netstat
TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPTimeouts TCPAbortOnTimeout
TcpExt: 0 17 19 4 1
@@snmp
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets \
CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 40 5000 3 7 3061 900000 880000 4400 0 12 0
@@loadavg
3.52 2.10 1.07 3/412 99812
@@file-nr
6304	0	9223372036854775807
@@cpuinfo
@@ncpu
4
@@probe
@@s 198.18.7.30:11211 310/120
@@s 198.18.7.31:11211 R
@@s 198.18.7.30:11211 290/140
@@s 198.18.7.31:11211 R
@@s 198.18.7.30:11211 F
@@s 198.18.7.31:11211 R
@@s 198.18.7.30:11211 T
@@s 198.18.7.30:11211 5400/100
@@end
""".replace("\\\n", "")


def test_parse_recorded_measurement() -> None:
    m = parse_measurement(RECORDED, expected_samples=5)
    assert m.complete
    assert (m.established, m.distinct_clients) == (3047, 4)
    # The mapped and plain forms of one client are one client.
    assert [(c.address, c.count) for c in m.top_clients] == [
        ("198.18.7.20", 3000),
        ("198.18.7.21", 35),
        ("2001:db8::5", 12),
    ]
    assert m.sockstat["tcp_inuse"] == 3060 and m.sockstat["sockets_used"] == 3210
    assert m.tcp["ListenOverflows"] == 17 and m.tcp["ListenDrops"] == 19
    assert m.tcp["RetransSegs"] == 4400 and m.tcp["OutSegs"] == 880000
    assert m.loadavg == [3.52, 2.10, 1.07] and m.ncpu == 4
    assert m.fds == {"allocated": 6304, "max": 9223372036854775807}
    a, b = m.backend_samples["198.18.7.30:11211"], m.backend_samples["198.18.7.31:11211"]
    assert a[0] == Sample(connect_ms=0.31, rtt_ms=0.12)
    assert [s.failed for s in a[2:4]] == ["connect failed", "timed out"]
    # Samples that never reported (the watchdog stopped the loop) count as timed out.
    assert [s.failed for s in b] == ["no reply"] * 3 + ["timed out"] * 2


def test_failed_ss_is_not_zero_connections() -> None:
    out = subprocess.run(
        ["awk", "-v", "mode=ss", "-v", "top=3", _AGGREGATE],
        input="@@failed ss\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = parse_measurement("@@clients\n" + out + "@@end\n")
    assert m.clients_error and "ss failed" in m.clients_error
    p = ProxyReport("proxy-0", "198.18.7.1", measurement=m)
    assert p.established is None and p.to_dict()["established"] is None


def test_truncated_output_is_incomplete_not_a_crash() -> None:
    m = parse_measurement(RECORDED.split("@@loadavg")[0])
    assert not m.complete and m.loadavg == [] and m.established == 3047


def test_probe_unavailable_is_reported() -> None:
    m = parse_measurement(
        "@@clients\ntotal 0 0\n@@probe\n@@probe_unavailable no bash on this host\n@@end\n"
    )
    assert m.probe_unavailable == "no bash on this host" and m.backend_samples == {}


def test_proc_net_tcp_addresses() -> None:
    assert decode_proc_address("0100007F") == "127.0.0.1"
    assert decode_proc_address("0A0712C6") == "198.18.7.10"
    assert decode_proc_address("0000000000000000FFFF00000A0712C6") == "198.18.7.10"
    assert decode_proc_address("B80D0120000000000000000005000000") == "2001:db8::5"
    total, distinct, top, error = parse_clients(
        ["@@source proc", "total 7 2", "5 0A0712C6", "2 0100007F"]
    )
    assert error is None
    assert (total, distinct) == (7, 2)
    assert [(c.address, c.count) for c in top] == [("198.18.7.10", 5), ("127.0.0.1", 2)]


def test_header_pairs_and_sockstat() -> None:
    lines = ["TcpExt: A B", "TcpExt: 1 2", "IpExt: A", "IpExt: 9"]
    assert parse_header_pairs(lines, "TcpExt") == {"A": 1, "B": 2}
    assert parse_sockstat(["TCP: inuse 5 orphan 0 tw 2"]) == {
        "tcp_inuse": 5,
        "tcp_orphan": 0,
        "tcp_tw": 2,
    }


@pytest.mark.skipif(not shutil.which("awk"), reason="awk is not installed")
def test_awk_aggregation_keeps_only_the_top_n_and_exact_totals() -> None:
    lines = []
    for i in range(1, 41):  # client i holds i connections
        lines += [f"0 0 198.18.7.1:22121 198.18.9.{i}:{40000 + j}" for j in range(i)]
    lines.append("0 0 198.18.7.1:22121 [::ffff:198.18.9.1]:5000")
    out = subprocess.run(
        ["awk", "-v", "mode=ss", "-v", "top=3", _AGGREGATE],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0] == f"total {sum(range(1, 41)) + 1} 41"
    assert out[1:] == ["40 198.18.9.40", "39 198.18.9.39", "38 198.18.9.38"]


def test_remote_script_quotes_every_value() -> None:
    script = remote_script(
        22121, ["198.18.7.30:11211", "x;rm -rf /:1"], top=5, samples=3, timeout=0.5
    )
    assert "'x;rm -rf /:1'" in script
    assert "sport = :22121" in script and "lsof" not in script
    with pytest.raises(ValueError):
        remote_script(0, [], top=5, samples=3, timeout=0.5)


def test_percentiles_are_observed_values() -> None:
    values = sorted(float(v) for v in range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7.0
    assert distribution([]) == {"p50": None, "p90": None, "p99": None, "max": None}


def test_summary_shares() -> None:
    samples = [Sample(0.3, 0.2)] * 7 + [Sample(0.3, 9.0), Sample(failed="timed out")] * 1
    s = summarize("proxy-1", "b:1", [*samples, Sample(6.0, 0.1)], slow_ms=5.0)
    assert s.samples == 10 and s.failed_share == 0.1 and s.slow_share == 0.2
    assert s.errors == {"timed out": 1} and s.rtt["max"] == 9.0
    assert parse_probe_lines(["noise", "@@s h:1 100/200"]) == {"h:1": [Sample(0.1, 0.2)]}


# -- the classifier ---------------------------------------------------------------------------


def _proxy(
    name: str,
    established: int,
    clients: dict[str, int] | None = None,
    *,
    op: list[Sample] | None = None,
    backends: dict[str, list[Sample]] | None = None,
    error: str | None = None,
) -> ProxyReport:
    lines = [f"total {established} {len(clients or {})}"]
    lines += [f"{n} {a}" for a, n in (clients or {}).items()]
    text = "@@clients\n" + "\n".join(lines) + "\n@@end\n"
    p = ProxyReport(name, f"198.18.7.{len(name)}")
    if error:
        p.error = error
    else:
        p.measurement = parse_measurement(text)
    p.operator_path = summarize("operator", name, op or [Sample(0.3, 0.2)] * 20)
    for server, samples in (backends or {}).items():
        p.backend_paths[server] = summarize(name, server, samples)
    return p


FAST = [Sample(0.3, 0.2)] * 10
BACKENDS = [
    BackendReport("b0:11211", "shard-0", {"curr_connections": "10"}),
    BackendReport("b1:11211", "shard-1", {"curr_connections": "10"}),
]


def _run(
    proxies: list[ProxyReport],
    backends: list[BackendReport] = BACKENDS,
    allowlist: tuple[str, ...] = (),
    **t: float,
) -> Verdict:
    return classify(proxies, backends, allowlist=list(allowlist), thresholds=thresholds_for(t))


def _fleet(counts: list[int], **kw: object) -> list[ProxyReport]:
    return [
        _proxy(
            f"proxy-{i}",
            n,
            {f"198.18.8.{j}": n // 10 for j in range(10)},
            backends={"b0:11211": FAST, "b1:11211": FAST},
        )
        for i, n in enumerate(counts)
    ]


def test_healthy() -> None:
    v = _run(_fleet([400, 420, 390]))
    assert v.classification == "healthy" and v.recommended_runbook is None


def test_incident_signature_is_cluster_wide_network() -> None:
    # 10-20 % of packets at 5-15 ms on every path, a few lost: the postmortem's numbers.
    slow = (
        [Sample(0.3, 0.2)] * 14
        + [Sample(7.0, 0.2), Sample(0.3, 12.0)] * 2
        + [Sample(failed="timed out")] * 2
    )
    proxies = [
        _proxy(
            f"proxy-{i}",
            2000 + i * 300,
            {f"198.18.8.{j}": 200 for j in range(10)},
            op=slow,
            backends={"b0:11211": slow, "b1:11211": slow},
        )
        for i in range(4)
    ]
    proxies[0].measurement.tcp.update(RetransSegs=500, OutSegs=10000)  # type: ignore[union-attr]
    v = _run(proxies)
    assert v.classification == "cluster_wide_network"
    assert v.recommended_runbook == "cluster-wide-failure"  # clients fail to reach most proxies
    assert v.paths_degraded == v.paths_total == 12
    assert any("retransmissions" in e for e in v.evidence)
    # What the runbook acts on: every proxy on a degraded path, every shard behind one.
    assert v.unhealthy_proxies == [f"proxy-{i}" for i in range(4)]
    assert v.affected_shards == ["shard-0", "shard-1"]


def test_slowness_without_loss_is_network_degradation() -> None:
    slow = [Sample(0.3, 0.2)] * 12 + [Sample(9.0, 0.2)] * 8
    proxies = [_proxy(f"proxy-{i}", 100, op=slow) for i in range(3)]
    v = _run(proxies)
    assert (v.classification, v.recommended_runbook) == (
        "cluster_wide_network",
        "network-degradation",
    )


def test_storm_names_sources_as_cidrs_and_never_allowlisted_ones() -> None:
    proxies = _fleet([300, 300, 300])
    proxies[0] = _proxy(
        "proxy-0", 4300, {"198.18.9.9": 4000, "198.18.8.1": 30}, backends={"b0:11211": FAST}
    )
    v = _run(proxies)
    assert v.classification == "client_storm" and v.storm_sources == ["198.18.9.9/32"]
    assert v.recommended_runbook == "client-connection-storm"
    allowed = _run(proxies, allowlist=("198.18.9.0/24",))
    assert allowed.storm_sources == [] and allowed.classification == "single_proxy_overload"
    assert allowed.unhealthy_proxies == ["proxy-0"]
    assert any(f.kind == "allowlisted_heavy_client" for f in allowed.findings)


def test_ipv6_storm_source_is_a_128() -> None:
    proxies = _fleet([50, 50])
    proxies.append(_proxy("proxy-9", 2100, {"2001:db8::7": 2000}))
    assert _run(proxies).storm_sources == ["2001:db8::7/128"]


def test_overload_names_the_proxy_not_its_many_clients() -> None:
    proxies = _fleet([300, 2400, 310, 290])
    v = _run(proxies)
    assert v.classification == "single_proxy_overload" and v.unhealthy_proxies == ["proxy-1"]
    assert v.storm_sources == []
    # Thresholds from the inventory or the step move the line.
    assert _run(proxies, overload_factor=10).classification == "healthy"


def test_refusing_backend_is_backend_failure_but_timeouts_are_not() -> None:
    refused = [Sample(failed="connect failed")] * 10
    proxies = [
        _proxy(f"proxy-{i}", 100, backends={"b0:11211": FAST, "b1:11211": refused})
        for i in range(3)
    ]
    v = _run(proxies)
    assert v.classification == "backend_failure" and v.failed_shards == ["shard-1"]
    lossy = [Sample(0.3, 0.2)] * 5 + [Sample(failed="timed out")] * 5
    proxies = [
        _proxy(f"proxy-{i}", 100, backends={"b0:11211": FAST, "b1:11211": lossy}) for i in range(3)
    ]
    assert _run(proxies).failed_shards == []


def test_full_backend_refuses_connections() -> None:
    full = BackendReport(
        "b1:11211",
        "shard-1",
        {"curr_connections": "1024", "max_connections": "1024", "rejected_connections": "77"},
    )
    v = _run(_fleet([100, 100]), [BACKENDS[0], full])
    assert v.classification == "backend_failure" and "refusing" in v.evidence[0]


def test_unreachable_proxy_is_a_row_and_named() -> None:
    proxies = _fleet([300, 300, 300])
    proxies.append(
        _proxy(
            "proxy-dead", 0, error="connect timed out", op=[Sample(failed="connect timed out")] * 20
        )
    )
    v = _run(proxies)
    assert v.classification == "single_proxy_overload" and v.unhealthy_proxies == ["proxy-dead"]
    assert any(f.kind == "unreachable" for f in v.findings)


def test_nothing_measured_is_unknown() -> None:
    dead = _proxy("proxy-0", 0, error="auth failed")
    dead.operator_path = None
    v = _run([dead])
    assert v.classification == "unknown"


def test_ports_answering_without_ssh_measurements_are_not_healthy() -> None:
    # Every proxy port answers the operator, but no proxy could be read over SSH (a broken
    # key or known_hosts): a verify step must not pass on that.
    blind = [_proxy(f"proxy-{i}", 0, error="host key not trusted") for i in range(3)]
    v = _run(blind)
    assert v.classification == "unknown"
    assert any("too few proxies measured over SSH" in e for e in v.evidence)
    assert any("host key not trusted" in e for e in v.evidence)
    # One of three unmeasured (but serving) is still a judgement from the majority.
    mostly = [_proxy(f"proxy-{i}", 300) for i in range(2)] + [blind[0]]
    assert _run(mostly).classification == "healthy"


def test_thresholds_refuse_unknown_keys_and_negative_values() -> None:
    with pytest.raises(InputError, match="unknown diagnosis threshold"):
        thresholds_for({"slow_msec": 5})
    with pytest.raises(InputError):
        thresholds_for({"slow_ms": -1})
    assert thresholds_for({"slow_ms": 5}, {"slow_ms": 9})["slow_ms"] == 9


# -- the operator-side probe against a real memcached on loopback -----------------------------


@pytest.mark.skipif(not shutil.which("memcached"), reason="memcached is not installed")
def test_operator_probe_times_real_round_trips_and_counts_refusals() -> None:
    import socket
    import time

    from irctl.providers.probe import ProbeProvider, ProbeTarget

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        refused_port = closed.getsockname()[1]
        proc = subprocess.Popen(
            ["memcached", "-u", "nobody", "-l", "127.0.0.1", "-p", str(port), "-U", "0"]
        )
        try:
            deadline = time.monotonic() + 5
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
            got = ProbeProvider().measure(
                [
                    ProbeTarget("mc", "127.0.0.1", port),
                    ProbeTarget("nothing", "127.0.0.1", refused_port),
                ],
                samples=5,
                timeout=1.0,
            )
        finally:
            proc.terminate()
            proc.wait(5)
    paths = got.paths
    assert len(paths["mc"]) == 5
    assert all(
        e is None and c is not None and r is not None and c < 1000 for c, r, e in paths["mc"]
    )
    # Refused from the first samples: the rest are not attempted but still counted as failed.
    assert paths["nothing"] == [(None, None, "connect failed: Connection refused")] * 5
    assert len(got.timer_lag_ms) == 5 and all(lag >= 0 for lag in got.timer_lag_ms)


def test_diagnose_help_imports_neither_paramiko_nor_boto3() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['irctl', 'diagnose', '--help']\n"
        "from irctl.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('paramiko', 'boto3', 'pymemcache') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--cluster" in out.stdout


def test_one_heavy_client_beside_one_light_one_is_a_storm() -> None:
    # With every client listed, the typical client is the lower quartile: the storm itself
    # must not make the bar (a median of 1200 and 30 would be 615).
    proxies = [
        _proxy("proxy-0", 1230, {"198.18.9.5": 1200, "198.18.9.6": 30}),
        _proxy("proxy-1", 0),
        _proxy("proxy-2", 0),
    ]
    v = _run(proxies)
    assert v.classification == "client_storm" and v.storm_sources == ["198.18.9.5/32"]


def test_two_equal_heavy_clients_do_not_hide_each_other() -> None:
    clients = {"198.18.9.1": 1000, "198.18.9.2": 1000, "198.18.9.3": 10, "198.18.9.4": 10}
    v = _run([_proxy("proxy-0", 2020, clients), _proxy("proxy-1", 20), _proxy("proxy-2", 20)])
    assert v.classification == "client_storm"
    assert v.storm_sources == ["198.18.9.1/32", "198.18.9.2/32"]


# -- assembly with fake providers: rows for failures, notes for a broken probe ---------------


class _FakeSsh:
    command_timeout = 10.0

    def __init__(self, outputs: dict[str, str | None]) -> None:
        self.outputs = outputs
        self.scripts: list[str] = []

    def run_many(self, hosts, argv, *, stdin=None, timeout=None, concurrency=None, on_result=None):  # type: ignore[no-untyped-def]
        from irctl.providers.ssh import CommandResult, HostResult

        out = []
        for h in hosts:
            self.scripts.append(stdin(h) if callable(stdin) else stdin)
            text = self.outputs[h.name]
            if text is None:
                r = HostResult(h, None, f"{h.name}: connect timed out")
            else:
                r = HostResult(h, CommandResult(h.name, 0, text, "", 5), None)
            if on_result:
                on_result(r)
            out.append(r)
        return out


class _BrokenProbe:
    def start(self, targets, *, samples, timeout):  # type: ignore[no-untyped-def]
        from irctl.errors import ProviderError

        class Running:
            def wait(self) -> None:
                raise ProviderError("the latency probe failed: boom")

            def cancel(self) -> None:
                pass

        return Running()


class _Stats:
    def stats_many(self, servers):  # type: ignore[no-untyped-def]
        from irctl.errors import ProviderError

        return {
            s: ProviderError(f"memcached {s}: stats failed")
            if s.startswith("bad")
            else {"curr_connections": "3"}
            for s in servers
        }


def test_assembly_keeps_rows_for_failures(make_ctx) -> None:  # type: ignore[no-untyped-def]
    from irctl.actions.diagnose import DiagnoseCluster, DiagnoseParams
    from irctl.providers.memcached import MemcachedProvider
    from irctl.providers.probe import ProbeProvider
    from irctl.providers.ssh import SshProvider

    inventory = {
        "allowlist": ["198.18.7.0/24"],
        "clusters": {
            "c": {
                "proxy_port": 22121,
                "proxies": [
                    {"name": "p1", "address": "198.18.7.1"},
                    {"name": "p2", "address": "198.18.7.2"},
                ],
                "shards": [
                    {"name": "s0", "servers": ["good:11211"]},
                    {"name": "s1", "servers": ["bad:11211"]},
                ],
            }
        },
    }
    ssh = _FakeSsh({"p1": RECORDED, "p2": None})
    ctx = make_ctx(
        inventory,
        overrides={SshProvider: ssh, ProbeProvider: _BrokenProbe(), MemcachedProvider: _Stats()},
    )
    params = DiagnoseParams.model_validate({"cluster": "c", "backend_samples": 5})
    out = DiagnoseCluster().run(params, ctx).output
    rows = {h["name"]: h for h in out["hosts"]}
    assert rows["p2"]["reachable"] is False and "timed out" in rows["p2"]["error"]
    assert rows["p1"]["established"] == 3047 and rows["p1"]["operator_path"] is None
    assert any("probe failed" in f["message"] for f in out["findings"])
    assert {b["server"]: b["reachable"] for b in out["backends"]} == {
        "good:11211": True,
        "bad:11211": False,
    }
    # The storm source is allowlisted (198.18.7.0/24 covers 198.18.7.20): never named.
    assert out["storm_sources"] == []
    # One script per proxy: the timer control connects to the proxy's own address.
    assert "good:11211 bad:11211" in ssh.scripts[0] and "198.18.7.1:22121" in ssh.scripts[0]
    assert "198.18.7.2:22121" in ssh.scripts[1]


def test_since_boot_counters_make_findings_only_past_a_share() -> None:
    quiet = _proxy("proxy-0", 100)
    assert quiet.measurement is not None
    quiet.measurement.tcp.update(
        ListenOverflows=17, PassiveOpens=5000, RetransSegs=40, OutSegs=9000
    )
    loud = _proxy("proxy-1", 100)
    assert loud.measurement is not None
    loud.measurement.tcp.update(
        ListenOverflows=900, PassiveOpens=5000, RetransSegs=400, OutSegs=9000
    )
    kinds = {(f.kind, f.subject) for f in _run([quiet, loud]).findings}
    assert ("listen_overflows", "proxy-1") in kinds and ("retransmissions", "proxy-1") in kinds
    assert not any(subject == "proxy-0" for _, subject in kinds)


@pytest.mark.parametrize("mode", ["ss", "proc"])
def test_socket_table_pass_counts_real_connections(mode: str) -> None:
    """ss with its kernel filter, or (where there is no ss) awk over /proc/net/tcp{,6}."""
    import shlex
    import socket

    if not shutil.which("awk") or (mode == "ss" and not shutil.which("ss")):
        pytest.skip("awk or ss is not installed")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        agg = shlex.quote(_AGGREGATE)
        if mode == "ss":
            pipeline = (
                f"ss -Htn state established '( sport = :{port} )' | awk -v mode=ss -v top=5 {agg}"
            )
        else:
            pipeline = (
                f"echo @@source proc; awk -v mode=proc -v port={port:04X} -v top=5 {agg}"
                " /proc/net/tcp /proc/net/tcp6"
            )
        try:
            out = subprocess.run(
                ["sh", "-c", pipeline], capture_output=True, text=True, check=True
            ).stdout.splitlines()
        finally:
            for c in clients:
                c.close()
    total, distinct, top, error = parse_clients(out)
    assert error is None
    assert (total, distinct) == (3, 1)
    assert [(c.address, c.count) for c in top] == [("127.0.0.1", 3)]


def test_runbook_validation_points_at_bad_diagnose_params(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from irctl.runbook.loader import validate_file

    path = tmp_path / "rb.yaml"
    path.write_text(
        "apiVersion: irctl/v1\nkind: Runbook\nname: rb\ntitle: t\n"
        "inputs:\n  cluster: {type: string, required: true}\n"
        "steps:\n  - id: diagnose\n    action: diagnose.cluster\n"
        '    with: {cluster: "{{ inputs.cluster }}", thresholds: {slow_msec: 3}, timeout: 5x}\n'
    )
    _, problems = validate_file(path)
    text = "\n".join(p.render() for p in problems)
    assert "rb.yaml:10:" in text
    assert "unknown diagnosis threshold 'slow_msec'" in text and "bad duration '5x'" in text


def test_scattered_degradation_is_unknown_not_healthy() -> None:
    slow = [Sample(0.3, 0.2)] * 5 + [Sample(9.0, 0.2)] * 5
    proxies = _fleet([300, 310, 290, 305])
    for p in proxies[:3]:  # one backend path of three proxies: not most paths, no one proxy
        p.backend_paths["b1:11211"] = summarize(p.name, "b1:11211", slow)
    v = _run(proxies)
    assert v.classification == "unknown" and v.recommended_runbook is None
    assert v.paths_degraded == 3 and v.paths_total == 12
    assert "not most" in v.evidence[0]


def test_late_timers_discount_slowness_but_not_loss() -> None:
    from irctl.diagnosis.latency import TimerLag

    slow = [Sample(0.3, 0.2)] * 12 + [Sample(9.0, 0.2)] * 8
    proxies = [_proxy(f"proxy-{i}", 100, op=slow) for i in range(3)]
    late = TimerLag.of([0.1] * 10 + [8.0] * 10, 5.0)
    assert _run(proxies).classification == "cluster_wide_network"
    v = classify(
        proxies, BACKENDS, allowlist=[], thresholds=thresholds_for({}), operator_timer=late
    )
    assert v.classification == "healthy"
    assert any(f.kind == "late_timers" and f.subject == "operator" for f in v.findings)
    lossy = [Sample(0.3, 0.2)] * 16 + [Sample(failed="timed out")] * 4
    proxies = [_proxy(f"proxy-{i}", 100, op=lossy) for i in range(3)]
    v = classify(
        proxies, BACKENDS, allowlist=[], thresholds=thresholds_for({}), operator_timer=late
    )
    assert v.classification == "cluster_wide_network"


@pytest.mark.skipif(not (shutil.which("memcached") and shutil.which("bash")), reason="no memcached")
def test_remote_script_probes_a_real_backend_over_ipv6_loopback() -> None:
    """The whole script, run locally by sh: the bash probe and its timer control, on [::1]."""
    import socket
    import time

    with socket.socket(socket.AF_INET6) as s:
        try:
            s.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        port = s.getsockname()[1]
    proc = subprocess.Popen(["memcached", "-u", "nobody", "-l", "::1", "-p", str(port), "-U", "0"])
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("::1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        script = remote_script(
            port, [f"[::1]:{port}"], top=3, samples=4, timeout=0.5, own_address="::1"
        )
        out = subprocess.run(
            ["sh", "-s"], input=script, capture_output=True, text=True, timeout=30
        ).stdout
    finally:
        proc.terminate()
        proc.wait(5)
    m = parse_measurement(out, 4)
    assert m.complete
    samples = m.backend_samples[f"[::1]:{port}"]
    assert len(samples) == 4 and all(s.failed is None for s in samples)
    assert len(m.timer_lag_ms) == 4
    # The timer control's own connection came after ss looked: it is not a client.
    assert m.established == 0


# -- only refusals cut a probe short; timeouts are sampled in full ---------------------------


class _SilentListener:
    """Accepts connections and never answers; counts how many were made."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        import socket

        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()


def _closed_port() -> int:
    import socket

    # Bound without listening is not enough once closed: the port is free and refuses.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.skipif(not shutil.which("bash"), reason="no bash")
def test_bash_probe_samples_a_silent_backend_in_full_and_cuts_only_refusals() -> None:
    from irctl.diagnosis.latency import BASH_PROBE

    silent, refused = _SilentListener(), _closed_port()
    try:
        out = subprocess.run(
            ["bash", "-s", "6", "0.200", "20", f"127.0.0.1:{refused}",
             f"127.0.0.1:{silent.port}", f"127.0.0.1:{refused}"],
            input=BASH_PROBE, capture_output=True, text=True, timeout=30,
        ).stdout  # fmt: skip
        # Every sample connected: a path that times out three times is not taken for dead.
        assert len(silent.accepted) == 6
    finally:
        silent.close()
    got = parse_probe_lines(out.splitlines(), 6)
    assert [s.failed for s in got[f"127.0.0.1:{silent.port}"]] == ["no reply"] * 6
    assert [s.failed for s in got[f"127.0.0.1:{refused}"]] == ["connect failed"] * 6


def test_operator_probe_samples_a_silent_host_in_full_and_cuts_only_refusals() -> None:
    from irctl.providers.probe import ProbeProvider, ProbeTarget

    silent, refused = _SilentListener(), _closed_port()
    try:
        got = ProbeProvider().measure(
            [
                ProbeTarget("silent", "127.0.0.1", silent.port),
                ProbeTarget("refused", "127.0.0.1", refused),
            ],
            samples=6,
            timeout=0.2,
        )
        assert len(silent.accepted) == 6
    finally:
        silent.close()
    assert got.paths["silent"] == [(None, None, "no reply in time")] * 6
    assert got.paths["refused"] == [(None, None, "connect failed: Connection refused")] * 6


def test_timeouts_alone_fail_a_backend_only_when_the_operator_cannot_reach_it_either() -> None:
    # Loss can make every sample of a path time out; a dead machine does that from everywhere.
    silent = [Sample(failed="timed out")] * 10
    proxies = [
        _proxy(f"proxy-{i}", 100, backends={"b0:11211": FAST, "b1:11211": silent}) for i in range(3)
    ]
    assert _run(proxies).failed_shards == []
    dead = BackendReport("b1:11211", "shard-1", error="connect timed out")
    v = _run(proxies, [BACKENDS[0], dead])
    assert v.classification == "backend_failure" and v.failed_shards == ["shard-1"]
