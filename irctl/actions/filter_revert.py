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


def block_history(ctx: Context, ids: set[str]) -> tuple[str | None, set[str]]:
    """From the journal: the cluster the block of `ids` went to, and the hosts (by name)
    where a successful `nft.revert` of all of `ids` came after that block."""
    cluster, applied_at = None, 0
    done: dict[str, int] = {}
    intents: dict[int, dict[str, Any]] = {}
    for rec in ctx.journal.records():
        event, action = rec.get("event"), rec.get("action")
        raw = rec.get("params")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if event == "intent" and action == "nft.block" and ids & set(params.get("filter_ids", [])):
            applied_at, cluster = int(rec["seq"]), params.get("cluster") or cluster
        elif event == "intent" and action == "nft.revert":
            intents[int(rec["seq"])] = {**rec, "params": params}
        elif event == "result" and action == "nft.revert" and rec.get("ok"):
            intent = intents.get(int(rec.get("intent_seq") or 0))
            if intent is not None and ids <= set(intent["params"].get("filter_ids") or []):
                for name in intent.get("targets") or []:
                    done[str(name)] = int(intent["seq"])
    return cluster, {name for name, seq in done.items() if seq > applied_at}


def current_addresses(ctx: Context, cluster: str | None) -> set[str] | None:
    """The cluster's proxies as they are now (by address); None when that cannot be told."""
    from irctl.errors import IrctlError

    if not cluster:
        return None
    try:
        return {h.address for h in cluster_hosts(ctx, cluster)}
    except InputError:  # the cluster has no proxies left at all
        return set()
    except IrctlError:  # discovery failed: try every recorded host rather than guess
        return None


def undo_block(ctx: Context, record: dict[str, Any]) -> Outcome:
    """`filter.block`'s undo, as `filter revert` would: skip what the fleet no longer holds.

    A filter already reverted (the journal has a later `nft.revert` of it on that host) or
    on a host that is no longer one of the cluster's proxies (replaced, terminated) needs no
    SSH; trying would only time out on an address that is gone.
    """
    from irctl.filters import fleet

    ids = set(record["filter_ids"])
    hosts = fleet.host_refs(record.get("hosts") or [])
    notes: list[str] = []
    journaled_cluster, reverted = block_history(ctx, ids)
    if skipped := [h.name for h in hosts if h.name in reverted]:
        notes.append(f"already reverted on {', '.join(skipped)}")
    hosts = [h for h in hosts if h.name not in reverted]
    cluster = record.get("cluster") or journaled_cluster
    current = current_addresses(ctx, cluster) if hosts else None
    if current is not None:
        if gone := [h.name for h in hosts if h.address not in current]:
            notes.append(f"{', '.join(gone)} no longer in {cluster}'s proxies")
        hosts = [h for h in hosts if h.address in current]
    note = "; ".join(notes)
    if not hosts:
        summary = f"reverted {', '.join(sorted(ids))}: nothing left to remove ({note})"
        return Outcome(
            ok=True,
            output={"filter_ids": sorted(ids), "removed": {}, "note": note, "summary": summary},
            summary=summary,
        )
    outcome = revert_filters(ctx, ids, hosts)
    if note and outcome.ok:
        outcome.summary = f"{outcome.summary}; {note}"
        outcome.output = {**(outcome.output or {}), "skipped": note, "summary": outcome.summary}
    return outcome


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
            summary=f"revert {', '.join(sorted(ids))} (undoes the block): {found} element(s) "
            "on the hosts" + ("" if found else " (already expired or reverted)"),
            details=details,
            targets=[h.name for h in hosts],
            # A revert is itself the undo: no "irreversible" warning on taking a filter down.
            reversible=True,
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
