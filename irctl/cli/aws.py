"""`irctl replace-proxy` and `irctl scale-proxies`: one AWS action each, through the engine."""

from __future__ import annotations

import typer

from irctl.cli.common import DRY_RUN, YES, emit_run, run_action_command
from irctl.cli.options import in_range

CLUSTER = typer.Option(..., "--cluster", "-c", help="Cluster name from the inventory")


def replace_proxy(
    proxy: str = typer.Argument(..., help="The proxy: inventory name, address or instance id"),
    cluster: str = CLUSTER,
    keep_old: bool = typer.Option(
        False, "--keep-old", help="Stop the old machine and tag it for forensics; do not terminate"
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace even the last healthy target (journaled)"
    ),
    dry_run: bool = DRY_RUN,
    yes: bool = YES,
) -> None:
    """Replace a proxy machine: new one healthy first, then the old one drained and retired."""
    params = {"cluster": cluster, "proxy": proxy, "keep_old": keep_old, "force": force}
    result = run_action_command(
        "aws.replace_proxy",
        params,
        dry_run=dry_run,
        yes=yes,
        lock_cluster=cluster,
        title=f"replace proxy {proxy} in {cluster}",
    )
    emit_run(result)


def scale_proxies(
    cluster: str = CLUSTER,
    add: int = typer.Option(
        ..., "--add", callback=in_range(1, 100), help="How many proxies to add"
    ),
    dry_run: bool = DRY_RUN,
    yes: bool = YES,
) -> None:
    """Add proxies to a cluster and wait until the target group reports them healthy."""
    result = run_action_command(
        "aws.scale_proxies",
        {"cluster": cluster, "add": add},
        dry_run=dry_run,
        yes=yes,
        lock_cluster=cluster,
        title=f"add {add} proxies to {cluster}",
    )
    emit_run(result)


def register(app: typer.Typer) -> None:
    app.command("replace-proxy")(replace_proxy)
    app.command("scale-proxies")(scale_proxies)
