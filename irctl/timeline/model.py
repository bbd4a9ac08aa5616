"""What a timeline is made of (events, changes, milestones) and how its cells are worded."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from irctl.durations import format_duration
from irctl.errors import one_line

# Kinds of change a postmortem asks about, recognized by the step's action.
KINDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("filters_applied", "Filters applied", ("filter.block",)),
    ("filters_reverted", "Filters reverted", ("filter.revert",)),
    ("instances_replaced", "Instances replaced", ("aws.replace_proxy",)),
    ("proxies_added", "Proxies added", ("aws.scale_proxies",)),
    ("shards_flushed", "Shards flushed", ("cache.flush",)),
    ("notifications", "Notifications", ("notify.",)),
)
# What a drill says instead of a count: "would replace 3".
DRILL_VERBS = {
    "filters_applied": "apply",
    "filters_reverted": "revert",
    "instances_replaced": "replace",
    "proxies_added": "add",
    "shards_flushed": "flush",
    "notifications": "send",
}
MAX_TARGETS = 5
MAX_PLAN_LINES = 8
Record = dict[str, Any]


@dataclass
class Event:
    seq: int  # orders events as the journal did (a step sorts at its start)
    ts: str
    since_start_s: float
    operator: str
    kind: str  # run, step, call, planned, undo, reconcile, lock
    step: str | None
    item: str | None
    action: str
    targets: list[str]
    outcome: str
    ok: bool | None = None


@dataclass
class Change:
    ts: str
    step: str | None
    item: str | None
    action: str
    targets: list[str]
    ok: bool
    detail: str
    plan: list[str] = field(default_factory=list)  # drills: the exact calls
    undone_at: str | None = None  # a rollback undid it (when)
    undone_by: str | None = None


@dataclass
class Rollback:
    """One `irctl rollback` (or `on_failure: rollback`): what it undid and what it could not."""

    at: str
    by: str
    status: str  # rolled_back, failed (some undo failed), or unfinished
    undone: list[Change] = field(default_factory=list)
    failed: list[Change] = field(default_factory=list)
    irreversible: list[Change] = field(default_factory=list)  # changes no rollback can undo


@dataclass
class Milestone:
    at: str
    since_start_s: float
    what: str


@dataclass
class Timeline:
    run_id: str
    runbook: str
    dry_run: bool
    operators: list[str]
    started_at: str
    finished_at: str | None
    status: str  # the run's status, or "unfinished"
    inputs: dict[str, Any]
    journal_verified: bool
    milestones: dict[str, Milestone | None]
    diagnosis_s: float
    changes: dict[str, list[Change]]
    planned: list[Change]
    events: list[Event]
    rollbacks: list[Rollback] = field(default_factory=list)
    final_state: str = ""  # the status, or "rolled back" / "partly rolled back" after a rollback

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def span(seconds: float) -> str:
    """A duration for people: 300ms, 4.5s, 1m30s (tenths matter early in an incident)."""
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.1f}".removesuffix(".0") + "s"
    return format_duration(seconds)


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def targets_in(value: Any) -> list[str]:
    return [str(t) for t in value] if isinstance(value, list) else []


def brief(value: Any, limit: int = 120) -> str:
    """A few short fields of an output, for one table cell."""
    if not isinstance(value, dict):
        return "" if value is None else one_line(str(value), limit)
    parts = []
    for key, item in value.items():
        if isinstance(item, list) and all(isinstance(v, str | int | float) for v in item):
            parts.append(f"{key}={','.join(map(str, item[:MAX_TARGETS]))}")
        elif isinstance(item, str | int | float | bool):
            parts.append(f"{key}={item}")
        if len(parts) == 4:
            break
    return one_line(", ".join(parts), limit)


def notify_detail(output: Any) -> str:
    out = output if isinstance(output, dict) else {}
    where = out.get("channel", "?")
    if not out.get("delivered"):
        return f"NOT delivered to {where}: {out.get('error', 'unknown error')}"
    text = f"delivered to {where}"
    if out.get("incident_id"):
        text += f" (incident {out['incident_id']}: {out.get('status')})"
    return text


def kind_of(action: str) -> str | None:
    for key, _, prefixes in KINDS:
        if any(action == p or (p.endswith(".") and action.startswith(p)) for p in prefixes):
            return key
    return None
