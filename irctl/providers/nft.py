"""nftables and socket queries on fleet hosts, over the run's `SshProvider`.

Every remote command is an argv list; the `sh -c` scripts are fixed text that take
their variable part (a validated `ss` filter) as a positional argument, and nft
batches travel on stdin.
Connection counts come from `ss` socket queries (never lsof), counted on the host
so a million connections do not travel back over SSH.
"""

from __future__ import annotations

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


# Fixed scripts: the variable parts (a validated ss filter, the batch on stdin) arrive as
# positional arguments or stdin, so nothing is ever spliced into shell text.
_READ = 'nft -j list table inet irctl 2>&1; echo "rc=$?"'
_PREFLIGHT = 'printf "%s\\n" "$SSH_CONNECTION"; ss -Htn state established "$1" | wc -l; ' + _READ
_APPLY = "nft -f - || exit $?; " + _READ
_COUNT = 'ss -Htn state established "$1" | wc -l'
_KILL = 'ss -K -Htn state established "$1" >/dev/null; ss -Htn state established "$1" | wc -l'


class Nft:
    """Read, apply and verify irctl's nft table, and count/cut connections, on many hosts."""

    def __init__(self, ssh: SshProvider) -> None:
        self.ssh = ssh

    def _elements(self, host: HostRef, text: str) -> list[Element]:
        """Parse the `_READ` tail: nft's JSON (or error) then `rc=N`."""
        body, _, rc = text.rstrip("\n").rpartition("rc=")
        if rc.strip() != "0":
            if "No such file or directory" in body:
                return []  # no irctl table yet: nothing blocked
            raise ProviderError(
                f"{host.label}: nft list failed: {one_line(body, 200)}",
                "check that nftables is installed and the SSH user may run nft (root)",
            )
        try:
            return parse_table(body)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(f"{host.label}: cannot parse nft -j output: {exc}") from None

    def read_one(self, host: HostRef) -> list[Element]:
        result = self.ssh.run(host, ["sh", "-c", _READ])
        return self._elements(host, result.stdout)

    def read(
        self,
        hosts: Sequence[HostRef],
        on_result: Callable[[HostOutcome[list[Element]]], None] | None = None,
    ) -> list[HostOutcome[list[Element]]]:
        return self.ssh.each(hosts, self.read_one, on_result=on_result)

    def preflight_one(
        self, host: HostRef, cidrs: Sequence[IpNetwork], ports: Sequence[int]
    ) -> tuple[str, int, list[Element]]:
        """In one round trip: how the host sees us, the connections at stake, its elements."""
        result = self.ssh.run(host, ["sh", "-c", _PREFLIGHT, "sh", ss_filter(cidrs, ports)])
        peer_line, count, rest = [*result.stdout.split("\n", 2), "", ""][:3]
        if not peer_line.split() or not count.strip().isdigit():
            raise ProviderError(
                f"{host.label}: cannot read SSH_CONNECTION and ss: {one_line(result.stderr, 200)}"
            )
        return peer_line.split()[0], int(count), self._elements(host, rest)

    def apply_one(self, host: HostRef, batch: str) -> list[Element]:
        """One `nft -f -` transaction (all of it or none), then the table as it is now."""
        result = self.ssh.run(host, ["sh", "-c", _APPLY], stdin=batch)
        if result.exit_status != 0:
            raise ProviderError(
                f"{host.label}: nft rejected the batch: {one_line(result.stderr, 300)}",
                "nothing was applied on that host",
            )
        return self._elements(host, result.stdout)

    def established_one(
        self, host: HostRef, cidrs: Sequence[IpNetwork], ports: Sequence[int]
    ) -> int:
        """Established TCP connections from `cidrs` to local `ports`, counted on the host."""
        return self._count(host, _COUNT, ss_filter(cidrs, ports))

    def kill_one(self, host: HostRef, cidrs: Sequence[IpNetwork], ports: Sequence[int]) -> int:
        """`ss -K` those connections; returns how many remain (>0: the kernel cannot destroy)."""
        return self._count(host, _KILL, ss_filter(cidrs, ports))

    def _count(self, host: HostRef, script: str, expr: str) -> int:
        result = self.ssh.run(host, ["sh", "-c", script, "sh", expr])
        if result.exit_status != 0 or not result.stdout.strip().isdigit():
            raise ProviderError(f"{host.label}: ss failed: {one_line(result.stderr, 200)}")
        return int(result.stdout.strip())
