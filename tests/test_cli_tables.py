"""`filter list` and `cache stats` at the widths operators have (80 columns is also what a
pipe gets): what must be copied or compared (filter ids, CIDRs, server addresses) shows
whole, and no header or value is squeezed into an ellipsis."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console

from irctl.cli.cache import _stats_table
from irctl.cli.filter import _table

WIDTHS = [60, 80, 100, 120, 160]


def shown(show: Callable[[Console], None], width: int) -> str:
    out = io.StringIO()
    show(Console(file=out, width=width, color_system=None))
    return out.getvalue()


FILTERS = [
    {"id": "flt-0dc1a2b3", "cidr": "198.18.200.0/24", "state": "active",
     "expires_at": "2026-11-30T23:50:00Z", "ports": [22121, 22122],
     "hosts": ["proxy-1", "proxy-2", "proxy-3"], "operator": "alice",
     "reason": "connection storm from the batch fleet, run 20261130-2320-abcd", "differences": []},
    {"id": "flt-99999999", "cidr": "2001:db8:1::/48", "state": "permanent", "expires_at": None,
     "ports": [22121], "hosts": ["proxy-1"], "operator": "bob", "reason": "abuse",
     "differences": ["proxy-2: missing"]},
]  # fmt: skip


@pytest.mark.parametrize("width", WIDTHS)
def test_filter_list_keeps_ids_and_cidrs_whole(width: int) -> None:
    text = shown(_table(FILTERS), width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), text
    assert "…" not in text, text
    for f in FILTERS:
        row = next(line for line in lines if f["id"] in line)
        assert str(f["cidr"]) in row, text
    assert "flt-99999999: proxy-2: missing" in text
    if width >= 80:
        assert "expires_at" in lines[1] and "2026-11-30T23:50:00Z" in text
    if width >= 120:
        assert "operator" in lines[1] and "22121,22122" in text


def _server(address: str, **kw: Any) -> dict[str, Any]:
    row = {"server": address, "reachable": True, "error": None, "version": "1.6.21",
           "uptime": 93784, "curr_connections": 1234, "max_connections": 65536,
           "rejected_connections": 12345, "curr_items": 9876543, "hit_ratio": 0.9731,
           "evictions": 123456, "cmd_flush": 7}  # fmt: skip
    return {**row, **kw}


DOWN = "connect to 198.18.52.16:11211 timed out after 500 ms"
STATS = {
    "cluster": "use1-a",
    "shards": [
        {"name": "shard-0", "servers": [_server("198.18.52.5:11211")]},
        {
            "name": "shard-1",
            "servers": [
                _server(
                    "198.18.52.16:11211",
                    reachable=False,
                    error="connect to 198.18.52.16:11211 timed out after 500 ms",
                )
            ],
        },
    ],
    "summary": "1 of 2 servers answer; shard-1 unreachable",
}


@pytest.mark.parametrize("width", WIDTHS)
def test_cache_stats_fits_and_keeps_addresses(width: int) -> None:
    text = shown(_stats_table(STATS), width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), text
    assert "…" not in text, text
    header = next(line for line in lines if "server" in line and "shard" in line)
    assert "up" in header and "conns" in header and "hit%" in header
    assert "198.18.52.5:11211" in text and "1234/65536" in text and "97.3%" in text
    row = next(line for line in lines if "shard-1" in line)
    assert "198.18.52.16:11211" in row and "no" in row
    assert "198.18.52.16:11211: connect to 198.18.52.16:11211 timed out" in text
    if width >= 140:
        assert "version" in header and "flushes" in header and "1.6.21" in text


def test_plan_details_are_never_hard_wrapped_mid_token() -> None:
    from irctl.actions.base import Plan
    from irctl.ui import ConsoleUI

    body = (
        '{"status": "identified", "name": "Cache shard failure in lab", "step": "tell-identified"}'
    )
    ui = ConsoleUI(assume_yes=True, interactive=False)
    ui.console = Console(file=io.StringIO(), width=40, highlight=False)
    ui.show_plan("tell-identified", Plan(summary="post", details=[body], reversible=True))
    text = ui.console.file.getvalue()  # type: ignore[attr-defined]
    assert f"    {body}" in text.splitlines(), text  # one line: the terminal wraps it softly
