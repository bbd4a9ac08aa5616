"""`irctl lab fault`: the incidents the runbooks are for, made real in the lab.

- loss: `numgen random mod 100 < N` drops in each chosen host's own namespace, in table
  `inet irctl_lab_fault` (irctl's own `inet irctl` table is never touched). It follows the
  machines: a replacement proxy starts clean, as in the postmortem.
- storm: one client opens thousands of connections to one proxy (over several processes).
- overload: every client opens many connections to one proxy.
- kill-backend: one memcached stopped by its pid.
- clear: all of the above undone (killed memcacheds started again).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from irctl.errors import InputError, ProviderError
from irctl.lab.holder import MAX_PER_PROCESS
from irctl.lab.hosts import attach, in_netns
from irctl.lab.nshost import Host
from irctl.lab.state import (
    FaultRecord,
    HostRecord,
    LabState,
    lab_dir,
    pid_alive,
    read_state,
    updating,
)

TABLE = "irctl_lab_fault"
STORM_CHUNK = 1500


def loss_ruleset(percent: int) -> str:
    # Declaring then deleting the table makes the batch replace it whether it existed or not.
    return (
        f"table inet {TABLE}\ndelete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n  chain input {{\n"
        f"    type filter hook input priority -10; policy accept;\n"
        f"    numgen random mod 100 < {percent} counter drop\n  }}\n}}\n"
    )


def current(state_dir: Path) -> LabState:
    state = read_state(lab_dir(state_dir))
    if state is None or not state.ready:
        raise InputError("no lab is up", "irctl lab up")
    return state


def resolve(state: LabState, refs: list[str], role: str | None = None) -> list[HostRecord]:
    out = []
    for ref in refs:
        found = [h for h in state.hosts.values() if ref in (h.name, h.address, h.instance_id)]
        if not found or (role and found[0].role != role):
            names = ", ".join(h.name for h in state.by_role(role) if role) if role else ""
            raise InputError(
                f"no lab {role or 'host'} {ref!r}",
                f"lab {role or 'host'}s: {names or 'see lab status'}",
            )
        out.append(found[0])
    return out


ROLE_WORDS = {"proxies": "proxy", "backends": "backend", "clients": "client"}


def hosts_for(state: LabState, refs: list[str]) -> list[HostRecord]:
    """Hosts by name, address or instance id, or a role word (`proxies`, `all`); default proxies."""
    out: list[HostRecord] = []
    for ref in refs or ["proxies"]:
        if ref == "all":
            found = sorted(state.hosts.values(), key=lambda h: (h.role, h.name))
        elif ref in ROLE_WORDS:
            found = state.by_role(ROLE_WORDS[ref])
        else:
            found = resolve(state, [ref])
        out += [h for h in found if h not in out]
    return out


def loss(state_dir: Path, percent: int, hosts: list[str]) -> dict[str, Any]:
    if not 1 <= percent <= 100:
        raise InputError(f"--percent must be 1..100, not {percent}")
    state = current(state_dir)
    targets = hosts_for(state, hosts)
    net = attach(state)
    for rec in targets:
        net.hosts[rec.name].run(["nft", "-f", "-"], input=loss_ruleset(percent))
    with updating(lab_dir(state_dir)) as st:
        st.faults.append(
            FaultRecord("loss", [r.name for r in targets], detail={"percent": percent})
        )
    return {"fault": "loss", "percent": percent, "hosts": [r.name for r in targets]}


def dropped(state: LabState, rec: HostRecord) -> int | None:
    """Packets the loss rule dropped on a host so far (None: no loss table there)."""
    net = attach(state)
    out = net.hosts[rec.name].run(["nft", "list", "table", "inet", TABLE], check=False)
    if out.returncode != 0:
        return None
    return sum(int(n) for n in re.findall(r"counter packets (\d+)", out.stdout))


def _hold(host: Host, target: HostRecord, port: int, count: int, tag: str) -> list[int]:
    """`count` connections from `host` to `target`, in processes of at most STORM_CHUNK."""
    chunk = min(STORM_CHUNK, MAX_PER_PROCESS)
    pids: list[tuple[int, Path, int]] = []
    for i in range(0, count, chunk):
        n = min(chunk, count - i)
        ready = host.network.workdir / f"hold-{tag}-{host.name}-{i}"
        pid = host.spawn(
            [sys.executable, "-m", "irctl.lab.holder", target.address, str(port), str(n),
             str(ready)],
            f"holder-{tag}",
        )  # fmt: skip
        pids.append((pid, ready, n))
    deadline = time.monotonic() + 90
    for pid, ready, n in pids:
        while not ready.exists():
            # Not `in_netns`: until `ip netns exec` has switched, the child is in ours.
            if time.monotonic() > deadline or not pid_alive(pid):
                _kill([p for p, _, _ in pids], host.netns)
                raise ProviderError(
                    f"{host.name} could not open {n} connections to {target.name} in 90s",
                    "is there packet loss on it (irctl lab status)? see the lab's logs folder",
                )
            time.sleep(0.05)
        ready.unlink()
    return [p for p, _, _ in pids]


def _kill(pids: list[int], netns: str) -> None:
    for pid in pids:
        if in_netns(pid, netns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def storm(
    state_dir: Path, client: str | None, proxy: str | None, connections: int
) -> dict[str, Any]:
    if not 1 <= connections <= 60_000:
        raise InputError(f"--connections must be 1..60000, not {connections}")
    state = current(state_dir)
    src = resolve(state, [client], "client")[0] if client else state.by_role("client")[0]
    dst = resolve(state, [proxy], "proxy")[0] if proxy else state.by_role("proxy")[0]
    net = attach(state)
    pids = _hold(net.hosts[src.name], dst, state.proxy_port, connections, "storm")
    with updating(lab_dir(state_dir)) as st:
        st.faults.append(
            FaultRecord("storm", [src.name, dst.name], pids, {"connections": connections})
        )
    return {"fault": "storm", "client": src.name, "proxy": dst.name, "connections": connections}


def overload(state_dir: Path, proxy: str | None, per_client: int) -> dict[str, Any]:
    if not 1 <= per_client <= 15_000:
        raise InputError(f"--per-client must be 1..15000, not {per_client}")
    state = current(state_dir)
    dst = resolve(state, [proxy], "proxy")[0] if proxy else state.by_role("proxy")[0]
    net = attach(state)
    pids: list[int] = []
    try:
        for client in state.by_role("client"):
            pids += _hold(net.hosts[client.name], dst, state.proxy_port, per_client, "overload")
    except BaseException:
        for client in state.by_role("client"):
            _kill(pids, client.netns)
        raise
    with updating(lab_dir(state_dir)) as st:
        st.faults.append(FaultRecord("overload", [dst.name], pids, {"per_client": per_client}))
    return {"fault": "overload", "proxy": dst.name, "per_client": per_client}


def kill_backend(state_dir: Path, backend: int) -> dict[str, Any]:
    state = current(state_dir)
    backends = state.by_role("backend")
    if not 1 <= backend <= len(backends):
        raise InputError(f"--backend must be 1..{len(backends)}, not {backend}")
    rec = backends[backend - 1]
    pid = rec.pids.get("memcached")
    if not pid or not in_netns(pid, rec.netns):
        raise InputError(f"memcached on {rec.name} is not running", "irctl lab fault clear")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while in_netns(pid, rec.netns) and time.monotonic() < deadline:
        time.sleep(0.02)
    with updating(lab_dir(state_dir)) as st:
        st.hosts[rec.name].pids.pop("memcached", None)
        st.faults.append(FaultRecord("kill-backend", [rec.name], detail={"pid": pid}))
    return {"fault": "kill-backend", "backend": rec.name, "address": rec.address, "pid": pid}


def clear(state_dir: Path) -> dict[str, Any]:
    state = current(state_dir)
    net = attach(state)
    cleared = []
    for fault in state.faults:
        if fault.kind == "loss":
            for name in fault.hosts:
                if name in net.hosts:
                    net.hosts[name].run(["nft", "delete", "table", "inet", TABLE], check=False)
        for pid in fault.pids:
            if any(in_netns(pid, h.netns) for h in state.hosts.values()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        cleared.append(fault.kind)
    restarted = {}
    for fault in state.faults:
        if fault.kind == "kill-backend":
            for name in fault.hosts:
                if name in net.hosts and "memcached" not in state.hosts[name].pids:
                    restarted[name] = net.hosts[name].start_memcached(state.backend_port)
    with updating(lab_dir(state_dir)) as st:
        for name, pid in restarted.items():
            st.hosts[name].pids["memcached"] = pid
        st.faults = []
    return {"cleared": cleared, "restarted": sorted(restarted)}
