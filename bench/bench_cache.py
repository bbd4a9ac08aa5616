"""Benchmark: `cache stats` over 50 real memcached servers, and `locate` keys per second.

    python bench/bench_cache.py [--servers 50] [--keys 100000] [--repeat 5]

Starts the memcached servers on loopback (free ports, stopped by pid at the end),
then prints wall times for stats at several concurrency bounds (a fresh provider
per round: connections included) and locate throughput per hashing.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irctl.actions.cache import cache_stats
from irctl.hashring import Locator
from irctl.inventory import Inventory
from irctl.providers.memcached import MemcachedProvider
from irctl.settings import Settings


def start_memcached() -> tuple[subprocess.Popen[bytes], int]:
    for _ in range(5):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        cmd = ["memcached", "-u", "root", "-l", "127.0.0.1", "-p", str(port), "-U", "0",
               "-m", "8", "-t", "1", "-c", "256"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return proc, port
            time.sleep(0.02)
        proc.kill()
        proc.wait()
    raise RuntimeError("memcached did not start")


class HungServer:
    """Accepts connections and never answers: a memcached wedged the way the incident saw."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.sock.accept()[0])

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def inventory_for(
    ports: list[int], distribution: str = "ketama", hash_name: str = "fnv1a_64"
) -> Inventory:
    shards = [{"name": f"shard-{i}", "servers": [f"127.0.0.1:{p}"]} for i, p in enumerate(ports)]
    hashing = {"distribution": distribution, "hash": hash_name}
    return Inventory.model_validate({"clusters": {"bench": {"shards": shards, "hashing": hashing}}})


def bench_stats(inv: Inventory, repeat: int, hung: int = 0) -> None:
    settings = Settings.resolve()
    for concurrency in (1, 8, 16, 50):
        times = []
        for _ in range(repeat):
            provider = MemcachedProvider.create(inv, settings)
            started = time.perf_counter()
            data = cache_stats(inv, "bench", [], provider, concurrency)
            times.append(time.perf_counter() - started)
            provider.close()
            assert len(data["unreachable"]) == hung, data["unreachable"]
        label = f", {hung} hung" if hung else ""
        print(f"cache stats, {data['servers']} servers{label}, concurrency {concurrency:>2}: "
              f"median {statistics.median(times) * 1000:7.1f} ms  "
              f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})")  # fmt: skip


def bench_locate(ports: list[int], keys: int) -> None:
    names = [f"user:{i}:session:{i * 7919 % 100003}" for i in range(keys)]
    for distribution, hash_name in (
        ("ketama", "fnv1a_64"),
        ("ketama", "md5"),
        ("modula", "fnv1a_64"),
    ):
        cluster = inventory_for(ports, distribution, hash_name).cluster("bench")
        started = time.perf_counter()
        locator = Locator(cluster)
        ring = locator.ring
        built = time.perf_counter() - started
        started = time.perf_counter()
        for key in names:
            locator.locate(key)
        elapsed = time.perf_counter() - started
        raw = [k.encode() for k in names]
        started = time.perf_counter()
        for key in raw:
            ring.index(key)
        bare = time.perf_counter() - started
        print(f"locate {distribution:>6}/{hash_name:<8} {len(ports)} shards: ring built in "
              f"{built * 1000:.1f} ms ({ring.points} points); {keys / elapsed:,.0f} keys/s "
              f"with results, {keys / bare:,.0f} keys/s bare")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=50)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hung", type=int, default=5, help="servers that accept and never answer")
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        started = time.perf_counter()
        ports = []
        for _ in range(args.servers):
            proc, port = start_memcached()
            procs.append(proc)
            ports.append(port)
        print(f"started {len(ports)} memcached in {time.perf_counter() - started:.1f} s")
        bench_stats(inventory_for(ports), args.repeat)
        if args.hung:
            wedged = [HungServer() for _ in range(args.hung)]
            live = ports[: args.servers - args.hung] + [h.port for h in wedged]
            bench_stats(inventory_for(live), 1, hung=args.hung)
            for server in wedged:
                server.close()
        bench_locate(ports, args.keys)
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


if __name__ == "__main__":
    main()
