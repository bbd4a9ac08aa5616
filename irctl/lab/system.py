"""Running things for the lab: commands that must succeed, ports to wait for, pids to stop.

Nothing here is ever stopped by name: `terminate` signals the pids it is given.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence

SSHD = "/usr/sbin/sshd"


class LabError(RuntimeError):
    """A namespace host could not be built or a daemon did not come up."""


def missing_tools(*tools: str) -> list[str]:
    """The tools (by name or absolute path) that are not installed."""
    return [t for t in tools if not (os.path.exists(t) if t.startswith("/") else shutil.which(t))]


def run(argv: Sequence[str], *, check: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{shlex.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def wait_port(address: str, port: int, timeout: float = 10.0) -> None:
    """Return once `address:port` accepts a TCP connection; LabError after `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise LabError(f"{address}:{port} did not accept connections: {exc}") from None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def terminate(
    pids: Iterable[int], children: dict[int, subprocess.Popen[bytes]], timeout: float
) -> None:
    alive = [p for p in pids if p > 1]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in alive:
        child = children.pop(pid, None)
        if child is not None:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            continue
        while exists(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if exists(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
