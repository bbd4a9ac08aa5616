"""cache.flush: flush exactly the chosen shards, then prove it on every server.

Restoring connectivity can be worth more than a warm cache, but a flush cannot be
undone, so this action is strict: the operator types the shard names (or, for
every shard, the cluster name); every server is checked and given a canary key
before anything is flushed, and one unreachable server stops the flush before it
starts. After `flush_all` each server must show `cmd_flush` risen and the canary
gone; a server where either is not so fails the step, by name.
"""

from __future__ import annotations

import math
import secrets
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from irctl.actions.base import (
    ActionParams,
    BaseAction,
    Context,
    Effect,
    Outcome,
    Plan,
    Reconciled,
)
from irctl.actions.cache import cluster_shards
from irctl.actions.cache_flush_proof import (
    OPERATION,
    ServerState,
    await_canary,
    flush_shard,
    preflight,
    wire_delay,
)
from irctl.durations import parse_duration
from irctl.errors import InputError, RefusedError, one_line
from irctl.journal import aggregate_errors

if TYPE_CHECKING:
    from irctl.inventory import Shard


def _seconds(value: Any) -> float:
    try:
        return parse_duration(value)
    except InputError as exc:  # pydantic reports ValueErrors with the field's name
        raise ValueError(exc.message) from None


