"""Storm sources: a few client addresses holding most of a cluster's (or a proxy's) connections."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from irctl.diagnosis.findings import pct
from irctl.diagnosis.latency import percentile
from irctl.diagnosis.model import Finding, ProxyReport


def _allowlisted(address: str, allowlist: Sequence[str]) -> bool:
    addr = ipaddress.ip_address(address)
    return any(addr in ipaddress.ip_network(c, strict=False) for c in allowlist)


def _as_cidr(address: str) -> str:
    addr = ipaddress.ip_address(address)
    return f"{addr}/{addr.max_prefixlen}"


def storm_sources(
    measured: Sequence[ProxyReport],
    allowlist: Sequence[str],
    t: Mapping[str, float],
    findings: list[Finding],
) -> tuple[list[str], list[str]]:
    total = sum(p.established or 0 for p in measured)
    if not total:
        return [], []
    per_client: dict[str, int] = {}
    for p in measured:
        assert p.measurement is not None
        for c in p.measurement.top_clients:
            per_client[c.address] = per_client.get(c.address, 0) + c.count
    distinct = max(sum(p.measurement.distinct_clients for p in measured if p.measurement), 1)
    listed = sum(per_client.values())
    # A typical client: the mean of those outside the top lists (the bulk); when every
    # client is listed, the lower quartile, so a few heavy clients cannot make themselves
    # look typical (with two clients the median would be half the storm).
    if distinct > len(per_client):
        typical = max(1.0, (total - listed) / (distinct - len(per_client)))
    else:
        typical = max(1.0, percentile(sorted(map(float, per_client.values())), 25))
    heavy = sorted(
        (
            a
            for a, n in per_client.items()
            if n >= t["storm_min_connections"] and n >= t["storm_factor"] * typical
        ),
        key=lambda a: -per_client[a],
    )
    allowed = [a for a in heavy if _allowlisted(a, allowlist)]
    for a in allowed:
        findings.append(
            Finding(
                "allowlisted_heavy_client",
                a,
                f"{a} holds {per_client[a]} connections but is allowlisted: "
                "never proposed for filtering",
            )
        )
    sources = [a for a in heavy if a not in allowed]
    if not sources or len(sources) > t["storm_max_sources"]:
        return [], []
    held = sum(per_client[a] for a in sources)
    worst_proxy_share = max(
        sum(c.count for c in p.measurement.top_clients if c.address in sources)
        / max(p.established or 0, 1)
        for p in measured
        if p.measurement
    )
    if held < t["storm_share"] * total and worst_proxy_share < t["storm_share"]:
        return [], []
    evidence = [
        f"{len(sources)} client address(es) hold {held} of {total} established connections "
        f"({pct(held / total)}); a typical client holds {typical:.0f}",
        *(f"{a}: {per_client[a]} connections" for a in sources),
    ]
    return [_as_cidr(a) for a in sources], evidence
