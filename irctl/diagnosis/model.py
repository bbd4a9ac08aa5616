"""What diagnosis knows about a cluster: per proxy, per backend, and the thresholds it judges by."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from irctl.diagnosis.latency import PathStats, TimerLag
from irctl.diagnosis.measure import HostMeasurement
from irctl.errors import InputError

# Defaults, overridable per cluster (`thresholds:` in the inventory) and per step (`thresholds`
# param). docs/diagnose.md explains each one.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "slow_ms": 5.0,  # a sample slower than this (connect or round trip) is slow
    "path_slow_share": 0.2,  # a path is degraded when more of its samples than this are slow
    "path_loss_share": 0.05,  # ... or when more than this share failed
    "network_paths_share": 0.5,  # cluster_wide_network: more than this share of paths degraded
    "unexplained_paths_share": 0.2,  # unknown: degraded paths no verdict explains
    "overload_factor": 3.0,  # a proxy with this many times the others' median connections
    "overload_min_connections": 500.0,  # ... and at least this many is overloaded
    "storm_min_connections": 500.0,  # a client with at least this many connections
    "storm_factor": 10.0,  # ... and this many times a typical client's is a storm source
    "storm_share": 0.5,  # storm sources together hold this share of a cluster's (or proxy's)
    "storm_max_sources": 5.0,  # more heavy clients than this is load, not a storm
    "backend_fail_share": 0.5,  # a backend path failing this share of samples is down from there
    "fd_use_share": 0.9,  # file descriptors in use above this share of the limit is a finding
}


def thresholds_for(*layers: Mapping[str, float] | None) -> dict[str, float]:
    """Defaults overlaid by each layer in turn; an unknown key or a negative value is refused."""
    out = dict(DEFAULT_THRESHOLDS)
    for layer in layers:
        for key, value in (layer or {}).items():
            if key not in DEFAULT_THRESHOLDS:
                raise InputError(
                    f"unknown diagnosis threshold {key!r}",
                    f"known thresholds: {', '.join(sorted(DEFAULT_THRESHOLDS))}",
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InputError(f"threshold {key} must be a number >= 0, not {value!r}")
            out[key] = float(value)
    return out


@dataclass
class ProxyReport:
    name: str
    address: str
    error: str | None = None  # why it could not be measured over SSH
    measurement: HostMeasurement | None = None
    operator_path: PathStats | None = None  # operator -> this proxy's client port
    backend_paths: dict[str, PathStats] = field(default_factory=dict)  # server -> stats
    probe_note: str | None = None  # why proxy -> backend could not be probed
    timer: TimerLag | None = None  # how late this host wakes a waiting process

    @property
    def established(self) -> int | None:
        m = self.measurement
        return m.established if m is not None and m.clients_error is None else None

    def paths(self) -> list[PathStats]:
        own = [self.operator_path] if self.operator_path else []
        return own + list(self.backend_paths.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "reachable": self.error is None,
            "error": self.error,
            **(self.measurement.to_dict() if self.measurement else {}),
            "operator_path": self.operator_path.to_dict() if self.operator_path else None,
            "backend_paths": [p.to_dict() for p in self.backend_paths.values()],
            "probe_note": self.probe_note,
            "timer_lag_ms": self.timer.to_dict() if self.timer else None,
        }


@dataclass
class BackendReport:
    server: str
    shard: str
    stats: dict[str, Any] | None = None
    error: str | None = None

    def stat(self, key: str) -> int | None:
        value = (self.stats or {}).get(key)
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "shard": self.shard,
            "reachable": self.error is None,
            "error": self.error,
            "curr_connections": self.stat("curr_connections"),
            "max_connections": self.stat("max_connections"),
            "rejected_connections": self.stat("rejected_connections"),
            "listen_disabled_num": self.stat("listen_disabled_num"),
        }


@dataclass
class Finding:
    kind: str
    subject: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "subject": self.subject, "message": self.message}


@dataclass
class Verdict:
    classification: str
    evidence: list[str] = field(default_factory=list)
    unhealthy_proxies: list[str] = field(default_factory=list)
    storm_sources: list[str] = field(default_factory=list)
    failed_shards: list[str] = field(default_factory=list)
    # Shards whose paths are failed or degraded: what "restore connectivity first" flushes.
    affected_shards: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    recommended_runbook: str | None = None
    paths_total: int = 0
    paths_degraded: int = 0
