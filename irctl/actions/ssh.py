"""`ssh.run`: run one command (an argv list, never a shell string) on chosen hosts of a cluster.

The runbook declares `effect: read` (runs in drills too) or `effect: mutate` (planned
only in drills, journaled intent/result when live). Hosts are proxy names, addresses
or instance ids of the cluster; all proxies when omitted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from irctl.actions.base import BaseAction, Context, Effect, Outcome, Plan
from irctl.actions.base import Params as BaseParams
from irctl.errors import InputError

if TYPE_CHECKING:
    from irctl.providers.ssh import HostRef, HostResult

MAX_OUTPUT_PER_HOST = 4000  # the journal keeps outputs bounded; the full text is for the screen


def cluster_hosts(ctx: Context, cluster: str, selected: list[str] | None = None) -> list[HostRef]:
    """HostRefs for `selected` proxies of `cluster` (names, addresses or ids), or all of them."""
    from irctl.discovery import find_proxy, proxies_for
    from irctl.providers.ssh import HostRef

    # The cluster's proxies as they are now: discovered ones (EC2 tags) and replacements too.
    current = proxies_for(ctx, cluster)
    proxies = (
        [find_proxy(current, cluster, ref) for ref in dict.fromkeys(selected)]
        if selected
        else current
    )
    if not proxies:
        raise InputError(
            f"cluster {cluster!r} has no proxies",
            "list them under clusters.<name>.proxies (or set discover), or name the hosts",
        )
    return [HostRef(name=p.name, address=p.address, port=p.ssh_port) for p in proxies]


def result_row(r: HostResult) -> dict[str, Any]:
    if r.result is None:
        return {"host": r.host.name, "ok": False, "error": r.error}
    return {
        "host": r.host.name,
        "ok": r.ok,
        "exit_status": r.result.exit_status,
        "stdout": r.result.stdout[-MAX_OUTPUT_PER_HOST:],
        "stderr": r.result.stderr[-MAX_OUTPUT_PER_HOST:],
        "duration_ms": r.result.duration_ms,
    }


class SshRunParams(BaseParams):
    cluster: str
    argv: list[str] = Field(min_length=1)
    effect: Literal["read", "mutate"]
    hosts: list[str] | None = None
    stdin: str | None = None
    timeout: float | None = Field(default=None, gt=0, le=3600)
    concurrency: int | None = Field(default=None, ge=1, le=512)

    @field_validator("argv")
    @classmethod
    def _words(cls, v: list[str]) -> list[str]:
        if any("\0" in word for word in v) or not v[0]:
            raise ValueError("argv words must be non-empty text without NUL bytes")
        return v


class SshRun(BaseAction):
    name = "ssh.run"
    description = "run a command (argv list) over SSH on chosen hosts of a cluster"
    effect = Effect.READ
    Params: ClassVar[type[BaseParams]] = SshRunParams

    def effect_for(self, params: Any) -> Effect:
        return Effect.MUTATE if params.effect == "mutate" else Effect.READ

    def plan(self, params: Any, ctx: Context) -> Plan:
        import shlex

        hosts = cluster_hosts(ctx, params.cluster, params.hosts)
        command = shlex.join(params.argv)
        return Plan(
            summary=f"run `{command}` on {len(hosts)} host(s) of {params.cluster}"
            f" ({params.effect})",
            details=[f"{h.label}: {command}" for h in hosts],
            targets=[h.name for h in hosts],
            data={"argv": params.argv, "hosts": [h.name for h in hosts], "effect": params.effect},
        )

    def run(self, params: Any, ctx: Context) -> Outcome:
        from irctl.providers.ssh import SshProvider, failure_summary

        hosts = cluster_hosts(ctx, params.cluster, params.hosts)
        ssh = ctx.provider(SshProvider)
        names = [h.name for h in hosts]

        def fan_out() -> list[HostResult]:
            with ctx.ui.progress(f"ssh {params.argv[0]}", total=len(hosts)) as bar:
                done = 0

                def tick(_: HostResult) -> None:
                    nonlocal done
                    done += 1
                    bar.update(completed=done)

                return ssh.run_many(
                    hosts,
                    params.argv,
                    stdin=params.stdin,
                    timeout=params.timeout,
                    concurrency=params.concurrency,
                    on_result=tick,
                )

        if params.effect == "mutate":
            with ctx.mutation(
                "ssh.run", targets=names, params={"argv": params.argv, "cluster": params.cluster}
            ) as m:
                results = fan_out()
                failed = [r for r in results if not r.ok]
                m.result(
                    ok=not failed,
                    error=f"{len(failed)} of {len(results)} host(s) failed" if failed else None,
                    failures=failure_summary(results) if failed else None,
                )
        else:
            results = fan_out()
        failed = [r for r in results if not r.ok]
        output: dict[str, Any] = {
            "hosts": [result_row(r) for r in results],
            "ok_hosts": [r.host.name for r in results if r.ok],
            "failed_hosts": [r.host.name for r in failed],
        }
        if failed:
            summary = failure_summary(results)
            output["failures"] = summary
            outcome = Outcome.failed(
                f"{len(failed)} of {len(results)} host(s) failed: "
                f"{next(iter(summary['by_message']), '')}",
                **output,
            )
            outcome.targets = names
            return outcome
        return Outcome(
            ok=True, output=output, summary=f"ran on {len(results)} host(s)", targets=names
        )
