"""`irctl filter block|list|revert`: temporary nftables blocks on a cluster's proxies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import typer

from irctl.cli.common import DRY_RUN, YES, emit, render_run, run_action_command, state
from irctl.cli.tables import fit_columns
from irctl.errors import InputError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from irctl.runbook.results import RunResult

filter_app = typer.Typer(
    help="Temporary IP filters (nftables) on the proxies: block, list, revert.",
    no_args_is_help=True,
)


def _emit_with_ids(result: RunResult) -> NoReturn:
    """The run document plus the filter ids at the top, so scripts need not dig into steps."""
    data = result.to_dict()
    ids: list[str] = []
    for step in result.steps:
        out = step.output if isinstance(step.output, dict) else {}
        ids += out.get("filter_ids") or []
        for plan in step.plan or []:
            ids += (plan.get("data") or {}).get("filter_ids") or []
    data["filter_ids"] = list(dict.fromkeys(ids))
    emit(data, render_run(result))
    raise typer.Exit(result.exit_code)


@filter_app.command("block")
def block(
    cidrs: list[str] = typer.Argument(..., help="CIDRs (or addresses) to block"),
    cluster: str = typer.Option(..., "--cluster", "-c", help="Cluster name from the inventory"),
    reason: str = typer.Option(..., "--reason", help="Why: shown in `filter list` and the journal"),
    ttl: str = typer.Option(
        None,
        "--ttl",
        help="Expire after this long, with a unit: 30s, 10m, 2h (default 30m, max 24h)",
    ),
    port: list[str] = typer.Option(
        None, "--port", help="Service port(s) to filter [default: the cluster's proxy_port]"
    ),
    action: str = typer.Option(
        "reject", "--action", help="reject (TCP reset: clients fail over at once) or drop"
    ),
    permanent: bool = typer.Option(False, "--permanent", help="No expiry (needs --reason)"),
    force: bool = typer.Option(
        False, "--force", help="Allow CIDRs broader than /16 (IPv4) or /48 (IPv6)"
    ),
    host: list[str] = typer.Option(
        None, "--host", help="Only these proxies (name, address or instance id)"
    ),
    kill_existing: bool = typer.Option(
        False, "--kill-existing", help="Also cut established connections from the CIDRs (ss -K)"
    ),
    partial_ok: bool = typer.Option(
        False, "--partial-ok", help="Keep the block on hosts that succeeded when others fail"
    ),
    dry_run: bool = DRY_RUN,
    yes: bool = YES,
) -> None:
    """Block CIDRs on the service ports of a cluster's proxies; the kernel expires it."""
    from irctl.filters.spec import parse_ttl

    try:
        parse_ttl(ttl, permanent=permanent)  # a malformed --ttl is a usage error, before a run
    except InputError as exc:
        raise UsageError(exc.message, exc.hint) from None
    params: dict[str, Any] = {
        "cluster": cluster,
        "cidrs": cidrs,
        "reason": reason,
        "ttl": ttl,
        "ports": port or None,
        "action": action,
        "permanent": permanent,
        "force": force,
        "hosts": host or None,
        "kill_existing": kill_existing,
        "partial_ok": partial_ok,
    }
    result = run_action_command(
        "filter.block",
        params,
        dry_run=dry_run,
        yes=yes,
        lock_cluster=cluster,
        title=f"block {', '.join(cidrs)} on {cluster}",
    )
    _emit_with_ids(result)


@filter_app.command("revert")
def revert(
    ids: list[str] = typer.Argument(..., help="Filter ids (flt-...) from `irctl filter list`"),
    cluster: str = typer.Option(
        None, "--cluster", "-c", help="Only this cluster's proxies [default: all clusters]"
    ),
    dry_run: bool = DRY_RUN,
    yes: bool = YES,
) -> None:
    """Remove filters by id (idempotent; an expired filter succeeds with a note)."""
    result = run_action_command(
        "filter.revert",
        {"ids": ids, "cluster": cluster},
        dry_run=dry_run,
        yes=yes,
        lock_cluster=cluster,
        title=f"revert {', '.join(ids)}",
    )
    _emit_with_ids(result)


# The id (what `filter revert` takes) and the CIDR always show whole: at narrow widths
# (80 columns, piped output) the less important columns go and the reason wraps.
_FULL = ["id", "cidr", "state", "expires_at", "ports", "hosts", "operator", "reason"]
_REDUCED = ["id", "cidr", "state", "expires_at", "hosts", "operator", "reason"]
_COMPACT = ["id", "cidr", "state", "expires_at", "reason"]
_DROP_ORDER = ["ports", "operator", "hosts", "state", "expires_at"]
_REASON_MIN = 10


def _cells(f: dict[str, Any]) -> dict[str, str]:
    from rich.markup import escape

    hosts = f"{len(f['hosts'])}" + (" (!)" if f.get("differences") else "")
    return {
        "id": escape(str(f["id"])),
        "cidr": escape(str(f["cidr"])),
        "state": escape(str(f["state"])),
        "expires_at": escape(str(f["expires_at"] or "never")),
        "ports": ",".join(str(p) for p in f["ports"]),
        "hosts": escape(hosts),
        "operator": escape(str(f["operator"])),
        "reason": escape(str(f["reason"])),
    }


def _table(filters: list[dict[str, Any]]) -> Any:
    def show(console: Console) -> None:
        from rich.markup import escape
        from rich.table import Table

        if not filters:
            console.print("no filters")
            return
        rows = [_cells(f) for f in filters]
        width = console.width
        tier = _FULL if width >= 120 else _REDUCED if width >= 100 else _COMPACT
        columns = fit_columns(tier, rows, width, _DROP_ORDER, {"reason": _REASON_MIN})
        table = Table(show_lines=False)
        for col in columns:
            if col == "reason":
                table.add_column(col, min_width=_REASON_MIN, overflow="fold", ratio=1)
            else:
                table.add_column(col, no_wrap=True)
        for cells in rows:
            table.add_row(*(cells[c] for c in columns))
        console.print(table)
        for f in filters:
            for diff in f.get("differences") or []:
                console.print(f"{escape(str(f['id']))}: {escape(str(diff))}")

    return show


@filter_app.command("list")
def list_(
    cluster: str = typer.Option(None, "--cluster", "-c", help="Only this cluster"),
) -> None:
    """The filters as the hosts hold them (nft -j), expired ones from the journal."""
    from irctl.filters.listing import list_filters

    app = state()
    listing = list_filters(app.inventory, app.settings, app.journal, cluster)
    for name, error in listing.unreachable.items():
        app.ui.warn(f"{name}: cannot read its filters: {error}")
    emit(listing.filters, _table(listing.filters))
    if listing.unreachable:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(filter_app, name="filter")