class FlushParams(ActionParams):
    cluster: str
    shards: list[str] = Field(default_factory=list)
    all_shards: bool = False
    delay: int = Field(default=0, ge=0)  # memcached's flush_all delay, whole seconds
    stagger: float = Field(default=0.0, ge=0)  # pause between shards, to spare the database
    verify_timeout: float = Field(default=10.0, gt=0, le=600)

    @field_validator("delay", mode="before")
    @classmethod
    def _delay(cls, value: Any) -> int:
        return math.ceil(_seconds(value))

    @field_validator("stagger", "verify_timeout", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> float:
        return _seconds(value)


class CacheFlush(BaseAction):
    name = "cache.flush"
    description = "Flush chosen cache shards (irreversible), then prove it on every server"
    effect = Effect.MUTATE
    reversible = False

    Params = FlushParams

    # -- choosing ------------------------------------------------------------
    def _chosen(self, params: FlushParams, ctx: Context) -> list[Shard]:
        if params.all_shards and params.shards:
            raise InputError(
                "both shards and all_shards were given", "pass --shard S or --all-shards"
            )
        if not params.all_shards and not params.shards:
            raise InputError("no shard chosen", "pass --shard S (repeatable), or --all-shards")
        cluster, chosen = cluster_shards(ctx.inventory, params.cluster, params.shards)
        if not params.all_shards and len(chosen) == len(cluster.shards) and len(chosen) > 1:
            raise RefusedError(
                f"that is every shard of cluster {params.cluster!r}",
                "flushing them all needs --all-shards and typing the cluster name",
            )
        picked = {shard.name for shard in chosen}
        for other in cluster.shards:
            shared = set(other.servers) & {s for sh in chosen for s in sh.servers}
            if other.name not in picked and shared:
                raise RefusedError(
                    f"server {sorted(shared)[0]} is also in shard {other.name!r}: "
                    "flushing it would flush that shard too",
                    "fix the inventory so each server is in one shard, or choose that shard too",
                )
        return chosen

    def plan(self, params: FlushParams, ctx: Context) -> Plan:
        chosen = self._chosen(params, ctx)
        servers = [s for shard in chosen for s in shard.servers]
        when = (
            f"flush_all {wire_delay(params.delay)} (lands {params.delay}-{params.delay + 1}s later)"
            if params.delay
            else "flush_all"
        )
        details = [f"shard {sh.name}: {when} on {', '.join(sh.servers)}" for sh in chosen]
        if params.stagger and len(chosen) > 1:
            details.append(f"wait {params.stagger:g}s between shards")
        details += [
            "before: stats and a canary key on every server; any unreachable server stops it",
            "after: cmd_flush must rise and the canary must miss on every server",
        ]
        if not ctx.assume_yes:
            what = (
                f"the cluster name {params.cluster!r}" if params.all_shards else "the shard name(s)"
            )
            details.append(f"confirm by typing {what}")
        scope = f"ALL {len(chosen)} shards" if params.all_shards else f"{len(chosen)} shard(s)"
        names = ", ".join(s.name for s in chosen)
        return Plan(
            summary=f"flush {scope} of cluster {params.cluster}: {names}",
            details=details,
            targets=servers,
            reversible=False,
            data={
                "cluster": params.cluster,
                "all_shards": params.all_shards,
                "shards": {sh.name: list(sh.servers) for sh in chosen},
                "delay": params.delay,
                "stagger": params.stagger,
            },
            warnings=[
                f"every item on {len(servers)} server(s) is dropped; "
                "their misses go to the database behind the cache"
            ],
        )

    def confirm_plan(self, params_list: list[FlushParams], ctx: Context) -> bool:
        """The engine asks this instead of a yes/no: the operator types the shard names."""
        for params in params_list:
            refused = self._confirmed(params, ctx, self._chosen(params, ctx))
            if refused:
                ctx.ui.warn(refused)
                return False
        return True

    def _confirmed(self, params: FlushParams, ctx: Context, chosen: list[Shard]) -> str | None:
        """None when the operator typed the right names (or said --yes); else why not."""
        if ctx.assume_yes:
            return None
        if params.all_shards:
            expected = [params.cluster]
            prompt = (
                f"Type the cluster name to flush ALL {len(chosen)} of its shards ({params.cluster})"
            )
        else:
            expected = [shard.name for shard in chosen]
            prompt = f"Type the shard name(s) to flush ({' '.join(expected)})"
        answer = ctx.ui.ask_text(prompt)
        if sorted(answer.replace(",", " ").split()) == sorted(expected):
            return None
        return f"typed {one_line(answer, 80)!r}, not {' '.join(expected)!r}: nothing was flushed"

    # -- doing ---------------------------------------------------------------
    def run(self, params: FlushParams, ctx: Context) -> Outcome:
        from irctl.providers.memcached import MemcachedProvider

        chosen = self._chosen(params, ctx)
        refused = self._confirmed(params, ctx, chosen)
        if refused:
            return Outcome.failed(refused)
        mc = ctx.provider(MemcachedProvider)
        canary = f"irctl:canary:{ctx.run_id}:{ctx.step_id or 'flush'}:{secrets.token_hex(4)}"
        token = secrets.token_hex(8).encode()
        states = [ServerState(s, sh.name) for sh in chosen for s in sh.servers]
        # Long enough to outlive the proof: an expired canary would fake a successful flush.
        ttl = int(params.delay + params.verify_timeout + 600)
        errors = preflight(mc, states, canary, token, ttl)
        if errors:
            return self._failed(params, states, errors, "before flushing (nothing was flushed)")
        sent: dict[str, float] = {}
        for index, shard in enumerate(chosen):
            if index and params.stagger:
                ctx.clock.sleep(params.stagger)
            ctx.check_cancelled()
            sent[shard.name] = ctx.clock.monotonic()
            flush_shard(
                ctx,
                mc,
                shard,
                [st for st in states if st.shard == shard.name],
                cluster=params.cluster,
                delay=params.delay,
            )
        for st in states:
            if st.flushed and st.flush_counted:
                await_canary(
                    ctx,
                    mc,
                    st,
                    canary,
                    sent[st.shard] + wire_delay(params.delay) + params.verify_timeout,
                )
        errors = [(st.server, f"{st.server} ({st.shard}): {st.error}") for st in states if st.error]
        if errors:
            return self._failed(params, states, errors, "flush not proven")
        return Outcome(
            ok=True,
            output=self._output(params, states),
            summary=f"flushed {len(chosen)} shard(s), proven on {len(states)} server(s)",
            targets=[st.server for st in states],
        )

    def _output(self, params: FlushParams, states: list[ServerState]) -> dict[str, Any]:
        return {
            "cluster": params.cluster,
            "shards": list(dict.fromkeys(st.shard for st in states)),
            "delay": params.delay,
            "stagger": params.stagger,
            "servers": [st.to_dict() for st in states],
            "failed": [st.server for st in states if st.error],
        }

    def _failed(
        self,
        params: FlushParams,
        states: list[ServerState],
        errors: list[tuple[str, str]],
        what: str,
    ) -> Outcome:
        names = [server for server, _ in errors]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        first = errors[0][1]
        outcome = Outcome.failed(f"{what} on {shown}: {first}")
        outcome.output = {**self._output(params, states), "errors": aggregate_errors(errors)}
        outcome.targets = [st.server for st in states]
        return outcome

    # -- after a crash -------------------------------------------------------
    def reconcile(self, intent: dict[str, Any], ctx: Context) -> Reconciled:
        """Applied when every shard's flush intent is journaled and each server's cmd_flush rose."""
        from irctl.providers.memcached import MemcachedProvider

        params = self.Params.model_validate(intent.get("params") or {})
        chosen = self._chosen(params, ctx)
        calls = {
            rec.get("params", {}).get("shard"): rec
            for rec in ctx.journal.records(ctx.run_id)
            if rec.get("event") == "intent"
            and rec.get("scope") == "call"
            and rec.get("action") == OPERATION
            and rec.get("step") == ctx.step_id
        }
        if not calls:
            return Reconciled("not_applied", detail="no shard's flush was started")
        mc = ctx.provider(MemcachedProvider)
        for shard in chosen:
            rec = calls.get(shard.name)
            if rec is None:
                return Reconciled("unknown", detail=f"shard {shard.name} was not flushed yet")
            for server, before in (rec["params"].get("before") or {}).items():
                now = mc.stats(server).get("cmd_flush")
                if not (isinstance(now, int) and now > int(before.get("cmd_flush") or 0)):
                    return Reconciled("unknown", detail=f"cmd_flush on {server} did not rise")
        return Reconciled("applied", detail="cmd_flush rose on every server of every shard")
