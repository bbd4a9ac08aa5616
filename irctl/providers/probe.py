"""The operator-side latency probe: TCP connect time and one memcached round trip per sample.

Runs in a child Python process (`python -m irctl.providers.probe`, JSON in and out) so
that its timings are not inflated by the parent's threads: paramiko's key exchanges
hold the GIL for milliseconds, which is the very size of the delays being measured.
The child uses one asyncio loop; paths are probed concurrently (bounded), the samples
of one path one after another. Its wall time is bounded by samples x timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from irctl.errors import ProviderError, one_line

if TYPE_CHECKING:
    from irctl.inventory import Inventory
    from irctl.settings import Settings

REQUEST = b"version\r\n"
MAX_SAMPLES = 200
MAX_TARGETS = 5000
DEAD_AFTER = 3  # refused connects from the first sample on: the rest are not attempted
REFUSED = "connect failed: "  # the prefix of an outright refusal (reset, unreachable)

# A sample: (connect_ms, rtt_ms, error); error is None on success.
RawSample = tuple[float | None, float | None, str | None]


@dataclass(frozen=True)
class ProbeTarget:
    name: str
    host: str
    port: int


@dataclass(frozen=True)
class ProbeResult:
    paths: dict[str, list[RawSample]]  # by target name
    timer_lag_ms: list[float]  # how late 2 ms sleeps woke in the probe: its own noise floor


class RunningProbe:
    """A probe started in the background; `wait()` collects its samples per target name."""

    def __init__(self, proc: subprocess.Popen[bytes], budget: float) -> None:
        self._proc = proc
        self._budget = budget
        self._started = time.monotonic()

    def wait(self) -> ProbeResult:
        remaining = max(1.0, self._budget - (time.monotonic() - self._started))
        try:
            out, err = self._proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            raise ProviderError(
                "the latency probe did not finish in time", "lower --samples or the timeout"
            ) from None
        if self._proc.returncode != 0:
            raise ProviderError(
                f"the latency probe failed: {one_line(err.decode(errors='replace'), 300)}",
                "run with --debug and report it",
            )
        data = json.loads(out)
        paths = {
            str(name): [(s[0], s[1], s[2]) for s in samples]
            for name, samples in data["paths"].items()
        }
        return ProbeResult(paths, [float(x) for x in data["timer_lag_ms"]])

    def cancel(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()


class ProbeProvider:
    @classmethod
    def create(cls, inventory: Inventory, settings: Settings) -> Self:
        return cls()

    def close(self) -> None:
        return None

    def start(
        self,
        targets: Sequence[ProbeTarget],
        *,
        samples: int,
        timeout: float,
        concurrency: int = 64,
    ) -> RunningProbe:
        if not 1 <= samples <= MAX_SAMPLES:
            raise ProviderError(f"samples must be 1..{MAX_SAMPLES}", "lower --samples")
        if len(targets) > MAX_TARGETS:
            raise ProviderError(f"at most {MAX_TARGETS} probe targets", "diagnose fewer hosts")
        request = {
            "targets": [[t.name, t.host, t.port] for t in targets],
            "samples": samples,
            "timeout": timeout,
            "concurrency": max(1, concurrency),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "irctl.providers.probe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        assert proc.stdin is not None
        # The child reads its request at once (before probing), so this write does not stall.
        proc.stdin.write(json.dumps(request).encode())
        proc.stdin.close()
        proc.stdin = None  # communicate() must not flush the closed pipe
        # Every sample of a silent host costs the whole timeout (only refusals end a path
        # early), and the paths beyond `concurrency` wait for a slot.
        rounds = -(-len(targets) // max(1, concurrency)) or 1
        return RunningProbe(proc, budget=rounds * samples * timeout * 1.5 + 10.0)

    def measure(
        self, targets: Sequence[ProbeTarget], *, samples: int, timeout: float, concurrency: int = 64
    ) -> ProbeResult:
        return self.start(targets, samples=samples, timeout=timeout, concurrency=concurrency).wait()


# -- the child process -------------------------------------------------------------------


def _reason(exc: OSError) -> str:
    # The errno's text, not asyncio's message: it names the address, which would split
    # one path's identical failures into different messages.
    return os.strerror(exc.errno) if exc.errno else type(exc).__name__


async def _sample(host: str, port: int, timeout: float) -> RawSample:
    # Raw non-blocking sockets with the loop's sock_* calls: streams and transports cost
    # several times the CPU per sample, and 100 proxies x 20 samples add up.
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = time.perf_counter()
    try:
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, (host, port))
        except TimeoutError:
            return (None, None, "connect timed out")
        except OSError as exc:
            return (None, None, f"{REFUSED}{_reason(exc)}")
        connected = time.perf_counter()
        try:
            async with asyncio.timeout(max(0.001, timeout - (connected - start))):
                await loop.sock_sendall(sock, REQUEST)
                reply = b""
                while not reply.endswith(b"\n"):
                    chunk = await loop.sock_recv(sock, 512)
                    if not chunk:
                        return (None, None, "closed without a reply")
                    reply += chunk
        except TimeoutError:
            return (None, None, "no reply in time")
        except OSError as exc:
            return (None, None, f"reply failed: {_reason(exc)}")
        done = time.perf_counter()
        return (round((connected - start) * 1000, 3), round((done - connected) * 1000, 3), None)
    finally:
        sock.close()


async def _probe(request: dict[str, Any]) -> dict[str, Any]:
    samples, timeout = int(request["samples"]), float(request["timeout"])
    gate = asyncio.Semaphore(int(request["concurrency"]))
    results: dict[str, list[RawSample]] = {}

    async def path(name: str, host: str, port: int) -> None:
        async with gate:
            got: list[RawSample] = []
            for _ in range(samples):
                got.append(await _sample(host, port, timeout))
                # A host that refused its first connects is down: its remaining samples
                # would tell nothing new. Timeouts never cut a path short: under packet loss
                # a dropped SYN makes a connect miss the timeout by chance, and a path
                # reported as all-failed would read as a dead host, not a lossy network.
                if len(got) == DEAD_AFTER and all((e or "").startswith(REFUSED) for *_, e in got):
                    got += [got[-1]] * (samples - len(got))
                    break
            results[name] = got

    lags: list[float] = []

    async def timer() -> None:
        # Spread over the probing: how late this loop wakes is the floor under its samples.
        for _ in range(samples):
            before = time.perf_counter()
            await asyncio.sleep(0.002)
            lags.append(round((time.perf_counter() - before - 0.002) * 1000, 3))
            await asyncio.sleep(0.003)

    await asyncio.gather(timer(), *(path(n, h, int(p)) for n, h, p in request["targets"]))
    return {"paths": results, "timer_lag_ms": lags}


def main() -> None:
    request = json.loads(sys.stdin.read())
    json.dump(asyncio.run(_probe(request)), sys.stdout)


if __name__ == "__main__":
    main()
