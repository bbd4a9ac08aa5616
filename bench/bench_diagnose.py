"""How long `diagnose.cluster` takes on 50 and 100 namespace hosts, and what it costs the client.

Run (root): python bench/bench_diagnose.py [--sizes 50 100] [--repeat 3] [--concurrency N]
Each host runs sshd and memcached on the proxy port; two more hosts are the backends,
so every proxy also probes two proxy->backend paths. Prints wall time and client CPU
(this process plus the probe child) per run and per host, beside
`ansible -f 50 -m command -a 'cat /proc/net/sockstat'` on the same hosts when ansible
is installed (`pip install ansible-core`). Aim: 100 hosts in under 2 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irctl.actions.base import Context, SystemClock
from irctl.actions.diagnose import DiagnoseCluster, DiagnoseParams
from irctl.inventory import Inventory
from irctl.journal import Journal
from irctl.providers import Providers
from irctl.settings import Settings
from irctl.ui import QuietUI
from tests.lab_fixtures import Lab, build_lab, lab_skip_reason

PORT = 11211


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def inventory(lab: Lab, backends: list[str], concurrency: int) -> Inventory:
    data = lab.inventory_dict(concurrency=concurrency)
    data["clusters"]["lab"]["shards"] = [
        {"name": f"shard-{i}", "servers": [f"{b}:{PORT}"]} for i, b in enumerate(backends)
    ]
    return Inventory.model_validate(data)


def fanout_once(inv: Inventory) -> tuple[float, float, int]:
    """The floor: the SSH provider alone running the read ansible runs (no probes, no parsing)."""
    from irctl.providers.ssh import HostRef, SshProvider

    settings = Settings.resolve(operator="bench")
    ssh = SshProvider.create(inv, settings)
    hosts = [HostRef(p.name, p.address) for p in inv.clusters["lab"].proxies]
    cpu0, t0 = cpu_seconds(), time.monotonic()
    try:
        results = ssh.run_many(hosts, ["cat", "/proc/net/sockstat"])
    finally:
        ssh.close()
    return time.monotonic() - t0, cpu_seconds() - cpu0, sum(1 for r in results if r.ok)


def diagnose_once(
    inv: Inventory, workdir: Path, params: dict[str, Any]
) -> tuple[float, float, dict[str, Any]]:
    settings = Settings.resolve(operator="bench")
    ctx = Context(
        inventory=inv, settings=settings, providers=Providers(inv, settings), ui=QuietUI(),
        journal=Journal(workdir / "journal.jsonl", fsync=False), clock=SystemClock(),
        run_id="bench", operator="bench",
    )  # fmt: skip
    cpu0, t0 = cpu_seconds(), time.monotonic()
    try:
        outcome = DiagnoseCluster().run(DiagnoseParams.model_validate(params), ctx)
    finally:
        ctx.providers.close()
    return time.monotonic() - t0, cpu_seconds() - cpu0, outcome.output


def ansible_once(lab: Lab, forks: int) -> tuple[float, float, int] | None:
    if not shutil.which("ansible"):
        return None
    work = lab.network.workdir
    hosts = work / "ansible_hosts.ini"
    hosts.write_text("[lab]\n" + "".join(f"{h.address}\n" for h in lab.proxies))
    ssh_args = (f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes "
                "-o ControlMaster=no -F /dev/null")  # fmt: skip
    env = {
        **os.environ,
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": ssh_args,
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-local"),
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_STDOUT_CALLBACK": "oneline",
    }
    argv = ["ansible", "lab", "-i", str(hosts), "-u", "root", "--private-key", str(lab.key.private),
            "-f", str(forks), "-m", "command", "-a", "cat /proc/net/sockstat"]  # fmt: skip
    cpu0, t0 = cpu_seconds(), time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    wall, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    ok = sum(
        1 for line in out.stdout.splitlines() if "| CHANGED |" in line or "| SUCCESS |" in line
    )
    return wall, cpu, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100, help="SSH fan-out width")
    parser.add_argument("--samples", type=int, default=20, help="operator -> proxy samples")
    parser.add_argument("--backend-samples", type=int, default=10)
    parser.add_argument("--no-ansible", action="store_true")
    args = parser.parse_args()
    reason = lab_skip_reason()
    if reason:
        sys.exit(f"cannot run: {reason}")
    print(f"{'hosts':>5} {'tool':<28} {'wall s':>7} {'cpu s':>7} {'cpu ms/host':>11}  result")
    for size in args.sizes:
        built = time.monotonic()
        lab = build_lab(proxies=size, clients=0, service="memcached", port=PORT, prefix="irbd")
        try:
            backend_hosts = lab.network.add_hosts(["backend-1", "backend-2"])
            for h in backend_hosts:
                h.start_memcached(PORT)
            print(f"# {size} hosts built in {time.monotonic() - built:.1f} s", flush=True)
            inv = inventory(lab, [h.address for h in backend_hosts], args.concurrency)
            params = {"cluster": "lab", "samples": args.samples,
                      "backend_samples": args.backend_samples}  # fmt: skip
            wall, cpu, ok = fanout_once(inv)
            print(f"{size:>5} {'irctl ssh fan-out (floor)':<28} {wall:>7.2f} {cpu:>7.2f} "
                  f"{cpu / size * 1000:>11.1f}  {ok}/{size} ok", flush=True)  # fmt: skip
            walls = []
            for _ in range(args.repeat):
                wall, cpu, out = diagnose_once(inv, lab.network.workdir, params)
                walls.append(wall)
                measured = sum(1 for h in out["hosts"] if h["reachable"])
                print(f"{size:>5} {'irctl diagnose':<28} {wall:>7.2f} {cpu:>7.2f} "
                      f"{cpu / size * 1000:>11.1f}  {out['classification']}, "
                      f"{measured}/{size} measured", flush=True)  # fmt: skip
            print(f"{size:>5} {'irctl diagnose (median)':<28} {statistics.median(walls):>7.2f}")
            if not args.no_ansible:
                got = ansible_once(lab, forks=50)
                if got is None:
                    print(f"{size:>5} ansible not installed (pip install ansible-core)")
                else:
                    wall, cpu, ok = got
                    print(f"{size:>5} {'ansible -f 50 cat sockstat':<28} {wall:>7.2f} {cpu:>7.2f} "
                          f"{cpu / size * 1000:>11.1f}  {ok}/{size} ok", flush=True)  # fmt: skip
        finally:
            lab.network.down()


if __name__ == "__main__":
    main()
