"""SIGTERM and SIGHUP stop a run the way Ctrl-C does.

A dropped SSH session (SIGHUP) or a `kill` (SIGTERM) must not leave a stale lock and a
run without `run_finished`: the handler raises `Terminated`, a KeyboardInterrupt, in the
main thread, so the engine's interrupt path runs (the mutation in flight finishes and is
journaled, the run ends `aborted`, the lock is released) and the process exits 130.
After SIGHUP the terminal is gone: its file descriptors are pointed at /dev/null so the
last words (and any rollback question, which then reads end-of-file) cannot block or fail.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGHUP)
received: list[str] = []  # names of the signals that interrupted this process, in order


class Terminated(KeyboardInterrupt):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def interrupted_by() -> str:
    """What the journal says stopped the run."""
    return f"interrupted by {received[-1]}" if received else "interrupted by the operator"


def _detach_terminal() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0, 1, 2):
            try:
                if os.isatty(fd):
                    os.dup2(devnull, fd)
            except OSError:
                pass
    finally:
        os.close(devnull)


def _handler(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    received.append(name)
    if signum == signal.SIGHUP:
        _detach_terminal()
    raise Terminated(name)


def install() -> None:
    """Main thread only. A signal already ignored (`nohup` ignores SIGHUP) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal.signal would raise; an embedding caller handles signals itself
    for sig in HANDLED:
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM/SIGHUP for a few lines that must not be cut in half (a thread
    started but not yet tracked); a signal that came meanwhile is raised on leaving."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    blocked = {signal.SIGINT, *HANDLED}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
