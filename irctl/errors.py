"""The one user-facing error type, and the exit codes it maps to.

Everything an operator can cause or fix (bad input, a refused action, an
unreachable host) is an `IrctlError`: one line of message and one line saying
what to do next. Anything else is a bug and exits 3 with a traceback file.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # a step or check failed, or input was refused
    USAGE = 2
    INTERNAL = 3
    INTERRUPTED = 130


class IrctlError(Exception):
    """An error the operator sees as one line, plus a hint of what to do next."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = one_line(message)
        self.hint = one_line(hint) if hint else None

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(IrctlError):
    exit_code = ExitCode.USAGE


class InputError(IrctlError):
    """Bad input: a malformed runbook, inventory, CIDR, unknown proxy. Nothing changed."""


class RefusedError(IrctlError):
    """A safety rule refused the request (allowlist, lock held, no terminal to confirm)."""


class JournalError(IrctlError):
    """The journal cannot be written or read; mutating work must not start."""


class ProviderError(IrctlError):
    """The outside world answered with an error (API, SSH, memcached, HTTP)."""


class Interrupted(IrctlError):
    exit_code = ExitCode.INTERRUPTED


def one_line(text: str, limit: int = 400) -> str:
    """Collapse text to a single bounded line: errors must never flood a terminal or a log."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
