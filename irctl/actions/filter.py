"""`filter.block`: temporary nftables blocks on a cluster's proxies (`filter.revert` and
undo live in `irctl.actions.filter_revert`; both are importable from here).

See docs/filters.md. The rules (allowlist, /0, breadth, SSH port, the operator's own
address, TTL limits) live in `irctl.filters.spec`; the fleet work in `irctl.filters.fleet`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from irctl.actions.base import BaseAction, Context, Effect, Outcome, Plan, Reconciled
from irctl.actions.base import Params as BaseParams
from irctl.actions.filter_revert import (
    FilterRevert,
    RevertParams,
    journaled_revert,
    revert_filters,
    undo_block,
)
from irctl.actions.ssh import cluster_hosts
from irctl.journal import aggregate_errors

if TYPE_CHECKING:
    from irctl.providers.ssh import HostRef

# The registry, tests and benches import both actions from here.
__all__ = ["BlockParams", "FilterBlock", "FilterRevert", "RevertParams", "revert_filters"]


class BlockParams(BaseParams):
    cluster: str
    cidrs: list[str] | str
    reason: str
    ttl: str | int | None = None  # default 30m
    ports: list[int | str] | None = None  # default: the cluster's proxy_port
    action: Literal["reject", "drop"] = "reject"
    permanent: bool = False
    force: bool = False
    hosts: list[str] | None = None  # proxy names/addresses/ids; default all of the cluster
    kill_existing: bool = False
    partial_ok: bool = False


def _cut(output: dict[str, Any]) -> int:
    """Connections `ss -K` cut: those seen before the block less those still open after it."""
    before = output["blast_radius"]
    remaining = output["kill"]["remaining"]
    return sum(max(0, n - (remaining.get(h) or 0)) for h, n in before.items() if h in remaining)


class FilterBlock(BaseAction):
    name = "filter.block"
    description = "block CIDRs on the service ports of a cluster's proxies (expires in the kernel)"
    effect = Effect.MUTATE
    reversible = True
    Params: ClassVar[type[BaseParams]] = BlockParams

    def plan(self, params: Any, ctx: Context) -> Plan:
        from irctl.filters import fleet

        hosts = cluster_hosts(ctx, params.cluster, params.hosts)
        pf = fleet.preflight(params, ctx, hosts)
        names = [h.name for h in pf.ready_hosts]
        specs = pf.specs
        ttl = "permanent" if specs[0].ttl == 0 else f"{specs[0].ttl}s"
        verb = "reject with tcp reset" if params.action == "reject" else "drop"
        summary = (
            f"block {', '.join(str(s.cidr) for s in specs)} on port(s) "
            f"{','.join(str(p) for p in specs[0].ports)} of {len(names)} host(s) of "
            f"{params.cluster} for {ttl} ({verb}); ids {', '.join(s.id for s in specs)}"
        )
        batch = pf.batch
        details = [f"nft -f - on each of {', '.join(names)} (the same batch on every host):"]
        details += batch.rstrip("\n").split("\n")
        warnings = fleet.blast_radius_lines(pf, params.kill_existing, ctx.dry_run)
        if pf.errors and not params.partial_ok:
            warnings.append("unreadable hosts: the block will not be applied anywhere")
        return Plan(
            summary=summary,
            details=details,
            targets=names,
            reversible=True,
            data={
                "filter_ids": [s.id for s in specs],
                "filters": pf.filters(names),
                "batches": {n: batch for n in names},
                "blast_radius": {n: pf.views[n].established for n in names},
                "unreachable": pf.errors,
            },
            warnings=warnings,
        )

    def run(self, params: Any, ctx: Context) -> Outcome:
        from irctl.filters import fleet
        from irctl.providers.nft import Nft
        from irctl.providers.ssh import SshProvider

        hosts = cluster_hosts(ctx, params.cluster, params.hosts)
        pf = fleet.preflight(params, ctx, hosts)
        ids = [s.id for s in pf.specs]
        if pf.errors and not params.partial_ok:
            return Outcome.failed(
                f"{len(pf.errors)} host(s) unreadable before applying, nothing was applied: "
                + "; ".join(f"{n}: {e}" for n, e in list(pf.errors.items())[:3]),
                unreachable=pf.errors,
                applied_hosts=[],
            )
        ssh = ctx.provider(SshProvider)
        nft = Nft(ssh)
        targets = pf.ready_hosts
        names = [h.name for h in targets]
        batch = pf.batch
        with ctx.mutation(
            "nft.block",
            targets=names,
            params={"filter_ids": ids, "cluster": params.cluster, "batch": batch},
        ) as m:
            failed = fleet.apply_and_verify(nft, targets, pf)
            applied = [h for h in targets if h.name not in failed]
            # nft rejects a batch as a whole; any other failure (connection lost after
            # sending, bad read-back) may have left elements there: treat it as applied
            # for rollback and undo, which only delete what is present.
            in_doubt = [
                h for h in targets if h.name in failed and "nft rejected" not in failed[h.name]
            ]
            failures = aggregate_errors(list(failed.items())) if failed else None
            if failed and not params.partial_ok:
                m.result(ok=False, error=f"{len(failed)} host(s) failed", failures=failures)
            else:
                m.result(
                    ok=True,
                    cluster=params.cluster,
                    filters=pf.filters([h.name for h in applied]),
                    failures=failures,
                )
        if failed and not params.partial_ok:
            rolled, rb_errors = self._roll_back(ctx, applied + in_doubt, set(ids))
            return Outcome.failed(
                f"{len(failed)} of {len(targets)} host(s) failed ("
                + "; ".join(f"{n}: {e}" for n, e in list(failed.items())[:2])
                + f"); rolled back {len(rolled)} host(s)"
                + (f", rollback FAILED on {', '.join(rb_errors)}" if rb_errors else ""),
                failed_hosts=failed,
                rolled_back=rolled,
                rollback_errors=rb_errors,
                applied_hosts=[],
            )
        output: dict[str, Any] = {
            "filter_ids": ids,
            "filters": pf.filters([h.name for h in applied]),
            "applied_hosts": [h.name for h in applied],
            "failed_hosts": {**pf.errors, **failed},
            "blast_radius": {n: pf.views[n].established for n in names},
        }
        if params.kill_existing:
            output["kill"] = self._kill(ctx, nft, applied, pf)
        summary = f"blocked {len(ids)} CIDR(s) on {len(applied)} host(s): {', '.join(ids)}" + (
            f"; {len(output['failed_hosts'])} host(s) failed" if output["failed_hosts"] else ""
        )
        if params.kill_existing:
            summary += f"; {_cut(output)} established connection(s) were cut"
        output["summary"] = summary
        return Outcome(
            ok=True,
            output=output,
            summary=summary,
            targets=[h.name for h in applied],
            undo={
                "filter_ids": ids,
                "hosts": fleet.host_dicts(applied + in_doubt),
                "cluster": params.cluster,
            },
        )

    def _roll_back(
        self, ctx: Context, hosts: list[HostRef], ids: set[str]
    ) -> tuple[list[str], dict[str, str]]:
        if not hosts:
            return [], {}
        removed, errors = journaled_revert(ctx, hosts, ids)
        return sorted(n for n, count in removed.items() if count), errors

    def _kill(self, ctx: Context, nft: Any, hosts: list[HostRef], pf: Any) -> dict[str, Any]:
        from irctl.providers.ssh import SshProvider

        cidrs = [s.cidr for s in pf.specs]
        ports = list(pf.specs[0].ports)
        names = [h.name for h in hosts]
        with ctx.mutation("ss.kill", targets=names, params={"cidrs": [str(c) for c in cidrs]}) as m:
            outcomes = ctx.provider(SshProvider).each(
                hosts, lambda h: nft.kill_one(h, cidrs, ports)
            )
            remaining = {o.host.name: o.value for o in outcomes if o.value is not None}
            errors = {o.host.name: o.error for o in outcomes if o.error}
            m.result(
                ok=not errors,
                remaining=remaining,
                errors=aggregate_errors(list(errors.items())) if errors else None,
            )
        stuck = {n: c for n, c in remaining.items() if c}
        if stuck:
            ctx.ui.warn(
                f"ss -K left {sum(stuck.values())} connection(s) open on {len(stuck)} host(s): "
                "the kernel needs CONFIG_INET_DIAG_DESTROY to cut them"
            )
        return {"remaining": remaining, "errors": errors, "unsupported": bool(stuck)}

    def undo(self, record: dict[str, Any], ctx: Context) -> Outcome:
        return undo_block(ctx, record)

    def reconcile(self, intent: dict[str, Any], ctx: Context) -> Reconciled:
        from irctl.filters import fleet, spec
        from irctl.providers.nft import Nft
        from irctl.providers.ssh import SshProvider

        params = BlockParams.model_validate(intent.get("params") or {})
        hosts = cluster_hosts(ctx, params.cluster, params.hosts)
        raw = [params.cidrs] if isinstance(params.cidrs, str) else params.cidrs
        ids = {
            spec.filter_id(str(intent.get("run_id")), intent.get("step"), intent.get("item"),
                           spec.parse_cidr(c))
            for c in raw
        }  # fmt: skip
        reads = Nft(ctx.provider(SshProvider)).read(hosts)
        if any(r.error for r in reads):
            return Reconciled("unknown", detail="some hosts cannot be read")
        with_ids = [r.host for r in reads if fleet.present(r.value or [], ids)]
        if not with_ids:
            return Reconciled("not_applied", detail="no host holds the filter")
        if len(with_ids) == len(hosts):
            return Reconciled(
                "applied",
                Outcome(
                    ok=True,
                    output={"filter_ids": sorted(ids)},
                    undo={
                        "filter_ids": sorted(ids),
                        "hosts": fleet.host_dicts(with_ids),
                        "cluster": params.cluster,
                    },
                ),
                detail=f"present on all {len(hosts)} host(s)",
            )
        return Reconciled("unknown", detail=f"present on {len(with_ids)} of {len(hosts)} host(s)")
