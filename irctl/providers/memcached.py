"""memcached over pymemcache: one plain client per server, replies on, bounded timeouts.

The only code that talks to memcached. Every failure (refused, timed out, a
protocol error) becomes a one-line `ProviderError` naming the server, and the
broken socket is dropped so the next call reconnects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Self, TypeVar

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError

from irctl.errors import ProviderError

if TYPE_CHECKING:
    from irctl.inventory import Inventory
    from irctl.settings import Settings

T = TypeVar("T")

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 3.0
CONCURRENCY = 16


def split_server(server: str) -> tuple[str, int]:
    """'host:port' (or '[v6]:port') as pymemcache's (host, port)."""
    host, _, port = server.rpartition(":")
    return host.strip("[]"), int(port)


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class MemcachedProvider:
    def __init__(
        self,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        timeout: float = READ_TIMEOUT,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self._clients: dict[str, Client] = {}
        # pymemcache clients are not thread-safe: one lock per server keeps each socket serial.
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @classmethod
    def create(cls, inventory: Inventory, settings: Settings) -> Self:
        return cls()

    def close(self) -> None:
        with self._guard:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # -- one server ----------------------------------------------------------
    def _call(self, server: str, what: str, fn: Callable[[Client], T]) -> T:
        with self._guard:
            lock = self._locks.setdefault(server, threading.Lock())
        with lock:
            client = self._clients.get(server)
            if client is None:
                try:
                    address = split_server(server)
                except ValueError:
                    raise ProviderError(
                        f"memcached {server}: not HOST:PORT", "fix the shard's servers"
                    ) from None
                client = Client(
                    address,
                    connect_timeout=self.connect_timeout,
                    timeout=self.timeout,
                    no_delay=True,
                    default_noreply=False,
                    allow_unicode_keys=True,
                )
                self._clients[server] = client
            try:
                return fn(client)
            except (MemcacheError, OSError) as exc:
                client.close()
                reason = str(exc) or type(exc).__name__
                raise ProviderError(
                    f"memcached {server}: {what} failed: {reason}",
                    "check that the server is up and reachable from here",
                ) from None

    def stats(self, server: str) -> dict[str, Any]:
        raw = self._call(server, "stats", lambda c: c.stats())
        return {str(_text(k)): _text(v) for k, v in raw.items()}

    def get(self, server: str, key: str | bytes) -> bytes | None:
        value = self._call(server, "get", lambda c: c.get(key))
        return value if value is None else bytes(value)

    def set(self, server: str, key: str | bytes, value: bytes, expire: int = 0) -> None:
        stored = self._call(
            server, "set", lambda c: c.set(key, value, expire=expire, noreply=False)
        )
        if not stored:
            raise ProviderError(f"memcached {server}: set was not stored", "check its memory limit")

    def flush_all(self, server: str, delay: int = 0) -> None:
        ok = self._call(server, "flush_all", lambda c: c.flush_all(delay=delay, noreply=False))
        if not ok:
            raise ProviderError(f"memcached {server}: flush_all was refused", "check the server")

    # -- many servers --------------------------------------------------------
    def stats_many(
        self, servers: Iterable[str], concurrency: int | None = None
    ) -> dict[str, dict[str, Any] | ProviderError]:
        """Stats of each server, at most `concurrency` at a time; a failure is its value."""
        unique = list(dict.fromkeys(servers))

        def one(server: str) -> dict[str, Any] | ProviderError:
            try:
                return self.stats(server)
            except ProviderError as exc:
                return exc

        workers = max(1, min(concurrency or self.concurrency, len(unique) or 1))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="memcached") as pool:
            return dict(zip(unique, pool.map(one, unique), strict=True))
