"""A run's timeline for the postmortem, built from the journal alone.

Every step and every change to the world (with its time, operator, targets and
outcome), the key times (diagnosed, mitigated, resolved), and what changed by
kind: filters, instances, shards, notifications. For a drill: what would have
been done, and how long the diagnosis took. `irctl.cli.timeline.render_markdown` is ready
to paste.
"""

from irctl.timeline.builder import build_timeline
from irctl.timeline.model import (
    KINDS,
    MAX_PLAN_LINES,
    MAX_TARGETS,
    Change,
    Event,
    Milestone,
    Timeline,
    brief,
    kind_of,
    span,
)

__all__ = [
    "KINDS",
    "MAX_PLAN_LINES",
    "MAX_TARGETS",
    "Change",
    "Event",
    "Milestone",
    "Timeline",
    "brief",
    "build_timeline",
    "kind_of",
    "span",
]
