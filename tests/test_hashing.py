"""`cache locate` against a real nutcracker: for every hash twemproxy offers, under ketama
and modula, keys set through the proxy are found on exactly the backend locate names."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from irctl.errors import InputError
from irctl.hashring import HASHES, Locator, Node, Ring, ring_for
from irctl.hashring.hashes import crc32a, fnv1a_32, jenkins, md5
from irctl.hashring.ring import ketama_points_per_server
from irctl.inventory import Cluster
from tests.test_cache_lab import Memcached, Nutcracker, cluster_of, needs_binaries

pytestmark = needs_binaries

# Out of name order, of different lengths (nutcracker sorts by length first) and weights.
NAMES = ["shard-b", "shard-10", "s-a"]


def sample_keys(count: int, seed: int = 5) -> list[bytes]:
    rng = random.Random(seed)
    keys = [f"user:{i}:profile".encode() for i in range(count // 2)]
    alphabet = bytes(b for b in range(0x21, 0x100) if b != 0x7F)
    while len(keys) < count:
        keys.append(bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 60))))
    return list(dict.fromkeys(keys))


@pytest.fixture(scope="module")
def backends() -> Iterator[list[Memcached]]:
    servers = [Memcached() for _ in NAMES]
    yield servers
    for server in servers:
        server.stop()


def where_keys_live(backends: list[Memcached], keys: list[bytes]) -> dict[bytes, str]:
    found: dict[bytes, str] = {}
    for backend in backends:
        client = backend.client()
        for start in range(0, len(keys), 100):
            for key in client.get_many(keys[start : start + 100]):
                assert key not in found, f"{key!r} is on two backends"
                found[key] = backend.address
        client.close()
    return found


def proxy_agrees(
    cluster: Cluster, backends: list[Memcached], tmp: Path, keys: list[bytes], spread: bool = True
) -> None:
    for backend in backends:
        backend.client().flush_all()
    proxy = Nutcracker(cluster, tmp)
    try:
        client = proxy.client()
        for start in range(0, len(keys), 100):
            failed = client.set_many({k: b"1" for k in keys[start : start + 100]})
            assert failed == []
        client.close()
    finally:
        proxy.stop()
    found = where_keys_live(backends, keys)
    assert len(found) == len(keys)
    locator = Locator(cluster)
    wrong = [k for k in keys if locator.locate(k).shard.servers[0] != found[k]]
    assert wrong == [], f"{len(wrong)} keys located wrongly, e.g. {wrong[:3]}"
    if spread:  # the test must exercise every shard, not only the first one
        assert len(set(found.values())) == len(backends)


@pytest.mark.parametrize("distribution", ["ketama", "modula"])
@pytest.mark.parametrize("hash_name", sorted(HASHES))
def test_locate_matches_nutcracker(
    backends: list[Memcached], tmp_path: Path, hash_name: str, distribution: str
) -> None:
    cluster = cluster_of(backends, NAMES, [1, 2, 1], distribution, hash_name)
    count = 1000 if hash_name in ("fnv1a_64", "md5") else 300
    # libmemcached's crc32 keeps 15 bits: under ketama they all fall before the first point.
    spread = not (hash_name == "crc32" and distribution == "ketama")
    proxy_agrees(cluster, backends, tmp_path, sample_keys(count), spread)


def test_equal_weights_and_long_names(backends: list[Memcached], tmp_path: Path) -> None:
    names = ["n" * 82, "m" * 80 + "-a", "short"]  # "NAME-39" is 85 bytes: nutcracker's limit
    proxy_agrees(cluster_of(backends, names), backends, tmp_path, sample_keys(1000, seed=9))


def test_names_nutcracker_cannot_hash_are_refused(backends: list[Memcached]) -> None:
    with pytest.raises(InputError, match="too long"):
        ring_for(cluster_of(backends, ["n" * 84, "a", "b"]))
    with pytest.raises(InputError, match="spaces"):
        ring_for(cluster_of(backends, ["a b", "a", "b"]))


@pytest.mark.parametrize("distribution", ["ketama", "modula"])
def test_hash_tag_matches_nutcracker(
    backends: list[Memcached], tmp_path: Path, distribution: str
) -> None:
    rng = random.Random(4)
    keys = [f"user:{{{i % 40}}}:item:{i}".encode() for i in range(300)]
    keys += [b"{}empty", b"no-tag", b"open{only", b"}{reversed}", b"{a}{b}", b"x{}y{z}"]
    keys += [bytes(rng.choice(b"{}ab") for _ in range(rng.randint(1, 8))) for _ in range(200)]
    cluster = cluster_of(backends, NAMES, [1, 2, 1], distribution, "fnv1a_64", hash_tag="{}")
    proxy_agrees(cluster, backends, tmp_path, list(dict.fromkeys(keys)))
    locator = Locator(cluster)
    tagged = {locator.locate(f"user:{{7}}:item:{i}").shard.name for i in range(50)}
    assert len(tagged) == 1  # one tag, one shard: the point of hash tags


def test_one_shard_takes_every_key() -> None:
    ring = Ring([Node("solo")], "md5", "ketama")
    assert {ring.index(k) for k in sample_keys(50)} == {0}


def test_known_values() -> None:
    assert fnv1a_32(b"a") == 0xE40C292C
    assert md5(b"") == 0xD98C1DD4
    assert crc32a(b"123456789") == 0xCBF43926
    assert jenkins(b"") == (0xDEADBEEF + 13) & 0xFFFFFFFF
    assert ketama_points_per_server(1, 3, 3) == 160
    assert ketama_points_per_server(2, 4, 3) == 240


def test_unknown_hash_and_random_distribution_are_refused() -> None:
    with pytest.raises(InputError, match="unknown hash"):
        Ring([Node("a"), Node("b")], "sha1", "ketama")
    with pytest.raises(InputError, match="no fixed key placement"):
        Ring([Node("a"), Node("b")], "md5", "random")


@pytest.fixture(scope="module")
def fifty() -> Iterator[list[Memcached]]:
    servers = [Memcached(memory_mb=8) for _ in range(50)]
    yield servers
    for server in servers:
        server.stop()


@pytest.mark.parametrize(
    ("weights", "hash_name"), [("equal", "md5"), ("equal", "fnv1a_64"), ("mixed", "fnv1a_64")]
)
def test_fifty_shards_match_nutcracker(
    fifty: list[Memcached], tmp_path: Path, weights: str, hash_name: str
) -> None:
    # With 50 equal shards float32 rounding gives each 156 points, not 160: nutcracker agrees.
    names = [f"cache-{i:02d}" for i in range(50)]
    weight_list = [1] * 50 if weights == "equal" else [1 + i % 3 for i in range(50)]
    cluster = cluster_of(fifty, names, weight_list, "ketama", hash_name)
    if weights == "equal":
        assert ring_for(cluster).points == 50 * 156
    proxy_agrees(cluster, fifty, tmp_path, sample_keys(3000, seed=3))


def test_replica_pools_name_servers_by_shard() -> None:
    from irctl.hashring.nutcracker import pool_config

    cluster = Cluster.model_validate(
        {"shards": [{"name": "a", "servers": ["h1:11211", "h2:11211"], "weight": 3},
                    {"name": "b", "servers": ["h3:11211"]}],
         "hashing": {"hash": "md5", "hash_tag": "{}"}}
    )  # fmt: skip
    pool = pool_config(cluster, "127.0.0.1:22121")
    assert pool["servers"] == ["h1:11211:3 a", "h3:11211:1 b"]
    assert (pool["hash"], pool["hash_tag"], pool["auto_eject_hosts"]) == ("md5", "{}", False)
    with pytest.raises(InputError, match="no server number 2"):
        pool_config(cluster, "127.0.0.1:22121", replica=1)
