"""SSH connections: ssh config and inventory merged per host, one checked Transport per host.

A host's Transport is opened once and shared by every command of the run; opening is
serialized per host so a fan-out does not race to open the same connection twice.
Host keys are checked by `HostKeyPolicy` before authenticating.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from irctl.errors import InputError, IrctlError, ProviderError, one_line
from irctl.providers.known_hosts import HostKeyPolicy, known_hosts_name
from irctl.providers.ssh_results import HostRef


@dataclass
class Target:
    """Where and as whom to connect to one host, after ssh config and inventory are merged."""

    ref: HostRef
    port: int
    user: str
    identity_files: list[str] = field(default_factory=list)
    jump: str | None = None


class SshConnections:
    """The run's Transports by (address, port), with the keys and agent that open them."""

    def __init__(
        self,
        host_keys: HostKeyPolicy,
        *,
        user: str | None = None,
        port: int | None = None,
        key_file: str | None = None,
        jump_host: str | None = None,
        config_file: Path | None = None,
        connect_timeout: float = 10.0,
        use_agent: bool = True,
    ) -> None:
        self.host_keys = host_keys
        self.user, self.port, self.key_file = user, port, key_file
        self.jump_host = jump_host
        self.connect_timeout = connect_timeout
        self.config = paramiko.SSHConfig()
        if config_file is not None and config_file.is_file():
            self.config = paramiko.SSHConfig.from_path(str(config_file))
        self.use_agent = use_agent
        self._agent: paramiko.Agent | None = None
        self._keys: dict[str, paramiko.PKey] = {}
        self._transports: dict[tuple[str, int], paramiko.Transport] = {}
        self._host_locks: dict[tuple[str, int], threading.Lock] = {}
        self._lock = threading.Lock()

    def target(self, ref: HostRef) -> Target:
        opts: dict[str, Any] = dict(self.config.lookup(ref.address))
        if ref.name != ref.address:
            for k, v in self.config.lookup(ref.name).items():
                opts.setdefault(k, v)
        port = ref.port or self.port or int(opts.get("port", 22))
        user = self.user or opts.get("user") or getpass.getuser()
        files = [self.key_file] if self.key_file else []
        files += [f for f in opts.get("identityfile", []) if f not in files]
        jump = self.jump_host or opts.get("proxyjump")
        if jump == "none":
            jump = None
        return Target(ref, port, user, files, jump)

    def transport(self, ref: HostRef) -> paramiko.Transport:
        target = self.target(ref)
        key = (ref.address, target.port)
        with self._lock:
            live = self._transports.get(key)
            if live is not None and live.is_active():
                return live
        return self._open(key, target)

    def forget(self, ref: HostRef) -> None:
        """Drop a broken Transport so the next command to `ref` connects again."""
        with self._lock:
            self._transports.pop((ref.address, self.target(ref).port), None)

    def _open(self, key: tuple[str, int], target: Target) -> paramiko.Transport:
        with self._lock:
            host_lock = self._host_locks.setdefault(key, threading.Lock())
        with host_lock:
            live = self._transports.get(key)
            if live is not None and live.is_active():
                return live
            transport = self._connect(target)
            with self._lock:
                self._transports[key] = transport
            return transport

    def _connect(self, target: Target) -> paramiko.Transport:
        ref, where = target.ref, f"{target.ref.label}:{target.port}"
        sock: Any
        try:
            if target.jump:
                sock = self._jump_channel(target)
            else:
                sock = socket.create_connection((ref.address, target.port), self.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            raise ProviderError(
                f"{where}: cannot connect: {exc.strerror or exc}",
                "check that the host is up and reachable (security groups, bastion)",
            ) from None
        transport = paramiko.Transport(sock)
        try:
            name = known_hosts_name(ref.address, target.port)
            known_types = self.host_keys.key_types(name)
            if known_types:
                # Ask for the key type we know, as OpenSSH does, so a host with several
                # keys is checked against the one on record.
                types = [t for t in transport.preferred_keys if t in known_types]
                types += [t for t in transport.preferred_keys if t not in types]
                transport.get_security_options().key_types = types
            transport.banner_timeout = self.connect_timeout
            transport.auth_timeout = self.connect_timeout
            transport.start_client(timeout=self.connect_timeout)
            self.host_keys.check(name, where, transport.get_remote_server_key())
            self._authenticate(transport, target)
            transport.set_keepalive(15)
            return transport
        except IrctlError:
            transport.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise ProviderError(
                f"{where}: SSH failed: {one_line(str(exc) or type(exc).__name__)}",
                "check that sshd runs there and the network path is healthy",
            ) from None

    def _jump_channel(self, target: Target) -> paramiko.Channel:
        spec = target.jump or ""
        user, _, hostport = spec.rpartition("@")
        host, _, port = hostport.partition(":")
        if host.startswith("["):
            host, _, port = hostport[1:].partition("]:")
        if "," in spec or not host:
            raise InputError(f"unsupported jump host {spec!r}", "use one USER@HOST[:PORT] hop")
        jump_ref = HostRef(name=f"jump {host}", address=host, port=int(port) if port else None)
        jump = self.target(jump_ref)
        jump.jump = None
        if user:
            jump.user = user
        jt = self._open((jump_ref.address, jump.port), jump)
        return jt.open_channel(
            "direct-tcpip",
            (target.ref.address, target.port),
            ("127.0.0.1", 0),
            timeout=self.connect_timeout,
        )

    def _authenticate(self, transport: paramiko.Transport, target: Target) -> None:
        tried: list[str] = []
        for pkey in self._candidate_keys(target):
            try:
                transport.auth_publickey(target.user, pkey)
            except paramiko.AuthenticationException:
                tried.append(pkey.get_name())
                continue
            except paramiko.SSHException as exc:
                raise ProviderError(
                    f"{target.ref.label}: authentication failed: {one_line(str(exc))}"
                ) from None
            if transport.is_authenticated():
                return
        raise ProviderError(
            f"{target.ref.label}: authentication as {target.user!r} refused "
            f"({len(tried)} key(s) tried)",
            "check ssh.user and ssh.key_file in the inventory, or load the key into ssh-agent",
        )

    def _candidate_keys(self, target: Target) -> list[paramiko.PKey]:
        keys: list[paramiko.PKey] = []
        if self.use_agent and os.environ.get("SSH_AUTH_SOCK"):
            with self._lock:
                if self._agent is None:
                    self._agent = paramiko.Agent()
            keys.extend(self._agent.get_keys())
        for path in target.identity_files:
            expanded = str(Path(path).expanduser())
            with self._lock:
                if expanded not in self._keys:
                    try:
                        self._keys[expanded] = paramiko.PKey.from_path(expanded)
                    except FileNotFoundError:
                        continue
                    except paramiko.PasswordRequiredException:
                        raise InputError(
                            f"key {expanded} needs a passphrase",
                            "load it into ssh-agent (ssh-add) and rerun",
                        ) from None
                    except (paramiko.SSHException, OSError) as exc:
                        raise InputError(f"cannot read key {expanded}: {exc}") from None
                keys.append(self._keys[expanded])
        return keys

    def close(self) -> None:
        with self._lock:
            transports = list(self._transports.values())
            self._transports.clear()
        for transport in transports:
            transport.close()
        if self._agent is not None:
            self._agent.close()
