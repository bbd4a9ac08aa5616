"""`irctl run`, `resume`, `rollback`: runbooks through the engine."""

from __future__ import annotations

from pathlib import Path

import typer

from irctl.cli.common import DRY_RUN, YES, emit_run, state


def _find(name: str) -> Path:
    from irctl.runbook.loader import resolve_runbook

    return resolve_runbook(name, state().settings.runbook_dirs)


def run(
    name: str = typer.Argument(..., help="Runbook name (see `irctl runbooks list`) or a file"),
    param: list[str] = typer.Option([], "--param", "-p", help="Input as key=value (repeatable)"),
    dry_run: bool = DRY_RUN,
    yes: bool = YES,
) -> None:
    """Run a runbook: read steps run, mutating steps show their plan and ask first."""
    from irctl.runbook.loader import load_runbook
    from irctl.runbook.runner import parse_params, start_run

    app = state()
    path = _find(name)
    runbook = load_runbook(path)
    inputs = parse_params(param)
    result = start_run(
        app.settings,
        app.inventory,
        app.ui_for(yes=yes),
        runbook,
        path,
        inputs,
        dry_run=dry_run,
        yes=yes,
    )
    emit_run(result)


def resume(
    run_id: str = typer.Argument(...),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="Input again as key=value (secrets are not journaled)"
    ),
    yes: bool = YES,
) -> None:
    """Continue an interrupted run; an in-doubt step is reconciled with reality first."""
    from irctl.runbook.runner import parse_params, resume_run

    app = state()
    result = resume_run(
        app.settings,
        app.inventory,
        app.ui_for(yes=yes),
        run_id,
        yes=yes,
        find=_find,
        inputs=parse_params(param),
    )
    emit_run(result)


def rollback(
    run_id: str = typer.Argument(...),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would be undone and what cannot be; change nothing"
    ),
    yes: bool = YES,
) -> None:
    """Undo what a run did, newest first; each undo journaled. Shows the targets, then asks."""
    from irctl.runbook.runner import rollback_run

    app = state()
    result = rollback_run(
        app.settings, app.inventory, app.ui_for(yes=yes), run_id, yes=yes, dry_run=dry_run
    )
    emit_run(result)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(resume)
    app.command()(rollback)
