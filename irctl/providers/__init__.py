"""Providers: the only code that touches the outside world.

Each provider class does one kind of I/O (AWS, SSH, memcached, nft over SSH,
HTTP) and wraps library errors in `ProviderError`. A run holds one instance of
each kind it uses (one SSH connection per host per run, one boto3 client per
service per run), created on first use so commands that do not need the
network never import boto3 or paramiko. Tests pass real servers or fakes
through `overrides`.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, cast

if TYPE_CHECKING:
    from irctl.inventory import Inventory
    from irctl.settings import Settings


class Provider(Protocol):
    """What every provider class offers: build one for a run, and close it after."""

    @classmethod
    def create(cls, inventory: Inventory, settings: Settings) -> Self: ...

    def close(self) -> None: ...


T = TypeVar("T")


class Providers:
    """One lazily built instance per provider class for the length of a run."""

    def __init__(
        self,
        inventory: Inventory,
        settings: Settings,
        overrides: dict[type[Any], Any] | None = None,
    ) -> None:
        self.inventory = inventory
        self.settings = settings
        self._instances: dict[type[Any], Any] = dict(overrides or {})
        self._owned: list[Any] = []
        self._lock = threading.Lock()

    def get(self, kind: type[T]) -> T:
        with self._lock:
            if kind not in self._instances:
                instance = cast(Any, kind).create(self.inventory, self.settings)
                self._instances[kind] = instance
                self._owned.append(instance)
            return cast(T, self._instances[kind])

    def close(self) -> None:
        """Close what this run created (not the overrides: their owner closes them)."""
        for instance in reversed(self._owned):
            # Closing is best effort at the end of a run.
            with contextlib.suppress(Exception):
                instance.close()
        self._owned.clear()
