"""The diagnosis result as runbooks and `--output json` see it.

Keys runbooks branch on: `classification`, `unhealthy_proxies`, `storm_sources`,
`failed_shards`, `recommended_runbook`; `evidence` says why; `impact` says what it means
for customers in words fit for a status page; `hosts` and `backends` hold the
measurements; `findings` lists everything notable, verdict or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from irctl.diagnosis.model import BackendReport, ProxyReport, Verdict

# Customers read the status page: no internal class names, no host names.
IMPACT = {
    "healthy": "no current impact",
    "single_proxy_overload": "an overloaded cache proxy",
    "client_storm": "an unusual surge of client connections",
    "cluster_wide_network": "network degradation between our cache servers",
    "backend_failure": "a failed cache server",
    "unknown": "a problem whose cause we are still identifying",
}


def host_status(proxy: ProxyReport, verdict: Verdict) -> str:
    if proxy.name in verdict.unhealthy_proxies:
        return "unhealthy"
    if proxy.error:
        return "unreachable"
    return "ok"


def build_report(
    *,
    cluster: str,
    verdict: Verdict,
    proxies: Sequence[ProxyReport],
    backends: Sequence[BackendReport],
    thresholds: dict[str, float],
    duration_ms: int,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    findings = [f.to_dict() for f in verdict.findings]
    findings += [{"kind": "note", "subject": cluster, "message": n} for n in notes]
    return {
        "cluster": cluster,
        "classification": verdict.classification,
        "recommended_runbook": verdict.recommended_runbook,
        "evidence": verdict.evidence,
        "unhealthy_proxies": verdict.unhealthy_proxies,
        "storm_sources": verdict.storm_sources,
        "failed_shards": verdict.failed_shards,
        "affected_shards": verdict.affected_shards or verdict.failed_shards,
        "summary": summary_line(verdict),
        "impact": IMPACT.get(verdict.classification, IMPACT["unknown"]),
        "paths": {
            "total": verdict.paths_total,
            "degraded": verdict.paths_degraded,
        },
        "hosts": [{**p.to_dict(), "status": host_status(p, verdict)} for p in proxies],
        "backends": [b.to_dict() for b in backends],
        "findings": findings,
        "thresholds": thresholds,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "duration_ms": duration_ms,
    }


def summary_line(verdict: Verdict) -> str:
    names = verdict.unhealthy_proxies or verdict.storm_sources or verdict.failed_shards
    text = verdict.classification + (f" ({', '.join(names)})" if names else "")
    if verdict.recommended_runbook:
        text += f"; run {verdict.recommended_runbook}"
    return text
