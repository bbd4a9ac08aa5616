"""`irctl cache stats|flush|locate`: the shards behind a cluster's proxies."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from irctl.cli.common import DRY_RUN, YES, emit, emit_run, run_action_command, state
from irctl.cli.options import in_range, usage_error
from irctl.cli.tables import fit_columns
from irctl.errors import IrctlError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

cache_app = typer.Typer(help="Cache shards: stats, flush, locate.", no_args_is_help=True)

CLUSTER = typer.Option(..., "--cluster", "-c", help="Cluster name in the inventory")


# Columns by terminal width (a tmux pane at 80 columns, or piped output): the shard, the
# server address and whether it answers always show whole; the rest as width allows.
_FULL = ["up", "version", "uptime", "conns", "rejected", "items", "hit%", "evicted", "flushes"]
_REDUCED = ["up", "uptime", "conns", "rejected", "items", "hit%", "evicted"]
_COMPACT = ["up", "conns", "rejected", "hit%"]
_DROP_ORDER = ["flushes", "evicted", "version", "items", "uptime", "rejected", "hit%", "conns"]


def _stats_cells(row: dict[str, Any]) -> dict[str, str]:
    from irctl.durations import format_duration

    if not row["reachable"]:
        return {"up": "[red]no[/]"}
    ratio = row["hit_ratio"]
    return {
        "up": "[green]yes[/]",
        "version": str(row["version"]),
        "uptime": format_duration(row["uptime"] or 0),
        "conns": f"{row['curr_connections']}/{row['max_connections']}",
        "rejected": str(row["rejected_connections"]),
        "items": str(row["curr_items"]),
        "hit%": "-" if ratio is None else f"{ratio:.1%}",
        "evicted": str(row["evictions"]),
        "flushes": str(row["cmd_flush"]),
    }


def _stats_table(data: dict[str, Any]) -> Callable[[Console], None]:
    def show(console: Console) -> None:
        from rich.markup import escape
        from rich.table import Table

        width = console.width
        rows = [
            {"shard": escape(shard["name"]), "server": escape(row["server"]), **_stats_cells(row)}
            for shard in data["shards"]
            for row in shard["servers"]
        ]
        tier = _FULL if width >= 140 else _REDUCED if width >= 100 else _COMPACT
        columns = fit_columns(["shard", "server", *tier], rows, width, _DROP_ORDER)
        table = Table(title=f"cache of cluster {data['cluster']}", title_justify="left")
        for column in columns:
            right = column not in ("shard", "server")
            table.add_column(column, justify="right" if right else "left", no_wrap=True)
        for cells in rows:
            table.add_row(*(cells.get(c, "-") for c in columns))
        errors = [
            f"[red]{escape(row['server'])}[/]: {escape(row['error'] or '')}"
            for shard in data["shards"]
            for row in shard["servers"]
            if not row["reachable"]
        ]
        console.print(table)
        for line in errors:
            console.print(line)
        console.print(data["summary"])

    return show


@cache_app.command("stats")
def stats(
    cluster: str = CLUSTER,
    shard: list[str] = typer.Option([], "--shard", "-s", help="Only this shard (repeatable)"),
    concurrency: int = typer.Option(16, "--concurrency", callback=in_range(1, 256),
                                    help="Servers asked at once"),
) -> None:  # fmt: skip
    """Per shard and server: reachable, version, uptime, connections, items, hit ratio, flushes."""
    from irctl.actions.cache import cache_stats
    from irctl.providers.memcached import MemcachedProvider

    app = state()
    provider = MemcachedProvider.create(app.inventory, app.settings)
    try:
        data = cache_stats(app.inventory, cluster, shard, provider, concurrency)
    finally:
        provider.close()
    emit(data, _stats_table(data))


def _check_seconds(flag: str, value: str) -> None:
    from irctl.durations import parse_duration

    try:
        seconds = parse_duration(value)
    except IrctlError:
        seconds = -1.0
    if seconds < 0:
        raise UsageError(
            f"{flag} {value!r}: give seconds >= 0 (10) or a duration (30s, 2m)",
            "see `irctl cache flush --help`",
        )


@cache_app.command("flush")
def flush(
    cluster: str = CLUSTER,
    shard: list[str] = typer.Option([], "--shard", "-s", help="Shard to flush (repeatable)"),
    all_shards: bool = typer.Option(False, "--all-shards", help="Every shard of the cluster"),
    delay: str = typer.Option(
        "0",
        "--delay",
        metavar="SECONDS",
        help="Seconds before memcached drops the items (flush_all's delay): a number of "
        "seconds, or a duration like 30s or 2m; rounded up to whole seconds",
    ),
    stagger: str = typer.Option(
        "0", "--stagger", help="Pause between shards: seconds, or a duration like 30s"
    ),
    dry_run: bool = DRY_RUN,
    yes: bool = YES,
) -> None:
    """Flush the chosen shards (irreversible): type their names to confirm; proven per server."""
    from pydantic import ValidationError

    from irctl.actions.cache_flush import FlushParams

    _check_seconds("--delay", delay)
    _check_seconds("--stagger", stagger)
    params = {"cluster": cluster, "shards": shard, "all_shards": all_shards, "delay": delay,
              "stagger": stagger}  # fmt: skip
    try:
        FlushParams.model_validate(params)  # bad input is refused before a run starts
    except ValidationError as exc:
        raise usage_error(exc, {"shards": "--shard"}, "cache flush", FlushParams) from None
    title = f"flush cache shards of {cluster}"
    emit_run(run_action_command("cache.flush", params, dry_run=dry_run, yes=yes,
                                lock_cluster=cluster, title=title))  # fmt: skip


@cache_app.command("locate")
def locate(
    key: str = typer.Argument(..., help="The memcached key"), cluster: str = CLUSTER
) -> None:
    """Which shard and server hold KEY, hashed exactly as the cluster's proxies hash it."""
    from irctl.actions.cache import locate_key

    data = locate_key(state().inventory, cluster, key)
    text = (
        f"{data['key']} -> shard {data['shard']} ({', '.join(data['servers'])})"
        f"  [{data['distribution']}/{data['hash']}, hash {data['hash_value']}]"
    )
    emit(data, text)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
