"""`filter.revert`: remove filters by id from the hosts; also how `filter.block` undoes itself.

Idempotent: an expired or already reverted filter succeeds with a note. An id that
neither the hosts nor this journal know is refused, so a typo cannot "succeed".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from irctl.actions.base import BaseAction, Context, Effect, Outcome, Plan
from irctl.actions.base import Params as BaseParams
from irctl.actions.ssh import cluster_hosts
from irctl.errors import InputError
from irctl.journal import aggregate_errors

if TYPE_CHECKING:
    from irctl.providers.ssh import HostRef


class RevertParams(BaseParams):
    ids: list[str] | str = Field(min_length=1)
    cluster: str | None = None
    hosts: list[str] | None = None


def journaled_revert(
    ctx: Context, hosts: list[HostRef], ids: set[str]
) -> tuple[dict[str, int], dict[str, str]]:
    """Delete `ids` on `hosts` as one `nft.revert` mutation: (removed, errors) by host."""
    from irctl.filters import fleet
    from irctl.providers.ssh import SshProvider

    names = [h.name for h in hosts]
    with ctx.mutation("nft.revert", targets=names, params={"filter_ids": sorted(ids)}) as m:
        removed, errors = fleet.revert_on(ctx.provider(SshProvider), hosts, ids)
        m.result(
            ok=not errors,
            filter_ids=sorted(ids),
            removed=removed,
            errors=aggregate_errors(list(errors.items())) if errors else None,
        )
    return removed, errors


def revert_filters(ctx: Context, ids: set[str], hosts: list[HostRef]) -> Outcome:
    """Remove every element carrying `ids` from `hosts`, journaled; idempotent."""
    removed, errors = journaled_revert(ctx, hosts, ids)
    output = {"filter_ids": sorted(ids), "removed": removed, "errors": errors}
    if errors:
        return Outcome.failed(
            f"revert failed on {len(errors)} host(s): "
            + "; ".join(f"{n}: {e}" for n, e in list(errors.items())[:3]),
            **output,
        )
    total = sum(removed.values())
    note = "" if total else " (nothing left: already expired or reverted)"
    summary = f"reverted {', '.join(sorted(ids))}: {total} element(s) removed{note}"
    return Outcome(
        ok=True,
        output={**output, "note": note.strip(" ()") or None, "summary": summary},
        summary=summary,
        targets=[n for n, c in removed.items() if c],
    )


class FilterRevert(BaseAction):
    name = "filter.revert"
    description = "remove filters by id from the hosts (idempotent; expired filters succeed)"
    effect = Effect.MUTATE
    Params: ClassVar[type[BaseParams]] = RevertParams

    def _hosts(self, params: Any, ctx: Context) -> list[HostRef]:
        if params.cluster:
            return cluster_hosts(ctx, params.cluster, params.hosts)
        hosts: dict[str, HostRef] = {}
        for name in ctx.inventory.clusters:
            for h in cluster_hosts(ctx, name):
                hosts.setdefault(h.address, h)
        if not hosts:
            raise InputError("no proxies in the inventory", "pass --inventory with the clusters")
        return list(hosts.values())

    def _ids(self, params: Any) -> set[str]:
        from irctl.filters.spec import check_filter_id

        raw = [params.ids] if isinstance(params.ids, str) else params.ids
        return {check_filter_id(i) for i in raw}

    def plan(self, params: Any, ctx: Context) -> Plan:
        from irctl.filters import fleet
        from irctl.filters.nftables import revert_batch
        from irctl.providers.nft import Nft
        from irctl.providers.ssh import SshProvider

        ids = self._ids(params)
        hosts = self._hosts(params, ctx)
        self._check_known(ids, hosts, ctx)
        details: list[str] = []
        found = 0
        for r in Nft(ctx.provider(SshProvider)).read(hosts):
            if r.error:
                details.append(f"{r.host.name}: cannot be read: {r.error}")
                continue
            mine = fleet.present(r.value or [], ids)
            found += len(mine)
            if mine:
                details.append(f"nft -f - on {r.host.name}:")
                details += revert_batch(mine).rstrip("\n").split("\n")
        return Plan(
            summary=f"revert {', '.join(sorted(ids))}: {found} element(s) on the hosts"
            + ("" if found else " (already expired or reverted)"),
            details=details,
            targets=[h.name for h in hosts],
            data={"filter_ids": sorted(ids), "elements": found},
        )

    def _check_known(self, ids: set[str], hosts: list[HostRef], ctx: Context) -> None:
        """A mistyped id must not "succeed" while the real filter stays: refuse unknown ids."""
        from irctl.filters import fleet
        from irctl.filters.listing import journal_filter_ids
        from irctl.providers.nft import Nft
        from irctl.providers.ssh import SshProvider

        unseen = ids - journal_filter_ids(ctx.journal)
        if not unseen:
            return
        for r in Nft(ctx.provider(SshProvider)).read(hosts):
            unseen -= {e.info.id for e in fleet.present(r.value or [], unseen) if e.info}
        if unseen:
            raise InputError(
                f"no filter {', '.join(sorted(unseen))} on the hosts, and this journal never "
                "applied it",
                "check the id with `irctl filter list`; nothing was changed",
            )

    def run(self, params: Any, ctx: Context) -> Outcome:
        ids, hosts = self._ids(params), self._hosts(params, ctx)
        self._check_known(ids, hosts, ctx)
        return revert_filters(ctx, ids, hosts)
