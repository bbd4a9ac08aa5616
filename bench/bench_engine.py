"""The engine's own cost: planning a 30-step runbook over 1,000 proxies, and journal speed.

The planning bench runs a real drill (`--dry-run` path of the engine: templating,
params validation, plan(), one journal record per step) with a bench-local action
whose plan is trivial, so the figure is the engine's overhead. Aim: under 1 s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from irctl.actions import ACTIONS
from irctl.actions.base import ActionParams, BaseAction, Context, Effect, Outcome, Plan
from irctl.inventory import Inventory
from irctl.journal import Journal
from irctl.runbook.model import Runbook
from irctl.runbook.runner import start_run
from irctl.settings import Settings
from irctl.ui import QuietUI


class PlanOnly(BaseAction):
    name = "bench.plan"
    description = "a mutating action whose plan is cheap"
    effect = Effect.MUTATE

    class Params(ActionParams):
        cluster: str
        proxy: str

    def plan(self, params: Any, ctx: Context) -> Plan:
        return Plan(
            summary=f"touch {params.proxy}",
            details=[f"touch {params.proxy}"],
            targets=[params.proxy],
        )

    def run(self, params: Any, ctx: Context) -> Outcome:
        return Outcome(ok=False, error="bench action never runs live")


def inventory(n: int) -> Inventory:
    proxies = [
        {"name": f"proxy-{i}", "address": f"198.18.{i // 250}.{i % 250 + 1}"} for i in range(n)
    ]
    return Inventory.model_validate({"clusters": {"bench": {"proxies": proxies}}})


def runbook(steps: int) -> Runbook:
    return Runbook.model_validate(
        {
            "apiVersion": "irctl/v1",
            "kind": "Runbook",
            "name": "bench",
            "title": "bench",
            "inputs": {"cluster": {"required": True}},
            "steps": [
                {
                    "id": f"s{i}",
                    "action": "bench.plan",
                    "foreach": "inventory.clusters[inputs.cluster].proxies"
                    " | map(attribute='name') | list",
                    "with": {"cluster": "{{ inputs.cluster }}", "proxy": "{{ item }}"},
                }
                for i in range(steps)
            ],
        }
    )


def bench_plan(steps: int = 30, proxies: int = 1000) -> None:
    ACTIONS["bench.plan"] = f"{__name__}:PlanOnly"
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.resolve(journal=Path(tmp) / "j.jsonl", operator="bench")
        inv, rb = inventory(proxies), runbook(steps)
        began = time.perf_counter()
        result = start_run(
            settings,
            inv,
            QuietUI(assume_yes=True),
            rb,
            None,
            {"cluster": "bench"},
            dry_run=True,
            yes=True,
        )
        elapsed = time.perf_counter() - began
    assert result.status == "planned", result.error
    print(
        f"drill of {steps} steps x {proxies} proxies ({steps * proxies} plans): {elapsed:.2f} s "
        f"(aim < 1 s: {'met' if elapsed < 1 else 'NOT met'})"
    )


def bench_journal(records: int = 500) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for fsync in (True, False):
            journal = Journal(Path(tmp) / f"j{fsync}.jsonl", fsync=fsync)
            began = time.perf_counter()
            for i in range(records):
                journal.append("result", run_id="bench", step="s", ok=True, output={"i": i})
            rate = records / (time.perf_counter() - began)
            print(f"journal appends {'with' if fsync else 'without'} fsync: {rate:8.0f} records/s")
        began = time.perf_counter()
        ok = Journal(Path(tmp) / "jTrue.jsonl").verify().ok
        print(
            f"journal verify of {records} records: {(time.perf_counter() - began) * 1000:.1f} ms "
            f"({'ok' if ok else 'BROKEN'})"
        )


if __name__ == "__main__":
    bench_plan()
    bench_journal()
