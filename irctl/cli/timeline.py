"""`irctl timeline RUN_ID [--format md|json]`: the run as a postmortem timeline.

The Markdown is plain text on stdout, meant to be pasted into a postmortem
document as is; `--format json` (or `--output json`) gives the same content as data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from irctl.cli.common import emit, state
from irctl.errors import UsageError, one_line

if TYPE_CHECKING:
    from irctl.timeline import Change, Milestone, Timeline
    from irctl.timeline.model import Rollback

MILESTONES = (
    ("diagnosed", "Diagnosed (first diagnose step done)"),
    ("mitigated", "Mitigated (first change to the fleet)"),
    ("resolved", "Resolved (run succeeded)"),
)


def register(app: typer.Typer) -> None:
    app.command("timeline")(timeline)


def timeline(
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="The run, as `irctl log` shows it"),
    fmt: str = typer.Option("md", "--format", help="md (Markdown to paste) or json"),
) -> None:
    """What a run did, when, by whom: ready for the postmortem."""
    from irctl.timeline import build_timeline

    if fmt not in ("md", "json"):
        raise UsageError(f"unknown format {fmt!r}", "use --format md or --format json")
    built = build_timeline(state().journal, run_id)
    if fmt == "json" or state().settings.output == "json":
        import json
        import sys

        sys.stdout.write(json.dumps(built.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return
    emit(built.to_dict(), render_markdown(built))


def cell(text: object) -> str:
    """Text that cannot break a Markdown table row."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def clock(ts: str, multi_day: bool) -> str:
    # 2026-11-30T20:01:02.345Z -> 20:01:02 (or 11-30 20:01:02 when the run spans days)
    return f"{ts[5:10]} {ts[11:19]}" if multi_day else ts[11:19]


def since(seconds: float) -> str:
    from irctl.timeline import span

    return f"+{span(seconds)}" if seconds > 0 else "+0s"


def targets(values: list[str], limit: int = 5) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f" … {len(values) - limit} more" if len(values) > limit else "")


def code(text: str) -> str:
    """A Markdown code span that holds any text: the fence outgrows the longest backtick run."""
    text = one_line(text)
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def plain(text: str) -> str:
    """Text shown as is in Markdown: emphasis, links and code marks are escaped."""
    return "".join("\\" + ch if ch in "\\`*[]<" else ch for ch in one_line(text))


def where(step: str | None, item: str | None) -> str:
    # `replace` [proxy-1]: the item stays outside the code span, so quotes or brackets in it
    # cannot break the span.
    return code(str(step)) + (f" [{plain(item)}]" if item else "")


def _change_line(c: Change, multi_day: bool) -> str:
    on = f" on {plain(targets(c.targets))}" if c.targets else ""
    mark = "" if c.ok or c.detail.startswith("NOT delivered") else " **failed**"
    detail = f": {plain(c.detail)}" if c.detail else ""
    undone = ""
    if c.undone_at:
        undone = f" — **undone** at {clock(c.undone_at, multi_day)} by {plain(c.undone_by or '')}"
    line = f"{clock(c.ts, multi_day)} {where(c.step, c.item)} {c.action}{on}{mark}{detail}"
    return f"  - {line}{undone}"


def _rollback_lines(t: Timeline, r: Rollback, multi_day: bool) -> list[str]:
    state = {"rolled_back": "rolled back", "failed": "some undo FAILED"}.get(r.status, r.status)
    lines = [
        f"- **{r.at[:10]} {r.at[11:19]} UTC** by {plain(r.by)}: {state}, "
        f"{len(r.undone)} change(s) undone" + (f", {len(r.failed)} failed" if r.failed else ""),
    ]
    if not r.undone and not r.failed:
        lines.append("  - nothing was reversible")
    lines += [f"  - undone:{_change_line(c, multi_day)[3:]}" for c in r.undone]
    lines += [f"  - NOT undone:{_change_line(c, multi_day)[3:]}" for c in r.failed]
    for c in r.irreversible:
        lines.append(f"  - cannot be undone:{_change_line(c, multi_day)[3:]}")
    return lines


