"""`irctl diagnose --cluster C`: connections, top clients, latency and loss; a verdict on top."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

import typer

from irctl.cli.common import emit, state
from irctl.cli.options import in_range, usage_error
from irctl.cli.tables import fit_columns
from irctl.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

_COLORS = {
    "healthy": "green",
    "unknown": "yellow",
    "single_proxy_overload": "red",
    "client_storm": "red",
    "cluster_wide_network": "red",
    "backend_failure": "red",
}


def _thresholds(pairs: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq:
            raise UsageError(f"bad --threshold {pair!r}", "write it as KEY=NUMBER, e.g. slow_ms=5")
    return out


_FLAGS = {"top_clients": "--top", "thresholds": "--threshold"}


def run_diagnose(params: dict[str, Any]) -> dict[str, Any]:
    """Validate params like a runbook step would, then measure and classify (read-only)."""
    from pydantic import ValidationError

    from irctl.actions.diagnose import DiagnoseHostParams, DiagnoseParams, options_for
    from irctl.diagnosis.collect import diagnose
    from irctl.runbook.runner import build_context

    model = DiagnoseHostParams if params.get("proxy") else DiagnoseParams
    try:
        p = model.model_validate({k: v for k, v in params.items() if v is not None})
    except ValidationError as exc:
        raise usage_error(exc, _FLAGS, "diagnose", model) from None
    app = state()
    ctx = build_context(app.settings, app.inventory, app.ui, dry_run=False, yes=False)
    try:
        return diagnose(ctx, p.cluster, options_for(p), only=getattr(p, "proxy", None))
    finally:
        ctx.providers.close()


def _ms(stats: dict[str, Any] | None, key: str = "p99") -> str:
    if not stats:
        return "-"
    value = (stats.get("connect_ms") or {}).get(key)
    rtt = (stats.get("rtt_ms") or {}).get(key)
    if value is None:
        return "-"
    return f"{value:.2f}/{rtt:.2f}" if rtt is not None else f"{value:.2f}"


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


_TOP_MIN = 15
_FULL = ["proxy", "status", "estab", "clients", "top clients", "op p50", "op p99",
         "op slow/loss", "→backend p99", "→backend loss", "load"]  # fmt: skip
_REDUCED = ["proxy", "status", "estab", "clients", "top clients", "op p99", "op slow/loss",
            "→backend p99", "→backend loss"]  # fmt: skip
_COMPACT = ["proxy", "status", "estab", "top clients", "op slow/loss", "→backend loss"]
# What goes first when the rows are wider than the tier expected (long proxy names,
# latencies with many digits under a real overload).
_DROP_ORDER = [
    "load",
    "op p50",
    "clients",
    "→backend p99",
    "op p99",
    "→backend loss",
    "op slow/loss",
]


def _tier(width: int) -> list[str]:
    return _FULL if width >= 140 else _REDUCED if width >= 100 else _COMPACT


def _cells(h: dict[str, Any]) -> dict[str, str]:
    from rich.markup import escape

    status = {"ok": "[green]ok[/]", "unhealthy": "[red]unhealthy[/]"}.get(
        h["status"], f"[yellow]{h['status']}[/]"
    )
    top = ", ".join(f"{c['address']}:{c['count']}" for c in h.get("top_clients", [])[:3])
    op = h.get("operator_path")
    paths = h.get("backend_paths") or []
    worst = max(paths, key=lambda p: (p["failed_share"], p["slow_share"]), default=None)
    load = h.get("loadavg") or []
    return {
        "proxy": escape(h["name"]),
        "status": status,
        "estab": str(h.get("established", "-")),
        "clients": str(h.get("distinct_clients", "-")),
        "top clients": escape(top or (h.get("error") or h.get("probe_note") or "")),
        "op p50": _ms(op, "p50"),
        "op p99": _ms(op),
        "op slow/loss": f"{_share(op['slow_share'])}/{_share(op['failed_share'])}" if op else "-",
        "→backend p99": _ms(worst) if worst else "-",
        "→backend loss": _share(worst["failed_share"]) if worst else "-",
        "load": f"{load[0]:.2f}" if load else "-",
    }


def render(report: dict[str, Any]) -> Any:
    def show(console: Console) -> None:
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        kind = report["classification"]
        color = _COLORS.get(kind, "white")
        console.print(
            f"[bold]cluster {escape(report['cluster'])}:[/] [bold {color}]{kind}[/]"
            f"  ({report['duration_ms']} ms)"
        )
        if report.get("recommended_runbook"):
            cluster = shlex.quote(f"cluster={report['cluster']}")
            command = f"irctl run {report['recommended_runbook']} -p {cluster}"
            console.print(f"run: [bold]{escape(command)}[/]")
        for line in report.get("evidence", []):
            console.print(f"  • {escape(line)}")
        rows = [_cells(h) for h in report["hosts"]]
        table = Table(title_justify="left", show_lines=False)
        # A narrow terminal (a tmux pane at 3 a.m.) keeps the columns that decide; every
        # other column is no_wrap, so "top clients" gets the width left and wraps in it.
        columns = fit_columns(
            _tier(console.width), rows, console.width, _DROP_ORDER, {"top clients": _TOP_MIN}
        )
        for name in columns:
            if name == "top clients":
                table.add_column(name, min_width=_TOP_MIN, overflow="fold")
            else:
                table.add_column(name, no_wrap=True)
        for cells in rows:
            table.add_row(*(cells[c] for c in columns))
        console.print(table)
        if report.get("backends"):
            backends = Table(title="backends", title_justify="left")
            # Addresses whole; the error cut to one line here (the JSON keeps all of it).
            backends.add_column("server", no_wrap=True)
            backends.add_column("shard", no_wrap=True)
            # Wrapable, so it is the column that gives way; each cell stays one line.
            backends.add_column("reachable")
            for name in ("curr conns", "max", "rejected"):
                backends.add_column(name, no_wrap=True, justify="right")
            for b in report["backends"]:
                error = " ".join(str(b["error"] or "").split())
                reachable = Text.from_markup(
                    "[green]yes[/]" if b["reachable"] else f"[red]no[/] {escape(error)}",
                    overflow="ellipsis",
                )
                reachable.no_wrap = True
                backends.add_row(
                    escape(b["server"]), escape(b["shard"]), reachable,
                    _num(b["curr_connections"]), _num(b["max_connections"]),
                    _num(b["rejected_connections"]),
                )  # fmt: skip
            console.print(backends)
        for f in report.get("findings", []):
            console.print(f"  [dim]{f['kind']}[/] {escape(f['subject'])}: {escape(f['message'])}")
        console.print("[dim]op: operator → proxy port, connect/round-trip ms[/]")

    return show


def register(app: typer.Typer) -> None:
    @app.command("diagnose")
    def diagnose_command(
        cluster: str = typer.Option(..., "--cluster", "-c", help="The cluster to diagnose"),
        proxy: str = typer.Option(None, "--proxy", help="Only this proxy (name, address, id)"),
        samples: int = typer.Option(
            20, "--samples", callback=in_range(1, 200), help="Operator -> proxy samples per proxy"
        ),
        backend_samples: int = typer.Option(
            10,
            "--backend-samples",
            callback=in_range(0, 100),
            help="Proxy -> backend samples per backend (0: skip)",
        ),
        timeout: str = typer.Option(
            "500ms", "--timeout", help="Per sample (connect + reply): up to 10s"
        ),
        top: int = typer.Option(
            10, "--top", callback=in_range(1, 100), help="Top clients reported per proxy"
        ),
        threshold: list[str] = typer.Option(
            [], "--threshold", help="Override a threshold: KEY=NUMBER (repeatable)"
        ),
        expect_healthy: bool = typer.Option(
            False, "--expect-healthy", help="Exit 1 unless the verdict is healthy"
        ),
    ) -> None:
        """Connections, top clients, latency and loss per proxy; a verdict and its runbook."""
        report = run_diagnose(
            {
                "cluster": cluster, "proxy": proxy, "samples": samples,
                "backend_samples": backend_samples, "timeout": timeout, "top_clients": top,
                "thresholds": _thresholds(threshold),
            }
        )  # fmt: skip
        emit(report, render(report))
        if expect_healthy and report["classification"] != "healthy":
            raise typer.Exit(1)
