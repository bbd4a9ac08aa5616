"""Namespace hosts are real: sshd answers with its own key, daemons serve, down() cleans up."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess

import pytest

from irctl.lab.netns import LAB_RANGE, Network, used_subnets
from tests.lab_fixtures import Lab, lab_skip_reason

pytest_plugins = ["tests.lab_fixtures"]

pytestmark = pytest.mark.root


def _ssh(lab: Lab, host: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "ssh", "-i", str(lab.key.private), "-o", f"UserKnownHostsFile={lab.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-F", "/dev/null", f"root@{host}", command,
        ],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip


def test_hosts_get_lab_addresses_and_ssh_with_clean_home(lab: Lab) -> None:
    addresses = {h.address for h in lab.proxies + lab.clients}
    assert len(addresses) == 6
    assert all(ipaddress.ip_address(a) in LAB_RANGE for a in addresses)
    out = _ssh(lab, lab.proxies[1].address, "echo $SSH_CONNECTION; ls -A /root | wc -l")
    assert out.returncode == 0, out.stderr
    conn, count = out.stdout.split("\n")[:2]
    assert conn.split()[0] == lab.operator_address
    assert conn.split()[2] == lab.proxies[1].address
    assert count.strip() == "0"  # the bind-mounted empty home, not the real /root


def test_each_host_has_its_own_host_key(lab: Lab) -> None:
    assert len(set(lab.host_keys.values())) == len(lab.proxies)


def test_memcached_serves_on_each_proxy(lab: Lab) -> None:
    for host in lab.proxies:
        with socket.create_connection((host.address, lab.port), timeout=2) as s:
            s.sendall(b"version\r\n")
            assert s.recv(100).startswith(b"VERSION")


def test_client_namespace_reaches_proxy(lab: Lab) -> None:
    target = lab.proxies[0].address
    code = f"import socket; socket.create_connection(('{target}', {lab.port}), timeout=2)"
    lab.clients[0].run(["python3", "-c", code])


def test_down_removes_only_its_own_things() -> None:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    with Network("irtd") as net:
        host = net.add_host("one")
        assert net.subnet is not None
        assert net.subnet in used_subnets()
        pid = host.spawn(["sleep", "300"])
        subnet = net.subnet
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert host.netns not in names
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)
    assert net.bridge not in {link["ifname"] for link in links}
    assert subnet not in used_subnets()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_two_networks_get_different_subnets() -> None:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    with Network("irta") as a, Network("irtb") as b:
        assert a.subnet != b.subnet
        assert a.bridge != b.bridge
