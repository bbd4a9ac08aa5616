"""API calls and wall time per proxy replacement, against moto in server mode with zero waits.

Run: python bench/bench_aws.py [--proxies 8] [--repeat 8]
Wall time is `run()` alone; building the session and clients is timed apart (a CLI
command also plans first, which repeats the read calls of the preflight).
Calls are counted with botocore event hooks (`before-call` per API call, `before-send`
per HTTP request, so retries would show); the journal is fsynced as in production.
Prints per replacement through the launch template and through an Auto Scaling group,
and one scale-out of 4 with its undo. moto answers instantly, so wall time here is
irctl's own overhead plus moto's; real AWS adds minutes of boot and health checks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irctl.actions import get_action
from irctl.actions.base import Context, SystemClock
from irctl.inventory import Inventory
from irctl.journal import Journal
from irctl.providers import Providers
from irctl.providers.aws import AwsProvider
from irctl.settings import Settings
from irctl.ui import QuietUI
from tests.moto_fixtures import CLEARED_ENV, DUMMY_ENV, AwsWorld, reset_moto, start_moto


class TimedJournal(Journal):
    """The real journal (fsynced), timing its appends so disk waits are reported apart."""

    spent = 0.0

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        began = time.perf_counter()
        try:
            return super().append(event, **fields)
        finally:
            TimedJournal.spent += time.perf_counter() - began


def context(inventory: dict[str, Any], state: Path, run_id: str) -> Context:
    inv = Inventory.model_validate(inventory)
    settings = Settings.resolve(environ={"IRCTL_STATE_DIR": str(state), "IRCTL_OPERATOR": "bench"})
    return Context(
        inventory=inv,
        settings=settings,
        providers=Providers(inv, settings),
        ui=QuietUI(assume_yes=True),
        journal=TimedJournal(settings.journal_path),
        clock=SystemClock(),
        run_id=run_id,
        operator="bench",
        step_id="replace",
    )


Sample = tuple[float, Counter[str], int, float]
SETUP: list[float] = []


def measure(ctx: Context, action: str, params: dict[str, Any]) -> Sample:
    act = get_action(action)
    setup = time.perf_counter()
    for service in ("ec2", "elbv2", "autoscaling"):
        ctx.provider(AwsProvider).client(service)  # botocore model loading, once per run
    SETUP.append(time.perf_counter() - setup)
    TimedJournal.spent = 0.0
    began = time.perf_counter()
    outcome = act.run(act.Params(**params), ctx)
    wall = time.perf_counter() - began
    if not outcome.ok:
        raise SystemExit(f"{action} failed: {outcome.error}")
    aws = ctx.provider(AwsProvider)
    calls, requests = Counter(aws.calls), aws.requests
    ctx.providers.close()
    return wall, calls, requests, TimedJournal.spent


def report(title: str, samples: list[Sample]) -> None:
    walls = [s[0] * 1000 for s in samples]
    journal = [s[3] * 1000 for s in samples]
    totals = [sum(s[1].values()) for s in samples]
    changes = [
        sum(n for op, n in s[1].items() if not op.split(".")[1].startswith("Describe"))
        for s in samples
    ]
    print(f"{title}: {len(samples)} runs")
    print(f"  wall         median {statistics.median(walls):7.1f} ms   max {max(walls):7.1f} ms")
    print(f"  of which journal appends (fsync) median {statistics.median(journal):7.1f} ms")
    if SETUP:
        print(
            f"  (before each run: 3 clients built, median {statistics.median(SETUP) * 1000:.0f} ms)"
        )
        SETUP.clear()
    print(
        f"  API calls    median {statistics.median(totals):5.0f}"
        f"   (changing: {statistics.median(changes):.0f})"
        f"   HTTP requests median {statistics.median(s[2] for s in samples):.0f}"
    )
    merged: Counter[str] = Counter()
    for s in samples:
        merged.update(s[1])
    for op, n in sorted(merged.items()):
        print(f"    {op:<55} {n / len(samples):5.1f} per run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=8)
    args = parser.parse_args()
    for key in CLEARED_ENV:
        os.environ.pop(key, None)
    os.environ.update(DUMMY_ENV)
    server, endpoint = start_moto()
    zero = {"poll": 0.0, "timeout": 30.0}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp)
            reset_moto(endpoint)
            world = AwsWorld(endpoint).build(args.proxies)
            inventory = world.inventory(**zero)
            samples = []
            for i in range(args.repeat):
                ctx = context(inventory, state, f"bench-lt-{i}")
                proxy = f"proxy-{i % args.proxies + 1}"
                samples.append(
                    measure(ctx, "aws.replace_proxy", {"cluster": "use1-a", "proxy": proxy})
                )
            report("replace via launch template", samples)

            reset_moto(endpoint)
            world = AwsWorld(endpoint).build(args.proxies, asg=True)
            inventory = world.inventory(discover=True, **zero)
            samples = []
            for i in range(args.repeat):
                ctx = context(inventory, state, f"bench-asg-{i}")
                target = world.asg_instances()[0]
                samples.append(
                    measure(ctx, "aws.replace_proxy", {"cluster": "use1-a", "proxy": target})
                )
            report("replace via Auto Scaling group", samples)

            reset_moto(endpoint)
            world = AwsWorld(endpoint).build(args.proxies)
            ctx = context(world.inventory(**zero), state, "bench-scale")
            act = get_action("aws.scale_proxies")
            TimedJournal.spent = 0.0
            began = time.perf_counter()
            outcome = act.run(act.Params(cluster="use1-a", add=4), ctx)
            assert outcome.ok and outcome.undo, outcome.error
            undone = act.undo(outcome.undo, ctx)
            assert undone.ok, undone.error
            wall = time.perf_counter() - began
            report(
                "scale out by 4, then undo",
                [
                    (
                        wall,
                        Counter(ctx.provider(AwsProvider).calls),
                        ctx.provider(AwsProvider).requests,
                        TimedJournal.spent,
                    )
                ],
            )
            ctx.providers.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
