"""Real memcached and nutcracker processes on loopback for the cache tests, and their own checks.

Other cache test modules import `Memcached`, `Nutcracker` and `free_port` from here.
Each process is started on a free port and stopped by its pid (never by name).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from irctl.hashring.nutcracker import render_cluster
from irctl.inventory import Cluster

needs_binaries = pytest.mark.skipif(
    not (shutil.which("memcached") and shutil.which("nutcracker")),
    reason="memcached and nutcracker (Debian packages) are not installed",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.02)
    return False


class _Process:
    proc: subprocess.Popen[bytes] | None = None

    def _stop(self) -> None:
        # SIGKILL: these throwaway daemons hold nothing worth a graceful exit, and memcached
        # takes a full clock tick (about a second) to honour SIGTERM.
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.kill()
        self.proc.wait(5)


class Memcached(_Process):
    """One memcached on 127.0.0.1; `address` is HOST:PORT as the inventory writes it."""

    def __init__(self, memory_mb: int = 16) -> None:
        self.memory_mb = memory_mb
        self.port = 0
        self.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        for _ in range(5):  # a free port can be taken between probing and binding
            port = self.port or free_port()
            cmd = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0"]
            cmd += ["-m", str(self.memory_mb), "-c", "1024", "-t", "1"]
            if os.geteuid() == 0:
                cmd += ["-u", "root"]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if _wait_listening(port, self.proc):
                self.port = port
                return
            self._stop()
            if self.port:
                time.sleep(0.2)
        raise RuntimeError("memcached did not start")

    def stop(self) -> None:
        self._stop()

    def client(self) -> Client:
        return Client(
            ("127.0.0.1", self.port),
            connect_timeout=2,
            timeout=2,
            default_noreply=False,
            allow_unicode_keys=True,
        )


class Nutcracker(_Process):
    """nutcracker with the pool irctl renders for `cluster` (the same function the lab uses)."""

    def __init__(self, cluster: Cluster, workdir: Path, pool: str = "irctl") -> None:
        self.cluster = cluster
        for _ in range(5):
            self.port, stats_port = free_port(), free_port()
            conf = workdir / f"nutcracker-{self.port}.yml"
            conf.write_text(render_cluster(pool, cluster, f"127.0.0.1:{self.port}"))
            self.log = workdir / f"nutcracker-{self.port}.log"
            cmd = ["nutcracker", "-c", str(conf), "-s", str(stats_port), "-a", "127.0.0.1"]
            cmd += ["-o", str(self.log)]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if _wait_listening(self.port, self.proc):
                return
            self._stop()
        raise RuntimeError(f"nutcracker did not start; see {self.log}")

    def stop(self) -> None:
        self._stop()

    def client(self) -> Client:
        return Client(
            ("127.0.0.1", self.port),
            connect_timeout=2,
            timeout=5,
            default_noreply=False,
            allow_unicode_keys=True,
        )


def cluster_of(
    servers: list[Memcached],
    names: list[str],
    weights: list[int] | None = None,
    distribution: str = "ketama",
    hash_name: str = "fnv1a_64",
    hash_tag: str | None = None,
) -> Cluster:
    weights = weights or [1] * len(servers)
    return Cluster.model_validate(
        {
            "shards": [
                {"name": n, "servers": [m.address], "weight": w}
                for n, m, w in zip(names, servers, weights, strict=True)
            ],
            "hashing": {"distribution": distribution, "hash": hash_name, "hash_tag": hash_tag},
        }
    )


@needs_binaries
def test_nutcracker_serves_the_rendered_pool(tmp_path: Path) -> None:
    backend = Memcached()
    try:
        cluster = cluster_of([backend], ["only"])
        proxy = Nutcracker(cluster, tmp_path)
        try:
            proxy.client().set("k", b"v")
            assert backend.client().get("k") == b"v"
        finally:
            proxy.stop()
    finally:
        backend.stop()
    assert backend.proc is not None and backend.proc.poll() is not None
