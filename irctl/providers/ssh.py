"""SSH to the fleet with paramiko: checked host keys, one connection per host per run, fan-out.

Host keys are always checked. The inventory's known_hosts and ~/.ssh/known_hosts are
read once into a `KnownHosts` index: plain names are a dict lookup; hashed entries
(`|1|salt|hash`) are bucketed by salt, so a lookup costs one HMAC per salt and no
key parsing, and each host is looked up once per run. An unknown host is refused
with its fingerprint unless `settings.accept_new_host_keys` (then it is recorded,
like OpenSSH's accept-new); a changed key is always refused.

Commands are argv lists joined with `shlex.join`, so the remote shell sees each
word exactly as given: no operator or runbook text is ever parsed by a shell.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import os
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import paramiko

from irctl.errors import InputError, IrctlError, ProviderError, one_line
from irctl.journal import aggregate_errors

if TYPE_CHECKING:
    from irctl.inventory import Inventory
    from irctl.settings import Settings

MAX_STDOUT = 8 * 1024 * 1024  # a runaway command must not fill the operator's memory
MAX_STDERR = 64 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class HostRef:
    name: str
    address: str
    port: int | None = None

    @property
    def label(self) -> str:
        return self.name if self.name == self.address else f"{self.name} ({self.address})"


@dataclass
class CommandResult:
    host: str
    exit_status: int
    stdout: str
    stderr: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass
class HostOutcome(Generic[T]):
    """One host's answer in a fan-out: a value, or the one-line error that prevented it."""

    host: HostRef
    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class HostResult:
    host: HostRef
    result: CommandResult | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None and self.result.exit_status == 0


def failure_summary(results: Sequence[HostResult | HostOutcome[Any]]) -> dict[str, Any]:
    """Failed hosts as one bounded journal-ready dict (count, by message, samples)."""
    errors: list[tuple[str, str]] = []
    for r in results:
        if r.error is not None:
            errors.append((r.host.name, r.error))
        elif isinstance(r, HostResult) and r.result is not None and r.result.exit_status != 0:
            detail = r.result.stderr.strip() or r.result.stdout.strip()
            errors.append((r.host.name, f"exit {r.result.exit_status}: {detail}"))
    return aggregate_errors(errors)


def fingerprint(key: paramiko.PKey | str) -> str:
    """OpenSSH's SHA256 fingerprint of a key object or a base64 key blob."""
    blob = base64.b64decode(key) if isinstance(key, str) else key.asbytes()
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


