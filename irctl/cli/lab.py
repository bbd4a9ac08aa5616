"""`irctl lab up|down|status|env|fault ...`: the local drill cluster (docs/lab.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from irctl.cli.common import emit, state

if TYPE_CHECKING:
    from rich.console import Console

lab_app = typer.Typer(
    help="The local drill cluster: namespaces, nutcracker, memcached, moto.",
    no_args_is_help=True,
)
fault_app = typer.Typer(help="Inject an incident's fault into the lab.", no_args_is_help=True)
lab_app.add_typer(fault_app, name="fault")


def _dir() -> Path:
    return state().settings.state_dir


@contextlib.contextmanager
def _lab_errors() -> Iterator[None]:
    """A failed `ip`/`nft`/daemon start is the outside world failing: one line and a hint."""
    from irctl.errors import ProviderError
    from irctl.lab.system import LabError

    try:
        yield
    except LabError as exc:
        raise ProviderError(
            str(exc), "irctl lab status; irctl lab down clears a broken lab"
        ) from None


@lab_app.command("up")
def up(
    proxies: int = typer.Option(3, "--proxies", help="Proxy hosts (sshd + nutcracker)"),
    backends: int = typer.Option(3, "--backends", help="Backend hosts (sshd + memcached)"),
    clients: int = typer.Option(2, "--clients", help="Client hosts running the load generator"),
    asg: bool = typer.Option(False, "--asg/--no-asg", help="Put the proxies in an ASG"),
) -> None:
    """Bring the lab up and write its inventory, key, known_hosts and env file."""
    import time

    from irctl.lab.cluster import up as lab_up
    from irctl.lab.files import env_vars

    started = time.monotonic()
    with _lab_errors():
        lab = lab_up(_dir(), proxies=proxies, backends=backends, clients=clients, asg=asg)
    data: dict[str, Any] = {
        "directory": lab.directory,
        "subnet": lab.subnet,
        "endpoint": lab.endpoint,
        "inventory": lab.files["inventory"],
        "env_file": lab.files["env"],
        "env": env_vars(lab),
        "hosts": {h.name: h.address for h in lab.hosts.values()},
        "seconds": round(time.monotonic() - started, 1),
    }

    def text(console: Console) -> None:
        console.print(f"lab up in {data['seconds']}s: {lab.subnet}, moto at {lab.endpoint}")
        for role, plural in (("proxy", "proxies"), ("backend", "backends"), ("client", "clients")):
            names = ", ".join(f"{h.name} {h.address}" for h in lab.by_role(role))
            console.print(f"  {plural}: {names}", markup=False)
        console.print("Use it:", markup=False)
        console.print(f"  source {lab.files['env']}", markup=False)
        console.print(f"  (or: export IRCTL_INVENTORY={lab.files['inventory']} ...)", markup=False)
        console.print("  irctl diagnose --cluster lab", markup=False)

    emit(data, text)


@lab_app.command("down")
def down() -> None:
    """Remove everything the lab made (pids, namespaces, links, files); safe to repeat."""
    from irctl.lab.cluster import down as lab_down

    with _lab_errors():
        data = lab_down(_dir())
    text = (
        f"lab down: removed {len(data['namespaces'])} namespaces and {data.get('bridge')}"
        if data["removed"]
        else "no lab was up"
    )
    emit(data, text)


def fault_line(fault: dict[str, Any]) -> str:
    """A fault from `lab status` as a sentence rather than a dict."""
    hosts = ", ".join(fault.get("hosts") or []) or "no host left"
    kind = fault["kind"]
    if kind == "loss":
        text = f"{fault.get('percent')}% packet loss on {hosts}"
    elif kind == "storm":
        text = f"storm of {fault.get('connections')} connections ({hosts})"
    elif kind == "overload":
        text = f"overload: {fault.get('per_client')} connections from every client to {hosts}"
    elif kind == "kill-backend":
        text = f"memcached stopped on {hosts} (was pid {fault.get('pid')})"
    else:
        skip = {"kind", "hosts", "processes", "gone"}
        extra = ", ".join(f"{k} {v}" for k, v in fault.items() if k not in skip)
        text = f"{kind} on {hosts}" + (f": {extra}" if extra else "")
    if fault.get("processes"):
        text += f"; {fault['processes']} process(es)"
    if fault.get("gone"):
        text += f"; replaced since: {', '.join(fault['gone'])}"
    return text


@lab_app.command("status")
def status() -> None:
    """Hosts and daemons, instances in moto with target health, faults in force."""
    from irctl.lab.status import status as lab_status

    data = lab_status(_dir())

    def text(console: Console) -> None:
        if not data["up"]:
            console.print("no lab is up (irctl lab up)")
            return
        from rich.table import Table

        alive = "alive" if data["reconciler"]["alive"] else "[red]DEAD[/]"
        console.print(f"lab {data['subnet']} moto {data['endpoint']} reconciler {alive}")
        table = Table(show_lines=False)
        # New proxies are named by instance id: it must show whole, so no instance column.
        table.add_column("host", no_wrap=True)
        for col in ("role", "address", "daemons", "health"):
            table.add_column(col)
        health = {i.get("instance_id"): i.get("target_health") for i in data["instances"]}
        for h in data["hosts"]:
            daemons = " ".join(
                f"{k}" if ok else f"[red]{k}:down[/]" for k, ok in h["daemons"].items()
            )
            if h.get("load"):
                daemons += f" ({h['load']['ok']} ok, {h['load']['failed']} failed)"
            table.add_row(
                h["name"], h["role"], h["address"], daemons, health.get(h["instance_id"]) or "",
            )  # fmt: skip
        console.print(table)
        for f in data["faults"]:
            console.print(f"fault: {fault_line(f)}", markup=False)
        sink = data["sink"]
        sink_state = "" if sink["alive"] else " [red]DEAD[/]"
        console.print(
            f"notification sink {sink['url']}{sink_state}: {sink['notifications']} received"
            f" ({sink['file']})"
        )
        console.print(f"source {data['env_file']}", markup=False)

    emit(data, text)


@lab_app.command("env")
def env() -> None:
    """Print the lab's environment as shell exports: eval "$(irctl lab env)"."""
    import shlex

    from irctl.errors import InputError
    from irctl.lab.files import env_vars
    from irctl.lab.state import lab_dir, read_state

    lab = read_state(lab_dir(_dir()))
    if lab is None or not lab.ready:
        raise InputError("no lab is up", "irctl lab up")
    data = env_vars(lab)
    emit(data, "\n".join(f"export {k}={shlex.quote(v)}" for k, v in data.items()))


