"""cache.flush's proof logic with a fake memcached: the failures a real server rarely shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from irctl.actions import get_action
from irctl.actions.base import Context
from irctl.errors import InputError, ProviderError, RefusedError
from irctl.providers.memcached import MemcachedProvider

INVENTORY = {"clusters": {"c": {"shards": [
    {"name": "a", "servers": ["127.0.0.1:1", "127.0.0.1:2"]},
    {"name": "b", "servers": ["127.0.0.1:3"]},
    {"name": "z", "servers": ["127.0.0.1:4"]},
]}}}  # fmt: skip


class FakeMemcached:
    """Behaves like memcached unless told to lie: `stuck` servers keep items after flush_all,
    `uncounted` ones do not count it, `dies_on_flush` ones fail the flush_all call."""

    def __init__(self, stuck: set[str] = frozenset(), uncounted: set[str] = frozenset(),
                 dies_on_flush: set[str] = frozenset()) -> None:  # fmt: skip
        self.items: dict[str, dict[str, bytes]] = {}
        self.flushes: dict[str, int] = {}
        self.stuck, self.uncounted, self.dies_on_flush = stuck, uncounted, dies_on_flush
        self.calls: list[tuple[str, str]] = []

    def stats(self, server: str) -> dict[str, Any]:
        return {
            "curr_items": len(self.items.get(server, {})),
            "cmd_flush": self.flushes.get(server, 0),
        }

    def set(self, server: str, key: str | bytes, value: bytes, expire: int = 0) -> None:
        self.items.setdefault(server, {})[str(key)] = value

    def get(self, server: str, key: str | bytes) -> bytes | None:
        return self.items.get(server, {}).get(str(key))

    def flush_all(self, server: str, delay: int = 0) -> None:
        self.calls.append(("flush_all", server))
        if server in self.dies_on_flush:
            raise ProviderError(f"memcached {server}: flush_all failed: Connection reset")
        if server not in self.uncounted:
            self.flushes[server] = self.flushes.get(server, 0) + 1
        if server not in self.stuck:
            self.items[server] = {}

    def close(self) -> None:
        pass


def run(make_ctx: Callable[..., Context], fake: FakeMemcached, **params: Any) -> Any:
    ctx = make_ctx(INVENTORY, overrides={MemcachedProvider: fake})
    action = get_action("cache.flush")
    parsed = action.Params.model_validate({"cluster": "c", "verify_timeout": "300ms", **params})
    return action.run(parsed, ctx), ctx


def test_every_server_of_a_replicated_shard_is_flushed_and_proven(
    make_ctx: Callable[..., Context],
) -> None:
    fake = FakeMemcached()
    outcome, _ = run(make_ctx, fake, shards=["a"])
    assert outcome.ok
    assert [s["server"] for s in outcome.output["servers"]] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert ("flush_all", "127.0.0.1:3") not in fake.calls


def test_a_canary_that_survives_fails_the_step_by_name(make_ctx: Callable[..., Context]) -> None:
    outcome, _ = run(make_ctx, FakeMemcached(stuck={"127.0.0.1:2"}), shards=["a"])
    assert not outcome.ok
    assert "127.0.0.1:2" in (outcome.error or "") and "127.0.0.1:1" not in (outcome.error or "")
    assert outcome.output["failed"] == ["127.0.0.1:2"]


def test_an_uncounted_flush_fails_and_the_journal_says_so(make_ctx: Callable[..., Context]) -> None:
    outcome, ctx = run(make_ctx, FakeMemcached(uncounted={"127.0.0.1:3"}), shards=["b"])
    assert not outcome.ok and "cmd_flush did not rise" in (outcome.error or "")
    result = [r for r in ctx.journal.records() if r.get("event") == "result"][-1]
    assert result["ok"] is False and "127.0.0.1:3" in result["error"]


def test_a_server_dying_mid_flush_is_named_and_the_rest_still_proven(
    make_ctx: Callable[..., Context],
) -> None:
    fake = FakeMemcached(dies_on_flush={"127.0.0.1:1"})
    outcome, _ = run(make_ctx, fake, shards=["a", "b"], stagger="10ms")
    assert not outcome.ok and "127.0.0.1:1" in (outcome.error or "")
    rows = {s["server"]: s for s in outcome.output["servers"]}
    assert rows["127.0.0.1:2"]["canary_missed"] and rows["127.0.0.1:3"]["canary_missed"]
    assert not rows["127.0.0.1:1"]["flushed"]


@pytest.mark.parametrize(
    ("params", "match"),
    [({}, "no shard chosen"), ({"shards": ["a"], "all_shards": True}, "both shards"),
     ({"shards": ["zz"]}, "unknown shard")],
)  # fmt: skip
def test_bad_choices_change_nothing(
    make_ctx: Callable[..., Context], params: dict[str, Any], match: str
) -> None:
    fake = FakeMemcached()
    with pytest.raises(InputError, match=match):
        run(make_ctx, fake, **params)
    assert fake.calls == [] and fake.items == {}


def test_a_server_shared_with_another_shard_is_refused(make_ctx: Callable[..., Context]) -> None:
    inventory = {"clusters": {"c": {"shards": [
        {"name": "a", "servers": ["127.0.0.1:1"]},
        {"name": "b", "servers": ["127.0.0.1:1"]},
        {"name": "z", "servers": ["127.0.0.1:4"]},
    ]}}}  # fmt: skip
    fake = FakeMemcached()
    ctx = make_ctx(inventory, overrides={MemcachedProvider: fake})
    action = get_action("cache.flush")
    with pytest.raises(RefusedError, match="also in shard 'b'"):
        action.plan(action.Params.model_validate({"cluster": "c", "shards": ["a"]}), ctx)
    assert fake.calls == []


def test_durations_are_accepted_and_bad_ones_refused() -> None:
    from pydantic import ValidationError

    from irctl.actions.cache_flush import FlushParams

    parsed = FlushParams.model_validate(
        {"cluster": "c", "shards": ["a"], "delay": "1m", "stagger": "1.5s"}
    )
    assert (parsed.delay, parsed.stagger) == (60, 1.5)
    with pytest.raises(ValidationError, match="bad duration"):
        FlushParams.model_validate({"cluster": "c", "delay": "soon"})
