"""nftables and socket queries on fleet hosts, over the run's `SshProvider`.

Every remote command is an argv list; the only `sh -c` scripts are fixed text whose
variable parts are validated CIDRs and port numbers passed through `shlex.quote`.
Connection counts come from `ss` socket queries (never lsof), counted on the host
so a million connections do not travel back over SSH.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from irctl.errors import ProviderError, one_line
from irctl.filters.nftables import Element, parse_table

if TYPE_CHECKING:
    from irctl.filters.spec import IpNetwork
    from irctl.providers.ssh import HostOutcome, HostRef, SshProvider


def ss_filter(cidrs: Sequence[IpNetwork], ports: Sequence[int]) -> str:
    """An `ss` filter: remote address in any CIDR, local port any of `ports`."""
    dsts = " or ".join(
        f"dst {c}" if c.version == 4 else f"dst [{c.network_address}]/{c.prefixlen}" for c in cidrs
    )
    sports = " or ".join(f"sport = :{p}" for p in ports)
    return f"( {sports} ) and ( {dsts} )"


class Nft:
    """Read, apply and verify irctl's nft table, and count/cut connections, on many hosts."""

    def __init__(self, ssh: SshProvider) -> None:
        self.ssh = ssh

    def read_one(self, host: HostRef) -> list[Element]:
        result = self.ssh.run(host, ["nft", "-j", "list", "table", "inet", "irctl"])
        if result.exit_status != 0:
            if "No such file or directory" in result.stderr:
                return []  # no irctl table yet: nothing blocked
            raise ProviderError(
                f"{host.label}: nft list failed: {one_line(result.stderr, 200)}",
                "check that nftables is installed and the SSH user may run nft (root)",
            )
        try:
            return parse_table(result.stdout)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(f"{host.label}: cannot parse nft -j output: {exc}") from None

    def read(
        self,
        hosts: Sequence[HostRef],
        on_result: Callable[[HostOutcome[list[Element]]], None] | None = None,
    ) -> list[HostOutcome[list[Element]]]:
        return self.ssh.each(hosts, self.read_one, on_result=on_result)

    def apply_one(self, host: HostRef, batch: str) -> None:
        """Run one `nft -f -` transaction: all of it applies, or none of it."""
        result = self.ssh.run(host, ["nft", "-f", "-"], stdin=batch)
        if result.exit_status != 0:
            raise ProviderError(
                f"{host.label}: nft rejected the batch: {one_line(result.stderr, 300)}",
                "nothing was applied on that host",
            )

    def apply(
        self, hosts: Sequence[HostRef], batch: Callable[[HostRef], str]
    ) -> list[HostOutcome[None]]:
        return self.ssh.each(hosts, lambda h: self.apply_one(h, batch(h)))

    def established_one(
        self, host: HostRef, cidrs: Sequence[IpNetwork], ports: Sequence[int]
    ) -> int:
        """Established TCP connections from `cidrs` to local `ports`, counted on the host."""
        expr = shlex.quote(ss_filter(cidrs, ports))
        return self._count(host, f"ss -Htn state established {expr} | wc -l")

    def kill_one(self, host: HostRef, cidrs: Sequence[IpNetwork], ports: Sequence[int]) -> int:
        """`ss -K` those connections; returns how many remain (>0: the kernel cannot destroy)."""
        expr = shlex.quote(ss_filter(cidrs, ports))
        return self._count(
            host,
            f"ss -K -Htn state established {expr} >/dev/null; "
            f"ss -Htn state established {expr} | wc -l",
        )

    def _count(self, host: HostRef, script: str) -> int:
        result = self.ssh.run(host, ["sh", "-c", script])
        if result.exit_status != 0 or not result.stdout.strip().isdigit():
            raise ProviderError(f"{host.label}: ss failed: {one_line(result.stderr, 200)}")
        return int(result.stdout.strip())
