"""`diagnose.cluster` and `diagnose.host`: measure proxies, backends and paths; name the incident.

Read-only, so they run for real in drills. The output carries the keys runbooks branch
on (`classification`, `unhealthy_proxies`, `storm_sources`, `failed_shards`,
`recommended_runbook`); thresholds come from the defaults, the cluster's `thresholds`
in the inventory, then the step's `thresholds` (docs/diagnose.md lists them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from irctl.actions.base import BaseAction, Context, Effect, Outcome, Plan
from irctl.actions.base import Params as BaseParams
from irctl.diagnosis.model import thresholds_for
from irctl.durations import parse_duration
from irctl.errors import InputError

if TYPE_CHECKING:
    from irctl.diagnosis.collect import Options


class DiagnoseParams(BaseParams):
    cluster: str
    samples: int = Field(default=20, ge=1, le=200)
    backend_samples: int = Field(default=10, ge=0, le=100)
    timeout: float = Field(default=0.5, gt=0, le=10)
    top_clients: int = Field(default=10, ge=1, le=100)
    concurrency: int | None = Field(default=None, ge=1, le=512)
    thresholds: dict[str, float] = Field(default_factory=dict)

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        # ValueError, not InputError: pydantic then names the field in its message.
        try:
            return parse_duration(v)
        except InputError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("thresholds")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        try:
            thresholds_for(v)  # refuses unknown keys and negative values up front
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return v


class DiagnoseHostParams(DiagnoseParams):
    proxy: str


def options_for(params: DiagnoseParams) -> Options:
    """The step's params as the collector's options (shared with `irctl diagnose`)."""
    from irctl.diagnosis.collect import Options

    return Options(
        samples=params.samples,
        backend_samples=params.backend_samples,
        timeout=params.timeout,
        top_clients=params.top_clients,
        concurrency=params.concurrency,
        thresholds=dict(params.thresholds),
    )


def _plan(params: DiagnoseParams, ctx: Context, what: str) -> Plan:
    spec = ctx.inventory.cluster(params.cluster)
    servers = [s for shard in spec.shards for s in shard.servers]
    return Plan(
        summary=f"measure {what} of cluster {params.cluster} (read-only) and name the incident",
        details=[
            "per proxy, one SSH exec of `sh -s`: ss (established on port "
            f"{spec.proxy_port}, top {params.top_clients} clients), /proc/net/sockstat, "
            "/proc/net/netstat, /proc/net/snmp, /proc/loadavg, /proc/sys/fs/file-nr",
            f"proxy -> backend probe on each proxy: {params.backend_samples} samples to each of "
            f"{len(servers)} backends (bash /dev/tcp, memcached `version`)",
            f"operator -> proxy probe: {params.samples} samples per proxy port",
            f"memcached stats of {len(servers)} backends",
        ],
        targets=[params.cluster],
    )


def _outcome(report: dict[str, Any]) -> Outcome:
    return Outcome(
        ok=True,
        output=report,
        summary=report["summary"],
        targets=[h["name"] for h in report["hosts"]],
    )


class DiagnoseCluster(BaseAction):
    name = "diagnose.cluster"
    description = "measure a cluster's proxies, backends and network paths; classify the incident"
    effect = Effect.READ
    Params: ClassVar[type[BaseParams]] = DiagnoseParams

    def plan(self, params: Any, ctx: Context) -> Plan:
        return _plan(params, ctx, "every proxy")

    def run(self, params: Any, ctx: Context) -> Outcome:
        from irctl.diagnosis.collect import diagnose

        return _outcome(diagnose(ctx, params.cluster, options_for(params)))


class DiagnoseHost(BaseAction):
    name = "diagnose.host"
    description = "measure one proxy (connections, clients, paths) and classify what it shows"
    effect = Effect.READ
    Params: ClassVar[type[BaseParams]] = DiagnoseHostParams

    def plan(self, params: Any, ctx: Context) -> Plan:
        return _plan(params, ctx, f"proxy {params.proxy}")

    def run(self, params: Any, ctx: Context) -> Outcome:
        from irctl.diagnosis.collect import diagnose

        return _outcome(diagnose(ctx, params.cluster, options_for(params), only=params.proxy))
