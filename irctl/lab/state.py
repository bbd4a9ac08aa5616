"""The lab's state file: every pid, namespace, link and file the lab made, in one JSON document.

`irctl lab up` writes it, the reconciler and `irctl lab fault` update it, `irctl lab down`
removes exactly what it lists. Updates happen under an `flock` on a lock file beside it
(the reconciler runs in another process) and replace the file atomically, so a reader never
sees half a document.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_NAME = "state.json"


def lab_dir(state_dir: Path) -> Path:
    """Where the lab keeps everything: `$IRCTL_STATE_DIR/lab/`."""
    return state_dir / "lab"


@dataclass
class HostRecord:
    name: str
    role: str  # proxy | backend | client
    netns: str
    address: str
    veth: str
    pids: dict[str, int] = field(default_factory=dict)  # daemon name -> pid
    instance_id: str | None = None
    host_key: str | None = None


@dataclass
class FaultRecord:
    kind: str  # loss | storm | overload | kill-backend
    hosts: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class LabState:
    directory: str
    prefix: str
    token: str
    bridge: str
    subnet: str
    gateway: str
    proxy_port: int
    backend_port: int
    next_index: int = 0
    hosts: dict[str, HostRecord] = field(default_factory=dict)
    faults: list[FaultRecord] = field(default_factory=list)
    daemon_pid: int | None = None
    endpoint: str | None = None
    sink_pid: int | None = None  # the notification sink (irctl/lab/sink.py)
    sink: str | None = None  # its URL
    aws: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    ready: bool = False  # the reconciler acts only once `lab up` has built the picture

    @property
    def path(self) -> Path:
        return Path(self.directory) / STATE_NAME

    def by_role(self, role: str) -> list[HostRecord]:
        return sorted(
            (h for h in self.hosts.values() if h.role == role), key=lambda h: _order(h.name)
        )

    def all_pids(self) -> list[int]:
        pids = [p for h in self.hosts.values() for p in h.pids.values()]
        pids += [p for f in self.faults for p in f.pids]
        return pids

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        hosts = {k: HostRecord(**v) for k, v in data.pop("hosts", {}).items()}
        faults = [FaultRecord(**f) for f in data.pop("faults", [])]
        return cls(**data, hosts=hosts, faults=faults)


def _order(name: str) -> tuple[str, int]:
    base, _, num = name.rpartition("-")
    return (base, int(num)) if num.isdigit() else (name, 0)


def read_state(directory: Path) -> LabState | None:
    try:
        text = (directory / STATE_NAME).read_text()
    except FileNotFoundError:
        return None
    return LabState.from_json(json.loads(text))


def write_state(state: LabState) -> None:
    path = state.path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(state.to_json(), indent=1, sort_keys=True))
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the lab's lock (one writer at a time across processes)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "state.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def updating(directory: Path) -> Iterator[LabState]:
    """Read, let the caller change, and write back the state, all under the lock."""
    with locked(directory):
        state = read_state(directory)
        if state is None:
            raise FileNotFoundError(directory / STATE_NAME)
        yield state
        write_state(state)


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as gone: it serves nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return fields[0] != "Z"
