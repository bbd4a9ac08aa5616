"""filter.block / filter.revert against real namespace hosts, proven with real TCP traffic."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from irctl.actions.base import Context
from irctl.actions.filter import BlockParams, FilterBlock, FilterRevert, RevertParams
from irctl.errors import InputError, RefusedError
from irctl.filters.listing import list_filters
from irctl.inventory import Inventory
from irctl.ui import ConsoleUI
from tests.lab_fixtures import Lab

pytest_plugins = ["tests.lab_fixtures"]
pytestmark = pytest.mark.root

CONNECT = """
import socket, sys, time
t = time.monotonic()
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("timeout" if isinstance(e, TimeoutError) else type(e).__name__)
print(round(time.monotonic() - t, 3))
"""


def connect(lab: Lab, client: int, proxy: int = 0, timeout: float = 2.0) -> tuple[str, float]:
    host = lab.proxies[proxy]
    out = (
        lab.clients[client]
        .run(["python3", "-c", CONNECT, host.address, str(lab.port), str(timeout)])
        .stdout.split()
    )
    return out[0], float(out[1])


def rulesets(lab: Lab) -> list[str]:
    return [h.run(["nft", "list", "ruleset"]).stdout for h in lab.proxies]


@pytest.fixture(autouse=True)
def clean_hosts(lab: Lab) -> Iterator[None]:
    yield
    for h in lab.proxies:
        h.run(["nft", "delete", "table", "inet", "irctl"], check=False)


@pytest.fixture
def ctx(lab: Lab, make_ctx: Callable[..., Context]) -> Callable[..., Context]:
    def build(inventory: Inventory | None = None, **kw: Any) -> Context:
        return make_ctx(inventory or lab.inventory(), **kw)

    return build


def block(ctx: Context, **params: Any) -> Any:
    action = FilterBlock()
    p = BlockParams.model_validate({"cluster": "lab", "reason": "test storm", **params})
    return action.run(p, ctx)


def cidr(lab: Lab, client: int) -> str:
    return f"{lab.clients[client].address}/32"


def test_block_refuses_at_once_keeps_others_and_ssh_then_revert_restores(
    lab: Lab, ctx: Callable[..., Context]
) -> None:
    c = ctx()
    assert connect(lab, 0)[0] == "connected"
    out = block(c, cidrs=[cidr(lab, 0)])
    assert out.ok, out.error
    (fid,) = out.output["filter_ids"]
    assert out.output["applied_hosts"] == [h.name for h in lab.proxies]
    verdict, seconds = connect(lab, 0, proxy=2)
    # A reset, not a silent drop (which would run into the 2 s timeout): the client fails over.
    assert verdict == "refused" and seconds < 1.5
    assert connect(lab, 1, proxy=2)[0] == "connected"
    # SSH to the host still works, on a fresh connection too.
    fresh = ctx()
    from irctl.providers.ssh import HostRef, SshProvider

    ssh = fresh.provider(SshProvider)
    assert ssh.run(HostRef("p", lab.proxies[2].address), ["true"]).ok
    listing = list_filters(c.inventory, c.settings, c.journal, "lab")
    (row,) = listing.filters
    assert row["id"] == fid and row["cidr"] == cidr(lab, 0) and row["ports"] == [lab.port]
    assert row["hosts"] == [h.name for h in lab.proxies] and row["operator"] == "tester"
    assert row["reason"] == "test storm" and row["state"] == "active"
    assert row["differences"] == []
    undone = FilterBlock().undo(out.undo or {}, c)
    assert undone.ok and sum(undone.output["removed"].values()) == len(lab.proxies)
    assert connect(lab, 0, proxy=2)[0] == "connected"
    assert connect(lab, 1, proxy=2)[0] == "connected"
    again = FilterBlock().undo(out.undo or {}, c)  # idempotent
    assert again.ok and "already reverted on proxy-1" in again.summary


def test_ttl_expires_in_the_kernel_with_irctl_gone(lab: Lab, ctx: Callable[..., Context]) -> None:
    c = ctx()
    # 10 s: the block, irctl's exit and the first probe must all fit inside the TTL, even
    # on a loaded machine.
    out = block(c, cidrs=[cidr(lab, 0)], ttl="10s", action="drop")
    assert out.ok, out.error
    c.providers.close()  # irctl is gone: nothing of ours is connected or running
    assert connect(lab, 0, timeout=0.5)[0] == "timeout"  # drop: silently
    deadline = time.monotonic() + 20
    while connect(lab, 0, timeout=0.3)[0] != "connected":
        assert time.monotonic() < deadline, "the filter did not expire"
    elements = lab.proxies[0].run(["nft", "-j", "list", "set", "inet", "irctl", "drop4"]).stdout
    assert '"elem"' not in elements
    # Reverting an expired filter succeeds with a note.
    later = ctx()
    rev = FilterRevert().run(RevertParams(ids=out.output["filter_ids"], cluster="lab"), later)
    assert rev.ok and rev.output["note"]
    listing = list_filters(later.inventory, later.settings, later.journal, "lab")
    assert [(f["id"], f["state"]) for f in listing.filters] == [
        (out.output["filter_ids"][0], "expired")
    ]


@pytest.mark.parametrize(
    ("params", "error", "text"),
    [
        ({"cidrs": ["0.0.0.0/0"], "force": True}, RefusedError, "every client"),
        ({"cidrs": ["::/0"], "force": True}, RefusedError, "every client"),
        ({"cidrs": ["198.50.0.0/15"]}, RefusedError, "broader than /16"),
        ({"cidrs": ["2001:db8::/32"]}, RefusedError, "broader than /48"),
        ({"cidrs": ["203.0.113.0/25"]}, RefusedError, "allowlisted"),
        ({"cidrs": ["198.51.100.300/24"]}, InputError, "malformed CIDR"),
        ({"cidrs": ["198.51.100.7/24"]}, InputError, "host bits"),
        ({"cidrs": ["198.51.100.0/24"], "ports": ["11211;reboot"]}, InputError, "malformed port"),
        ({"cidrs": ["198.51.100.0/24"], "ports": [22]}, RefusedError, "SSH port"),
        ({"cidrs": ["198.51.100.0/24"], "ttl": "1x"}, InputError, "bad duration"),
        ({"cidrs": ["198.51.100.0/24"], "ttl": "25h"}, RefusedError, "longer than 24h"),
        ({"cidrs": ["198.51.100.0/24"], "reason": " "}, InputError, "needs a reason"),
    ],
)
def test_refusals_change_nothing(
    lab: Lab, ctx: Callable[..., Context], params: dict[str, Any], error: type, text: str
) -> None:
    inv = lab.inventory_dict()
    inv["allowlist"] = ["203.0.113.0/24"]
    before = rulesets(lab)
    with pytest.raises(error, match=text):
        block(ctx(Inventory.model_validate(inv)), **params)
    assert rulesets(lab) == before


def test_operators_own_address_is_refused(lab: Lab, ctx: Callable[..., Context]) -> None:
    before = rulesets(lab)
    with pytest.raises(RefusedError, match="your own address"):
        block(ctx(), cidrs=[f"{lab.network.subnet}"])
    assert rulesets(lab) == before


def test_shell_metacharacters_in_reason_never_reach_a_shell(
    lab: Lab, ctx: Callable[..., Context], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    reason = f"x\"; touch {marker}; $(touch {marker}) `touch {marker}` ' | nft flush ruleset"
    out = block(ctx(), cidrs=[cidr(lab, 0)], reason=reason)
    assert out.ok, out.error
    assert not marker.exists()
    dump = json.loads(
        lab.proxies[0].run(["nft", "-j", "list", "set", "inet", "irctl", "reject4"]).stdout
    )
    comment = dump["nftables"][1]["set"]["elem"][0]["elem"]["comment"]
    assert comment.startswith("irctl;id=") and "why=x?; touch /tmp/" in comment
    assert '"' not in comment and len(comment) <= 127  # quote replaced, cut to nft's limit
    c = ctx()
    (row,) = list_filters(c.inventory, c.settings, c.journal, "lab").filters
    assert row["reason"] == reason  # the journal keeps the full text
    assert connect(lab, 1)[0] == "connected"


def test_plan_shows_exact_batch_and_blast_radius_and_changes_nothing(
    lab: Lab, ctx: Callable[..., Context]
) -> None:
    target = lab.proxies[1].address
    code = (
        f"import socket,time; s=socket.create_connection(('{target}', {lab.port})); time.sleep(9)"
    )
    lab.clients[0].spawn(["python3", "-c", code], "holder")
    try:
        deadline = time.monotonic() + 5
        c = ctx(dry_run=True)
        before = rulesets(lab)
        while True:
            p = BlockParams(cluster="lab", cidrs=[cidr(lab, 0)], reason="drill", kill_existing=True)
            plan = FilterBlock().plan(p, c)
            if plan.data["blast_radius"]["proxy-2"] == 1 or time.monotonic() > deadline:
                break
        assert plan.data["blast_radius"] == {"proxy-1": 0, "proxy-2": 1, "proxy-3": 0, "proxy-4": 0}
        assert any("proxy-2: 1 established connection" in w for w in plan.warnings)
        assert any("would be cut" in w for w in plan.warnings)  # a drill's plan
        live_plan = FilterBlock().plan(p, ctx())
        assert any("proxy-2: 1 established" in w and "will be cut" in w for w in live_plan.warnings)
        batch = plan.data["batches"]["proxy-1"]
        fid = plan.data["filter_ids"][0]
        element = f"add element inet irctl reject4 {{ {cidr(lab, 0)} . {lab.port} timeout 1800s"
        assert f'{element} comment "irctl;id={fid};' in batch
        assert "\n".join(plan.details).endswith(batch.rstrip("\n"))
        assert rulesets(lab) == before
        # Now for real, with --kill-existing: the held connection is cut.
        out = block(ctx(), cidrs=[cidr(lab, 0)], kill_existing=True)
        assert out.ok, out.error
        assert out.output["kill"]["remaining"]["proxy-2"] == 0
        assert "1 established connection(s) were cut" in out.summary
        assert not out.output["kill"]["unsupported"]
    finally:
        lab.clients[0].stop()


def test_failure_on_one_host_rolls_back_the_others(lab: Lab, ctx: Callable[..., Context]) -> None:
    # A conflicting element (not irctl's) on proxy-3 makes its batch fail as a whole.
    bad = lab.proxies[2]
    c = ctx()
    out = block(c, cidrs=[cidr(lab, 1)])
    FilterBlock().undo(out.undo or {}, c)  # leaves the table and sets in place
    bad.run(
        ["nft", "add", "element", "inet", "irctl", "reject4", f"{{ {cidr(lab, 0)} . {lab.port} }}"]
    )
    out = block(ctx(), cidrs=[cidr(lab, 0)])
    assert not out.ok
    assert list(out.output["failed_hosts"]) == [bad.name]
    assert sorted(out.output["rolled_back"]) == sorted(h.name for h in lab.proxies if h is not bad)
    for h in lab.proxies:
        if h is not bad:
            assert "irctl;id=" not in h.run(["nft", "list", "table", "inet", "irctl"]).stdout
    assert connect(lab, 0, proxy=0)[0] == "connected"


def test_unreachable_host_is_reported_and_nothing_applied_unless_partial_ok(
    lab: Lab, ctx: Callable[..., Context]
) -> None:
    inv = lab.inventory_dict(connect_timeout=1.0)
    ghost = str(lab.network.subnet.network_address + 251)  # type: ignore[union-attr]
    inv["clusters"]["lab"]["proxies"].append({"name": "ghost", "address": ghost})
    before = rulesets(lab)
    out = block(ctx(Inventory.model_validate(inv)), cidrs=[cidr(lab, 0)])
    assert (
        not out.ok and "ghost" in (out.error or "") and "nothing was applied" in (out.error or "")
    )
    assert rulesets(lab) == before
    out = block(ctx(Inventory.model_validate(inv)), cidrs=[cidr(lab, 0)], partial_ok=True)
    assert out.ok and out.output["applied_hosts"] == [h.name for h in lab.proxies]
    assert list(out.output["failed_hosts"]) == ["ghost"]
    assert connect(lab, 0)[0] == "refused"


def test_overlapping_filter_is_refused_and_reconcile_finds_applied(
    lab: Lab, ctx: Callable[..., Context]
) -> None:
    c = ctx()
    out = block(c, cidrs=[cidr(lab, 0)])
    with pytest.raises(RefusedError, match="already blocked"):
        block(ctx(run_id="run-other"), cidrs=[cidr(lab, 0)])
    intent = {
        "run_id": c.run_id,
        "step": c.step_id,
        "params": {"cluster": "lab", "cidrs": [cidr(lab, 0)], "reason": "x"},
    }
    rec = FilterBlock().reconcile(intent, c)
    assert rec.state == "applied" and rec.outcome is not None
    assert rec.outcome.undo == out.undo
    FilterBlock().undo(out.undo or {}, c)
    assert FilterBlock().reconcile(intent, c).state == "not_applied"


def test_revert_of_an_unknown_id_is_refused_not_silently_ok(
    lab: Lab, ctx: Callable[..., Context]
) -> None:
    c = ctx()
    out = block(c, cidrs=[cidr(lab, 0)])
    with pytest.raises(InputError, match="never applied"):
        FilterRevert().run(RevertParams(ids=["flt-00000000", *out.output["filter_ids"]]), c)
    assert connect(lab, 0)[0] == "refused"  # nothing changed
    other = ctx(run_id="run-elsewhere")  # a journal-less revert still finds it on the hosts
    other.journal.path = c.journal.path.with_name("other.jsonl")
    # As the operator sees the plan in a narrow pane: a revert is the undo, not an
    # "irreversible" change, and each nft line stays whole to be copied.
    plan = FilterRevert().plan(RevertParams(ids=out.output["filter_ids"]), other)
    ui = ConsoleUI(assume_yes=True, interactive=False)
    # Narrower than the longest plan line (addresses vary with the lab's subnet).
    width = max(len(line) for line in plan.details) - 10
    ui.console = Console(file=io.StringIO(), width=width, highlight=False)
    ui.show_plan("revert", plan)
    shown = ui.console.file.getvalue()  # type: ignore[attr-defined]
    assert "undoes the block" in shown and "irreversible" not in shown, shown
    assert all(f"    {line}" in shown.splitlines() for line in plan.details), shown
    assert FilterRevert().run(RevertParams(ids=out.output["filter_ids"]), other).ok
    assert connect(lab, 0)[0] == "connected"


def test_block_on_chosen_hosts_only(lab: Lab, ctx: Callable[..., Context]) -> None:
    c = ctx()
    out = block(c, cidrs=[cidr(lab, 0)], hosts=["proxy-1", lab.proxies[1].address])
    assert out.ok and out.output["applied_hosts"] == ["proxy-1", "proxy-2"]
    assert connect(lab, 0, proxy=0)[0] == "refused"
    assert connect(lab, 0, proxy=2)[0] == "connected"
    (row,) = list_filters(c.inventory, c.settings, c.journal, "lab").filters
    assert row["hosts"] == ["proxy-1", "proxy-2"] and row["differences"] == []
    lab.proxies[1].run(["nft", "flush", "set", "inet", "irctl", "reject4"])  # drift on one host
    (row,) = list_filters(c.inventory, c.settings, c.journal, "lab").filters
    assert row["hosts"] == ["proxy-1"] and row["differences"] == ["missing on proxy-2"]


def test_ipv6_filter_is_applied_read_back_and_reverted_on_every_host(
    lab: Lab, ctx: Callable[..., Context]
) -> None:
    # The lab's hosts are IPv4 only (the network rule keeps traffic in 198.18.0.0/15), so
    # an IPv6 filter is proven by the kernel: it accepts the batch, lists the element in
    # the IPv6 set with its comment and timeout, and loses it on revert.
    c = ctx()
    out = block(c, cidrs=["2001:db8:1::/48"], ttl="5m")
    assert out.ok, out.error
    (fid,) = out.output["filter_ids"]
    for host in lab.proxies:
        listed = json.loads(
            host.run(["nft", "-j", "list", "set", "inet", "irctl", "reject6"]).stdout
        )
        elems = [x for e in listed["nftables"] if "set" in e for x in e["set"].get("elem", [])]
        assert len(elems) == 1, elems
        assert fid in json.dumps(elems[0]) and "2001:db8:1::" in json.dumps(elems[0])
    assert connect(lab, 0)[0] == "connected"  # IPv4 clients are untouched
    rev = FilterRevert().run(RevertParams(ids=[fid], cluster="lab"), ctx())
    assert rev.ok, rev.error
    for host in lab.proxies:
        listed = host.run(["nft", "-j", "list", "set", "inet", "irctl", "reject6"]).stdout
        assert '"elem"' not in listed
