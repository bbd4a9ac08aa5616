"""One mutating run per cluster at a time.

A lock is a small JSON file in the state folder naming the operator, host, pid,
run id, current step and since when. Taking it is atomic (O_EXCL under an
flock); a second operator is refused with those details. A lock whose process
is gone (same host, pid not alive) is taken over, and the caller journals that.

Breaking a lock leaves a small note (`<cluster>.broken`) naming who broke it and
whose run it was, so the broken run, which re-checks its lock before every change,
can say who stopped it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from irctl.errors import RefusedError


@dataclass
class LockInfo:
    cluster: str
    operator: str
    host: str
    pid: int
    run_id: str
    step: str | None
    since: str
    started: str | None = None  # the holder's process start time: a reused pid is not it


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return started is None or _start_time(pid) in (None, started)


class LockLost(RefusedError):
    """The run's lock was broken or taken by another run: it must change nothing more."""


class ClusterLock:
    def __init__(self, locks_dir: Path, cluster: str) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in cluster)
        self.path = locks_dir / f"{safe}.lock"
        self.cluster = cluster
        self.info: LockInfo | None = None
        self.taken_over: LockInfo | None = None

    def read(self) -> LockInfo | None:
        try:
            return LockInfo(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def acquire(self, operator: str, run_id: str, step: str | None = None) -> LockInfo:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        guard = self.path.with_suffix(".guard")
        with open(guard, "a") as gfh:
            fcntl.flock(gfh, fcntl.LOCK_EX)
            current = self.read()
            if current is not None and not self._stale(current):
                if current.run_id == run_id and current.pid == os.getpid():
                    self.info = current
                    return current
                step = f", on step {current.step}" if current.step else ""
                raise RefusedError(
                    f"cluster {self.cluster!r} is locked by {current.operator} on {current.host} "
                    f"(pid {current.pid}, run {current.run_id}{step}) since {current.since}",
                    "coordinate with them; it frees itself when their run ends "
                    "(a dead host: irctl lock break CLUSTER --reason ...)",
                )
            self.taken_over = current
            info = LockInfo(
                cluster=self.cluster,
                operator=operator,
                host=socket.gethostname(),
                pid=os.getpid(),
                run_id=run_id,
                step=step,
                since=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                started=_start_time(os.getpid()),
            )
            self._write(info)
            self.info = info
            return info

    def _stale(self, info: LockInfo) -> bool:
        return info.host == socket.gethostname() and not _alive(info.pid, info.started)

    def _guard(self) -> Any:
        guard = open(self.path.with_suffix(".guard"), "a")  # noqa: SIM115 (closed by caller)
        fcntl.flock(guard, fcntl.LOCK_EX)
        return guard

    def _mine(self, current: LockInfo | None) -> bool:
        return (
            self.info is not None
            and current is not None
            and current.pid == self.info.pid
            and current.run_id == self.info.run_id
        )

    def update_step(self, step: str | None) -> None:
        if self.info is None:
            return
        # Under the guard: a lock broken between the read and the write must stay broken.
        with self._guard():
            if self._mine(self.read()):
                self.info.step = step
                self._write(self.info)

    def verify(self) -> None:
        """Raise LockLost unless the lock file still names this run (checked before changes)."""
        if self.info is None:
            return
        current = self.read()
        if self._mine(current):
            return
        note = self._broken_note()
        if note and note.get("run_id") == self.info.run_id:
            by = f"was broken by {note.get('operator') or 'someone'}"
            if note.get("reason"):
                by += f" ({note['reason']})"
        elif current is not None:
            by = f"was taken by {current.operator} (run {current.run_id})"
        else:
            by = "was removed"
        raise LockLost(
            f"lock on {self.cluster} {by}; this run stops before changing anything else",
            f"check `irctl lock list` and the journal, then `irctl resume {self.info.run_id}` "
            "once nobody else is working on the cluster",
        )

    def _broken_note(self) -> dict[str, Any] | None:
        try:
            note = json.loads(self.path.with_suffix(".broken").read_text())
        except (OSError, ValueError):
            return None
        return note if isinstance(note, dict) else None

    def _write(self, info: LockInfo) -> None:
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(info)))
        os.replace(tmp, self.path)

    def release(self) -> None:
        if self.info is None:
            return
        current = self.read()
        if (
            current is not None
            and current.pid == self.info.pid
            and current.run_id == self.info.run_id
        ):
            self.path.unlink(missing_ok=True)
        self.info = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self.info) if self.info else {}


def list_locks(locks_dir: Path) -> list[dict[str, Any]]:
    """Every cluster lock in the state folder, with whether its holder is still alive here."""
    out: list[dict[str, Any]] = []
    for path in sorted(locks_dir.glob("*.lock")) if locks_dir.is_dir() else []:
        info = ClusterLock(locks_dir, path.stem).read()
        if info is None:
            continue
        here = info.host == socket.gethostname()
        alive = _alive(info.pid, info.started) if here else None
        out.append({**asdict(info), "holder_alive": alive})
    return out


def holder_alive(info: LockInfo) -> bool | None:
    """True/False for a holder on this host; None when it runs elsewhere (unknowable here)."""
    if info.host != socket.gethostname():
        return None
    return _alive(info.pid, info.started)


def holder_running(info: LockInfo) -> RefusedError:
    return RefusedError(
        f"the lock of {info.cluster!r} belongs to run {info.run_id} ({info.operator}), "
        f"still running here as pid {info.pid}",
        f"stop that run (Ctrl-C in its terminal, or kill -TERM {info.pid}); "
        "or --force to break it anyway (it stops before its next change)",
    )


def break_lock(
    locks_dir: Path, cluster: str, *, operator: str, reason: str, force: bool = False
) -> tuple[LockInfo, bool | None]:
    """Remove a cluster's lock; (whose it was, whether its holder was alive here).

    A holder still running on this host would go on changing things under another run's
    lock, so it is refused unless `force`. The caller journals the break.
    """
    lock = ClusterLock(locks_dir, cluster)
    locks_dir.mkdir(parents=True, exist_ok=True)
    with lock._guard():
        info = lock.read()
        if info is None:
            from irctl.errors import InputError

            raise InputError(f"cluster {cluster!r} is not locked", "see `irctl lock list`")
        alive = holder_alive(info)
        if alive and not force:
            raise holder_running(info)
        note = {
            "run_id": info.run_id,
            "operator": operator,
            "reason": reason,
            "forced": bool(alive),
            "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        tmp = lock.path.with_suffix(f".broken.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(note))
        os.replace(tmp, lock.path.with_suffix(".broken"))
        lock.path.unlink(missing_ok=True)
    return info, alive
