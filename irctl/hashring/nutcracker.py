"""A nutcracker (twemproxy) pool config rendered from a `Cluster`.

The lab and the tests start their proxies from this, so the proxies map keys
exactly as `irctl cache locate` computes: one server entry per shard,
`host:port:weight SHARD_NAME`. A shard with several servers is a replica set:
pool `replica=i` lists each shard's i-th server under the same shard name, so
every replica pool sends a key to the same shard.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from irctl.errors import InputError
from irctl.hashring import check_shards

if TYPE_CHECKING:
    from irctl.inventory import Cluster

# Keys stay where locate says: ejecting a dead shard would remap its keys elsewhere.
DEFAULT_OPTIONS: dict[str, Any] = {
    "auto_eject_hosts": False,
    "preconnect": False,
    "timeout": 1000,
    "server_connections": 1,
}


def server_line(host_port: str, weight: int, name: str) -> str:
    return f"{host_port}:{weight} {name}"


def pool_config(
    cluster: Cluster,
    listen: str,
    *,
    replica: int = 0,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One pool as nutcracker's YAML mapping (without the pool name)."""
    check_shards(cluster)
    servers = []
    for shard in cluster.shards:
        if replica >= len(shard.servers):
            raise InputError(
                f"shard {shard.name!r} has no server number {replica + 1}",
                "give every shard the same number of servers",
            )
        servers.append(server_line(shard.servers[replica], shard.weight, shard.name))
    hashing: dict[str, Any] = {"hash": cluster.hashing.hash}
    if cluster.hashing.hash_tag:
        hashing["hash_tag"] = cluster.hashing.hash_tag
    return {
        "listen": listen,
        **hashing,
        "distribution": cluster.hashing.distribution,
        **DEFAULT_OPTIONS,
        **dict(options or {}),
        "servers": servers,
    }


def render(pools: Mapping[str, Mapping[str, Any]]) -> str:
    """nutcracker's config file text for `{pool_name: pool_config(...)}`."""
    return yaml.safe_dump({name: dict(pool) for name, pool in pools.items()}, sort_keys=False)


def render_cluster(
    name: str, cluster: Cluster, listen: str, *, replica: int = 0, **options: Any
) -> str:
    return render({name: pool_config(cluster, listen, replica=replica, options=options)})
