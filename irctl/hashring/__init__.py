"""Which shard holds a key, computed as the cluster's proxies compute it (twemproxy).

`ring_for(cluster)` builds the pool's continuum from the cluster's shards (one
twemproxy server entry per shard, named by the shard name: see `ring.py` and
docs/cache.md); `locate(cluster, key)` answers for one key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from irctl.errors import InputError
from irctl.hashring.hashes import HASHES
from irctl.hashring.ring import DISTRIBUTIONS, Node, Ring

if TYPE_CHECKING:
    from irctl.inventory import Cluster, Shard

__all__ = [
    "DISTRIBUTIONS",
    "HASHES",
    "Located",
    "Node",
    "Ring",
    "check_shards",
    "locate",
    "ring_for",
]


def check_shards(cluster: Cluster) -> None:
    """Refuse shard names twemproxy would read differently (spaces) or reject (duplicates)."""
    seen: set[str] = set()
    for shard in cluster.shards:
        if not shard.name or any(ch.isspace() for ch in shard.name):
            raise InputError(
                f"shard name {shard.name!r} is empty or has spaces",
                "twemproxy reads the server name after the last space; rename the shard",
            )
        if shard.name in seen:
            raise InputError(f"shard {shard.name!r} is listed twice", "give each shard one name")
        seen.add(shard.name)


def ring_for(cluster: Cluster) -> Ring:
    check_shards(cluster)
    nodes = [Node(shard.name, shard.weight) for shard in cluster.shards]
    return Ring(nodes, cluster.hashing.hash, cluster.hashing.distribution)


@dataclass(frozen=True)
class Located:
    key: str
    shard: Shard
    hash_value: int
    distribution: str
    hash_name: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "shard": self.shard.name,
            "server": self.shard.servers[0],
            "servers": list(self.shard.servers),
            "hash": self.hash_name,
            "distribution": self.distribution,
            "hash_value": self.hash_value,
        }


def key_bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")


def locate(cluster: Cluster, key: str | bytes, ring: Ring | None = None) -> Located:
    """The shard that holds `key` (pass `ring` to reuse one across many keys)."""
    ring = ring or ring_for(cluster)
    raw = key_bytes(key)
    name = ring.node(raw).name
    shard = next(s for s in cluster.shards if s.name == name)
    return Located(
        key=key if isinstance(key, str) else key.decode("utf-8", "backslashreplace"),
        shard=shard,
        hash_value=ring.hash(raw),
        distribution=ring.distribution,
        hash_name=ring.hash_name,
    )
