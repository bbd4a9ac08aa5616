"""cache.stats, cache.flush and cache.locate against real memcached shards behind nutcracker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from irctl.actions import get_action
from irctl.actions.base import Context
from irctl.errors import InputError, RefusedError
from irctl.inventory import Inventory
from irctl.runbook.runner import run_single_action
from irctl.ui import QuietUI
from tests.test_cache_lab import Memcached, Nutcracker, needs_binaries

pytestmark = needs_binaries
NAMES = ["shard-0", "shard-1", "shard-2"]
KEYS = [f"customer:{i}:session" for i in range(1000)]


class TypingUI(QuietUI):
    """A terminal whose operator types `answer` at the prompt."""

    def __init__(self, answer: str) -> None:
        super().__init__(assume_yes=False, interactive=True)
        self.answer = answer
        self.prompts: list[str] = []

    def ask_text(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.answer


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    servers = [Memcached() for _ in NAMES]
    shards = [{"name": n, "servers": [m.address]} for n, m in zip(NAMES, servers, strict=True)]
    hashing = {"distribution": "ketama", "hash": "fnv1a_64"}
    inventory = Inventory.model_validate(
        {"clusters": {"lab": {"shards": shards, "hashing": hashing}}}
    )
    proxy = Nutcracker(inventory.cluster("lab"), tmp_path)
    client = proxy.client()
    assert client.set_many({k: b"v" for k in KEYS}) == []
    client.close()
    yield {"servers": dict(zip(NAMES, servers, strict=True)), "inventory": inventory}
    proxy.stop()
    for server in servers:
        server.stop()


def present(lab: dict[str, Any]) -> dict[str, set[str]]:
    """Which of KEYS each shard's backend answers, read directly (not through the proxy)."""
    out = {}
    for name, server in lab["servers"].items():
        if server.proc.poll() is not None:  # stopped by the test
            continue
        client = server.client()
        out[name] = set(client.get_many(KEYS))
        client.close()
    return out


def flush(make_ctx: Callable[..., Context], lab: dict[str, Any], **params: Any) -> Any:
    ui = params.pop("ui", None)
    ctx = make_ctx(lab["inventory"], ui=ui, yes=ui is None)
    action = get_action("cache.flush")
    parsed = action.Params.model_validate({"cluster": "lab", **params})
    action.plan(parsed, ctx)
    return action.run(parsed, ctx), ctx


def test_locate_agrees_with_the_proxy_for_every_key(
    lab: dict[str, Any], make_ctx: Callable[..., Context]
) -> None:
    where = present(lab)
    assert sum(len(keys) for keys in where.values()) == len(KEYS)
    action, ctx = get_action("cache.locate"), make_ctx(lab["inventory"])
    for key in KEYS:
        out = action.run(action.Params.model_validate({"cluster": "lab", "key": key}), ctx).output
        assert key in where[out["shard"]]
        assert out["server"] == lab["servers"][out["shard"]].address


def test_flush_one_shard_empties_exactly_that_shard(
    lab: dict[str, Any], make_ctx: Callable[..., Context]
) -> None:
    before = present(lab)
    outcome, ctx = flush(make_ctx, lab, shards=["shard-1"])
    assert outcome.ok, outcome.error
    after = present(lab)
    assert after["shard-1"] == set() and before["shard-1"]
    assert after["shard-0"] == before["shard-0"] and after["shard-2"] == before["shard-2"]
    (row,) = outcome.output["servers"]
    assert row["canary_missed"] and row["flush_counted"]
    assert row["after"]["cmd_flush"] == row["before"]["cmd_flush"] + 1
    calls = [r for r in ctx.journal.records() if r.get("action") == "memcached.flush_all"]
    assert [r["event"] for r in calls] == ["intent", "result"]
    assert calls[0]["params"]["before"][row["server"]]["curr_items"] == len(before["shard-1"])
    assert calls[1]["ok"] is True


def test_delay_is_honoured(lab: dict[str, Any], make_ctx: Callable[..., Context]) -> None:
    before = present(lab)
    result: dict[str, Any] = {}
    started = time.monotonic()
    worker = threading.Thread(
        target=lambda: result.update(out=flush(make_ctx, lab, shards=["shard-0"], delay="3s")[0])
    )
    worker.start()
    time.sleep(1.5)
    # Not yet: irctl sends flush_all 5 for a 3 s delay, which memcached lands 3-4 s later.
    assert present(lab)["shard-0"] == before["shard-0"]
    worker.join(30)
    assert result["out"].ok, result["out"].error
    assert time.monotonic() - started >= 3.0  # never before the delay asked for
    assert present(lab)["shard-0"] == set()
    assert result["out"].output["delay"] == 3