def render_markdown(t: Timeline) -> str:
    from irctl.timeline import span

    multi_day = t.started_at[:10] != (t.finished_at or t.events[-1].ts)[:10]
    title = "Drill" if t.dry_run else "Incident"
    lines = [f"# {title} timeline: {t.runbook} (run {t.run_id})", ""]
    mode = "drill (`--dry-run`): nothing was changed" if t.dry_run else "live run"
    lines.append(f"- **Mode:** {mode}")
    lines.append(f"- **Operators:** {', '.join(t.operators)}")
    lines.append(f"- **Started:** {t.started_at[:10]} {t.started_at[11:19]} UTC")
    if t.finished_at:
        from irctl.timeline.model import parse_ts

        total = (parse_ts(t.finished_at) - parse_ts(t.started_at)).total_seconds()
        lines.append(
            f"- **Finished:** {t.finished_at[:10]} {t.finished_at[11:19]} UTC, "
            f"status **{t.status}** after {span(total)}"
        )
    else:
        lines.append("- **Finished:** not recorded (the run was interrupted or is still going)")
    for r in t.rollbacks:
        lines.append(
            f"- **Rolled back:** {r.at[:10]} {r.at[11:19]} UTC by {plain(r.by)}: "
            f"{len(r.undone)} change(s) undone"
            + (f", {len(r.failed)} undo(s) FAILED" if r.failed else "")
            + (f", {len(r.irreversible)} could not be undone" if r.irreversible else "")
        )
    if t.rollbacks or t.final_state != t.status:
        lines.append(f"- **Final state:** **{t.final_state}**")
    if t.inputs:
        shown = ", ".join(f"{k}={v}" for k, v in t.inputs.items())
        lines.append(f"- **Inputs:** {shown}")
    chain = "verified" if t.journal_verified else "**BROKEN: run `irctl log verify`**"
    lines += [
        f"- **Journal hash chain:** {chain}",
        "",
        "## Key times",
        "",
        "| Milestone | At (UTC) | Since start | What |",
        "|---|---|---|---|",
    ]
    for key, label in MILESTONES:
        m: Milestone | None = t.milestones.get(key)
        if m is None:
            why = "not in a drill" if t.dry_run and key != "diagnosed" else "not reached"
            lines.append(f"| {label} | — | — | {why} |")
        else:
            lines.append(
                f"| {label} | {clock(m.at, multi_day)} | {since(m.since_start_s)} "
                f"| {cell(m.what)} |"
            )
    diagnosis = (
        f"Diagnosis steps took {span(t.diagnosis_s)} in total."
        if t.milestones.get("diagnosed")
        else "No diagnose step finished."
    )
    lines += ["", diagnosis, ""]
    from irctl.timeline import KINDS
    from irctl.timeline.model import DRILL_VERBS

    lines += ["## What would have changed" if t.dry_run else "## What changed", ""]
    for key, label, _ in KINDS:
        found = t.changes.get(key, [])
        count = str(len(found)) if found else "none"
        if t.dry_run:
            count = f"would {DRILL_VERBS[key]} {len(found)}" if found else "none"
        failed = sum(1 for c in found if not c.ok)
        if failed and key == "notifications":
            count += f" ({failed} not delivered)"
        undone = sum(1 for c in found if c.undone_at)
        if undone:
            count += f" ({undone} undone by a rollback)"
        lines.append(f"- **{label}:** {count}")
        lines += [_change_line(c, multi_day) for c in found]
    if t.rollbacks:
        lines += ["", "## Rollback", ""]
        for r in t.rollbacks:
            lines += _rollback_lines(t, r, multi_day)
    if t.dry_run:
        lines += ["", "## What would have been done", ""]
        if not t.planned:
            lines.append("Nothing: no step would have changed anything.")
        for c in t.planned:
            lines.append(_change_line(c, multi_day)[2:])
            if c.plan:
                lines += ["  ```", *[f"  {x}" for x in c.plan], "  ```"]
    lines += [
        "",
        "## Events",
        "",
        "| Time (UTC) | Since start | Operator | Step | Action | Targets | Outcome |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in t.events:
        step = (e.step or "") + (f"[{e.item}]" if e.item else "")
        lines.append(
            f"| {clock(e.ts, multi_day)} | {since(e.since_start_s)} | {cell(e.operator)} "
            f"| {cell(step)} | {cell(e.action)} | {cell(targets(e.targets))} "
            f"| {cell(e.outcome)} |"
        )
    return "\n".join(lines) + "\n"
