"""`filter list`: the filters as the hosts hold them (`nft -j`), plus what the journal recalls.

The hosts are the truth: id, CIDR, ports, action, expiry, reason and operator all
come from the elements and their comments. The journal only adds filters that
no host holds any more (the kernel expired them: `state: expired`) and the full
reason when a comment had to cut it. A filter present on some hosts and not on
others, or with different expiries, is reported in `differences`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from irctl.filters.fleet import iso

if TYPE_CHECKING:
    from irctl.filters.nftables import Element
    from irctl.journal import Journal
    from irctl.providers.ssh import HostOutcome, HostRef

RECENT = 24 * 3600  # how long an expired filter stays in the list


@dataclass
class FilterListing:
    filters: list[dict[str, Any]] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)


def journal_filters(journal: Journal) -> dict[str, dict[str, Any]]:
    """Filters this journal saw applied (by id), minus those it saw reverted."""
    applied: dict[str, dict[str, Any]] = {}
    reverted: set[str] = set()
    for rec in journal.records():
        if rec.get("event") != "result" or not rec.get("ok"):
            continue
        outcome = journal.load_blob(rec.get("outcome")) or {}
        if rec.get("action") == "nft.block":
            for f in outcome.get("filters") or []:
                applied[f["id"]] = {**f, "cluster": outcome.get("cluster")}
        elif rec.get("action") == "nft.revert":
            removed = outcome.get("removed") or {}
            # A revert that found nothing (already expired) must not hide the expiry.
            if isinstance(removed, dict) and any(removed.values()):
                reverted.update(outcome.get("filter_ids") or [])
    return {k: v for k, v in applied.items() if k not in reverted}


def journal_filter_ids(journal: Journal) -> set[str]:
    """Every filter id this journal recorded an apply intent for (applied or not)."""
    ids: set[str] = set()
    for rec in journal.records():
        if rec.get("event") == "intent" and rec.get("action") == "nft.block":
            ids.update((rec.get("params") or {}).get("filter_ids") or [])
    return ids


def build_listing(
    hosts: list[HostRef],
    reads: list[HostOutcome[list[Element]]],
    recalled: dict[str, dict[str, Any]],
    *,
    now: float | None = None,
    cluster: str | None = None,
) -> FilterListing:
    now = time.time() if now is None else now
    listing = FilterListing()
    by_id: dict[str, dict[str, Any]] = {}
    readable = [r.host.name for r in reads if r.value is not None]
    for r in reads:
        if r.value is None:
            listing.unreachable[r.host.name] = r.error or "unknown error"
            continue
        for e in r.value:
            if e.info is None:
                continue
            f = by_id.setdefault(
                e.info.id,
                {
                    "id": e.info.id,
                    "cidr": e.cidr,
                    "hosts": [],
                    "ports": [],
                    "action": e.action,
                    "expires_at": None,
                    "state": "permanent" if e.expires is None else "active",
                    "reason": recalled.get(e.info.id, {}).get("reason") or e.info.reason,
                    "operator": e.info.operator,
                    "created_at": iso(e.info.created) if e.info.created else None,
                    "_expiries": set(),
                },
            )
            if r.host.name not in f["hosts"]:
                f["hosts"].append(r.host.name)
            if e.port not in f["ports"]:
                f["ports"].append(e.port)
            if e.expires is not None:
                # Rounded to 10 s so one batch applied a moment apart does not look different.
                f["_expiries"].add(round((now + e.expires) / 10.0) * 10)
                if e.expires <= 0:
                    f["state"] = "expired"
    for f in by_id.values():
        expiries = sorted(f.pop("_expiries"))
        if expiries:
            f["expires_at"] = iso(expiries[-1])
        # Compare with where this filter was applied (journal) when we know it: a block
        # on chosen hosts is not missing from the others.
        meant = recalled.get(f["id"], {}).get("hosts") or readable
        missing = [n for n in readable if n in meant and n not in f["hosts"]]
        f["differences"] = []
        if missing:
            f["differences"].append(f"missing on {', '.join(missing)}")
        if len(expiries) > 1:
            f["differences"].append(
                f"expiry differs between hosts ({iso(expiries[0])} .. {iso(expiries[-1])})"
            )
        f["ports"].sort()
        listing.filters.append(f)
    for fid, f in recalled.items():
        if fid in by_id or (cluster and f.get("cluster") not in (None, cluster)):
            continue
        expires = f.get("expires_at")
        if not expires:
            continue
        from datetime import datetime

        ts = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
        if ts <= now and now - ts < RECENT:
            listing.filters.append(
                {
                    "id": fid,
                    "cidr": f.get("cidr"),
                    "hosts": [],
                    "ports": f.get("ports", []),
                    "action": f.get("action"),
                    "expires_at": expires,
                    "state": "expired",
                    "reason": f.get("reason"),
                    "operator": f.get("operator"),
                    "created_at": None,
                    "differences": [],
                }
            )
    listing.filters.sort(key=lambda f: (f["state"] != "active", str(f["expires_at"]), f["id"]))
    return listing


def list_filters(
    inventory: Any, settings: Any, journal: Journal, cluster: str | None = None
) -> FilterListing:
    """Read every proxy (of `cluster`, or of all clusters) and build the listing."""
    from irctl.discovery import effective_proxies
    from irctl.providers.nft import Nft
    from irctl.providers.ssh import HostRef, SshProvider

    names = [cluster] if cluster else list(inventory.clusters)
    hosts: dict[str, HostRef] = {}
    for name in names:
        for p in effective_proxies(inventory, settings, name):
            hosts.setdefault(p.address, HostRef(p.name, p.address, p.ssh_port))
    ssh = SshProvider.create(inventory, settings)
    try:
        reads = Nft(ssh).read(list(hosts.values()))
    finally:
        ssh.close()
    return build_listing(list(hosts.values()), reads, journal_filters(journal), cluster=cluster)
