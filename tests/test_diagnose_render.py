"""The diagnose table at the widths operators really have: every width keeps the columns
that decide, and the top clients are readable, not squeezed to nothing."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
from rich.console import Console

from irctl.cli.diagnose import render
from tests.test_diagnose_units import RECORDED, _BrokenProbe, _FakeSsh, _Stats


@pytest.fixture
def report(make_ctx: Any) -> dict[str, Any]:
    from irctl.actions.diagnose import DiagnoseCluster, DiagnoseParams
    from irctl.providers.memcached import MemcachedProvider
    from irctl.providers.probe import ProbeProvider
    from irctl.providers.ssh import SshProvider

    inventory = {
        "clusters": {
            "c": {
                "proxy_port": 22121,
                "proxies": [
                    {"name": "proxy-1", "address": "198.18.7.1"},
                    {"name": "proxy-2", "address": "198.18.7.2"},
                ],
                "shards": [{"name": "s0", "servers": ["good:11211"]}],
            }
        },
    }
    ssh = _FakeSsh({"proxy-1": RECORDED, "proxy-2": None})
    overrides = {SshProvider: ssh, ProbeProvider: _BrokenProbe(), MemcachedProvider: _Stats()}
    ctx = make_ctx(inventory, overrides=overrides)
    params = DiagnoseParams.model_validate({"cluster": "c", "backend_samples": 5})
    output: dict[str, Any] = DiagnoseCluster().run(params, ctx).output
    return output


def shown(report: dict[str, Any], width: int) -> str:
    out = io.StringIO()
    render(report)(Console(file=out, width=width, color_system=None))
    return out.getvalue()


@pytest.mark.parametrize("width", [80, 100, 120, 160])
def test_every_width_keeps_status_connections_and_top_clients(
    report: dict[str, Any], width: int
) -> None:
    text = shown(report, width)
    header = next(line for line in text.splitlines() if "proxy" in line and "status" in line)
    assert "…" not in header, header  # no column squeezed into an ellipsis
    assert "top clients" in header and "estab" in header
    assert all(len(line) <= width for line in text.splitlines())
    top = report["hosts"][0]["top_clients"][0]
    assert f"{top['address']}:{top['count']}"[:12] in text.replace("\n", "")
    assert "proxy-2" in text and "timed out" in text  # the unreachable proxy is a row


def test_wide_terminals_get_every_column(report: dict[str, Any]) -> None:
    header = next(
        line for line in shown(report, 160).splitlines() if "proxy" in line and "status" in line
    )
    for column in ("op p50", "op p99", "op slow/loss", "→backend p99", "→backend loss", "load"):
        assert column in header


def _overloaded(report: dict[str, Any]) -> dict[str, Any]:
    """The report as a real overload renders it: instance-id names, 5-digit counts, slow paths."""
    heavy = copy.deepcopy(report)
    for i, h in enumerate(heavy["hosts"]):
        h["name"] = f"i-0{i}23456789abcdef"
        h["established"] = 18734
        h["distinct_clients"] = 4211
        h["operator_path"] = {
            "connect_ms": {"p50": 1234.56, "p99": 4321.09},
            "rtt_ms": {"p50": 2345.67, "p99": 9876.54},
            "slow_share": 0.45,
            "failed_share": 0.15,
        }
        h["backend_paths"] = [
            {"connect_ms": {"p99": 1999.99}, "rtt_ms": {"p99": 2999.99}, "slow_share": 0.4,
             "failed_share": 0.2}
        ]  # fmt: skip
    return heavy


@pytest.mark.parametrize("width", [80, 100, 120, 139, 140])
def test_top_clients_keep_fifteen_columns_under_a_real_overload(
    report: dict[str, Any], width: int
) -> None:
    text = shown(_overloaded(report), width)
    lines = text.splitlines()
    header = next(line for line in lines if "proxy" in line and "status" in line)
    assert "top clients" in header and "estab" in header, header
    start = header.index("top clients")
    end = header.index("│", start) if "│" in header[start:] else len(header)
    assert end - start >= 15, header
    assert all(len(line) <= width for line in lines)
    assert "i-0023456789abcdef" in text  # proxy names whole


def test_hint_can_be_pasted_and_backends_stay_one_line(report: dict[str, Any]) -> None:
    doc = copy.deepcopy(report)
    doc["recommended_runbook"] = "cluster-wide-failure"
    error = (
        "connect to 198.18.52.5:11211 timed out after 500 ms\n" + "while reading the banner " * 8
    )
    doc["backends"] = [
        {"server": "198.18.52.5:11211", "shard": "shard-1", "reachable": False, "error": error,
         "curr_connections": None, "max_connections": None, "rejected_connections": None},
        {"server": "198.18.52.6:11211", "shard": "shard-2", "reachable": True, "error": None,
         "curr_connections": 12, "max_connections": 1024, "rejected_connections": 0},
    ]  # fmt: skip
    text = shown(doc, 80)
    assert "run: irctl run cluster-wide-failure -p cluster=c" in text
    rows = [line for line in text.splitlines() if "shard-1" in line or "shard-2" in line]
    assert len(rows) == 2, text  # the long error did not wrap onto more lines
    assert "198.18.52.5:11211" in rows[0] and "198.18.52.6:11211" in rows[1]
    assert all(len(line) <= 80 for line in text.splitlines())
