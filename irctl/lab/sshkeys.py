"""SSH keys for the lab: the operator's key pair and the known_hosts that trusts the hosts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from irctl.lab.system import run

if TYPE_CHECKING:
    from irctl.lab.nshost import Host


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: str  # the authorized_keys line


def operator_keypair(directory: Path, name: str = "operator_ed25519") -> KeyPair:
    """An ed25519 key pair for the operator in `directory` (made once)."""
    path = directory / name
    if not path.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "irctl-lab", "-f", str(path)])
    return KeyPair(private=path, public=path.with_suffix(".pub").read_text().strip())


def known_hosts_line(host: Host, public_key: str) -> str:
    keytype, blob = public_key.split()[:2]
    where = host.address if host.ssh_port == 22 else f"[{host.address}]:{host.ssh_port}"
    return f"{where} {keytype} {blob}"


def write_known_hosts(path: Path, entries: Iterable[tuple[Host, str]]) -> Path:
    """A known_hosts file trusting each (host, public key line)."""
    path.write_text("".join(known_hosts_line(h, k) + "\n" for h, k in entries))
    return path
