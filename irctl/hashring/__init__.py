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
    hashing = cluster.hashing
    return Ring(nodes, hashing.hash, hashing.distribution, hashing.hash_tag)


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


class Locator:
    """A cluster's ring plus its shards in ring order: build once, locate many keys."""

    def __init__(self, cluster: Cluster) -> None:
        self.ring = ring_for(cluster)
        by_name = {shard.name: shard for shard in cluster.shards}
        self.shards = [by_name[node.name] for node in self.ring.nodes]

    def locate(self, key: str | bytes) -> Located:
        index, value = self.ring.lookup(key_bytes(key))
        return Located(
            key=key if isinstance(key, str) else key.decode("utf-8", "backslashreplace"),
            shard=self.shards[index],
            hash_value=value,
            distribution=self.ring.distribution,
            hash_name=self.ring.hash_name,
        )


def locate(cluster: Cluster, key: str | bytes, locator: Locator | None = None) -> Located:
    """The shard that holds `key` (pass a `Locator` to reuse its ring across many keys)."""
    return (locator or Locator(cluster)).locate(key)