class KnownHosts:
    """known_hosts files indexed once. Values are (key type, base64 blob); no key is decoded.

    A hashed entry can only be found by computing HMAC(salt, name) for every salt, so
    `lookup` remembers which salts matched a name (`hints`, kept between runs by the
    provider). `quick` then costs one HMAC per hinted salt, and still checks the
    entry in this file: a stale or forged hint can only fall back to `lookup`, never
    make a key trusted.
    """

    def __init__(self, hints: dict[str, list[str]] | None = None) -> None:
        self._plain: dict[str, set[tuple[str, str]]] = {}
        self._hashed: dict[bytes, dict[bytes, set[tuple[str, str]]]] = {}
        self._revoked: set[str] = set()
        self._cache: dict[str, set[tuple[str, str]]] = {}
        self.hints: dict[str, set[bytes]] = {}
        for name, salts in (hints or {}).items():
            try:
                self.hints[name] = {base64.b64decode(x) for x in salts}
            except ValueError:
                continue
        self.hints_changed = False
        self.lines = 0

    def load(self, path: Path) -> None:
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise InputError(f"cannot read known_hosts {path}: {exc.strerror}") from None
        for line in text.splitlines():
            self.add_line(line)
        self._cache.clear()

    def add_line(self, line: str) -> None:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            return
        if fields[0] == "@revoked" and len(fields) >= 4:
            self._revoked.add(fields[3])
            return
        if fields[0].startswith("@") or len(fields) < 3:
            return  # @cert-authority: certificates are not used by irctl
        names, entry = fields[0], (fields[1], fields[2])
        self.lines += 1
        self._cache.clear()
        if names.startswith("|1|"):
            try:
                _, _, salt64, hash64 = names.split("|")
                salt, digest = base64.b64decode(salt64), base64.b64decode(hash64)
            except ValueError:
                return
            self._hashed.setdefault(salt, {}).setdefault(digest, set()).add(entry)
            return
        for name in names.split(","):
            self._plain.setdefault(name, set()).add(entry)

    def lookup(self, name: str) -> set[tuple[str, str]]:
        """Every (key type, blob) known for `name` (`addr` or `[addr]:port`), minus revoked."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        found = set(self._plain.get(name, ()))
        encoded = name.encode()
        matched: set[bytes] = set()
        for salt, table in self._hashed.items():
            hit = table.get(hmac.digest(salt, encoded, "sha1"))
            if hit:
                found |= hit
                matched.add(salt)
        if matched and self.hints.get(name) != matched:
            self.hints[name] = matched
            self.hints_changed = True
        found = {e for e in found if e[1] not in self._revoked}
        self._cache[name] = found
        return found

    def quick(self, name: str) -> set[tuple[str, str]]:
        """Keys for `name` from plain entries and hinted hashed entries only: no scan."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        found = set(self._plain.get(name, ()))
        for salt in self.hints.get(name, ()):
            table = self._hashed.get(salt)
            if table:
                found |= table.get(hmac.digest(salt, name.encode(), "sha1"), set())
        return {e for e in found if e[1] not in self._revoked}

    def hints_json(self) -> dict[str, list[str]]:
        return {n: sorted(base64.b64encode(x).decode() for x in s) for n, s in self.hints.items()}

    def is_revoked(self, blob: str) -> bool:
        return blob in self._revoked


