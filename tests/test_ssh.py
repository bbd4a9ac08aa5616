"""SshProvider against real OpenSSH sshd in namespace hosts."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from irctl.errors import InputError, ProviderError
from irctl.providers.ssh import HostRef, HostResult, SshProvider, failure_summary, fingerprint
from tests.lab_fixtures import Lab

pytest_plugins = ["tests.lab_fixtures"]
pytestmark = pytest.mark.root


def provider(lab: Lab, **kw: Any) -> SshProvider:
    args: dict[str, Any] = dict(
        user="root",
        key_file=str(lab.key.private),
        known_hosts=[lab.known_hosts],
        connect_timeout=3.0,
        command_timeout=10.0,
        use_agent=False,
    )
    args.update(kw)
    return SshProvider(**args)


def refs(lab: Lab) -> list[HostRef]:
    return [HostRef(h.name, h.address) for h in lab.proxies]


def test_run_returns_exit_status_stdout_stderr_and_takes_stdin(lab: Lab) -> None:
    ssh = provider(lab)
    try:
        host = refs(lab)[0]
        r = ssh.run(host, ["sh", "-s"], stdin="echo got hi; echo oops >&2; exit 3\n")
        assert (r.exit_status, r.stdout, r.stderr) == (3, "got hi\n", "oops\n")
        assert ssh.run(host, ["cat"], stdin="x" * 300_000).stdout == "x" * 300_000
        assert ssh.run(host, ["true"]).ok
    finally:
        ssh.close()


def test_argv_words_reach_the_host_verbatim_never_a_shell(lab: Lab, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f"$(touch {marker}); `touch {marker}`; touch {marker} && echo 'a\"b' | cat > {marker}"
    ssh = provider(lab)
    try:
        r = ssh.run(refs(lab)[0], ["printf", "%s", evil])
        assert r.stdout == evil
        assert not marker.exists()
        with pytest.raises(InputError):
            ssh.run(refs(lab)[0], ["echo", "nul\0byte"])
    finally:
        ssh.close()


def test_one_connection_per_host_is_reused(lab: Lab) -> None:
    ssh = provider(lab)
    try:
        host = refs(lab)[1]
        first = ssh.run(host, ["printenv", "SSH_CONNECTION"]).stdout.split()
        second = ssh.run(host, ["printenv", "SSH_CONNECTION"]).stdout.split()
        assert first == second  # same client port: the same TCP connection
        assert first[0] == lab.operator_address == ssh.peer_address(host)
        transport = ssh._transport(host)
        sock = transport.sock
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        ssh.close()


def test_run_many_reports_each_result_as_it_arrives_and_aggregates_failures(lab: Lab) -> None:
    ssh = provider(lab, connect_timeout=1.5)
    dead = HostRef("ghost", str(lab.network.subnet.network_address + 250))  # type: ignore[union-attr]
    hosts = [*refs(lab), dead]
    seen: list[HostResult] = []
    try:
        started = time.monotonic()
        results = ssh.run_many(
            hosts, lambda h: ["echo", h.name], concurrency=2, on_result=seen.append
        )
        assert time.monotonic() - started < 8
    finally:
        ssh.close()
    assert [r.host for r in results] == hosts
    assert {r.host for r in seen} == set(hosts)
    assert [r.result.stdout.strip() for r in results[:-1] if r.result] == [
        h.name for h in hosts[:-1]
    ]
    assert not results[-1].ok and "cannot connect" in (results[-1].error or "")
    summary = failure_summary(results)
    assert summary["count"] == 1 and summary["samples"][0]["target"] == "ghost"


def test_unknown_host_is_refused_with_fingerprint_then_accept_new_records_it(
    lab: Lab, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    host = refs(lab)[2]
    expected = fingerprint(lab.host_keys[host.name].split()[1])
    ssh = provider(lab, known_hosts=[known], record_known_hosts=known)
    with pytest.raises(ProviderError) as err:
        ssh.run(host, ["true"])
    assert expected in err.value.message and "unknown host key" in err.value.message
    assert err.value.hint and "--accept-new-host-keys" in err.value.hint
    assert not known.exists()
    ssh = provider(lab, known_hosts=[known], record_known_hosts=known, accept_new=True)
    try:
        assert ssh.run(host, ["true"]).ok
    finally:
        ssh.close()
    assert known.read_text().split()[0] == host.address
    strict = provider(lab, known_hosts=[known])
    try:
        assert strict.run(host, ["true"]).ok  # recorded: trusted from now on
    finally:
        strict.close()


def test_keys_written_to_known_hosts_during_a_run_are_trusted_without_rereading_per_host(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run that replaces machines meets hosts whose keys were recorded after it started
    # (the provisioning, or the lab's reconciler, writes them): the same provider must
    # trust them, and must not re-read an unchanged file for every host.
    from irctl.providers import known_hosts as kh

    known = tmp_path / "known_hosts"
    first, later = lab.proxies[0], lab.proxies[1]
    known.write_text(f"{first.address} {lab.host_keys[first.name]}\n")
    ssh = provider(lab, known_hosts=[known])
    loads: list[Path] = []
    real_load = kh.KnownHosts.load

    def counting(self: kh.KnownHosts, path: Path) -> None:
        loads.append(path)
        real_load(self, path)

    monkeypatch.setattr(kh.KnownHosts, "load", counting)
    try:
        assert ssh.run(HostRef(first.name, first.address), ["true"]).ok
        with pytest.raises(ProviderError, match="unknown host key"):
            ssh.run(HostRef(later.name, later.address), ["true"])
        assert loads == []  # unknown, but the file had not changed: not read again
        with known.open("a") as fh:
            fh.write(f"{later.address} {lab.host_keys[later.name]}\n")
        assert ssh.run(HostRef(later.name, later.address), ["true"]).ok
        assert loads == [known]  # read once more, because it changed
    finally:
        ssh.close()


def test_changed_host_key_is_refused_even_with_accept_new(lab: Lab, tmp_path: Path) -> None:
    host, other = lab.proxies[0], lab.proxies[1]
    wrong = tmp_path / "known_hosts"
    keytype, blob = lab.host_keys[other.name].split()[:2]
    wrong.write_text(f"{host.address} {keytype} {blob}\n")
    ssh = provider(lab, known_hosts=[wrong], record_known_hosts=wrong, accept_new=True)
    with pytest.raises(ProviderError) as err:
        ssh.run(HostRef(host.name, host.address), ["true"])
    assert "HOST KEY CHANGED" in err.value.message
    assert fingerprint(lab.host_keys[host.name].split()[1]) in err.value.message
    assert wrong.read_text().count("\n") == 1  # nothing recorded


def test_hashed_known_hosts_are_honoured(lab: Lab, tmp_path: Path) -> None:
    hashed = tmp_path / "known_hosts"
    hashed.write_text(lab.known_hosts.read_text())
    subprocess.run(["ssh-keygen", "-H", "-f", str(hashed)], check=True, capture_output=True)
    assert lab.proxies[0].address not in hashed.read_text()
    hints = tmp_path / "hints.json"
    for _ in range(2):  # the second run finds each host through the hints the first saved
        ssh = provider(lab, known_hosts=[hashed], hints_path=hints)
        try:
            assert all(r.ok for r in ssh.run_many(refs(lab), ["true"]))
        finally:
            ssh.close()
        assert sorted(json.loads(hints.read_text())) == sorted(h.address for h in lab.proxies)


def test_command_timeout(lab: Lab) -> None:
    ssh = provider(lab)
    try:
        started = time.monotonic()
        with pytest.raises(ProviderError, match="timed out"):
            ssh.run(refs(lab)[0], ["sleep", "5"], timeout=0.5)
        assert time.monotonic() - started < 4.5  # before `sleep 5` could have ended
    finally:
        ssh.close()


def test_ssh_config_user_identity_and_proxyjump(lab: Lab, tmp_path: Path) -> None:
    jump, target = lab.proxies[0], lab.proxies[3]
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host {target.address}\n  User root\n  IdentityFile {lab.key.private}\n"
        f"  ProxyJump root@{jump.address}\n"
        f"Host {jump.address}\n  User root\n  IdentityFile {lab.key.private}\n"
    )
    ssh = SshProvider(
        known_hosts=[lab.known_hosts], config_file=config, connect_timeout=3, use_agent=False
    )
    try:
        seen = ssh.run(HostRef(target.name, target.address), ["printenv", "SSH_CONNECTION"])
        assert seen.stdout.split()[0] == jump.address  # the target saw the jump host
        assert seen.stdout.split()[2] == target.address
    finally:
        ssh.close()


def test_auth_failure_is_one_line_with_a_hint(lab: Lab, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    ssh = provider(lab, key_file=str(other))
    with pytest.raises(ProviderError) as err:
        ssh.run(refs(lab)[0], ["true"])
    assert "authentication as 'root' refused" in err.value.message
    assert err.value.hint and "key_file" in err.value.hint


def test_ssh_run_action_reads_and_journals_mutations(lab: Lab, make_ctx: Any) -> None:
    from irctl.actions.base import Effect
    from irctl.actions.ssh import SshRun, SshRunParams

    action = SshRun()
    ctx = make_ctx(lab.inventory())
    read = SshRunParams(cluster="lab", argv=["cat", "/proc/net/sockstat"], effect="read")
    assert action.effect_for(read) is Effect.READ
    out = action.run(read, ctx)
    assert out.ok and [row["host"] for row in out.output["hosts"]] == [h.name for h in lab.proxies]
    assert all("TCP: inuse" in row["stdout"] for row in out.output["hosts"])
    assert not list(ctx.journal.records())  # reads are journaled by the engine, not here
    write = SshRunParams(
        cluster="lab", argv=["sh", "-c", "exit 7"], effect="mutate", hosts=["proxy-2", "proxy-3"]
    )
    assert action.effect_for(write) is Effect.MUTATE
    plan = action.plan(write, ctx)
    assert plan.targets == ["proxy-2", "proxy-3"] and "sh -c 'exit 7'" in plan.details[0]
    out = action.run(write, ctx)
    assert not out.ok and out.output["failed_hosts"] == ["proxy-2", "proxy-3"]
    assert out.output["failures"]["count"] == 2
    events = [(r["event"], r.get("ok")) for r in ctx.journal.records()]
    assert events == [("intent", None), ("result", False)]


def test_ssh_agent_keys_are_used(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5
        while not sock.exists():
            assert time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.01)
        env = {"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"}
        subprocess.run(["ssh-add", str(lab.key.private)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        ssh = provider(lab, key_file=None, use_agent=True)
        try:
            assert ssh.run(refs(lab)[0], ["true"]).ok
        finally:
            ssh.close()
    finally:
        agent.terminate()
        agent.wait(5)
