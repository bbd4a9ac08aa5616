"""`irctl lock list|break`: who holds which cluster, and a journaled way to free one."""

from __future__ import annotations

from typing import Any

import typer

from irctl.cli.common import YES, emit, state
from irctl.errors import RefusedError

lock_app = typer.Typer(help="Cluster locks: one mutating run per cluster.")


@lock_app.command("list")
def list_() -> None:
    """Locks in the state folder: cluster, operator, host, pid, run, step, since."""
    from irctl.lock import list_locks

    locks = list_locks(state().settings.locks_dir)

    def text(console: Any) -> None:
        if not locks:
            console.print("no cluster is locked")
        for lk in locks:
            alive = {True: "alive", False: "GONE (stale)", None: "on another host"}
            console.print(
                f"{lk['cluster']}: {lk['operator']} on {lk['host']} pid {lk['pid']} "
                f"({alive[lk['holder_alive']]}), run {lk['run_id']}, step {lk['step']}, "
                f"since {lk['since']}",
                markup=False,
            )

    emit(locks, text)


@lock_app.command("break")
def break_(
    cluster: str = typer.Argument(..., help="The cluster whose lock to remove"),
    reason: str = typer.Option(..., "--reason", help="Why (journaled)"),
    yes: bool = YES,
) -> None:
    """Remove a lock whose holder cannot release it (a dead host, a hung process). Journaled."""
    from irctl.lock import break_lock, list_locks

    app = state()
    held = [lk for lk in list_locks(app.settings.locks_dir) if lk["cluster"] == cluster]
    if held and held[0]["holder_alive"]:
        app.ui_for(yes=yes).warn(
            f"the holder (pid {held[0]['pid']}, run {held[0]['run_id']}) is still running"
        )
    if not app.ui_for(yes=yes).confirm(f"Break the lock of cluster {cluster!r}?"):
        raise RefusedError("the lock was kept", "nothing was changed")
    app.journal.check_writable()
    info = break_lock(app.settings.locks_dir, cluster)
    app.journal.append(
        "lock_broken", operator=app.settings.operator, cluster=cluster, reason=reason,
        previous_operator=info.operator, previous_host=info.host, previous_pid=info.pid,
        previous_run=info.run_id, previous_step=info.step,
    )  # fmt: skip
    data = {"cluster": cluster, "broken": True, "previous": info.__dict__}
    emit(data, f"lock of {cluster} broken (was {info.operator}, run {info.run_id})")


def register(app: typer.Typer) -> None:
    app.add_typer(lock_app, name="lock")
