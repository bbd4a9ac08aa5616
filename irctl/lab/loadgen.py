"""A small, steady memcached load generator for the lab's clients.

    python -m irctl.lab.loadgen --target 198.18.5.2:22121 --target ... [--rate 100]

A bounded stream of real `set`/`get` through the proxies: `--conns` connections per target
(a few fds, far under the 20,000 per process), `--rate` operations per second in total,
keys from a fixed set so gets hit (`--prefill` sets each once first, so item counts stay
put while the load runs). A failed connection is closed and reopened after
a short back-off, as a well-behaved client would. Counters go to `--stats` (JSON, replaced
about once a second) so `irctl lab status` and the tests can see traffic flowing.

It speaks memcached's text protocol on its own sockets rather than through pymemcache:
it has to own each connection's life (when to drop, when to reconnect), and irctl keeps
pymemcache inside its provider layer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import threading
import time
from pathlib import Path

TIMEOUT = 2.0
BACKOFF = 0.2


class Conn:
    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port
        self.sock: socket.socket | None = None
        self.buf = b""
        self.retry_at = 0.0

    def ensure(self) -> socket.socket | None:
        if self.sock is not None:
            return self.sock
        if time.monotonic() < self.retry_at:
            return None
        try:
            self.sock = socket.create_connection((self.address, self.port), timeout=TIMEOUT)
        except OSError:
            self.retry_at = time.monotonic() + BACKOFF
            return None
        self.buf = b""
        return self.sock

    def drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.retry_at = time.monotonic() + BACKOFF

    def reply(self, terminators: tuple[bytes, ...]) -> bytes:
        assert self.sock is not None
        while not any(self.buf.endswith(t) for t in terminators):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf, b""
        return out


def one_op(conn: Conn, key: str, value: bytes, write: bool) -> bool:
    sock = conn.ensure()
    if sock is None:
        return False
    try:
        if write:
            sock.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(value), value))
            ok = conn.reply((b"\r\n",)) == b"STORED\r\n"
        else:
            sock.sendall(b"get %s\r\n" % key.encode())
            ok = conn.reply((b"END\r\n",)).endswith(b"END\r\n")
    except OSError:
        conn.drop()
        return False
    if not ok:
        conn.drop()  # a server error leaves the stream in an unknown place
    return ok


def run(targets: list[tuple[str, int]], args: argparse.Namespace) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    conns = [Conn(a, p) for a, p in targets for _ in range(args.conns)]
    watched = Targets(Path(args.targets_file)) if args.targets_file else None
    checked = 0.0
    rng = random.Random(args.seed)
    value = b"x" * args.value_size
    counts = {"ok": 0, "failed": 0, "sets": 0, "gets": 0, "connects": 0}
    period = 1.0 / args.rate if args.rate > 0 else 0.0
    # Every key set once up front, unthrottled: item counts then stay put under steady load,
    # so a drill can compare them before and after.
    prefill = list(range(args.keys - 1, -1, -1)) if args.prefill else []
    next_at = time.monotonic()
    last_report = 0.0
    i = 0
    while not stop.is_set():
        if watched is not None and time.monotonic() - checked > 1.0:
            checked = time.monotonic()
            conns = watched.refresh(conns, args.conns)
        if not conns:
            stop.wait(0.5)
            continue
        conn = conns[i % len(conns)]
        i += 1
        fresh = conn.sock is None
        filling = bool(prefill)
        write = filling or rng.random() < args.set_share
        key = f"{args.prefix}{prefill.pop() if filling else rng.randrange(args.keys)}"
        ok = one_op(conn, key, value, write)
        counts["connects"] += int(fresh and conn.sock is not None)
        counts["ok" if ok else "failed"] += 1
        counts["sets" if write else "gets"] += 1
        now = time.monotonic()
        if args.stats and now - last_report >= 1.0:
            last_report = now
            _report(Path(args.stats), counts)
        if filling:
            next_at = now
            continue
        next_at += period
        if next_at > now:
            stop.wait(next_at - now)
        else:
            next_at = now  # behind: do not burst to catch up
    if args.stats:
        _report(Path(args.stats), counts)


class Targets:
    """A file of HOST:PORT lines that the lab rewrites when proxies come and go.

    Clients follow it the way real ones follow DNS or a load balancer: connections to a
    proxy that left are closed, a new proxy gets its share.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime = 0.0

    def refresh(self, conns: list[Conn], per_target: int) -> list[Conn]:
        try:
            mtime = self.path.stat().st_mtime
            if mtime == self.mtime:
                return conns
            lines = self.path.read_text().split()
        except OSError:
            return conns
        self.mtime = mtime
        wanted = {parse_target(t) for t in lines}
        keep = [c for c in conns if (c.address, c.port) in wanted]
        for c in conns:
            if (c.address, c.port) not in wanted:
                c.drop()
        have = {(c.address, c.port) for c in keep}
        keep += [Conn(a, p) for a, p in sorted(wanted - have) for _ in range(per_target)]
        return keep


def _report(path: Path, counts: dict[str, int]) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps({**counts, "ts": time.time()}))
        os.replace(tmp, path)
    except OSError:
        pass  # counters are for watching; the load itself must go on


def parse_target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m irctl.lab.loadgen")
    parser.add_argument("--target", action="append", default=[], help="HOST:PORT")
    parser.add_argument("--targets-file", default=None, help="HOST:PORT lines, re-read")
    parser.add_argument("--conns", type=int, default=2, help="connections per target")
    parser.add_argument("--rate", type=float, default=100.0, help="operations per second")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--set-share", type=float, default=0.3)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--prefix", default="lab:")
    parser.add_argument("--prefill", action="store_true", help="set every key once first")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--stats", default=None, help="write counters (JSON) here")
    args = parser.parse_args(argv)
    if not args.target and not args.targets_file:
        parser.error("give --target or --targets-file")
    if not 1 <= args.conns <= 50:
        parser.error("--conns must be between 1 and 50")
    run([parse_target(t) for t in args.target], args)


if __name__ == "__main__":
    main()
