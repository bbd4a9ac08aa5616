"""SSH fan-out of one read command to 50 and 100 namespace hosts, beside Ansible.

Run (root): python bench/bench_ssh.py [--sizes 50 100] [--repeat 3] [--concurrency 100]
Each host runs its own sshd. For each size: a cold fan-out (new provider: TCP, key
exchange, host key check, auth, command) and a warm one (connections reused), wall
time and this process's CPU per host; then `ansible all -f 50 -m command -a 'uname -n'`
on the same hosts when ansible is installed (`pip install ansible-core`).
Aim: 100 hosts in under 2 s, several times faster than Ansible.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irctl.providers.ssh import HostRef, SshProvider
from tests.lab_fixtures import Lab, build_lab, lab_skip_reason


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def provider(lab: Lab, concurrency: int) -> SshProvider:
    return SshProvider(
        user="root",
        key_file=str(lab.key.private),
        known_hosts=[lab.known_hosts],
        connect_timeout=10,
        concurrency=concurrency,
        use_agent=False,
    )


def fan_out(lab: Lab, n: int, concurrency: int) -> tuple[float, float, float, float]:
    hosts = [HostRef(h.name, h.address) for h in lab.proxies[:n]]
    ssh = provider(lab, concurrency)
    try:
        c0, t0 = cpu(), time.perf_counter()
        cold = ssh.run_many(hosts, ["uname", "-n"])
        cold_wall, cold_cpu = time.perf_counter() - t0, cpu() - c0
        c0, t0 = cpu(), time.perf_counter()
        warm = ssh.run_many(hosts, ["uname", "-n"])
        warm_wall, warm_cpu = time.perf_counter() - t0, cpu() - c0
    finally:
        ssh.close()
    bad = [r for r in cold + warm if not r.ok]
    if bad:
        raise SystemExit(f"{len(bad)} host(s) failed, e.g. {bad[0].error}")
    return cold_wall, cold_cpu, warm_wall, warm_cpu


def ansible(lab: Lab, n: int, forks: int) -> tuple[float, float] | None:
    if not shutil.which("ansible"):
        return None
    workdir = lab.network.workdir
    inventory = workdir / f"ansible-{n}.ini"
    inventory.write_text("".join(f"{h.address}\n" for h in lab.proxies[:n]))
    config = workdir / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = dict(
        os.environ,
        ANSIBLE_HOST_KEY_CHECKING="True",
        ANSIBLE_SSH_ARGS=f"-o UserKnownHostsFile={lab.known_hosts} -o ControlMaster=no",
        ANSIBLE_PYTHON_INTERPRETER="auto_silent",
        ANSIBLE_LOCAL_TEMP=str(workdir / "ansible-tmp"),
        ANSIBLE_CONFIG=str(config),
    )
    argv = [
        "ansible", "all", "-i", str(inventory), "-f", str(forks), "-u", "root",
        "--private-key", str(lab.key.private), "-m", "command", "-a", "uname -n",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        print(f"  ansible failed ({proc.returncode}): {proc.stdout[-300:]} {proc.stderr[-300:]}")
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--forks", type=int, default=50)
    args = parser.parse_args()
    reason = lab_skip_reason()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    t0 = time.perf_counter()
    lab = build_lab(proxies=max(args.sizes), clients=0, service="none", prefix="irbs")
    print(f"built {len(lab.proxies)} sshd hosts in {time.perf_counter() - t0:.2f}s")
    try:
        for n in args.sizes:
            runs = [fan_out(lab, n, args.concurrency) for _ in range(args.repeat)]
            cw, cc, ww, wc = (statistics.median(r[i] for r in runs) for i in range(4))
            print(
                f"irctl  {n:3d} hosts: cold {cw:.2f}s wall, {cc / n * 1000:.1f} ms CPU/host | "
                f"warm {ww:.2f}s wall, {wc / n * 1000:.1f} ms CPU/host "
                f"(median of {args.repeat}, concurrency {args.concurrency})"
            )
            result = ansible(lab, n, args.forks)
            if result is None:
                print("ansible: not installed (pip install ansible-core)")
            else:
                wall, used = result
                print(
                    f"ansible {n:3d} hosts: {wall:.2f}s wall, {used / n * 1000:.1f} ms CPU/host "
                    f"(-f {args.forks}); irctl cold is {wall / cw:.1f}x faster"
                )
    finally:
        lab.network.down()


if __name__ == "__main__":
    main()
