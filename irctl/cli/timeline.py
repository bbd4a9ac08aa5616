"""`irctl timeline RUN_ID [--format md|json]`: the run as a postmortem timeline.

The Markdown is plain text on stdout, meant to be pasted into a postmortem
document as is; `--format json` (or `--output json`) gives the same content as data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from irctl.cli.common import emit, state
from irctl.errors import UsageError

if TYPE_CHECKING:
    from irctl.timeline import Change, Milestone, Timeline

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


def _change_line(c: Change, multi_day: bool) -> str:
    where = f"`{c.step}`" + (f"[{c.item}]" if c.item else "")
    on = f" on {targets(c.targets)}" if c.targets else ""
    mark = "" if c.ok or c.detail.startswith("NOT delivered") else " **failed**"
    detail = f": {c.detail}" if c.detail else ""
    return f"  - {clock(c.ts, multi_day)} {where} {c.action}{on}{mark}{detail}"


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
        total = t.events[-1].since_start_s
        lines.append(
            f"- **Finished:** {t.finished_at[:10]} {t.finished_at[11:19]} UTC, "
            f"status **{t.status}** after {span(total)}"
        )
    else:
        lines.append("- **Finished:** not recorded (the run was interrupted or is still going)")
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

    lines += ["## What would have changed" if t.dry_run else "## What changed", ""]
    for key, label, _ in KINDS:
        found = t.changes.get(key, [])
        count = str(len(found)) if found else "none"
        failed = sum(1 for c in found if not c.ok)
        if failed and key == "notifications":
            count += f" ({failed} not delivered)"
        lines.append(f"- **{label}:** {count}")
        lines += [_change_line(c, multi_day) for c in found]
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