def test_a_stopped_server_fails_the_flush_by_name_and_nothing_is_flushed(
    lab: dict[str, Any], make_ctx: Callable[..., Context]
) -> None:
    before = present(lab)
    dead = lab["servers"]["shard-2"]
    dead.stop()
    outcome, _ = flush(make_ctx, lab, shards=["shard-0", "shard-2"])
    assert not outcome.ok
    assert dead.address in (outcome.error or "")
    assert present(lab)["shard-0"] == before["shard-0"]


def test_dry_run_changes_no_item(lab: dict[str, Any], state_dir: Path) -> None:
    from irctl.settings import Settings

    before = present(lab)
    result = run_single_action(
        Settings.resolve(), lab["inventory"], QuietUI(), "cache.flush",
        {"cluster": "lab", "shards": ["shard-0", "shard-1"]}, dry_run=True, yes=False,
        lock_cluster="lab",
    )  # fmt: skip
    assert result.status == "planned"
    (plan,) = result.steps[0].plan or []
    assert plan["reversible"] is False and "dropped" in " ".join(plan["warnings"])
    assert set(plan["targets"]) == {lab["servers"][n].address for n in ("shard-0", "shard-1")}
    assert present(lab) == before


def test_typing_the_wrong_shard_name_aborts(
    lab: dict[str, Any], make_ctx: Callable[..., Context]
) -> None:
    before = present(lab)
    ui = TypingUI("shard-2")
    outcome, ctx = flush(make_ctx, lab, shards=["shard-1"], ui=ui)
    assert not outcome.ok and "nothing was flushed" in (outcome.error or "")
    assert "shard-1" in ui.prompts[0]
    assert present(lab) == before
    assert not [r for r in ctx.journal.records() if r.get("action") == "memcached.flush_all"]
    outcome, _ = flush(make_ctx, lab, shards=["shard-1"], ui=TypingUI("shard-1"))
    assert outcome.ok and present(lab)["shard-1"] == set()


def test_every_shard_needs_all_shards_and_the_cluster_name(
    lab: dict[str, Any], make_ctx: Callable[..., Context]
) -> None:
    with pytest.raises(RefusedError, match="every shard"):
        flush(make_ctx, lab, shards=NAMES)
    with pytest.raises(InputError, match="unknown shard"):
        flush(make_ctx, lab, shards=["shard-9"])
    outcome, _ = flush(make_ctx, lab, all_shards=True, ui=TypingUI("shard-0 shard-1 shard-2"))
    assert not outcome.ok and sum(map(len, present(lab).values())) == len(KEYS)
    started = time.monotonic()
    outcome, _ = flush(make_ctx, lab, all_shards=True, stagger="1s", ui=TypingUI("lab"))
    assert outcome.ok, outcome.error
    assert time.monotonic() - started >= 2.0  # two pauses between three shards
    assert present(lab) == {name: set() for name in NAMES}


def test_stats_per_server_and_unreachable(
    lab: dict[str, Any], make_ctx: Callable[..., Context]
) -> None:
    lab["servers"]["shard-2"].stop()
    action, ctx = get_action("cache.stats"), make_ctx(lab["inventory"])
    outcome = action.run(action.Params.model_validate({"cluster": "lab"}), ctx)
    assert outcome.ok and outcome.output["unreachable"] == [lab["servers"]["shard-2"].address]
    rows = {sh["name"]: sh["servers"][0] for sh in outcome.output["shards"]}
    assert rows["shard-0"]["reachable"] and rows["shard-0"]["curr_items"] > 0
    assert rows["shard-0"]["version"].startswith("1.")
    assert rows["shard-0"]["hit_ratio"] is not None or rows["shard-0"]["get_hits"] == 0
    assert not rows["shard-2"]["reachable"] and "shard-2" not in rows["shard-2"]["error"]
    strict = action.run(action.Params.model_validate({"cluster": "lab", "require_all": True}), ctx)
    assert not strict.ok and lab["servers"]["shard-2"].address in (strict.error or "")


def test_reconcile_sees_a_finished_flush(
    lab: dict[str, Any], make_ctx: Callable[..., Context]
) -> None:
    action = get_action("cache.flush")
    outcome, ctx = flush(make_ctx, lab, shards=["shard-0"])
    assert outcome.ok
    intent = {"params": {"cluster": "lab", "shards": ["shard-0"]}}
    assert action.reconcile(intent, ctx).state == "applied"
    other = make_ctx(lab["inventory"], run_id="run-other")
    assert action.reconcile(intent, other).state == "not_applied"
