"""What a run returns: data the CLI renders as text or JSON (INTERFACE.md's shape)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from irctl.errors import ExitCode

# Step statuses. In a drill a read step is `executed`, a mutating one `planned`;
# a step whose `when` was false is `not_run` with the reason: never a vague "skipped".
STEP_STATUSES = (
    "succeeded",
    "executed",
    "planned",
    "not_run",
    "failed",
    "declined",
    "interrupted",
)
RUN_STATUSES = ("succeeded", "failed", "rolled_back", "aborted", "planned")


@dataclass
class StepResult:
    id: str
    action: str
    status: str
    output: Any = None
    error: str | None = None
    reason: str | None = None
    plan: list[dict[str, Any]] | None = None
    duration_ms: int = 0
    attempts: int = 0
    note: str | None = None
    summary: str | None = None  # the action's one line: what it did, or would do in a drill

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "action": self.action,
            "status": self.status,
            "output": self.output,
            "duration_ms": self.duration_ms,
        }
        for key in ("error", "reason", "plan", "note", "summary"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        if self.attempts > 1:
            data["attempts"] = self.attempts
        return data


@dataclass
class RunResult:
    run_id: str
    runbook: str
    status: str
    dry_run: bool
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None
    undone: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    journal: str | None = None
    is_rollback: bool = False  # `irctl rollback`: rolled_back is its success
    changed: bool = True  # whether a run that did not succeed may have changed the world
    plan: dict[str, Any] | None = None  # `irctl rollback`: what it undoes and what it cannot

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return int(ExitCode.INTERRUPTED)
        good = (
            ("succeeded", "planned", "rolled_back")
            if self.is_rollback
            else ("succeeded", "planned")
        )
        return int(ExitCode.OK if self.status in good else ExitCode.FAILED)

    def step(self, step_id: str) -> StepResult:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "runbook": self.runbook,
            "status": self.status,
            "dry_run": self.dry_run,
            "steps": [s.to_dict() for s in self.steps],
        }
        if self.error:
            data["error"] = self.error
        if self.undone:
            data["undone"] = self.undone
        if self.plan is not None:
            data["rollback_plan"] = self.plan
        if self.interrupted:
            data["interrupted"] = True
        if self.journal:
            data["journal"] = self.journal
        return data
