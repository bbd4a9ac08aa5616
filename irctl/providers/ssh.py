"""SSH to the fleet with paramiko: checked host keys, one connection per host per run, fan-out.

Host keys are always checked (`irctl.providers.known_hosts`); connections are opened
once per host and shared (`irctl.providers.ssh_connect`).

Commands are argv lists joined with `shlex.join`, so the remote shell sees each
word exactly as given: no operator or runbook text is ever parsed by a shell.
"""

from __future__ import annotations

import select
import shlex
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Self, TypeVar

import paramiko

from irctl.errors import InputError, IrctlError, ProviderError, one_line
from irctl.providers.known_hosts import HostKeyPolicy, KnownHosts, fingerprint, known_hosts_name
from irctl.providers.ssh_connect import SshConnections
from irctl.providers.ssh_results import (
    CommandResult,
    HostOutcome,
    HostRef,
    HostResult,
    failure_summary,
)

if TYPE_CHECKING:
    from irctl.inventory import Inventory
    from irctl.settings import Settings

# Importers use these from here; they live in the modules named above.
__all__ = [
    "CommandResult",
    "HostOutcome",
    "HostRef",
    "HostResult",
    "KnownHosts",
    "SshProvider",
    "failure_summary",
    "fingerprint",
    "known_hosts_name",
]

MAX_STDOUT = 8 * 1024 * 1024  # a runaway command must not fill the operator's memory
MAX_STDERR = 64 * 1024
T = TypeVar("T")


