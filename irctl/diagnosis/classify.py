"""From measurements to a verdict: which of the known incidents this is, and the evidence.

The order matters: a dead shard is the crispest signal (its failing paths must not be
read as a network problem), then the network across most paths (the incident this tool
was built for: clients reconnecting make connection counts climb everywhere, which
must not be blamed on proxies or clients), then a few clients holding most connections,
then single proxies far above their peers. What no rule explains is `unknown`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence

from irctl.diagnosis.findings import host_findings, late_timers, pct
from irctl.diagnosis.latency import PathStats, TimerLag
from irctl.diagnosis.model import BackendReport, Finding, ProxyReport, Verdict
from irctl.diagnosis.storm import storm_sources


def _down(path: PathStats, t: Mapping[str, float], *, operator_reaches: bool) -> bool:
    """A backend is down from one proxy when it refuses, or when nearly nothing gets through
    and the operator cannot reach it either.

    Timeouts on a share of samples are what packet loss looks like on every path, and under
    loss a path can time out nearly always by chance (a dropped SYN costs a 1 s retry, and
    the probe's budget can end before the retries get through). Refusals (a stopped
    memcached answers with a reset at once) point at the backend itself; timeouts do only
    when the operator's own stats request fails too (a dead or blackholed machine).
    """
    if path.failed_share < t["backend_fail_share"]:
        return False
    failures = path.failed_share * path.samples
    refused = path.errors.get("connect failed", 0)
    if refused * 2 > failures:
        return True
    return path.failed_share >= 0.9 and not operator_reaches


def failed_servers(
    proxies: Sequence[ProxyReport], backends: Sequence[BackendReport], t: Mapping[str, float]
) -> dict[str, str]:
    """Backend server -> why it counts as failed (unreachable from most proxies, or full)."""
    out: dict[str, str] = {}
    reachable_from_here = [b for b in backends if b.error is None]
    for b in backends:
        probes = [p.backend_paths[b.server] for p in proxies if b.server in p.backend_paths]
        probes = [s for s in probes if s.samples]
        if probes:
            down = [s for s in probes if _down(s, t, operator_reaches=b.error is None)]
            if len(down) * 2 > len(probes):
                errors = sorted({e for s in down for e in s.errors})
                out[b.server] = (
                    f"{len(down)} of {len(probes)} proxies cannot reach it"
                    f" ({', '.join(errors[:3]) or 'failed'})"
                )
                continue
        elif b.error and reachable_from_here:
            # No proxy could probe: the operator's own view decides, if it reaches the others.
            out[b.server] = f"unreachable from the operator while other backends answer: {b.error}"
            continue
        cur, cap = b.stat("curr_connections"), b.stat("max_connections")
        if cur is not None and cap and cur >= cap - 1:
            out[b.server] = (
                f"refusing connections: {cur} of max {cap}, "
                f"rejected_connections={b.stat('rejected_connections')}"
            )
    return out


def classify(
    proxies: Sequence[ProxyReport],
    backends: Sequence[BackendReport],
    *,
    allowlist: Sequence[str],
    thresholds: Mapping[str, float],
    operator_timer: TimerLag | None = None,
) -> Verdict:
    t = thresholds
    findings: list[Finding] = []
    host_findings(proxies, backends, t, findings)
    late = late_timers(proxies, operator_timer, t, findings)

    def bad(path: PathStats) -> bool:
        return path.degraded(
            t["path_slow_share"], t["path_loss_share"], count_slow=path.source not in late
        )

    failed = failed_servers(proxies, backends, t)
    shards = sorted({b.shard for b in backends if b.server in failed})
    all_shards = {b.shard for b in backends}

    paths = [p for proxy in proxies for p in proxy.paths() if p.samples and p.target not in failed]
    degraded = [p for p in paths if bad(p)]
    share = len(degraded) / len(paths) if paths else 0.0
    network_wide = len(paths) >= 2 and share > t["network_paths_share"]

    def verdict(kind: str, evidence: list[str], runbook: str | None, **names: list[str]) -> Verdict:
        return Verdict(
            classification=kind,
            evidence=evidence,
            findings=findings,
            recommended_runbook=runbook,
            paths_total=len(paths),
            paths_degraded=len(degraded),
            **names,
        )

    if shards and not (network_wide and set(shards) == all_shards):
        evidence = [
            f"{server} (shard {b.shard}): {failed[server]}"
            for b in backends
            for server in [b.server]
            if server in failed
        ]
        return verdict("backend_failure", evidence, "backend-failure", failed_shards=shards)

    if network_wide:
        # Name what a runbook acts on: the proxies on degraded paths (the fault follows the
        # machines, so replacing them is the recovery) and the shards behind degraded paths.
        hurt = [
            p.name
            for p in proxies
            if p.error is not None or any(bad(x) for x in p.paths() if x.samples)
        ]
        affected = set(shards) | {
            b.shard
            for b in backends
            for p in proxies
            if b.server in p.backend_paths
            and p.backend_paths[b.server].samples
            and bad(p.backend_paths[b.server])
        }
        return verdict(
            "cluster_wide_network",
            _network_evidence(paths, degraded, proxies, t),
            _network_runbook(proxies, t),
            unhealthy_proxies=hurt,
            affected_shards=sorted(affected),
        )

    measured = [p for p in proxies if p.measurement is not None]
    counted = [p for p in measured if p.established is not None]
    storm, storm_evidence = storm_sources(counted, allowlist, t, findings)
    if storm:
        return verdict(
            "client_storm", storm_evidence, "client-connection-storm", storm_sources=storm
        )

    unhealthy, evidence = _unhealthy_proxies(proxies, t, bad)
    if unhealthy and len(unhealthy) * 2 <= len(proxies):
        return verdict(
            "single_proxy_overload", evidence, "single-proxy-overload", unhealthy_proxies=unhealthy
        )

    if not measured and not paths:
        return verdict("unknown", ["no proxy could be measured"], None)
    unexplained = [p for p in degraded if p.source not in unhealthy]
    if paths and len(unexplained) / len(paths) > t["unexplained_paths_share"]:
        return verdict(
            "unknown",
            [
                f"{len(unexplained)} of {len(paths)} paths degraded: not most, not one proxy's",
                *_network_evidence(paths, unexplained, proxies, t)[1:],
            ],
            None,
        )
    evidence = [
        f"{len(measured)} of {len(proxies)} proxies measured; "
        f"{len(degraded)} of {len(paths)} paths degraded"
    ]
    if unhealthy:
        evidence.append(f"too many proxies look unhealthy to blame them: {', '.join(unhealthy)}")
        return verdict("unknown", evidence, None)
    if len(measured) * 2 <= len(proxies):
        # "Healthy" is a claim about the proxies' own kernels; answering ports alone do not
        # make it (a broken SSH key or known_hosts would otherwise pass every verify step).
        errors = sorted({p.error for p in proxies if p.measurement is None and p.error})
        evidence.append(
            "too few proxies measured over SSH to call the cluster healthy"
            + (f" (first error: {errors[0]})" if errors else "")
        )
        return verdict("unknown", evidence, None)
    return verdict("healthy", evidence, None)


def _network_evidence(
    paths: Sequence[PathStats],
    degraded: Sequence[PathStats],
    proxies: Sequence[ProxyReport],
    t: Mapping[str, float],
) -> list[str]:
    slow = statistics.median([p.slow_share for p in paths]) if paths else 0.0
    loss = statistics.median([p.failed_share for p in paths]) if paths else 0.0
    p99s = [p.connect["p99"] for p in paths if p.connect["p99"] is not None]
    rtts = [p.rtt["p99"] for p in paths if p.rtt["p99"] is not None]
    out = [
        f"{len(degraded)} of {len(paths)} paths degraded (more than "
        f"{pct(t['path_slow_share'])} of samples above {t['slow_ms']:g} ms, or more than "
        f"{pct(t['path_loss_share'])} failed)",
        f"median path: {pct(slow)} of samples above {t['slow_ms']:g} ms, {pct(loss)} failed",
    ]
    if p99s:
        out.append(f"median connect p99 {statistics.median(p99s):.2f} ms, worst {max(p99s):.2f} ms")
    if rtts:
        out.append(
            f"median round-trip p99 {statistics.median(rtts):.2f} ms, worst {max(rtts):.2f} ms"
        )
    retrans = [
        (p.measurement.tcp.get("RetransSegs", 0), p.measurement.tcp.get("OutSegs", 0))
        for p in proxies
        if p.measurement and p.measurement.tcp.get("OutSegs")
    ]
    if retrans:
        r, o = sum(r for r, _ in retrans), sum(o for _, o in retrans)
        out.append(f"TCP retransmissions since boot on the proxies: {r} of {o} segments")
    return out


def _network_runbook(proxies: Sequence[ProxyReport], t: Mapping[str, float]) -> str:
    """Clients failing to reach most proxies is the cluster-wide failure; slowness alone is not."""
    ops = [p.operator_path for p in proxies if p.operator_path and p.operator_path.samples]
    failing = [s for s in ops if s.failed_share > t["path_loss_share"]]
    return "cluster-wide-failure" if ops and len(failing) * 2 > len(ops) else "network-degradation"


def _unhealthy_proxies(
    proxies: Sequence[ProxyReport], t: Mapping[str, float], is_bad: Callable[[PathStats], bool]
) -> tuple[list[str], list[str]]:
    names: list[str] = []
    evidence: list[str] = []
    counts = {p.name: p.established for p in proxies if p.established is not None}
    for p in proxies:
        own = counts.get(p.name)
        others = [n for name, n in counts.items() if name != p.name]
        if own is not None and others:
            median = statistics.median(others)
            if own >= t["overload_min_connections"] and own >= t["overload_factor"] * max(
                median, 1
            ):
                names.append(p.name)
                evidence.append(
                    f"{p.name}: {own} established connections, "
                    f"the other proxies' median is {median:g}"
                )
                continue
        op = p.operator_path
        if p.error and op and op.samples and op.failed_share >= t["backend_fail_share"]:
            names.append(p.name)
            evidence.append(
                f"{p.name}: unreachable ({p.error}) and its port fails "
                f"{pct(op.failed_share)} of probes"
            )
            continue
        own_paths = [s for s in p.paths() if s.samples]
        bad = [s for s in own_paths if is_bad(s)]
        # Clients see a proxy through its port: a bad machine shows there, and on most of
        # its backend paths too (one slow path alone is noise or a backend's problem).
        client_view_bad = op is not None and op in bad
        if client_view_bad and len(bad) * 2 > len(own_paths) and len(proxies) > 1:
            names.append(p.name)
            evidence.append(
                f"{p.name}: {len(bad)} of {len(own_paths)} of its paths degraded "
                "while most of the cluster's are not"
            )
    return names, evidence
