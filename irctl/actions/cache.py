"""cache.stats and cache.locate (read), and what cache.flush shares with them.

`cache_stats` and `locate_key` are the core functions the CLI calls directly for
its read-only commands; the actions wrap them for runbooks. cache.flush lives in
`irctl.actions.cache_flush`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from irctl.actions.base import ActionParams, BaseAction, Context, Effect, Outcome
from irctl.errors import InputError

if TYPE_CHECKING:
    from irctl.inventory import Cluster, Inventory, Shard
    from irctl.providers.memcached import MemcachedProvider

STAT_FIELDS = (
    "version",
    "uptime",
    "curr_connections",
    "max_connections",
    "rejected_connections",
    "curr_items",
    "evictions",
    "cmd_flush",
    "get_hits",
    "get_misses",
)


def cluster_shards(
    inventory: Inventory, cluster: str, names: list[str]
) -> tuple[Cluster, list[Shard]]:
    """The cluster and the named shards (all of them when `names` is empty), in inventory order."""
    spec = inventory.cluster(cluster)
    if not spec.shards:
        raise InputError(
            f"cluster {cluster!r} has no shards", "list them under shards: in the inventory"
        )
    known = {shard.name: shard for shard in spec.shards}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InputError(
            f"unknown shard {unknown[0]!r} in cluster {cluster!r}",
            f"shards: {', '.join(known)}",
        )
    wanted = set(names)
    return spec, [s for s in spec.shards if not names or s.name in wanted]


def stat_row(server: str, stats: dict[str, Any] | Exception) -> dict[str, Any]:
    """One server's line of `cache stats`: the figures an operator needs, or why it is missing."""
    if isinstance(stats, Exception):
        message = getattr(stats, "message", str(stats))
        return {"server": server, "reachable": False, "error": message}
    row: dict[str, Any] = {"server": server, "reachable": True}
    for name in STAT_FIELDS:
        row[name] = stats.get(name)
    hits, misses = stats.get("get_hits"), stats.get("get_misses")
    lookups = (
        (hits or 0) + (misses or 0) if isinstance(hits, int) and isinstance(misses, int) else 0
    )
    row["hit_ratio"] = round(hits / lookups, 4) if lookups and isinstance(hits, int) else None
    return row


def cache_stats(
    inventory: Inventory,
    cluster: str,
    shards: list[str],
    provider: MemcachedProvider,
    concurrency: int | None = None,
) -> dict[str, Any]:
    """Per shard and server: reachable, version, uptime, connections, items, hit ratio, flushes."""
    _, chosen = cluster_shards(inventory, cluster, shards)
    servers = [server for shard in chosen for server in shard.servers]
    results = provider.stats_many(servers, concurrency)
    out_shards: list[dict[str, Any]] = [
        {"name": shard.name, "servers": [stat_row(s, results[s]) for s in shard.servers]}
        for shard in chosen
    ]
    unreachable = [
        row["server"] for sh in out_shards for row in sh["servers"] if not row["reachable"]
    ]
    return {
        "cluster": cluster,
        "shards": out_shards,
        "servers": len(results),
        "unreachable": unreachable,
        "summary": f"{len(results) - len(unreachable)} of {len(results)} servers reachable",
    }


def locate_key(inventory: Inventory, cluster: str, key: str) -> dict[str, Any]:
    """Which shard (and servers) hold `key`, computed the way the cluster's proxies hash it."""
    from irctl.hashring import locate

    if not key or len(key.encode()) > 250 or any(ch.isspace() for ch in key):
        raise InputError(f"{key!r} is not a memcached key", "keys are 1-250 bytes without spaces")
    spec, _ = cluster_shards(inventory, cluster, [])
    return {"cluster": cluster, **locate(spec, key).to_dict()}


class StatsParams(ActionParams):
    cluster: str
    shards: list[str] = Field(default_factory=list)
    concurrency: int = Field(default=16, ge=1, le=256)
    require_all: bool = False  # fail the step when a server does not answer


class LocateParams(ActionParams):
    cluster: str
    key: str


class CacheStats(BaseAction):
    name = "cache.stats"
    description = "Per shard and server: reachable, version, connections, items, hit ratio, flushes"
    effect = Effect.READ
    Params = StatsParams

    def run(self, params: StatsParams, ctx: Context) -> Outcome:
        from irctl.providers.memcached import MemcachedProvider

        data = cache_stats(
            ctx.inventory,
            params.cluster,
            params.shards,
            ctx.provider(MemcachedProvider),
            params.concurrency,
        )
        down = data["unreachable"]
        if down and params.require_all:
            shown = ", ".join(down[:5]) + (f" and {len(down) - 5} more" if len(down) > 5 else "")
            return Outcome(
                ok=False, output=data, summary=data["summary"], error=f"unreachable: {shown}"
            )
        return Outcome(ok=True, output=data, summary=data["summary"])


class CacheLocate(BaseAction):
    name = "cache.locate"
    description = "Which shard and server hold a key, hashed as the cluster's proxies hash it"
    effect = Effect.READ
    Params = LocateParams

    def run(self, params: LocateParams, ctx: Context) -> Outcome:
        data = locate_key(ctx.inventory, params.cluster, params.key)
        return Outcome(ok=True, output=data, summary=f"{params.key} -> {data['shard']}")
