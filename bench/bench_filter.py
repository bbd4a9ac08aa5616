"""filter.block then filter.revert on 50 namespace hosts: wall time and client CPU.

Run (root): python bench/bench_filter.py [--hosts 50] [--repeat 3] [--concurrency 64]
Each host runs sshd and memcached. One block is the whole preflight (peer address,
nft read, ss count per host), one `nft -f -` batch per host and the read-back; the
revert reads, deletes and reads back. A client namespace proves the block with a
real connection attempt each round.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irctl.actions.base import Context, SystemClock
from irctl.actions.filter import BlockParams, FilterBlock, FilterRevert, RevertParams
from irctl.inventory import Inventory
from irctl.journal import Journal
from irctl.providers import Providers
from irctl.settings import Settings
from irctl.ui import QuietUI
from tests.lab_fixtures import Lab, build_lab, lab_skip_reason

PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close(); print("open")
except ConnectionRefusedError:
    print("refused")
"""


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def context(inv: Inventory, workdir: Path, run_id: str) -> Context:
    settings = Settings.resolve(operator="bench")
    return Context(
        inventory=inv, settings=settings, providers=Providers(inv, settings), ui=QuietUI(),
        journal=Journal(workdir / "journal.jsonl", fsync=True), clock=SystemClock(),
        run_id=run_id, operator="bench", step_id="block",
    )  # fmt: skip


def probe(lab: Lab) -> str:
    target = lab.proxies[-1].address
    return lab.clients[0].run(["python3", "-c", PROBE, target, str(lab.port)]).stdout.strip()


def one_round(lab: Lab, inv: Inventory, i: int) -> tuple[float, float, float, float]:
    ctx = context(inv, lab.network.workdir, f"bench-{i}")
    try:
        c0, t0 = cpu(), time.perf_counter()
        params = BlockParams(cluster="lab", cidrs=[f"{lab.clients[0].address}/32"], reason="bench")
        out = FilterBlock().run(params, ctx)
        block_wall, block_cpu = time.perf_counter() - t0, cpu() - c0
        if not out.ok or probe(lab) != "refused":
            raise SystemExit(f"block failed: {out.error}")
        c0, t0 = cpu(), time.perf_counter()
        rev = FilterRevert().run(RevertParams(ids=out.output["filter_ids"], cluster="lab"), ctx)
        revert_wall, revert_cpu = time.perf_counter() - t0, cpu() - c0
        if not rev.ok or probe(lab) != "open":
            raise SystemExit(f"revert failed: {rev.error}")
    finally:
        ctx.providers.close()
    return block_wall, block_cpu, revert_wall, revert_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    reason = lab_skip_reason()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    t0 = time.perf_counter()
    lab = build_lab(proxies=args.hosts, clients=1, prefix="irbf")
    print(f"built {args.hosts} hosts (sshd + memcached) in {time.perf_counter() - t0:.2f}s")
    try:
        inv = lab.inventory(concurrency=args.concurrency)
        rounds = [one_round(lab, inv, i) for i in range(args.repeat)]
        bw, bc, rw, rc = (statistics.median(r[i] for r in rounds) for i in range(4))
        n = args.hosts
        print(
            f"block  on {n} hosts: {bw:.2f}s wall, {bc / n * 1000:.1f} ms CPU/host "
            "(new connections, preflight, batch, read-back)"
        )
        print(
            f"revert on {n} hosts: {rw:.2f}s wall, {rc / n * 1000:.1f} ms CPU/host "
            f"(connections reused; median of {args.repeat}, concurrency {args.concurrency})"
        )
    finally:
        lab.network.down()


if __name__ == "__main__":
    main()