@fault_app.command("loss")
def loss(
    percent: int = typer.Option(15, "--percent", help="Share of packets dropped, 1-100"),
    hosts: list[str] = typer.Option(
        None,
        "--hosts",
        help="Hosts (name, address, or proxies|backends|clients|all) [default: proxies]",
    ),
) -> None:
    """Drop a share of the packets arriving at hosts (nftables numgen)."""
    from irctl.lab.faults import loss as do

    with _lab_errors():
        data = do(_dir(), percent, list(hosts or []))
    emit(data, f"dropping {percent}% of packets on {', '.join(data['hosts'])}")


@fault_app.command("storm")
def storm(
    client: str = typer.Option(None, "--client", help="Client host [default: client-1]"),
    proxy: str = typer.Option(None, "--proxy", help="Proxy host [default: proxy-1]"),
    connections: int = typer.Option(3000, "--connections", help="Connections to open"),
) -> None:
    """One client opens thousands of connections to one proxy."""
    from irctl.lab.faults import storm as do

    with _lab_errors():
        data = do(_dir(), client, proxy, connections)
    emit(data, f"{data['client']} holds {connections} connections to {data['proxy']}")


@fault_app.command("overload")
def overload(
    proxy: str = typer.Option(None, "--proxy", help="Proxy host [default: proxy-1]"),
    per_client: int = typer.Option(300, "--per-client", help="Connections from each client"),
) -> None:
    """Every client loads one proxy with many connections."""
    from irctl.lab.faults import overload as do

    with _lab_errors():
        data = do(_dir(), proxy, per_client)
    emit(data, f"every client holds {per_client} connections to {data['proxy']}")


@fault_app.command("kill-backend")
def kill_backend(
    backend: int = typer.Option(1, "--backend", help="Backend number (1 = backend-1)"),
) -> None:
    """Stop one backend's memcached (by its pid)."""
    from irctl.lab.faults import kill_backend as do

    with _lab_errors():
        data = do(_dir(), backend)
    emit(data, f"stopped memcached on {data['backend']} ({data['address']}, pid {data['pid']})")


@fault_app.command("clear")
def clear() -> None:
    """Undo every fault: loss tables deleted, connections closed, memcached restarted."""
    from irctl.lab.faults import clear as do

    with _lab_errors():
        data = do(_dir())
    emit(data, f"cleared: {', '.join(data['cleared']) or 'nothing'}")


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
