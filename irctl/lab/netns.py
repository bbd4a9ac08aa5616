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

Processes: `Host.spawn` starts a daemon in its own session and remembers its pid;
`Host.stop()` signals those pids and every pid still inside the host's namespace
(`ip netns pids`: the namespace is ours, so its processes are ours too, e.g. the
per-connection children of sshd). Nothing is ever stopped by name.

sshd runs in the host's own mount namespace with a clean, empty home bind-mounted
over `/root`, so a remote shell neither reads the operator's real dotfiles nor
spends time on them.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

LAB_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
LOCK_PATH = Path("/run/irctl-netns.lock")
SSHD = "/usr/sbin/sshd"


class LabError(RuntimeError):
    """A namespace host could not be built or a daemon did not come up."""


def missing_tools(*tools: str) -> list[str]:
    """The tools (by name or absolute path) that are not installed."""
    return [t for t in tools if not (os.path.exists(t) if t.startswith("/") else shutil.which(t))]


def _run(argv: Sequence[str], *, check: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{shlex.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def wait_port(address: str, port: int, timeout: float = 10.0) -> None:
    """Return once `address:port` accepts a TCP connection; LabError after `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise LabError(f"{address}:{port} did not accept connections: {exc}") from None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def used_subnets() -> set[ipaddress.IPv4Network]:
    """The /24s of 198.18.0.0/15 that addresses or routes in the root namespace already use."""
    used: set[ipaddress.IPv4Network] = set()
    for link in json.loads(_run(["ip", "-j", "addr"]) or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                addr = ipaddress.ip_address(info["local"])
                if addr in LAB_RANGE:
                    used.add(ipaddress.IPv4Network(f"{addr}/24", strict=False))
    for route in json.loads(_run(["ip", "-j", "-4", "route"]) or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
            if net.overlaps(LAB_RANGE):
                used.add(ipaddress.IPv4Network(f"{net.network_address}/24", strict=False))
    return used


@dataclass
class Host:
    """One namespace host on a `Network`: an address, daemons we started, commands run inside."""

    name: str
    netns: str
    address: str
    veth: str
    network: Network
    pids: list[int] = field(default_factory=list)
    ssh_port: int = 22

    def run(
        self, argv: Sequence[str], check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the host's network namespace and wait for it."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            input=input,
            check=False,
        )
        if check and proc.returncode != 0:
            raise LabError(
                f"{self.name}: {shlex.join(argv)} failed ({proc.returncode}): "
                f"{proc.stderr.strip()[:500]}"
            )
        return proc

    def spawn(self, argv: Sequence[str], log_name: str | None = None) -> int:
        """Start a daemon inside the namespace; its pid is tracked and stopped by `stop()`."""
        log_dir = self.network.workdir / "logs"
        log_dir.mkdir(exist_ok=True)
        log_path = log_dir / f"{self.name}-{log_name or Path(argv[0]).name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.pids.append(proc.pid)
        self.network._children[proc.pid] = proc
        return proc.pid

    def start_sshd(self, authorized_keys: str, port: int = 22) -> str:
        """Start sshd on `address:port` with its own host key; returns the public key line."""
        hostdir = self.network.workdir / "hosts" / self.name
        hostdir.mkdir(parents=True, exist_ok=True)
        key = hostdir / "ssh_host_ed25519_key"
        if not key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(key)])
        auth = hostdir / "authorized_keys"
        auth.write_text(
            authorized_keys if authorized_keys.endswith("\n") else authorized_keys + "\n"
        )
        config = hostdir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}:{port}",
                    f"HostKey {key}",
                    f"AuthorizedKeysFile {auth}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "UseDNS no",
                    "StrictModes no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "PidFile none",
                    "MaxSessions 64",
                    "MaxStartups 200:30:400",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        # sshd refuses to start without its privilege separation directory (systemd makes it).
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        home = self.network.workdir / "home"
        script = 'mount --bind "$1" /root && shift && exec "$@"'
        self.spawn(
            ["sh", "-c", script, "sh", str(home), SSHD, "-D", "-e", "-f", str(config)], "sshd"
        )
        self.ssh_port = port
        wait_port(self.address, port)
        return (key.with_suffix(".pub")).read_text().strip()

    def start_memcached(self, port: int = 11211, *, memory_mb: int = 16, conns: int = 4096) -> int:
        """Start memcached on `address:port` (TCP only) and wait until it accepts."""
        pid = self.spawn(
            [
                "memcached", "-u", "root", "-l", self.address, "-p", str(port), "-U", "0",
                "-m", str(memory_mb), "-c", str(conns), "-t", "1",
            ],
            f"memcached-{port}",
        )  # fmt: skip
        wait_port(self.address, port)
        return pid

    def start_nutcracker(self, config_text: str, *, listen_port: int | None = None) -> int:
        """Start nutcracker with `config_text`; waits for `listen_port` when given."""
        hostdir = self.network.workdir / "hosts" / self.name
        hostdir.mkdir(parents=True, exist_ok=True)
        conf = hostdir / "nutcracker.yml"
        conf.write_text(config_text)
        pid = self.spawn(
            ["nutcracker", "-c", str(conf), "-a", self.address, "-s", "22222", "-v", "4"],
            "nutcracker",
        )
        if listen_port is not None:
            wait_port(self.address, listen_port)
        return pid

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the daemons started here and anything still in our namespace, by pid."""
        pids = set(self.pids) | set(self._namespace_pids())
        _terminate(pids, self.network._children, timeout)
        self.pids.clear()

    def _namespace_pids(self) -> list[int]:
        out = _run(["ip", "netns", "pids", self.netns], check=False)
        return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]


def _terminate(
    pids: Iterable[int], children: dict[int, subprocess.Popen[bytes]], timeout: float
) -> None:
    alive = [p for p in pids if p > 1]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in alive:
        child = children.pop(pid, None)
        if child is not None:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            continue
        while _exists(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _exists(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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
            _run(["ip", "link", "add", self.bridge, "type", "bridge"])
            self._is_up = True
            _run(["ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])
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
        _run(["ip", "netns", "add", host.netns])
        _run(
            ["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
             "netns", host.netns]
        )  # fmt: skip
        _run(["ip", "link", "set", host.veth, "master", self.bridge, "up"])
        _run(
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
        _terminate(list(self._children), self._children, 5.0)
        # Deleting a namespace takes its veth pair with it; the kernel finishes that async.
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda h: _run(["ip", "netns", "del", h.netns], check=False), hosts))
        self.hosts.clear()
        if self._is_up:
            _run(["ip", "link", "del", self.bridge], check=False)
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


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: str  # the authorized_keys line


def operator_keypair(directory: Path, name: str = "operator_ed25519") -> KeyPair:
    """An ed25519 key pair for the operator in `directory` (made once)."""
    path = directory / name
    if not path.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "irctl-lab", "-f", str(path)])
    return KeyPair(private=path, public=path.with_suffix(".pub").read_text().strip())


def known_hosts_line(host: Host, public_key: str) -> str:
    keytype, blob = public_key.split()[:2]
    where = host.address if host.ssh_port == 22 else f"[{host.address}]:{host.ssh_port}"
    return f"{where} {keytype} {blob}"


def write_known_hosts(path: Path, entries: Iterable[tuple[Host, str]]) -> Path:
    """A known_hosts file trusting each (host, public key line)."""
    path.write_text("".join(known_hosts_line(h, k) + "\n" for h, k in entries))
    return path