@dataclass
class _Target:
    """Where and as whom to connect to one host, after ssh config and inventory are merged."""

    ref: HostRef
    port: int
    user: str
    identity_files: list[str] = field(default_factory=list)
    jump: str | None = None


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
        self.user, self.port, self.key_file = user, port, key_file
        self.jump_host = jump_host
        self.connect_timeout, self.command_timeout = connect_timeout, command_timeout
        self.concurrency = concurrency
        self.accept_new = accept_new
        self.record_path = record_known_hosts
        self.hints_path = hints_path
        self.known = KnownHosts(_read_hints(hints_path))
        for path in known_hosts:
            self.known.load(path)
        self.config = paramiko.SSHConfig()
        if config_file is not None and config_file.is_file():
            self.config = paramiko.SSHConfig.from_path(str(config_file))
        self.use_agent = use_agent
        self._agent: paramiko.Agent | None = None
        self._keys: dict[str, paramiko.PKey] = {}
        self._transports: dict[tuple[str, int], paramiko.Transport] = {}
        self._host_locks: dict[tuple[str, int], threading.Lock] = {}
        self._peer: dict[HostRef, str] = {}
        self._lock = threading.Lock()

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
    def _target(self, ref: HostRef) -> _Target:
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
        return _Target(ref, port, user, files, jump)

    def port_for(self, ref: HostRef) -> int:
        """The SSH port irctl uses for `ref` (inventory, then ~/.ssh/config, then 22)."""
        return self._target(ref).port

    def _transport(self, ref: HostRef) -> paramiko.Transport:
        target = self._target(ref)
        key = (ref.address, target.port)
        with self._lock:
            live = self._transports.get(key)
            if live is not None and live.is_active():
                return live
            host_lock = self._host_locks.setdefault(key, threading.Lock())
        with host_lock:
            live = self._transports.get(key)
            if live is not None and live.is_active():
                return live
            transport = self._connect(target)
            with self._lock:
                self._transports[key] = transport
            return transport

    def _connect(self, target: _Target) -> paramiko.Transport:
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
            known = self.known.quick(name) or self.known.lookup(name)
            if known:
                # Ask for the key type we know, as OpenSSH does, so a host with several
                # keys is checked against the one on record.
                types = [t for t in transport.preferred_keys if t in {k for k, _ in known}]
                types += [t for t in transport.preferred_keys if t not in types]
                transport.get_security_options().key_types = types
            transport.banner_timeout = self.connect_timeout
            transport.auth_timeout = self.connect_timeout
            transport.start_client(timeout=self.connect_timeout)
            self._check_host_key(name, where, transport.get_remote_server_key())
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

    def _jump_channel(self, target: _Target) -> paramiko.Channel:
        spec = target.jump or ""
        user, _, hostport = spec.rpartition("@")
        host, _, port = hostport.partition(":")
        if host.startswith("["):
            host, _, port = hostport[1:].partition("]:")
        if "," in spec or not host:
            raise InputError(f"unsupported jump host {spec!r}", "use one USER@HOST[:PORT] hop")
        jump_ref = HostRef(name=f"jump {host}", address=host, port=int(port) if port else None)
        jt = self._transport_no_jump(jump_ref, user or None)
        return jt.open_channel(
            "direct-tcpip",
            (target.ref.address, target.port),
            ("127.0.0.1", 0),
            timeout=self.connect_timeout,
        )

    def _transport_no_jump(self, ref: HostRef, user: str | None) -> paramiko.Transport:
        target = self._target(ref)
        target.jump = None
        if user:
            target.user = user
        key = (ref.address, target.port)
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

    def _check_host_key(self, name: str, where: str, key: paramiko.PKey) -> None:
        offered = (key.get_name(), key.get_base64())
        if self.known.is_revoked(offered[1]):
            raise ProviderError(
                f"{where}: host key {fingerprint(key)} is revoked in known_hosts",
                "do not connect; find out why the host presents a revoked key",
            )
        if offered in self.known.quick(name):
            return
        known = self.known.lookup(name)
        if offered in known:
            return
        if known:
            raise ProviderError(
                f"{where}: HOST KEY CHANGED: it presents {key.get_name()} {fingerprint(key)}, "
                f"known_hosts has {', '.join(sorted(fingerprint(b) for _, b in known))}",
                "possible man-in-the-middle; if the host was rebuilt, verify the new fingerprint "
                f"out of band and remove the old line (ssh-keygen -R '{name}')",
            )
        if not self.accept_new:
            raise ProviderError(
                f"{where}: unknown host key {key.get_name()} {fingerprint(key)}",
                "verify the fingerprint out of band, then rerun with --accept-new-host-keys "
                f"(records it in {self.record_path})",
            )
        self._record(name, key)

    def _record(self, name: str, key: paramiko.PKey) -> None:
        line = f"{name} {key.get_name()} {key.get_base64()}\n"
        with self._lock:
            if self.record_path is not None:
                self.record_path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.record_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a") as fh:
                    fh.write(line)
            self.known.add_line(line)

    def _authenticate(self, transport: paramiko.Transport, target: _Target) -> None:
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

    def _candidate_keys(self, target: _Target) -> list[paramiko.PKey]:
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
            with self._lock:
                self._transports.pop((host.address, self._target(host).port), None)
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
        with self._lock:
            transports = list(self._transports.values())
            self._transports.clear()
        for transport in transports:
            transport.close()
        if self._agent is not None:
            self._agent.close()
        if self.hints_path is not None and self.known.hints_changed:
            _write_hints(self.hints_path, self.known.hints_json())
            self.known.hints_changed = False


def _read_hints(path: Path | None) -> dict[str, list[str]]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # only a speed-up: a missing or damaged file costs one scan
    return data if isinstance(data, dict) else {}


def _write_hints(path: Path, hints: dict[str, list[str]]) -> None:
    merged = {**_read_hints(path), **hints}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(merged, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # best effort: the next run scans again


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
