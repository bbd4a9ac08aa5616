"""What the executor works on: one step's context, and one unit of work per foreach item."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from irctl.actions.base import Context, Outcome, Plan
from irctl.runbook.model import Step
from irctl.runbook.results import StepResult


def item_key(index: int | None, item: Any) -> str:
    """A stable key for one foreach item, so resume matches items across processes.

    A readable prefix and a hash of the whole item: items that differ only late in
    their JSON never share a key. `_prepare` tells duplicates apart by occurrence.
    """
    if index is None:
        return ""
    text = json.dumps(item, sort_keys=True, default=str)
    if len(text) <= 64:
        return text
    return f"{text[:48]}#{hashlib.sha256(text.encode()).hexdigest()[:16]}"


@dataclass
class Work:
    key: str
    item: Any
    params: Any
    plan: Plan | None = None
    outcome: Outcome | None = None
    attempts: int = 0
    status: str = "pending"
    note: str | None = None
    abandoned: bool = False  # the engine gave up waiting; the thread must not overwrite status


@dataclass
class StepContext:
    """What the engine hands the executor for one step."""

    step: Step
    ctx: Context
    scope: dict[str, Any]
    dry_run: bool
    after_planned: bool  # a mutating step was only planned earlier in this drill
    done_items: dict[str, Any] = field(default_factory=dict)  # key -> output, from the journal
    on_crash: Any = None  # callable(exc) -> str: writes a traceback file, returns its path
    literal_params: bool = False
    # Raises LockLost unless the cluster lock still names this run: called before each change.
    guard: Callable[[], None] | None = None


class StepInterrupted(Exception):
    def __init__(self, result: StepResult) -> None:
        self.result = result


def elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
