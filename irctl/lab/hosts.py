"""Lab hosts from the state file: the network re-attached, proxies built, pids checked.

Every `irctl lab` command is a new process, and so is the reconciler; they share the
`Network` through the state file (`Network.attach` + `adopt`).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from irctl.hashring.nutcracker import render_cluster
from irctl.inventory import Backend, Cluster, Hashing, Shard
from irctl.lab.netns import Network
from irctl.lab.nshost import Host
from irctl.lab.sshkeys import known_hosts_line
from irctl.lab.state import HostRecord, LabState, locked

HASHING = Hashing(distribution="ketama", hash="fnv1a_64")


def attach(state: LabState) -> Network:
    """The lab's network with its hosts adopted (their processes are found by namespace)."""
    net = Network.attach(
        state.prefix,
        state.token,
        state.subnet,
        Path(state.directory),
        next_index=state.next_index,
    )
    for rec in state.hosts.values():
        net.adopt(rec.name, rec.netns, rec.address, rec.veth, [])
    return net


def cluster_spec(state: LabState) -> Cluster:
    """The cluster as the proxies serve it: one shard per backend, in backend order."""
    backends = state.by_role("backend")
    return Cluster(
        proxy_port=state.proxy_port,
        shards=[
            Shard(name=f"shard-{i}", servers=[f"{b.address}:{state.backend_port}"])
            for i, b in enumerate(backends)
        ],
        backends=[Backend(name=b.name, address=b.address) for b in backends],
        hashing=HASHING,
    )


def start_proxy(host: Host, state: LabState) -> int:
    """nutcracker on the host, hashing like `irctl cache locate` (config from the cluster)."""
    text = render_cluster("lab", cluster_spec(state), f"{host.address}:{state.proxy_port}")
    return host.start_nutcracker(text, listen_port=state.proxy_port)


def in_netns(pid: int, netns: str) -> bool:
    """Whether `pid` runs inside our namespace `netns` (so it is ours to signal)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return False


def alive_in(rec: HostRecord) -> dict[str, bool]:
    return {name: in_netns(pid, rec.netns) for name, pid in rec.pids.items()}


def add_known_host(state: LabState, host: Host, public_key: str) -> None:
    """Publish a host key the way a provisioning system would: into the lab's known_hosts."""
    path = Path(state.files["known_hosts"])
    with locked(Path(state.directory) / "kh"):
        lines = _without(path, host.address)
        lines.append(known_hosts_line(host, public_key))
        _write_lines(path, lines)


def remove_known_host(state: LabState, address: str) -> None:
    path = Path(state.files["known_hosts"])
    with locked(Path(state.directory) / "kh"):
        _write_lines(path, _without(path, address))


def _without(path: Path, address: str) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [ln for ln in lines if ln.split(" ", 1)[0] not in (address, f"[{address}]:22")]


def _write_lines(path: Path, lines: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(ln + "\n" for ln in lines))
    os.replace(tmp, path)


def remove_host(net: Network, name: str) -> None:
    """Stop everything in the host's namespace and delete it (its veth goes with it)."""
    host = net.hosts.pop(name, None)
    if host is None:
        return
    host.stop()
    # The veth first: a namespace can outlive `ip netns del` (an orphaned socket in it still
    # retransmitting), and its veth would linger on our bridge with it.
    subprocess.run(["ip", "link", "del", host.veth], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "del", host.netns], capture_output=True, check=False)
