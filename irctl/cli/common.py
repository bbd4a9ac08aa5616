"""What every command shares: settings, the lazily loaded inventory, the UI, and one renderer.

Commands return data; `emit` prints it as JSON (`--output json`: one document on
stdout, nothing else there) or as text. Live output goes to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from irctl.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from irctl.inventory import Inventory
    from irctl.journal import Journal
    from irctl.runbook.results import RunResult
    from irctl.ui import ConsoleUI


@dataclass
class AppState:
    settings: Settings
    _inventory: Inventory | None = None
    _uis: dict[bool, ConsoleUI] = field(default_factory=dict)

    @property
    def inventory(self) -> Inventory:
        if self._inventory is None:
            from irctl.inventory import load_inventory

            self._inventory = load_inventory(self.settings.inventory_path)
        return self._inventory

    @property
    def journal(self) -> Journal:
        from irctl.journal import Journal

        return Journal(self.settings.journal_path)

    @property
    def ui(self) -> ConsoleUI:
        return self.ui_for(yes=False)

    def ui_for(self, *, yes: bool) -> ConsoleUI:
        if yes not in self._uis:
            from irctl.ui import ConsoleUI

            self._uis[yes] = ConsoleUI(assume_yes=yes)
        return self._uis[yes]


_STATE: AppState | None = None


def set_state(settings: Settings) -> AppState:
    global _STATE
    _STATE = AppState(settings)
    return _STATE


def state() -> AppState:
    global _STATE
    if _STATE is None:
        _STATE = AppState(Settings.resolve())
    return _STATE


def stdout_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, emoji=False)


def emit(data: Any, text: Callable[[Console], None] | str | None = None) -> None:
    """Print a command's result: JSON when asked, else the text renderer (or a plain form)."""
    if state().settings.output == "json":
        sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    if isinstance(text, str):
        sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
        return
    console = stdout_console()
    if text is not None:
        text(console)
    elif isinstance(data, str):
        console.print(data, markup=False)
    else:
        from rich.pretty import Pretty

        console.print(Pretty(data))


def render_run(result: RunResult) -> Callable[[Console], None]:
    def show(console: Console) -> None:
        from rich.markup import escape
        from rich.table import Table

        # A failed rollback has its own way on (run it again); resume/undo would mislead.
        failed = (
            result.status in ("failed", "aborted") and not result.dry_run and not result.is_rollback
        )
        changed = failed and result.changed
        only = result.steps[0] if len(result.steps) == 1 else None
        if failed and not changed and only and result.runbook.startswith("command-"):
            # A one-step command refused before it changed anything (an unknown shard, a
            # bad filter id): one line, like any other bad input, not a run table.
            reason = only.error or only.reason or result.error or "failed"
            console.print(f"[bold red]{result.status}[/]: {escape(reason)}")
            return

        title = f"run {result.run_id} ({result.runbook}){' — drill' if result.dry_run else ''}"
        table = Table(title=title, title_justify="left", show_lines=False)
        for column in ("step", "action", "status", "detail"):
            table.add_column(column)
        colors = {
            "succeeded": "green",
            "executed": "green",
            "planned": "blue",
            "failed": "red",
            "not_run": "dim",
            "declined": "yellow",
            "undone": "magenta",
        }
        for step in result.steps:
            detail = step.error or step.reason or step.note or step.summary or ""
            if not detail and isinstance(step.output, dict):
                detail = str(step.output.get("summary") or step.output.get("classification") or "")
            color = colors.get(step.status, "white")
            table.add_row(step.id, step.action, f"[{color}]{step.status}[/]", detail)
        console.print(table)
        color = "green" if result.status in ("succeeded", "planned", "rolled_back") else "red"
        console.print(
            f"[bold {color}]{result.status}[/]" + (f": {result.error}" if result.error else "")
        )
        if changed:
            console.print(
                f"resume: irctl resume {result.run_id}    undo: irctl rollback {result.run_id}"
            )
        elif failed:
            console.print("nothing was changed: fix the cause and run it again")

    return show


def emit_run(result: RunResult) -> NoReturn:
    """Render a run and exit with its code (0 succeeded/planned, 1 failed, 130 interrupted)."""
    emit(result.to_dict(), render_run(result))
    raise typer.Exit(result.exit_code)


def run_action_command(
    action: str,
    params: dict[str, Any],
    *,
    dry_run: bool,
    yes: bool,
    lock_cluster: str | None,
    title: str | None = None,
) -> RunResult:
    """Run one action as a one-step run: journal, lock, plan, confirmation, dry-run."""
    from irctl.runbook.runner import run_single_action

    app = state()
    return run_single_action(
        app.settings,
        app.inventory,
        app.ui_for(yes=yes),
        action,
        params,
        dry_run=dry_run,
        yes=yes,
        lock_cluster=lock_cluster,
        title=title,
    )


DRY_RUN = typer.Option(False, "--dry-run", help="Show the exact plan; change nothing.")
YES = typer.Option(False, "--yes", "-y", help="Answer yes to confirmations.")
