"""Building a run's timeline by walking its journal records once, in order."""

from __future__ import annotations

from typing import Any

from irctl.errors import InputError, JournalError, one_line
from irctl.journal import Journal
from irctl.timeline.model import (
    KINDS,
    MAX_PLAN_LINES,
    Change,
    Event,
    Milestone,
    Record,
    Rollback,
    Timeline,
    brief,
    kind_of,
    notify_detail,
    parse_ts,
    span,
    targets_in,
)


def build_timeline(journal: Journal, run_id: str) -> Timeline:
    """The timeline of `run_id`; InputError when the journal has no such run."""
    records = list(journal.records(run_id))
    started = next((r for r in records if r.get("event") == "run_started"), None)
    if started is None:
        raise InputError(
            f"no run {run_id!r} in the journal {journal.path}", "list runs with `irctl log`"
        )
    b = _Builder(journal, records, started)
    for rec in records:
        handler = getattr(b, f"on_{rec.get('event')}", None)
        if handler is not None:
            handler(rec, str(rec.get("action") or b.step_action.get(str(rec.get("step")), "")))
    for rec in b.open_steps.values():
        b.unfinished(rec)
    # An intent with no result: the process died mid-change; say so, never hide it.
    for rec in records:
        if rec.get("event") == "intent" and int(rec["seq"]) not in b.settled:
            b.add(rec, "call", str(rec.get("action")), "IN DOUBT: no result recorded", None)
    b.events.sort(key=lambda e: e.seq)
    try:
        verified = journal.verify().ok
    except (JournalError, OSError):
        verified = False
    finished = b.finished
    status = str(finished.get("status")) if finished else "unfinished"
    return Timeline(
        run_id=run_id,
        runbook=str(started.get("runbook", "")),
        dry_run=bool(started.get("dry_run")),
        operators=list(dict.fromkeys(str(r["operator"]) for r in records if r.get("operator"))),
        started_at=started["ts"],
        finished_at=finished["ts"] if finished else None,
        status=status,
        inputs=dict(started.get("inputs") or {}),
        journal_verified=verified,
        milestones=b.milestones,
        diagnosis_s=b.diagnosis_ms / 1000,
        changes=b.changes,
        planned=b.planned,
        events=b.events,
        rollbacks=b.rollbacks,
        final_state=b.final_state(status),
    )


