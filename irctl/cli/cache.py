"""`irctl cache stats|flush|locate`: the shards behind a cluster's proxies."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from irctl.cli.common import DRY_RUN, YES, emit, emit_run, run_action_command, state
from irctl.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

cache_app = typer.Typer(help="Cache shards: stats, flush, locate.", no_args_is_help=True)

CLUSTER = typer.Option(..., "--cluster", "-c", help="Cluster name in the inventory")


def _stats_table(data: dict[str, Any]) -> Callable[[Console], None]:
    def show(console: Console) -> None:
        from rich.markup import escape
        from rich.table import Table

        from irctl.durations import format_duration

        table = Table(title=f"cache of cluster {data['cluster']}", title_justify="left")
        table.add_column("shard", no_wrap=True)
        table.add_column("server", no_wrap=True)
        for column in ("up", "version", "uptime", "conns", "rejected", "items", "hit%",
                       "evicted", "flushes"):  # fmt: skip
            table.add_column(column, justify="right")
        for shard in data["shards"]:
            for row in shard["servers"]:
                if not row["reachable"]:
                    table.add_row(
                        shard["name"],
                        row["server"],
                        "[red]no[/]",
                        f"[red]{escape(row['error'])}[/]",
                    )
                    continue
                ratio = row["hit_ratio"]
                table.add_row(
                    shard["name"], row["server"], "[green]yes[/]", str(row["version"]),
                    format_duration(row["uptime"] or 0),
                    f"{row['curr_connections']}/{row['max_connections']}",
                    str(row["rejected_connections"]), str(row["curr_items"]),
                    "-" if ratio is None else f"{ratio:.1%}", str(row["evictions"]),
                    str(row["cmd_flush"]),
                )  # fmt: skip
        console.print(table)
        console.print(data["summary"])

    return show


@cache_app.command("stats")
def stats(
    cluster: str = CLUSTER,
    shard: list[str] = typer.Option([], "--shard", "-s", help="Only this shard (repeatable)"),
    concurrency: int = typer.Option(16, "--concurrency", min=1, max=256,
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


@cache_app.command("flush")
def flush(
    cluster: str = CLUSTER,
    shard: list[str] = typer.Option([], "--shard", "-s", help="Shard to flush (repeatable)"),
    all_shards: bool = typer.Option(False, "--all-shards", help="Every shard of the cluster"),
    delay: str = typer.Option("0", "--delay", help="memcached's flush_all delay (10, 30s, 2m)"),
    stagger: str = typer.Option("0", "--stagger", help="Pause between shards (30s)"),
    dry_run: bool = DRY_RUN,
    yes: bool = YES,
) -> None:
    """Flush the chosen shards (irreversible): type their names to confirm; proven per server."""
    from pydantic import ValidationError

    from irctl.actions.cache_flush import FlushParams

    params = {"cluster": cluster, "shards": shard, "all_shards": all_shards, "delay": delay,
              "stagger": stagger}  # fmt: skip
    try:
        FlushParams.model_validate(params)  # bad input is refused before a run starts
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(
            f"--{err['loc'][0]}: {err['msg']}", "see irctl cache flush --help"
        ) from None
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
