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
    force: bool = typer.Option(
        False, "--force", help="Break it even though its run is still alive on this host"
    ),
    yes: bool = YES,
) -> None:
    """Remove a lock whose holder cannot release it (a dead host, a hung process). Journaled.

    A run still alive on this host is refused unless --force; a broken run stops before
    its next change.
    """
    from irctl.lock import ClusterLock, break_lock, holder_running, list_locks

    app = state()
    held = [lk for lk in list_locks(app.settings.locks_dir) if lk["cluster"] == cluster]
    if held and held[0]["holder_alive"]:
        info = ClusterLock(app.settings.locks_dir, cluster).read()
        if not force and info is not None:
            # Refused before asking; break_lock checks again under the guard.
            raise holder_running(info)
        app.ui_for(yes=yes).warn(
            f"the holder (pid {held[0]['pid']}, run {held[0]['run_id']}) is still running; "
            "it stops before its next change"
        )
    if not app.ui_for(yes=yes).confirm(f"Break the lock of cluster {cluster!r}?"):
        raise RefusedError("the lock was kept", "nothing was changed")
    app.journal.check_writable()
    info, alive = break_lock(
        app.settings.locks_dir, cluster, operator=app.settings.operator, reason=reason,
        force=force,
    )  # fmt: skip
    app.journal.append(
        "lock_broken", operator=app.settings.operator, cluster=cluster, reason=reason,
        forced=bool(alive), holder_alive=alive,
        previous_operator=info.operator, previous_host=info.host, previous_pid=info.pid,
        previous_run=info.run_id, previous_step=info.step,
    )  # fmt: skip
    data = {"cluster": cluster, "broken": True, "forced": bool(alive), "previous": info.__dict__}
    emit(data, f"lock of {cluster} broken (was {info.operator}, run {info.run_id})")


def register(app: typer.Typer) -> None:
    app.add_typer(lock_app, name="lock")
