"""Namespace hosts: a private network of Linux network namespaces on one bridge.

Used by the test fixtures (`tests/lab_fixtures.py`) and by `irctl lab`. Needs root,
`ip` (iproute2), and for daemons `sshd`, `ssh-keygen`, `memcached`, `nutcracker`.

    net = Network("irt")                # picks a free /24 in 198.18.0.0/15, makes a bridge
    net.up()                             # bridge gets .1 in the root namespace
    hosts = net.add_hosts(["p1", "p2"])  # namespaces + veths, in parallel
    key = operator_keypair(net.workdir)  # (private key path, public key line)
    pubs = net.start_sshd_all(hosts, key.public)       # {host name: host public key line}
    known = write_known_hosts(net.workdir / "known_hosts", hosts)
    hosts[0].start_memcached(11211)
    hosts[0].run(["nft", "list", "ruleset"])           # ip netns exec
    net.down()                           # stops our pids, removes our namespaces/links

Everything a `Network` makes carries a random token in its name (namespaces
`<prefix>-<token>-<host>`, bridge `irb<token>`, veths `irv<token><n>`), so several
test sessions can run side by side; `down()` removes only those. The subnet is
chosen under an `flock` on `/run/irctl-netns.lock` by scanning the addresses in
use, and the bridge address is assigned before the lock is released.

Hosts are `irctl.lab.nshost.Host` (daemons, commands inside), keys and known_hosts
come from `irctl.lab.sshkeys`, and running/stopping by pid from `irctl.lab.system`.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from irctl.lab.nshost import Host
from irctl.lab.system import LabError, run, terminate

LAB_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
LOCK_PATH = Path("/run/irctl-netns.lock")


def used_subnets() -> set[ipaddress.IPv4Network]:
    """The /24s of 198.18.0.0/15 that addresses or routes in the root namespace already use."""
    used: set[ipaddress.IPv4Network] = set()
    for link in json.loads(run(["ip", "-j", "addr"]) or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                addr = ipaddress.ip_address(info["local"])
                if addr in LAB_RANGE:
                    used.add(ipaddress.IPv4Network(f"{addr}/24", strict=False))
    for route in json.loads(run(["ip", "-j", "-4", "route"]) or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
            if net.overlaps(LAB_RANGE):
                used.add(ipaddress.IPv4Network(f"{net.network_address}/24", strict=False))
    return used


class Network:
    """A bridge in the root namespace on a free /24 of 198.18.0.0/15, and hosts on it."""

    MAX_HOSTS = 240

    def __init__(self, prefix: str = "irl", workdir: Path | None = None) -> None:
        if not prefix.isalnum() or len(prefix) > 8:
            raise ValueError("prefix: up to 8 letters or digits")
        self.prefix = prefix
        self.token = secrets.token_hex(3)
        self.bridge = f"irb{self.token}"
        self.subnet: ipaddress.IPv4Network | None = None
        self.hosts: dict[str, Host] = {}
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"irctl-{prefix}-{self.token}-"))
        self._next = 2
        self._index = 0
        self._lock = threading.Lock()
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._is_up = False

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge: where the operator's irctl connects from."""
        assert self.subnet is not None, "call up() first"
        return str(self.subnet.network_address + 1)

    def up(self) -> Network:
        (self.workdir / "home").mkdir(mode=0o700, exist_ok=True)
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        with open(LOCK_PATH, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = used_subnets()
            # Start the scan at a random /24 so sessions rarely contend for the same one.
            candidates = [ipaddress.IPv4Network(n) for n in LAB_RANGE.subnets(new_prefix=24)]
            start = secrets.randbelow(len(candidates))
            free = [
                c for c in candidates[start:] + candidates[:start]
                if c not in used and c.network_address.packed[2] != 255
            ]  # fmt: skip
            if not free:
                raise LabError("no free /24 left in 198.18.0.0/15")
            self.subnet = free[0]
            run(["ip", "link", "add", self.bridge, "type", "bridge"])
            self._is_up = True
            run(["ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        return self

    def add_host(self, name: str, address: str | None = None) -> Host:
        """A new namespace with a veth into the bridge, `address` (default: the next) and `lo` up.

        An explicit address is how `irctl lab` gives a namespace an EC2 instance's private IP.
        """
        if self.subnet is None:
            raise LabError("call Network.up() before add_host()")
        with self._lock:
            if name in self.hosts:
                raise LabError(f"host {name!r} exists")
            if address is not None:
                wanted = ipaddress.ip_address(address)
                if wanted not in self.subnet or wanted == self.subnet.network_address + 1:
                    raise LabError(f"{address} is not a host address of {self.subnet}")
                if any(h.address == address for h in self.hosts.values()):
                    raise LabError(f"{address} is already used by a host")
            else:
                if self._next > self.MAX_HOSTS:
                    raise LabError(f"at most {self.MAX_HOSTS} hosts per network")
                address = str(self.subnet.network_address + self._next)
                self._next += 1
            self._index += 1
            host = Host(
                name=name,
                netns=f"{self.prefix}-{self.token}-{name}"[:60],
                address=address,
                veth=f"irv{self.token}{self._index}",
                network=self,
            )
            self.hosts[name] = host
        run(["ip", "netns", "add", host.netns])
        run(
            ["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
             "netns", host.netns]
        )  # fmt: skip
        run(["ip", "link", "set", host.veth, "master", self.bridge, "up"])
        run(
            ["ip", "-n", host.netns, "-b", "-"],
            input=f"addr add {address}/24 dev eth0\nlink set eth0 up\nlink set lo up\n",
        )
        return host

    def add_hosts(self, names: Sequence[str], workers: int = 16) -> list[Host]:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.add_host, names))

    def start_sshd_all(
        self, hosts: Sequence[Host], authorized_keys: str, workers: int = 16
    ) -> dict[str, str]:
        """Start sshd on every host in parallel; {host name: host public key line}."""
        with ThreadPoolExecutor(max_workers=workers) as pool:
            keys = list(pool.map(lambda h: h.start_sshd(authorized_keys), hosts))
        return {h.name: k for h, k in zip(hosts, keys, strict=True)}

    def down(self) -> None:
        """Stop our processes and remove our namespaces, veths and bridge (nothing else)."""
        hosts = list(self.hosts.values())
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda h: h.stop(), hosts))
        terminate(list(self._children), self._children, 5.0)
        # Deleting a namespace takes its veth pair with it; the kernel finishes that async.
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda h: run(["ip", "netns", "del", h.netns], check=False), hosts))
        self.hosts.clear()
        if self._is_up:
            run(["ip", "link", "del", self.bridge], check=False)
            self._is_up = False
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @classmethod
    def attach(
        cls,
        prefix: str,
        token: str,
        subnet: str,
        workdir: Path,
        *,
        next_address: int = 2,
        next_index: int = 0,
    ) -> Network:
        """A `Network` another process brought up (`irctl lab` keeps one across commands).

        Add its existing hosts with `adopt`; `down()` then removes them like its own.
        """
        net = cls(prefix, workdir)
        net.token = token
        net.bridge = f"irb{token}"
        net.subnet = ipaddress.IPv4Network(subnet)
        net._next = next_address
        net._index = next_index
        net._is_up = True
        return net

    def adopt(self, name: str, netns: str, address: str, veth: str, pids: Sequence[int]) -> Host:
        """Track a host that already exists (made by an earlier process)."""
        host = Host(name=name, netns=netns, address=address, veth=veth, network=self)
        host.pids.extend(pids)
        self.hosts[name] = host
        return host

    def __enter__(self) -> Network:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()
