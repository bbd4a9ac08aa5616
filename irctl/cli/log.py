"""`irctl log` and `irctl log verify`: the journal, filtered, and its hash chain checked."""

from __future__ import annotations

import time
from typing import Any

import typer

from irctl.cli.common import emit, state
from irctl.errors import IrctlError

log_app = typer.Typer(help="The journal: who did what, when.", invoke_without_command=True)


def _line(rec: dict[str, Any]) -> str:
    parts = [str(rec.get("ts", "")), str(rec.get("run_id", "-")), str(rec.get("event", ""))]
    for key in ("step", "item", "action", "status"):
        if rec.get(key) not in (None, ""):
            parts.append(f"{key}={rec[key]}")
    if "ok" in rec:
        parts.append("ok" if rec["ok"] else "FAILED")
    if rec.get("error"):
        parts.append(f"error={rec['error']}")
    if rec.get("operator"):
        parts.append(f"by {rec['operator']}")
    return " ".join(parts)


@log_app.callback()
def log(
    ctx: typer.Context,
    run: str = typer.Option(None, "--run", help="Only this run"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new records"),
    limit: int = typer.Option(0, "--tail", help="Only the last N records (0: all)"),
) -> None:
    """Show the journal, filtered."""
    if ctx.invoked_subcommand is not None:
        return
    journal = state().journal
    records = list(journal.records(run, expand=False))
    if limit:
        records = records[-limit:]
    json_mode = state().settings.output == "json"
    if not follow:
        emit(records, "\n".join(_line(r) for r in records) if records else "(no records)")
        return
    if json_mode:
        raise IrctlError("--follow prints text", "drop --output json, or poll `irctl log --run`")
    for rec in records:
        print(_line(rec), flush=True)
    seen = records[-1]["seq"] if records else 0
    while True:  # the operator stops it with Ctrl-C
        time.sleep(0.5)
        for rec in journal.records(run, expand=False):
            if rec["seq"] > seen:
                print(_line(rec), flush=True)
                seen = rec["seq"]


@log_app.command("verify")
def verify() -> None:
    """Check the hash chain: exit 1 naming the first edited, removed or reordered line."""
    journal = state().journal
    result = journal.verify()
    data = {
        "ok": result.ok,
        "records": result.records,
        "journal": str(journal.path),
        "bad_line": result.bad_line,
        "reason": result.reason,
    }
    if result.ok:
        emit(data, f"ok: {result.records} records, chain intact ({journal.path})")
        return
    emit(
        data,
        f"BROKEN: {journal.path}:{result.bad_line}: {result.reason} "
        f"({result.records} records before it are intact)",
    )
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(log_app, name="log")
