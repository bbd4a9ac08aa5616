"""Key -> shard, exactly as twemproxy (nutcracker) maps keys: ketama and modula.

How a cluster's shards become a twemproxy pool (docs/cache.md): each shard is one
server entry `host:port:weight NAME`, named by the shard name. twemproxy then
computes ketama points from the *name*, not the address, so the mapping does not
change when a shard's machine is replaced, and a shard with several servers
(replicas) maps the same way in every pool that lists it.

The details below follow nutcracker's source (src/nc_conf.c, src/nc_server.c,
src/hashkit/nc_ketama.c, nc_modula.c) and are load-bearing:
- servers are sorted by name (shorter names first, then bytewise) before indexing;
- a pool with one server never hashes: every key goes to it;
- ketama point names are "NAME-i", 4 points per md5 digest, and the number of points
  per server is computed in single-precision float; a point name of 86 bytes or more
  makes nutcracker hash bytes beyond its buffer, so such names are refused;
- modula repeats each server `weight` times and takes hash % total weight.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from irctl.errors import InputError
from irctl.hashring.hashes import HASHES, HashFn

KETAMA_POINTS_PER_SERVER = 160
KETAMA_POINTS_PER_HASH = 4
KETAMA_MAX_HOSTLEN = 86  # nutcracker's buffer for "NAME-i"
DISTRIBUTIONS = ("ketama", "modula")


@dataclass(frozen=True)
class Node:
    """One twemproxy server entry: the name ketama hashes, and its weight."""

    name: str
    weight: int = 1


def _f32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def twemproxy_order(nodes: Sequence[Node]) -> list[Node]:
    """Nodes in nutcracker's server order: by name length, then bytes (its string_compare)."""
    return sorted(nodes, key=lambda n: (len(n.name.encode()), n.name.encode()))


def ketama_points_per_server(weight: int, total_weight: int, live: int) -> int:
    """Points for one server, computed with the same float32 steps as ketama_update()."""
    pct = _f32(_f32(weight) / _f32(total_weight))
    scaled = _f32(_f32(_f32(pct * KETAMA_POINTS_PER_SERVER) / 4) * _f32(live))
    return math.floor(_f32(scaled + 0.0000000001)) * 4


class Ring:
    """A pool's continuum: `index(key)` is the position of the node in `nodes` holding `key`."""

    def __init__(
        self, nodes: Sequence[Node], hash_name: str, distribution: str, hash_tag: str | None = None
    ) -> None:
        if distribution not in DISTRIBUTIONS:
            raise InputError(
                f"distribution {distribution!r} has no fixed key placement",
                "locate works for ketama and modula; with random any shard may hold a key",
            )
        try:
            self.key_hash: HashFn = HASHES[hash_name]
        except KeyError:
            raise InputError(
                f"unknown hash {hash_name!r}", f"twemproxy's hashes: {', '.join(HASHES)}"
            ) from None
        if not nodes:
            raise InputError("the cluster has no shards", "list its shards in the inventory")
        for node in nodes:
            if node.weight < 1:
                raise InputError(f"shard {node.name!r} has weight {node.weight}", "use 1 or more")
        self.nodes = twemproxy_order(nodes)
        self.hash_name = hash_name
        self.hash_tag = hash_tag.encode() if hash_tag else None
        if self.hash_tag is not None and len(self.hash_tag) != 2:
            raise InputError(f"hash_tag {hash_tag!r} is not two characters", "write it like {}")
        self.distribution = distribution
        self._values: list[int] = []
        self._owners: list[int] = []
        if distribution == "ketama":
            self._build_ketama()
        else:
            for index, node in enumerate(self.nodes):
                self._owners.extend([index] * node.weight)

    def _build_ketama(self) -> None:
        total = sum(node.weight for node in self.nodes)
        live = len(self.nodes)
        points: list[tuple[int, int]] = []
        for index, node in enumerate(self.nodes):
            per_server = ketama_points_per_server(node.weight, total, live)
            for i in range(per_server // KETAMA_POINTS_PER_HASH):
                host = f"{node.name}-{i}".encode()
                if len(host) >= KETAMA_MAX_HOSTLEN:
                    # nutcracker would md5 bytes past its buffer here: no defined answer exists.
                    raise InputError(
                        f"shard name {node.name!r} is too long for twemproxy's ketama",
                        f"keep shard names under {KETAMA_MAX_HOSTLEN - 12} bytes",
                    )
                digest = hashlib.md5(host).digest()
                for align in range(KETAMA_POINTS_PER_HASH):
                    value = int.from_bytes(digest[align * 4 : align * 4 + 4], "little")
                    points.append((value, index))
        # Stable by value: equal values keep insertion order, as glibc's merge-sort qsort does.
        points.sort(key=lambda point: point[0])
        self._values = [value for value, _ in points]
        self._owners = [owner for _, owner in points]

    def hashed_part(self, key: bytes) -> bytes:
        """With a hash_tag like b"{}", only a non-empty part between the first "{" and the
        next "}" is hashed; otherwise the whole key (server_pool_idx)."""
        if self.hash_tag is None:
            return key
        start = key.find(self.hash_tag[:1])
        if start < 0:
            return key
        end = key.find(self.hash_tag[1:], start + 1)
        return key[start + 1 : end] if end - start > 1 else key

    def hash(self, key: bytes) -> int:
        """The value twemproxy dispatches on (0 for an empty key, as server_pool_hash does)."""
        key = self.hashed_part(key)
        if len(self.nodes) == 1 or not key:
            return 0
        return self.key_hash(key)

    def lookup(self, key: bytes) -> tuple[int, int]:
        """(position in `nodes`, the hash value dispatched on) for `key`."""
        if len(self.nodes) == 1:
            return 0, 0
        value = self.hash(key)
        if self.distribution == "modula":
            return self._owners[value % len(self._owners)], value
        pos = bisect.bisect_left(self._values, value)
        return self._owners[0 if pos == len(self._values) else pos], value

    def index(self, key: bytes) -> int:
        return self.lookup(key)[0]

    def node(self, key: bytes) -> Node:
        return self.nodes[self.index(key)]

    @property
    def points(self) -> int:
        return len(self._owners)