class SshProvider:
    """One paramiko Transport per host per run; `run`/`run_many` execute argv lists."""

    def __init__(
        self,
        *,
        user: str | None = None,
        port: int | None = None,
        key_file: str | None = None,
        known_hosts: Sequence[Path] = (),
        record_known_hosts: Path | None = None,
        accept_new: bool = False,
        jump_host: str | None = None,
        config_file: Path | None = None,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
        concurrency: int = 32,
        use_agent: bool = True,
        hints_path: Path | None = None,
    ) -> None:
        self.connect_timeout, self.command_timeout = connect_timeout, command_timeout
        self.concurrency = concurrency
        self.host_keys = HostKeyPolicy(
            known_hosts,
            record_path=record_known_hosts,
            accept_new=accept_new,
            hints_path=hints_path,
        )
        self.connections = SshConnections(
            self.host_keys,
            user=user,
            port=port,
            key_file=key_file,
            jump_host=jump_host,
            config_file=config_file,
            connect_timeout=connect_timeout,
            use_agent=use_agent,
        )
        self._peer: dict[HostRef, str] = {}

    @classmethod
    def create(cls, inventory: Inventory, settings: Settings) -> Self:
        ssh = inventory.ssh
        paths: list[Path] = []
        record = Path(ssh.known_hosts).expanduser() if ssh.known_hosts else None
        if record is not None:
            paths.append(record)
        personal = Path("~/.ssh/known_hosts").expanduser()
        if personal not in paths:
            paths.append(personal)
        return cls(
            user=ssh.user,
            port=ssh.port,
            key_file=ssh.key_file,
            known_hosts=paths,
            record_known_hosts=record or personal,
            accept_new=settings.accept_new_host_keys,
            jump_host=ssh.jump_host,
            config_file=Path(ssh.config_file).expanduser() if ssh.config_file else None,
            connect_timeout=ssh.connect_timeout,
            command_timeout=ssh.command_timeout,
            concurrency=ssh.concurrency,
            hints_path=settings.state_dir / "known_hosts_hints.json",
        )

    # -- connecting ---------------------------------------------------------
    def port_for(self, ref: HostRef) -> int:
        """The SSH port irctl uses for `ref` (inventory, then ~/.ssh/config, then 22)."""
        return self.connections.target(ref).port

    def _transport(self, ref: HostRef) -> paramiko.Transport:
        return self.connections.transport(ref)

    # -- running ------------------------------------------------------------
    def run(
        self,
        host: HostRef,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run argv on `host`; a non-zero exit is a result, connect/auth/hostkey/timeout raise."""
        if not argv or any(not isinstance(a, str) or "\0" in a for a in argv):
            raise InputError(f"bad remote command {argv!r}", "give a non-empty list of strings")
        command = shlex.join(argv)
        limit = timeout if timeout is not None else self.command_timeout
        started = time.monotonic()
        transport = self._transport(host)
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.connections.forget(host)
            raise ProviderError(
                f"{host.label}: cannot open a session: {one_line(str(exc))}"
            ) from None
        try:
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin.encode())
            chan.shutdown_write()
            out, err = _collect(chan, started + limit)
            if out is None:
                raise ProviderError(
                    f"{host.label}: {argv[0]} timed out after {limit:g}s",
                    "the host may be overloaded; raise ssh.command_timeout or retry",
                )
            status = chan.recv_exit_status() if chan.exit_status_ready() else -1
        finally:
            chan.close()
        return CommandResult(
            host=host.name,
            exit_status=status,
            stdout=out.decode(errors="replace"),
            stderr=(err or b"").decode(errors="replace"),
            duration_ms=int((time.monotonic() - started) * 1000),
        )

    def each(
        self,
        hosts: Sequence[HostRef],
        fn: Callable[[HostRef], T],
        *,
        concurrency: int | None = None,
        on_result: Callable[[HostOutcome[T]], None] | None = None,
    ) -> list[HostOutcome[T]]:
        """`fn(host)` on every host, at most `concurrency` at once; results in input order."""
        if not hosts:
            return []
        outcomes: dict[int, HostOutcome[T]] = {}

        def call(i: int) -> HostOutcome[T]:
            try:
                return HostOutcome(hosts[i], value=fn(hosts[i]))
            except IrctlError as exc:
                return HostOutcome(hosts[i], error=str(exc))

        workers = max(1, min(concurrency or self.concurrency, len(hosts)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="irctl-ssh") as pool:
            futures = {pool.submit(call, i): i for i in range(len(hosts))}
            for fut in as_completed(futures):
                outcome = fut.result()
                outcomes[futures[fut]] = outcome
                if on_result is not None:
                    on_result(outcome)
        return [outcomes[i] for i in range(len(hosts))]

    def run_many(
        self,
        hosts: Sequence[HostRef],
        argv: Sequence[str] | Callable[[HostRef], Sequence[str]],
        *,
        stdin: str | Callable[[HostRef], str | None] | None = None,
        timeout: float | None = None,
        concurrency: int | None = None,
        on_result: Callable[[HostResult], None] | None = None,
    ) -> list[HostResult]:
        """The same (or a per-host) command on many hosts; `on_result` sees each as it lands."""

        def one(host: HostRef) -> CommandResult:
            words = argv(host) if callable(argv) else argv
            data = stdin(host) if callable(stdin) else stdin
            return self.run(host, words, stdin=data, timeout=timeout)

        def relay(outcome: HostOutcome[CommandResult]) -> None:
            if on_result is not None:
                on_result(HostResult(outcome.host, outcome.value, outcome.error))

        outcomes = self.each(hosts, one, concurrency=concurrency, on_result=relay)
        return [HostResult(o.host, o.value, o.error) for o in outcomes]

    def peer_address(self, host: HostRef) -> str:
        """The operator's address as `host` sees this connection (first field of SSH_CONNECTION)."""
        if host not in self._peer:
            result = self.run(host, ["printenv", "SSH_CONNECTION"])
            fields = result.stdout.split()
            if result.exit_status != 0 or not fields:
                raise ProviderError(f"{host.label}: sshd did not report SSH_CONNECTION")
            self._peer[host] = fields[0]
        return self._peer[host]

    def close(self) -> None:
        self.connections.close()
        self.host_keys.save_hints()


def _collect(chan: paramiko.Channel, deadline: float) -> tuple[bytes | None, bytes | None]:
    """Drain stdout and stderr until the command closes the channel; (None, None) on timeout."""
    out, err = bytearray(), bytearray()
    while True:
        while chan.recv_ready():
            data = chan.recv(65536)
            if len(out) < MAX_STDOUT:
                out += data[: MAX_STDOUT - len(out)]
        while chan.recv_stderr_ready():
            data = chan.recv_stderr(65536)
            if len(err) < MAX_STDERR:
                err += data[: MAX_STDERR - len(err)]
        if chan.closed or (chan.eof_received and chan.exit_status_ready()):
            if not chan.recv_ready() and not chan.recv_stderr_ready():
                return bytes(out), bytes(err)
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, None
        select.select([chan], [], [], min(remaining, 1.0))
