"""Gather everything diagnosis needs, at once and bounded, then classify it.

Three things run side by side: the operator-side probe (a child process, see
`irctl.providers.probe`), memcached stats of every backend (a thread), and one SSH
exec per proxy with the measurement script (the SSH provider's bounded fan-out).
An unreachable proxy or backend becomes a row with its error, never an exception.
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from irctl.diagnosis.classify import classify
from irctl.diagnosis.latency import Sample, TimerLag, summarize
from irctl.diagnosis.measure import parse_measurement, probe_budget, remote_script
from irctl.diagnosis.model import BackendReport, ProxyReport, thresholds_for
from irctl.diagnosis.report import build_report
from irctl.errors import InputError, IrctlError, one_line

if TYPE_CHECKING:
    from irctl.actions.base import Context
    from irctl.inventory import Proxy
    from irctl.providers.probe import ProbeResult
    from irctl.providers.ssh import HostResult

OPERATOR = "operator"
_ONE_PROXY = "one proxy measured: no comparison with the other proxies (overload) was made"


@dataclass(frozen=True)
class Options:
    samples: int = 20  # operator -> each proxy port
    backend_samples: int = 10  # each proxy -> each backend
    timeout: float = 0.5  # per sample: a connect plus one round trip
    top_clients: int = 10
    concurrency: int | None = None  # SSH fan-out; the inventory's ssh.concurrency by default
    thresholds: dict[str, float] = field(default_factory=dict)


def diagnose(
    ctx: Context, cluster: str, options: Options, only: str | None = None
) -> dict[str, Any]:
    """Measure `cluster` (or just the proxy `only`) and return the report runbooks branch on."""
    from irctl.discovery import find_proxy, proxies_for

    spec = ctx.inventory.cluster(cluster)
    thresholds = thresholds_for(spec.thresholds, options.thresholds)
    proxies = proxies_for(ctx, cluster)
    if only is not None:
        proxies = [find_proxy(proxies, cluster, only)]
    if not proxies:
        raise InputError(f"cluster {cluster!r} has no proxies", "add proxies to the inventory")
    shard_of = {server: shard.name for shard in spec.shards for server in shard.servers}
    started = time.monotonic()

    probe = _start_probe(ctx, proxies, spec.proxy_port, options)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="diagnose-stats") as pool:
            stats_future = pool.submit(_backend_stats, ctx, list(shard_of))
            ssh_results = _measure_proxies(ctx, proxies, spec.proxy_port, list(shard_of), options)
            backends = [
                BackendReport(server, shard_of[server], **found)
                for server, found in stats_future.result().items()
            ]
        ctx.check_cancelled()
    except BaseException:
        # Cancelled or broken: the probe child must not outlive the step.
        if not isinstance(probe, BaseException):
            probe.cancel()
        raise
    operator_samples, operator_lag, probe_error = _finish_probe(probe)

    reports = []
    for proxy, result in zip(proxies, ssh_results, strict=True):
        report = _proxy_report(proxy, result, thresholds["slow_ms"], options.backend_samples)
        if proxy.name in operator_samples:
            report.operator_path = summarize(
                OPERATOR,
                f"{proxy.address}:{spec.proxy_port}",
                operator_samples[proxy.name],
                thresholds["slow_ms"],
            )
        reports.append(report)
    verdict = classify(
        reports,
        backends,
        allowlist=ctx.inventory.allowlist,
        thresholds=thresholds,
        operator_timer=TimerLag.of(operator_lag, thresholds["slow_ms"]),
    )
    return build_report(
        cluster=cluster,
        verdict=verdict,
        proxies=reports,
        backends=backends,
        thresholds=thresholds,
        duration_ms=int((time.monotonic() - started) * 1000),
        notes=[n for n in (probe_error, only and _ONE_PROXY) if n],
    )


def _start_probe(ctx: Context, proxies: list[Proxy], port: int, options: Options) -> Any:
    from irctl.providers.probe import ProbeProvider, ProbeTarget

    targets = [ProbeTarget(p.name, p.address, port) for p in proxies]
    try:
        return ctx.provider(ProbeProvider).start(
            targets, samples=options.samples, timeout=options.timeout
        )
    except (IrctlError, OSError) as exc:
        return exc


def _finish_probe(probe: Any) -> tuple[dict[str, list[Sample]], list[float], str | None]:
    if isinstance(probe, BaseException):
        return {}, [], f"operator-side probe not run: {one_line(str(probe))}"
    try:
        result: ProbeResult = probe.wait()
    except IrctlError as exc:
        return {}, [], f"operator-side probe failed: {exc.message}"
    samples = {
        name: [Sample(connect_ms=c, rtt_ms=r, failed=e) for c, r, e in raw]
        for name, raw in result.paths.items()
    }
    return samples, result.timer_lag_ms, None


def _backend_stats(ctx: Context, servers: list[str]) -> dict[str, dict[str, Any]]:
    if not servers:
        return {}
    from irctl.providers.memcached import MemcachedProvider

    found = ctx.provider(MemcachedProvider).stats_many(servers)
    return {
        server: (
            {"error": one_line(str(value.message))}
            if isinstance(value, IrctlError)
            else {"stats": value}
        )
        for server, value in found.items()
    }


def _measure_proxies(
    ctx: Context, proxies: list[Proxy], port: int, servers: list[str], options: Options
) -> list[HostResult]:
    from irctl.providers.ssh import HostRef, SshProvider

    # One script per proxy: its timer control connects to its own address.
    scripts = {
        p.name: remote_script(
            port,
            servers,
            top=options.top_clients,
            samples=options.backend_samples,
            timeout=options.timeout,
            own_address=p.address,
        )
        for p in proxies
    }
    ssh = ctx.provider(SshProvider)
    # The probe's worst case (every sample timing out) plus room for a slow login.
    budget = max(ssh.command_timeout, probe_budget(options.backend_samples, options.timeout) + 10)
    hosts = [HostRef(p.name, p.address, p.ssh_port) for p in proxies]
    landed_count = itertools.count(1)  # next() is atomic: results land on worker threads
    with ctx.ui.progress(f"measuring {len(hosts)} proxies", total=len(hosts)) as bar:

        def landed(_: HostResult) -> None:
            bar.update(completed=next(landed_count))

        return ssh.run_many(
            hosts,
            ["sh", "-s"],
            stdin=lambda h: scripts[h.name],
            timeout=budget,
            concurrency=options.concurrency,
            on_result=landed,
        )


def _proxy_report(proxy: Proxy, result: HostResult, slow_ms: float, samples: int) -> ProxyReport:
    report = ProxyReport(proxy.name, proxy.address)
    if result.error is not None or result.result is None:
        report.error = one_line(result.error or "no result", 300)
        return report
    out = result.result
    m = parse_measurement(out.stdout, samples)
    if not m.complete and out.exit_status != 0:
        report.error = one_line(f"exit {out.exit_status}: {out.stderr or out.stdout}", 300)
    report.measurement = m
    report.probe_note = m.probe_unavailable and f"cannot probe backends: {m.probe_unavailable}"
    report.timer = TimerLag.of(m.timer_lag_ms, slow_ms)
    report.backend_paths = {
        server: summarize(proxy.name, server, got, slow_ms)
        for server, got in m.backend_samples.items()
    }
    return report
