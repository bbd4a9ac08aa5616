"""Host keys: the known_hosts index and the policy that decides whether a host is trusted.

The inventory's known_hosts and ~/.ssh/known_hosts are read once into a `KnownHosts`
index: plain names are a dict lookup; hashed entries (`|1|salt|hash`) are bucketed by
salt, so a lookup costs one HMAC per salt and no key parsing, and each host is looked
up once per run. An unknown host is refused with its fingerprint unless
`settings.accept_new_host_keys` (then it is recorded, like OpenSSH's accept-new); a
changed key is always refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from irctl.errors import InputError, ProviderError

if TYPE_CHECKING:
    import paramiko


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


class HostKeyPolicy:
    """Whether to trust the key a host presents: known, revoked, changed, or new."""

    def __init__(
        self,
        known_hosts: Sequence[Path] = (),
        *,
        record_path: Path | None = None,
        accept_new: bool = False,
        hints_path: Path | None = None,
    ) -> None:
        self.accept_new = accept_new
        self.record_path = record_path
        self.hints_path = hints_path
        self._paths = list(known_hosts)
        self._lock = threading.Lock()
        self.known, self._seen = self._index(read_hints(hints_path))

    def _index(
        self, hints: dict[str, list[str]]
    ) -> tuple[KnownHosts, dict[Path, tuple[int, int] | None]]:
        known = KnownHosts(hints)
        seen = {path: _stamp(path) for path in self._paths}
        for path in self._paths:
            known.load(path)
        return known, seen

    def refresh(self) -> bool:
        """Re-index when a known_hosts file changed since it was read, and only then.

        A run that replaces machines meets hosts whose keys were written to known_hosts
        after the run started (by the provisioning, or the lab's reconciler): they must
        not read as unknown for the rest of the run. A file that did not change is never
        read again, so a large known_hosts is still indexed once, not once per host.
        """
        with self._lock:
            if all(_stamp(path) == stamp for path, stamp in self._seen.items()):
                return False
            self.known, self._seen = self._index(self.known.hints_json())
            return True

    def key_types(self, name: str) -> set[str]:
        """The key types on record for `name`, so the handshake asks for one we can check."""
        known = self.known.quick(name) or self.known.lookup(name)
        if not known and self.refresh():
            known = self.known.lookup(name)
        return {k for k, _ in known}

    def check(self, name: str, where: str, key: paramiko.PKey) -> None:
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
        if self.refresh():
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
                if self.record_path in self._seen:
                    # Our own line is already in the index: not a reason to re-read the file.
                    self._seen[self.record_path] = _stamp(self.record_path)
            self.known.add_line(line)

    def save_hints(self) -> None:
        if self.hints_path is not None and self.known.hints_changed:
            write_hints(self.hints_path, self.known.hints_json())
            self.known.hints_changed = False


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def read_hints(path: Path | None) -> dict[str, list[str]]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # only a speed-up: a missing or damaged file costs one scan
    return data if isinstance(data, dict) else {}


def write_hints(path: Path, hints: dict[str, list[str]]) -> None:
    merged = {**read_hints(path), **hints}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(merged, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # best effort: the next run scans again
