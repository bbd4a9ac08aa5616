"""The diagnose table at the widths operators really have: every width keeps the columns
that decide, and the top clients are readable, not squeezed to nothing."""

from __future__ import annotations

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
