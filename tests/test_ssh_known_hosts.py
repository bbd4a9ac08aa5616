"""The known_hosts index: plain and hashed entries, revoked keys, and its cost on a big file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from irctl.providers import known_hosts
from irctl.providers.known_hosts import KnownHosts, fingerprint

BLOB = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + os.urandom(36)).decode()


def hashed(name: str) -> str:
    salt = os.urandom(20)
    digest = hmac.digest(salt, name.encode(), "sha1")
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def test_plain_hashed_ports_and_revoked(tmp_path: Path) -> None:
    other = base64.b64encode(b"other-key").decode()
    path = tmp_path / "known_hosts"
    path.write_text(
        f"# comment\n198.51.100.1,proxy-1 ssh-ed25519 {BLOB}\n"
        f"{hashed('198.51.100.2')} ssh-ed25519 {BLOB}\n"
        f"[198.51.100.3]:2222 ssh-ed25519 {BLOB}\n"
        f"@revoked * ssh-ed25519 {other}\n"
        f"198.51.100.4 ssh-ed25519 {other}\n"
        "garbage\n"
    )
    index = KnownHosts()
    index.load(path)
    index.load(tmp_path / "missing")  # absent files are fine, like OpenSSH
    key = {("ssh-ed25519", BLOB)}
    assert index.lookup("198.51.100.1") == key == index.lookup("proxy-1")
    assert index.lookup("198.51.100.2") == key
    assert index.lookup("[198.51.100.3]:2222") == key
    assert index.lookup("198.51.100.3") == set()
    assert index.lookup("198.51.100.4") == set() and index.is_revoked(other)
    assert fingerprint(BLOB) == "SHA256:" + base64.b64encode(
        hashlib.sha256(base64.b64decode(BLOB)).digest()
    ).decode().rstrip("=")


def count_hmacs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the HMACs known_hosts computes: the work a lookup does, whatever the clock says."""
    calls: list[int] = []
    real: Callable[..., bytes] = hmac.digest

    def counting(*args: object) -> bytes:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(known_hosts.hmac, "digest", counting)
    return calls


def test_ten_thousand_hashed_lines_load_once_and_look_up_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(
        "".join(
            f"{hashed(f'198.51.{i // 250}.{i % 250}')} ssh-ed25519 {BLOB}\n" for i in range(10_000)
        )
    )
    index = KnownHosts()
    started = time.perf_counter()
    index.load(path)
    load = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(0, 10_000, 100):
        assert index.lookup(f"198.51.{i // 250}.{i % 250}")
    per_lookup = (time.perf_counter() - started) / 100
    hmacs = count_hmacs(monkeypatch)
    for i in range(0, 10_000, 100):
        index.lookup(f"198.51.{i // 250}.{i % 250}")
    print(f"load {load * 1000:.1f} ms, lookup {per_lookup * 1000:.2f} ms")
    assert index.lines == 10_000
    assert hmacs == []  # a name looked up once is answered from the index, no re-scan
    # Wide margins (bench/bench_ssh.py prints the real figures): this guards against a
    # re-scan per lookup, which costs seconds, not against a slow shared machine.
    assert load < 10 and per_lookup < 2


def test_hints_make_the_next_run_o1_and_cannot_forge_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "known_hosts"
    names = [f"198.51.{i // 250}.{i % 250}" for i in range(10_000)]
    path.write_text("".join(f"{hashed(n)} ssh-ed25519 {BLOB}\n" for n in names))
    first = KnownHosts()
    first.load(path)
    assert first.quick(names[42]) == set()  # no hint yet: the caller falls back to lookup
    assert first.lookup(names[42]) == {("ssh-ed25519", BLOB)} and first.hints_changed
    hints = first.hints_json()
    second = KnownHosts(hints)
    second.load(path)
    hmacs = count_hmacs(monkeypatch)
    assert second.quick(names[42]) == {("ssh-ed25519", BLOB)}
    assert len(hmacs) == 1  # one HMAC, not 10,000
    monkeypatch.undo()
    forged = KnownHosts({names[7]: hints[names[42]]})  # a salt that belongs to another name
    forged.load(path)
    assert forged.quick(names[7]) == set()
