"""Proving a flush on every server: stats and a canary key before, `cmd_flush` and a miss after.

Each server's progress is a `ServerState`; a server whose proof fails carries the
reason in `error`, so the action can fail the step by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from irctl.errors import ProviderError

if TYPE_CHECKING:
    from irctl.actions.base import Context
    from irctl.inventory import Shard
    from irctl.providers.memcached import MemcachedProvider

OPERATION = "memcached.flush_all"
POLL = 0.25  # seconds between canary checks while a delayed flush comes due
# memcached counts `flush_all N` on its one-second clock and, with CAS on (the default),
# invalidates one tick early: N lands N-2 to N-1 s after the command. Sending N+2 means a
# delayed flush never lands before the delay the operator asked for (at most ~1 s after).
DELAY_SLACK = 2


def wire_delay(delay: int) -> int:
    """The argument of `flush_all` for a flush that must not land before `delay` seconds."""
    return delay + DELAY_SLACK if delay else 0


def figures(stats: dict[str, Any]) -> dict[str, Any]:
    return {"curr_items": stats.get("curr_items"), "cmd_flush": stats.get("cmd_flush")}


@dataclass
class ServerState:
    server: str
    shard: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    flushed: bool = False
    flush_counted: bool = False
    canary_missed: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "shard": self.shard,
            "before": self.before,
            "after": self.after,
            "flushed": self.flushed,
            "flush_counted": self.flush_counted,
            "canary_missed": self.canary_missed,
            "error": self.error,
        }


def preflight(
    mc: MemcachedProvider, states: list[ServerState], canary: str, token: bytes, ttl: int
) -> list[tuple[str, str]]:
    errors = []
    for st in states:
        try:
            st.before = figures(mc.stats(st.server))
            mc.set(st.server, canary, token, expire=ttl)
            if mc.get(st.server, canary) != token:
                raise ProviderError(f"memcached {st.server}: the canary key did not read back")
        except ProviderError as exc:
            st.error = exc.message
            errors.append((st.server, exc.message))
    return errors


def flush_shard(
    ctx: Context,
    mc: MemcachedProvider,
    shard: Shard,
    states: list[ServerState],
    *,
    cluster: str,
    delay: int,
) -> None:
    journal_params = {
        "cluster": cluster,
        "shard": shard.name,
        "delay": delay,
        "flush_all_arg": wire_delay(delay),
        "before": {st.server: st.before for st in states},
    }
    with ctx.mutation(OPERATION, targets=list(shard.servers), params=journal_params) as m:
        for st in states:
            try:
                mc.flush_all(st.server, wire_delay(delay))
                st.flushed = True
                st.after = figures(mc.stats(st.server))
            except ProviderError as exc:
                st.error = exc.message
                continue
            before, after = st.before.get("cmd_flush"), st.after.get("cmd_flush")
            st.flush_counted = isinstance(before, int) and isinstance(after, int) and after > before
            if not st.flush_counted:
                st.error = f"cmd_flush did not rise ({before} -> {after})"
        failed = [st.server for st in states if st.error]
        m.result(
            ok=not failed,
            error=f"not flushed: {', '.join(failed)}" if failed else None,
            shard=shard.name,
            servers={
                st.server: {"before": st.before, "after": st.after, "flushed": st.flushed}
                for st in states
            },
        )


def await_canary(
    ctx: Context, mc: MemcachedProvider, st: ServerState, canary: str, deadline: float
) -> None:
    while True:
        try:
            if mc.get(st.server, canary) is None:
                st.canary_missed = True
                st.after = figures(mc.stats(st.server))
                return
        except ProviderError as exc:
            st.error = exc.message
            return
        if ctx.clock.monotonic() >= deadline:
            st.error = "the canary key still reads back after the flush"
            return
        ctx.clock.sleep(POLL)
