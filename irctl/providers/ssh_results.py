"""What an SSH fan-out returns: a host, a command's result, one host's outcome, a summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from irctl.journal import aggregate_errors

T = TypeVar("T")


@dataclass(frozen=True)
class HostRef:
    name: str
    address: str
    port: int | None = None

    @property
    def label(self) -> str:
        return self.name if self.name == self.address else f"{self.name} ({self.address})"


@dataclass
class CommandResult:
    host: str
    exit_status: int
    stdout: str
    stderr: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass
class HostOutcome(Generic[T]):
    """One host's answer in a fan-out: a value, or the one-line error that prevented it."""

    host: HostRef
    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class HostResult:
    host: HostRef
    result: CommandResult | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None and self.result.exit_status == 0


def failure_summary(results: Sequence[HostResult | HostOutcome[Any]]) -> dict[str, Any]:
    """Failed hosts as one bounded journal-ready dict (count, by message, samples)."""
    errors: list[tuple[str, str]] = []
    for r in results:
        if r.error is not None:
            errors.append((r.host.name, r.error))
        elif isinstance(r, HostResult) and r.result is not None and r.result.exit_status != 0:
            detail = r.result.stderr.strip() or r.result.stdout.strip()
            errors.append((r.host.name, f"exit {r.result.exit_status}: {detail}"))
    return aggregate_errors(errors)
