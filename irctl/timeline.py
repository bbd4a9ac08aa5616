"""A run's timeline for the postmortem, built from the journal alone.

Every step and every change to the world (with its time, operator, targets and
outcome), the key times (diagnosed, mitigated, resolved), and what changed by
kind: filters, instances, shards, notifications. For a drill: what would have
been done, and how long the diagnosis took. `render_markdown` is ready to paste.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from irctl.durations import format_duration
from irctl.errors import InputError, JournalError, one_line
from irctl.journal import Journal

# Kinds of change a postmortem asks about, recognized by the step's action.
KINDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("filters_applied", "Filters applied", ("filter.block",)),
    ("filters_reverted", "Filters reverted", ("filter.revert",)),
    ("instances_replaced", "Instances replaced", ("aws.replace_proxy",)),
    ("proxies_added", "Proxies added", ("aws.scale_proxies",)),
    ("shards_flushed", "Shards flushed", ("cache.flush",)),
    ("notifications", "Notifications", ("notify.",)),
)
MAX_TARGETS = 5
MAX_PLAN_LINES = 8


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def span(seconds: float) -> str:
    """A duration for people: 300ms, 4.5s, 1m30s (tenths matter early in an incident)."""
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.1f}".removesuffix(".0") + "s"
    return format_duration(seconds)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _targets(value: Any) -> list[str]:
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


def _notify_detail(output: Any) -> str:
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


def build_timeline(journal: Journal, run_id: str) -> Timeline:
    """The timeline of `run_id`; InputError when the journal has no such run."""
    records = list(journal.records(run_id))
    started = next((r for r in records if r.get("event") == "run_started"), None)
    if started is None:
        raise InputError(
            f"no run {run_id!r} in the journal {journal.path}", "list runs with `irctl log`"
        )
    t0 = _ts(started["ts"])

    def since(rec: dict[str, Any]) -> float:
        return round((_ts(rec["ts"]) - t0).total_seconds(), 3)

    def load(value: Any) -> Any:
        try:
            return journal.load_blob(value)
        except JournalError:
            return value

    by_seq = {int(r["seq"]): r for r in records if r.get("event") == "intent"}
    step_action: dict[str, str] = {}
    step_start: dict[str, dict[str, Any]] = {}
    step_targets: dict[str, list[str]] = {}
    for rec in records:
        if rec.get("event") == "step_started" and rec.get("step"):
            step_action[rec["step"]] = str(rec.get("action"))
            step_start.setdefault(rec["step"], rec)
        if rec.get("event") in ("intent", "planned") and rec.get("step"):
            for target in _targets(rec.get("targets")):
                if target not in step_targets.setdefault(rec["step"], []):
                    step_targets[rec["step"]].append(target)

    events: list[Event] = []
    changes: dict[str, list[Change]] = {key: [] for key, _, _ in KINDS}
    planned: list[Change] = []
    milestones: dict[str, Milestone | None] = {
        "diagnosed": None,
        "mitigated": None,
        "resolved": None,
    }
    diagnosis_ms = 0
    finished: dict[str, Any] | None = None
    results_of: set[int] = set()

    def add(
        rec: dict[str, Any],
        kind: str,
        action: str,
        outcome: str,
        ok: bool | None,
        targets: list[str] | None = None,
        at: dict[str, Any] | None = None,
    ) -> None:
        at = at or rec
        events.append(
            Event(
                int(at["seq"]),
                at["ts"],
                since(at),
                str(rec.get("operator", "")),
                kind,
                rec.get("step"),
                rec.get("item"),
                action,
                targets if targets is not None else _targets(rec.get("targets")),
                outcome,
                ok,
            )
        )

    for rec in records:
        event, step = rec.get("event"), rec.get("step")
        action = str(rec.get("action") or step_action.get(str(step), ""))
        scope = rec.get("scope", "call")
        if event == "run_started":
            mode = "drill (--dry-run)" if rec.get("dry_run") else "live run"
            add(rec, "run", "run started", f"{mode} of {rec.get('runbook')}", None, [])
        elif event == "run_resumed":
            add(rec, "run", "run resumed", "reconciling, then continuing", None, [])
        elif event == "step_finished":
            status = str(rec.get("status"))
            text = status + (
                f" in {span(rec['duration_ms'] / 1000)}"
                if rec.get("duration_ms") is not None
                else ""
            )
            why = rec.get("error") or rec.get("reason")
            output = load(rec.get("output"))
            if action.startswith("notify.") and status == "succeeded":
                why = _notify_detail(output)
            elif status in ("succeeded", "executed") and not why:
                why = brief(output)
            if why:
                text += f": {one_line(str(why), 160)}"
            ok = status in ("succeeded", "executed", "planned", "not_run")
            add(
                rec,
                "step",
                action,
                text,
                ok,
                step_targets.get(str(step), []),
                at=step_start.get(str(step), rec),
            )
            if action.startswith("diagnose.") and status in ("succeeded", "executed"):
                diagnosis_ms += int(rec.get("duration_ms") or 0)
                if milestones["diagnosed"] is None:
                    milestones["diagnosed"] = Milestone(rec["ts"], since(rec), f"step {step}")
        elif event == "result" and scope == "call":
            intent = by_seq.get(int(rec.get("intent_seq") or 0))
            results_of.add(int(rec.get("intent_seq") or 0))
            ok = bool(rec.get("ok"))
            took = span((rec.get("duration_ms") or 0) / 1000)
            text = (
                (f"ok in {took}" + (f": {brief(rec.get('outcome'))}" if rec.get("outcome") else ""))
                if ok
                else f"FAILED: {rec.get('error')}"
            )
            add(rec, "call", action, text, ok, at=intent)  # listed when it started
            host_step = step_action.get(str(step), "")
            if (
                ok
                and not rec.get("dry_run")
                and not host_step.startswith("notify.")
                and (milestones["mitigated"] is None)
            ):
                milestones["mitigated"] = Milestone(
                    rec["ts"], since(rec), f"{action} in step {step}"
                )
        elif event == "result" and scope == "step":
            results_of.add(int(rec.get("intent_seq") or 0))
            kind = kind_of(action)
            output = load(rec.get("output"))
            ok = bool(rec.get("ok"))
            if rec.get("reconciled"):
                add(rec, "reconcile", action, "applied before the crash (reconciled)", True)
            if kind:
                detail = (
                    _notify_detail(output)
                    if kind == "notifications"
                    else brief(output)
                    if ok
                    else f"FAILED: {rec.get('error')}"
                )
                changes[kind].append(
                    Change(
                        rec["ts"],
                        step,
                        rec.get("item"),
                        action,
                        _targets(rec.get("targets")) or step_targets.get(str(step), []),
                        ok,
                        detail,
                    )
                )
            if ok and milestones["mitigated"] is None and kind != "notifications":
                milestones["mitigated"] = Milestone(rec["ts"], since(rec), f"step {step}")
        elif event == "planned":
            plan = load(rec.get("plan"))
            plan = plan if isinstance(plan, dict) else {}
            summary = one_line(str(plan.get("summary", "")), 200)
            add(rec, "planned", action, f"planned: {summary}", None)
            lines = [str(x) for x in plan.get("details") or []]
            if len(lines) > MAX_PLAN_LINES:
                lines = [*lines[:MAX_PLAN_LINES], f"… {len(lines) - MAX_PLAN_LINES} more lines"]
            change = Change(
                rec["ts"],
                step,
                rec.get("item"),
                action,
                _targets(rec.get("targets")),
                True,
                summary,
                [one_line(x, 300) for x in lines],
            )
            planned.append(change)
            if kind_of(action):
                changes[str(kind_of(action))].append(change)
        elif event == "undo":
            ok = bool(rec.get("ok"))
            text = "undone" if ok else f"undo FAILED: {rec.get('error')}"
            add(rec, "undo", f"undo {action}", text, ok, step_targets.get(str(step), []))
            if action == "filter.block":
                changes["filters_reverted"].append(
                    Change(
                        rec["ts"],
                        step,
                        rec.get("item"),
                        f"undo {action}",
                        step_targets.get(str(step), []),
                        ok,
                        f"rollback of step {step}",
                    )
                )
        elif event == "reconciled":
            add(
                rec,
                "reconcile",
                action,
                f"reconcile: {rec.get('state')} {rec.get('detail') or ''}".rstrip(),
                rec.get("state") == "applied",
            )
        elif event == "lock_takeover":
            add(
                rec,
                "lock",
                "lock taken over",
                f"from run {rec.get('previous_run')} of {rec.get('previous_operator')}",
                None,
                [],
            )
        elif event == "run_finished":
            finished = rec
            add(
                rec,
                "run",
                "run finished",
                str(rec.get("status")) + (f": {rec.get('error')}" if rec.get("error") else ""),
                rec.get("status") in ("succeeded", "planned"),
                [],
            )
            if rec.get("status") == "succeeded" and milestones["resolved"] is None:
                milestones["resolved"] = Milestone(rec["ts"], since(rec), "run succeeded")
    # An intent with no result: the process died mid-change; say so, never hide it.
    for rec in records:
        if rec.get("event") == "intent" and int(rec["seq"]) not in results_of:
            add(rec, "call", str(rec.get("action")), "IN DOUBT: no result recorded", None)
    events.sort(key=lambda e: e.seq)
    operators = list(dict.fromkeys(str(r.get("operator")) for r in records if r.get("operator")))
    try:
        verified = journal.verify().ok
    except (JournalError, OSError):
        verified = False
    return Timeline(
        run_id=run_id,
        runbook=str(started.get("runbook", "")),
        dry_run=bool(started.get("dry_run")),
        operators=operators,
        started_at=started["ts"],
        finished_at=finished["ts"] if finished else None,
        status=str(finished.get("status")) if finished else "unfinished",
        inputs=dict(started.get("inputs") or {}),
        journal_verified=verified,
        milestones=milestones,
        diagnosis_s=diagnosis_ms / 1000,
        changes=changes,
        planned=planned,
        events=events,
    )
