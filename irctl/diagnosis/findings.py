"""Findings: everything notable about hosts and backends, whether or not it decides the verdict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from irctl.diagnosis.latency import TimerLag
from irctl.diagnosis.model import BackendReport, Finding, ProxyReport

COUNTER_SHARE = 0.01  # of a since-boot counter's base (accepted connections, sent segments)


def pct(x: float) -> str:
    return f"{x * 100:.0f} %"


def late_timers(
    proxies: Sequence[ProxyReport],
    operator: TimerLag | None,
    t: Mapping[str, float],
    findings: list[Finding],
) -> set[str]:
    """Sources whose own timers fire late: their slow samples measure their CPU, not the wire."""
    late: set[str] = set()
    timers = [(p.name, p.timer) for p in proxies] + [("operator", operator)]
    for name, timer in timers:
        if timer is not None and timer.slow_share > t["path_slow_share"]:
            late.add(name)
            findings.append(
                Finding(
                    "late_timers",
                    name,
                    f"a 2 ms timer woke {timer.p90} ms late at p90 ({pct(timer.slow_share)} above "
                    f"{t['slow_ms']:g} ms): its slow samples are its own load, not the "
                    "network's (its failed samples still count)",
                )
            )
    return late


def host_findings(
    proxies: Sequence[ProxyReport],
    backends: Sequence[BackendReport],
    t: Mapping[str, float],
    findings: list[Finding],
) -> None:
    for p in proxies:
        if p.error:
            findings.append(Finding("unreachable", p.name, f"not measured: {p.error}"))
        if p.probe_note:
            findings.append(Finding("probe_unavailable", p.name, p.probe_note))
        m = p.measurement
        if m is None:
            continue
        if m.fds.get("max") and m.fds["allocated"] > t["fd_use_share"] * m.fds["max"]:
            findings.append(
                Finding(
                    "file_descriptors", p.name, f"{m.fds['allocated']} of {m.fds['max']} fds in use"
                )
            )
        # Counters since boot: only a share worth a look is a finding, not any non-zero.
        overflows, opens = m.tcp.get("ListenOverflows", 0), m.tcp.get("PassiveOpens", 0)
        if overflows and overflows > COUNTER_SHARE * max(opens, 1):
            findings.append(
                Finding(
                    "listen_overflows",
                    p.name,
                    f"ListenOverflows={overflows} ListenDrops={m.tcp.get('ListenDrops', 0)} "
                    f"against {opens} accepted connections since boot: the accept queue overflows",
                )
            )
        retrans, sent = m.tcp.get("RetransSegs", 0), m.tcp.get("OutSegs", 0)
        if sent and retrans > COUNTER_SHARE * sent:
            findings.append(
                Finding(
                    "retransmissions",
                    p.name,
                    f"{retrans} of {sent} TCP segments retransmitted since boot "
                    f"({pct(retrans / sent)})",
                )
            )
        if m.clients_error:
            findings.append(Finding("connections_uncounted", p.name, m.clients_error))
        if not m.complete:
            findings.append(Finding("partial", p.name, "the measurement script did not finish"))
    for b in backends:
        if b.error:
            findings.append(Finding("backend_unreachable", b.server, b.error))
        elif b.stat("rejected_connections"):
            findings.append(
                Finding(
                    "backend_rejected",
                    b.server,
                    f"rejected_connections={b.stat('rejected_connections')} "
                    f"(curr {b.stat('curr_connections')}, "
                    f"max {b.stat('max_connections')})",
                )
            )
