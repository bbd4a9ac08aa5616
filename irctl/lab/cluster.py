"""`irctl lab up` and `irctl lab down`: the whole drill cluster, made and unmade.

Up: the reconciler process first (it serves moto, which takes a moment to import), then
the bridge and one namespace per host, sshd everywhere but on clients, memcached on
backends, nutcracker on proxies, the AWS picture, the inventory and env files, and the
clients' load. Everything made is on record in the state file before it is started, so
`down` (or a failed `up`) removes exactly that: our pids, our namespaces (named with the
lab's random token), our bridge, our files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from irctl.errors import InputError, ProviderError
from irctl.lab import cloud
from irctl.lab.files import write_env, write_inventory, write_targets
from irctl.lab.hosts import attach, start_proxy
from irctl.lab.netns import Network
from irctl.lab.nshost import Host
from irctl.lab.requirements import check_requirements
from irctl.lab.sshkeys import operator_keypair
from irctl.lab.state import (
    HostRecord,
    LabState,
    lab_dir,
    locked,
    pid_alive,
    read_state,
    write_state,
)
from irctl.lab.system import LabError

PROXY_PORT = 22121
BACKEND_PORT = 11211
RECONCILER = "irctl.lab.reconciler"
SINK = "irctl.lab.sink"


def up(state_dir: Path, *, proxies: int, backends: int, clients: int, asg: bool) -> LabState:
    for what, n, top in (
        ("proxies", proxies, 50),
        ("backends", backends, 20),
        ("clients", clients, 20),
    ):
        if not 1 <= n <= top:
            raise InputError(f"--{what} must be between 1 and {top}, not {n}")
    check_requirements()
    directory = lab_dir(state_dir)
    with locked(directory):
        if read_state(directory) is not None:
            raise InputError(
                f"a lab is already up (state in {directory})", "irctl lab down, then up again"
            )
        stale = [p for p in directory.iterdir() if p.name != "state.lock"]
        for path in stale:  # leftovers of a lab whose state never got written
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        daemon = _start_daemon(directory)
        sink = _start_daemon(directory, SINK)
        net = Network("lab", directory)
        state: LabState | None = None
        try:
            net.up()
            assert net.subnet is not None
            state = LabState(
                directory=str(directory),
                prefix=net.prefix,
                token=net.token,
                bridge=net.bridge,
                subnet=str(net.subnet),
                gateway=net.gateway,
                proxy_port=PROXY_PORT,
                backend_port=BACKEND_PORT,
                daemon_pid=daemon,
                sink_pid=sink,
            )
            write_state(state)
            _build(state, net, proxies, backends, clients, asg)
        except BaseException:
            if state is None:
                _stop_daemon(daemon)
                _stop_daemon(sink, SINK)
                net.down()
            else:
                _teardown(directory, state)
            raise
    _wait_healthy(state)
    return state


def _log_path(directory: Path, module: str) -> Path:
    return directory / f"{module.rsplit('.', 1)[-1]}.log"


def _start_daemon(directory: Path, module: str = RECONCILER) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    with open(_log_path(directory, module), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--dir", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    return proc.pid


def _build(
    state: LabState, net: Network, proxies: int, backends: int, clients: int, asg: bool
) -> None:
    names = {
        "proxy": [f"proxy-{i + 1}" for i in range(proxies)],
        "backend": [f"backend-{i + 1}" for i in range(backends)],
        "client": [f"client-{i + 1}" for i in range(clients)],
    }
    ordered = [(role, n) for role, group in names.items() for n in group]
    hosts = net.add_hosts([n for _, n in ordered])
    for (role, _), host in zip(ordered, hosts, strict=True):
        state.hosts[host.name] = HostRecord(host.name, role, host.netns, host.address, host.veth)
    state.next_index = net._index
    directory = Path(state.directory)
    key = operator_keypair(directory)
    state.files = {
        "key": str(key.private),
        "known_hosts": str(directory / "known_hosts"),
        "inventory": str(directory / "inventory.yaml"),
        "env": str(directory / "lab.env"),
        "targets": str(directory / "proxies.txt"),
    }
    write_state(state)

    def aws_picture() -> dict[str, Any]:
        state.endpoint = _wait_endpoint(directory, state.daemon_pid or 0)
        return cloud.build(state, asg=asg)

    # The AWS side needs only the addresses: build it while the daemons start.
    with ThreadPoolExecutor(max_workers=1) as aws_pool:
        aws_job = aws_pool.submit(aws_picture)
        by_role = _start_daemons(state, net, hosts, names, key.public)
        state.aws = aws_job.result()
    state.sink = _wait_endpoint(directory, state.sink_pid or 0, "sink", SINK, "notification sink")
    write_inventory(state)
    write_env(state)
    write_targets(state)
    for i, host in enumerate(by_role["client"]):
        state.hosts[host.name].pids["loadgen"] = start_loadgen(host, state, seed=i)
    state.ready = True
    write_state(state)


def _start_daemons(
    state: LabState, net: Network, hosts: list[Host], names: dict[str, list[str]], public: str
) -> dict[str, list[Host]]:
    servers = [h for h in hosts if state.hosts[h.name].role != "client"]
    keys = net.start_sshd_all(servers, public)
    for host in servers:
        rec = state.hosts[host.name]
        rec.host_key = keys[host.name]
        rec.pids["sshd"] = host.pids[0]
    from irctl.lab.sshkeys import write_known_hosts

    write_known_hosts(Path(state.files["known_hosts"]), [(h, keys[h.name]) for h in servers])
    by_role = {role: [net.hosts[n] for n in group] for role, group in names.items()}
    with ThreadPoolExecutor(max_workers=8) as pool:
        pids = list(pool.map(lambda h: h.start_memcached(BACKEND_PORT), by_role["backend"]))
    for host, pid in zip(by_role["backend"], pids, strict=True):
        state.hosts[host.name].pids["memcached"] = pid
    with ThreadPoolExecutor(max_workers=8) as pool:
        pids = list(pool.map(lambda h: start_proxy(h, state), by_role["proxy"]))
    for host, pid in zip(by_role["proxy"], pids, strict=True):
        state.hosts[host.name].pids["nutcracker"] = pid
    return by_role


def start_loadgen(host: Host, state: LabState, seed: int = 0) -> int:
    stats = Path(state.directory) / f"loadgen-{host.name}.json"
    return host.spawn(
        [sys.executable, "-m", "irctl.lab.loadgen", "--targets-file", state.files["targets"],
         "--rate", "50", "--conns", "2", "--seed", str(seed), "--stats", str(stats),
         "--prefill"],
        "loadgen",
    )  # fmt: skip


def _wait_endpoint(
    directory: Path,
    daemon: int,
    name: str = "endpoint",
    module: str = RECONCILER,
    what: str = "moto/reconciler",
    timeout: float = 60.0,
) -> str:
    path = directory / name
    log = _log_path(directory, module)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if not pid_alive(daemon):
            raise ProviderError(f"the lab's {what} process exited at start", f"see {log}")
        if time.monotonic() > deadline:
            raise ProviderError(f"the lab's {what} did not start in time", f"see {log}")
        time.sleep(0.05)
    return path.read_text().strip()


def _wait_healthy(state: LabState, timeout: float = 45.0) -> None:
    """Return once the target group reports every proxy healthy (the health checks are real)."""
    aws = cloud.provider(str(state.endpoint))
    try:
        deadline = time.monotonic() + timeout
        while True:
            health = aws.target_health(state.aws["target_group_arn"])
            if health and all(v == "healthy" for v in health.values()):
                return
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"lab proxies not healthy after {timeout:g}s: {health}",
                    "irctl lab status; irctl lab down",
                )
            time.sleep(0.2)
    finally:
        aws.close()


def daemon_is_ours(pid: int | None, module: str = RECONCILER) -> bool:
    if not pid or not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return module.encode() in cmdline


def _stop_daemon(pid: int | None, module: str = RECONCILER, timeout: float = 3.0) -> None:
    if not daemon_is_ours(pid, module):
        return
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    # Reap it when this process started it (a failed `up`); otherwise init does.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def down(state_dir: Path) -> dict[str, Any]:
    """Remove everything the lab made and nothing else; nothing to do is not an error."""
    directory = lab_dir(state_dir)
    if not directory.exists():
        return {"removed": False, "namespaces": [], "directory": str(directory)}
    with locked(directory):
        state = read_state(directory)
        if state is None:
            shutil.rmtree(directory, ignore_errors=True)
            return {"removed": False, "namespaces": [], "directory": str(directory)}
        namespaces = _teardown(directory, state)
    return {"removed": True, "namespaces": namespaces, "bridge": state.bridge,
            "directory": str(directory)}  # fmt: skip


def _delete_links(token: str) -> None:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        name = line.split(":", 2)[1].strip().split("@", 1)[0] if ":" in line else ""
        if name.startswith(f"irv{token}") or name == f"irb{token}":
            subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def _teardown(directory: Path, state: LabState) -> list[str]:
    _stop_daemon(state.daemon_pid)
    _stop_daemon(state.sink_pid, SINK)
    net = attach(state)
    # Namespaces carry the lab's random token: any with it are ours, even ones the
    # reconciler made after the state was last written.
    mine = f"{state.prefix}-{state.token}-"
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    known = {h.netns for h in net.hosts.values()}
    for line in listed.stdout.splitlines():
        name = line.split(" ", 1)[0]
        if name.startswith(mine) and name not in known:
            net.adopt(name[len(mine) :], name, "0.0.0.0", "", [])
    namespaces = sorted(h.netns for h in net.hosts.values())
    with contextlib.suppress(LabError):
        net.down()
    # A deleted namespace lingers while an orphaned TCP socket in it still retransmits to a
    # peer that is gone, and its veth with it: delete our veths (and any the kernel named
    # with our token) ourselves.
    _delete_links(state.token)
    shutil.rmtree(directory, ignore_errors=True)
    return namespaces
