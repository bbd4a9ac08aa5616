"""Pytest fixtures for tests against real namespace hosts (root, iproute2, sshd, nft).

Use them from a test module with `pytest_plugins = ["tests.lab_fixtures"]` in the
top-level conftest, or `from tests.lab_fixtures import *  # noqa: F403` in a module.

- `lab_factory(proxies=4, clients=2, service="memcached", port=11211) -> Lab`:
  builds a fresh network (session-scoped factory, torn down at session end).
- `lab`: one shared session `Lab` with 4 proxies running sshd and memcached on
  11211, 2 client namespaces, an operator key, known_hosts and an `Inventory`
  (cluster `lab`). Tests that change a host (filters, stopped daemons) must
  put it back, or build their own with `lab_factory`.

Skips with the reason when not root or a tool is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from irctl.inventory import Inventory
from irctl.lab.netns import Network
from irctl.lab.nshost import Host
from irctl.lab.sshkeys import KeyPair, operator_keypair, write_known_hosts
from irctl.lab.system import SSHD, missing_tools

LAB_TOOLS = ("ip", "nft", "ss", SSHD, "ssh-keygen", "memcached")


def lab_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces (CI runs as root)"
    missing = missing_tools(*LAB_TOOLS)
    if missing:
        return f"missing {', '.join(missing)} (.ci/run installs them)"
    return None


@dataclass
class Lab:
    network: Network
    proxies: list[Host]
    clients: list[Host]
    key: KeyPair
    known_hosts: Path
    host_keys: dict[str, str]
    port: int
    cluster: str = "lab"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def operator_address(self) -> str:
        return self.network.gateway

    def inventory_dict(self, **ssh: Any) -> dict[str, Any]:
        """The inventory as a plain dict (tweak it, then `Inventory.model_validate`)."""
        return {
            "ssh": {
                "user": "root",
                "key_file": str(self.key.private),
                "known_hosts": str(self.known_hosts),
                "config_file": None,
                "connect_timeout": 3.0,
                "command_timeout": 10.0,
                **ssh,
            },
            "clusters": {
                self.cluster: {
                    "proxy_port": self.port,
                    "proxies": [{"name": h.name, "address": h.address} for h in self.proxies],
                }
            },
        }

    def inventory(self, **ssh: Any) -> Inventory:
        return Inventory.model_validate(self.inventory_dict(**ssh))


def build_lab(
    proxies: int = 4,
    clients: int = 2,
    *,
    service: str = "memcached",
    port: int = 11211,
    prefix: str = "irt",
) -> Lab:
    """A network with `proxies` sshd hosts serving `port`, and `clients` bare client hosts."""
    net = Network(prefix).up()
    try:
        names = [f"proxy-{i + 1}" for i in range(proxies)]
        client_names = [f"client-{i + 1}" for i in range(clients)]
        hosts = net.add_hosts(names + client_names)
        proxy_hosts, client_hosts = hosts[:proxies], hosts[proxies:]
        key = operator_keypair(net.workdir)
        host_keys = net.start_sshd_all(proxy_hosts, key.public)
        known = write_known_hosts(
            net.workdir / "known_hosts", [(h, host_keys[h.name]) for h in proxy_hosts]
        )
        if service == "memcached":
            for h in proxy_hosts:
                h.start_memcached(port)
        elif service != "none":
            raise ValueError(f"unknown service {service!r}")
        return Lab(net, proxy_hosts, client_hosts, key, known, host_keys, port)
    except BaseException:
        net.down()
        raise


@pytest.fixture(scope="session")
def lab_factory() -> Iterator[Callable[..., Lab]]:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    built: list[Lab] = []

    def factory(**kwargs: Any) -> Lab:
        lab = build_lab(**kwargs)
        built.append(lab)
        return lab

    yield factory
    for lab in built:
        lab.network.down()


@pytest.fixture(scope="session")
def lab(lab_factory: Callable[..., Lab]) -> Lab:
    return lab_factory(proxies=4, clients=2)


Irctl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def lab_inventory(lab: Lab, tmp_path: Path) -> Path:
    """The lab's inventory as a file a test may rewrite (e.g. drop proxies)."""
    import yaml

    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(lab.inventory_dict()))
    return path


@pytest.fixture
def lab_irctl(lab: Lab, tmp_path: Path, lab_inventory: Path) -> Iterator[Irctl]:
    """`irctl ARGS` as a real process against the lab, as operator carol; afterwards the
    proxies' irctl table is removed so filters never leak into the next test."""
    env = dict(
        os.environ,
        IRCTL_STATE_DIR=str(tmp_path / "state"),
        IRCTL_INVENTORY=str(lab_inventory),
        IRCTL_OPERATOR="carol",
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "irctl", *args],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip

    yield run
    for h in lab.proxies:
        h.run(["nft", "delete", "table", "inet", "irctl"], check=False)