class _Builder:
    """Walks one run's records in order; one `on_<event>` method per kind of record."""

    def __init__(self, journal: Journal, records: list[dict[str, Any]], started: Record) -> None:
        self.journal = journal
        self.t0 = parse_ts(started["ts"])
        self.intents = {int(r["seq"]): r for r in records if r.get("event") == "intent"}
        self.step_action: dict[str, str] = {}
        self.open_steps: dict[str, Record] = {}  # started, not finished (yet)
        self.step_targets: dict[str, list[str]] = {}
        for rec in records:
            step = rec.get("step")
            if rec.get("event") == "step_started" and step:
                self.step_action[step] = str(rec.get("action"))
            if rec.get("event") in ("intent", "planned") and step:
                known = self.step_targets.setdefault(step, [])
                known += [t for t in targets_in(rec.get("targets")) if t not in known]
        self.events: list[Event] = []
        self.changes: dict[str, list[Change]] = {key: [] for key, _, _ in KINDS}
        self.planned: list[Change] = []
        self.milestones: dict[str, Milestone | None] = dict.fromkeys(
            ("diagnosed", "mitigated", "resolved")
        )
        self.diagnosis_ms = 0
        self.finished: Record | None = None
        self.settled: set[int] = set()  # intents whose outcome is known
        self.by_result: dict[int, Change] = {}  # a step's change, by its result's seq
        self.irreversible: list[Change] = []  # changes no rollback can undo
        self.rollbacks: list[Rollback] = []
        self.rolling: Rollback | None = None  # the rollback in progress

    def final_state(self, status: str) -> str:
        """What the fleet was left in: a rollback after the run changes the answer."""
        if not self.rollbacks:
            return status
        if any(r.undone for r in self.rollbacks) or status == "rolled_back":
            last = self.rollbacks[-1]
            partly = last.failed or last.status != "rolled_back"
            return "partly rolled back" if partly else "rolled back"
        return status

    def since(self, rec: Record) -> float:
        return round((parse_ts(rec["ts"]) - self.t0).total_seconds(), 3)

    def load(self, value: Any) -> Any:
        try:
            return self.journal.load_blob(value)
        except JournalError:
            return value

    def targets_of(self, rec: Record) -> list[str]:
        return self.step_targets.get(str(rec.get("step")), [])

    def add(
        self,
        rec: Record,
        kind: str,
        action: str,
        outcome: str,
        ok: bool | None,
        targets: list[str] | None = None,
        at: Record | None = None,
    ) -> None:
        at = at or rec
        if targets is None:
            targets = targets_in(rec.get("targets"))
        self.events.append(
            Event(
                int(at["seq"]),
                at["ts"],
                self.since(at),
                str(rec.get("operator", "")),
                kind,
                rec.get("step"),
                rec.get("item"),
                action,
                targets,
                outcome,
                ok,
            )
        )

    def change(
        self,
        kind: str,
        rec: Record,
        action: str,
        ok: bool,
        detail: str,
        targets: list[str],
        plan: list[str] | None = None,
    ) -> Change:
        found = Change(
            rec["ts"], rec.get("step"), rec.get("item"), action, targets, ok, detail, plan or []
        )
        self.changes[kind].append(found)
        return found

    def milestone(self, key: str, rec: Record, what: str) -> None:
        if self.milestones[key] is None:
            self.milestones[key] = Milestone(rec["ts"], self.since(rec), what)

    # -- one method per journal event ------------------------------------------------
    def on_run_started(self, rec: Record, action: str) -> None:
        mode = "drill (--dry-run)" if rec.get("dry_run") else "live run"
        self.add(rec, "run", "run started", f"{mode} of {rec.get('runbook')}", None, [])

    def on_run_resumed(self, rec: Record, action: str) -> None:
        self.add(rec, "run", "run resumed", "reconciling, then continuing", None, [])

    def on_step_started(self, rec: Record, action: str) -> None:
        earlier = self.open_steps.pop(str(rec.get("step")), None)
        if earlier is not None:
            self.unfinished(earlier)
        self.open_steps[str(rec.get("step"))] = rec

    def unfinished(self, rec: Record) -> None:
        action = str(rec.get("action"))
        text = "started, no finish recorded (interrupted)"
        self.add(rec, "step", action, text, None, self.targets_of(rec))

    def on_step_finished(self, rec: Record, action: str) -> None:
        status = str(rec.get("status"))
        text = status
        if rec.get("duration_ms") is not None:
            text += f" in {span(rec['duration_ms'] / 1000)}"
        why = rec.get("error") or rec.get("reason")
        output = self.load(rec.get("output"))
        if action.startswith("notify.") and status == "succeeded":
            why = notify_detail(output)
        elif status in ("succeeded", "executed") and not why:
            why = brief(output)
        if why:
            text += f": {one_line(str(why), 160)}"
        ok = status in ("succeeded", "executed", "planned", "not_run")
        at = self.open_steps.pop(str(rec.get("step")), rec)
        self.add(rec, "step", action, text, ok, self.targets_of(rec), at=at)
        if action.startswith("diagnose.") and status in ("succeeded", "executed"):
            self.diagnosis_ms += int(rec.get("duration_ms") or 0)
            self.milestone("diagnosed", rec, f"step {rec.get('step')}")

    def on_result(self, rec: Record, action: str) -> None:
        intent_seq = int(rec.get("intent_seq") or 0)
        self.settled.add(intent_seq)
        ok = bool(rec.get("ok"))
        if rec.get("scope", "call") == "call":  # one call to the world inside a step
            took = span((rec.get("duration_ms") or 0) / 1000)
            outcome = rec.get("outcome")
            text = f"ok in {took}" + (f": {brief(outcome)}" if outcome else "")
            if not ok:
                text = f"FAILED: {rec.get('error')}"
            self.add(rec, "call", action, text, ok, at=self.intents.get(intent_seq))
            host_step = self.step_action.get(str(rec.get("step")), "")
            if ok and not host_step.startswith("notify."):
                self.milestone("mitigated", rec, f"{action} in step {rec.get('step')}")
            return
        kind = kind_of(action)  # a whole step (or foreach item) that changed the world
        output = self.load(rec.get("output"))
        if rec.get("reconciled"):
            self.add(rec, "reconcile", action, "applied before the crash (reconciled)", True)
        if kind == "notifications":
            detail = notify_detail(output)
        else:
            detail = brief(output) if ok else f"FAILED: {rec.get('error')}"
        targets = targets_in(rec.get("targets")) or self.targets_of(rec)
        found = None
        if kind:
            if kind == "notifications":  # the step succeeds either way; delivery is the news
                ok = ok and isinstance(output, dict) and bool(output.get("delivered"))
            found = self.change(kind, rec, action, ok, detail, targets)
            self.by_result[int(rec["seq"])] = found
        if rec.get("ok") and rec.get("undo") is None:  # done, and nothing can take it back
            self.irreversible.append(
                found
                or Change(
                    rec["ts"], rec.get("step"), rec.get("item"), action, targets, True, detail
                )
            )
        if ok and kind != "notifications":
            self.milestone("mitigated", rec, f"step {rec.get('step')}")

    def on_planned(self, rec: Record, action: str) -> None:
        raw = self.load(rec.get("plan"))
        # A foreach step journals one record holding a plan per item: each is a change.
        plans = [p for p in raw if isinstance(p, dict)] if isinstance(raw, list) else [raw]
        plans = [p if isinstance(p, dict) else {} for p in plans] or [{}]
        summaries = [one_line(str(p.get("summary", "")), 200) for p in plans]
        text = summaries[0] + (f" (+{len(plans) - 1} more)" if len(plans) > 1 else "")
        self.add(rec, "planned", action, f"planned: {text}", None)
        kind = kind_of(action)
        for plan, summary in zip(plans, summaries, strict=True):
            lines = [one_line(str(x), 300) for x in plan.get("details") or []]
            if len(lines) > MAX_PLAN_LINES:
                lines = [*lines[:MAX_PLAN_LINES], f"… {len(lines) - MAX_PLAN_LINES} more lines"]
            own = targets_in(plan.get("targets")) if len(plans) > 1 else []
            found = Change(
                rec["ts"],
                rec.get("step"),
                rec.get("item"),
                action,
                own or targets_in(rec.get("targets")),
                True,
                summary,
                lines,
            )
            self.planned.append(found)
            if kind:
                self.changes[kind].append(found)

    def rollback_of(self, rec: Record) -> Rollback:
        if self.rolling is None:  # `on_failure: rollback` journals no start of its own
            self.rolling = Rollback(rec["ts"], str(rec.get("operator", "")), "unfinished")
            self.rollbacks.append(self.rolling)
        return self.rolling

    def close_rollback(self, status: str) -> None:
        if self.rolling is not None:
            self.rolling.status = status
            self.rolling.irreversible = [
                c for c in self.irreversible if c.ts <= self.rolling.at and c.ok
            ]
            self.rolling = None

    def on_rollback_started(self, rec: Record, action: str) -> None:
        self.close_rollback("unfinished")
        self.rollback_of(rec)
        text = f"undo {rec.get('pending', 0)} change(s), newest first"
        self.add(rec, "undo", "rollback started", text, None, [])

    def on_run_rolled_back(self, rec: Record, action: str) -> None:
        self.rollback_of(rec)
        status = str(rec.get("status"))
        text = f"{status}: {rec.get('undone', 0)} change(s) undone" + (
            f", {rec['failed']} failed" if rec.get("failed") else ""
        )
        if rec.get("note"):
            text += f" ({rec['note']})"
        self.add(rec, "undo", "rollback finished", text, status == "rolled_back", [])
        self.close_rollback(status)

    def on_undo_intent(self, rec: Record, action: str) -> None:
        self.rollback_of(rec)

    def on_undo(self, rec: Record, action: str) -> None:
        ok = bool(rec.get("ok"))
        text = "undone" if ok else f"undo FAILED: {rec.get('error')}"
        output = self.load(rec.get("output"))
        if ok and brief(output):
            text += f": {brief(output)}"
        self.add(rec, "undo", f"undo {action}", text, ok, self.targets_of(rec))
        rolling = self.rollback_of(rec)
        undid = self.by_result.get(int(rec.get("undoes") or 0))
        if undid is not None and ok:
            undid.undone_at, undid.undone_by = rec["ts"], str(rec.get("operator", ""))
        shown = undid or Change(
            rec["ts"], rec.get("step"), rec.get("item"), action, self.targets_of(rec), ok, ""
        )
        if ok:
            rolling.undone.append(shown)
        else:
            rolling.failed.append(
                Change(
                    rec["ts"],
                    rec.get("step"),
                    rec.get("item"),
                    action,
                    shown.targets,
                    False,
                    f"undo FAILED: {one_line(str(rec.get('error')), 160)}",
                )
            )
        if action == "filter.block":
            self.change(
                "filters_reverted",
                rec,
                f"undo {action}",
                ok,
                f"rollback of step {rec.get('step')}",
                self.targets_of(rec),
            )

    def on_reconciled(self, rec: Record, action: str) -> None:
        state = rec.get("state")
        if state in ("applied", "not_applied") and rec.get("intent_seq") is not None:
            self.settled.add(int(rec["intent_seq"]))
        text = f"reconcile: {state} {rec.get('detail') or ''}".rstrip()
        self.add(rec, "reconcile", action, text, state == "applied")

    def on_lock_takeover(self, rec: Record, action: str) -> None:
        who = f"from run {rec.get('previous_run')} of {rec.get('previous_operator')}"
        self.add(rec, "lock", "lock taken over", who, None, [])

    def on_run_finished(self, rec: Record, action: str) -> None:
        self.finished = rec
        status = str(rec.get("status"))
        if self.rolling is not None:  # the engine's own rollback ends with the run
            self.close_rollback("rolled_back" if status == "rolled_back" else "failed")
        text = status + (f": {rec.get('error')}" if rec.get("error") else "")
        self.add(rec, "run", "run finished", text, status in ("succeeded", "planned"), [])
        if status == "succeeded":
            self.milestone("resolved", rec, "run succeeded")
