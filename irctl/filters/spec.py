"""What a filter is, and the safety rules it must pass before anything touches a host.

Everything here is pure: CIDRs, ports and TTLs are validated, the refusals of the
issue are applied (allowlist, /0, too broad, the SSH port), and the comment an nft
element carries is encoded and decoded. The operator's own address is checked by
the caller once each host has told us how it sees us (`check_operator_address`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from irctl.durations import parse_duration_with_unit
from irctl.errors import InputError, RefusedError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Action = Literal["reject", "drop"]

DEFAULT_TTL = 30 * 60
MAX_TTL = 24 * 3600
MAX_COMMENT = 127  # nft stores element comments of at most 128 bytes
BROADEST = {4: 16, 6: 48}
FILTER_ID = re.compile(r"^flt-[0-9a-f]{8}$")
_COMMENT_PREFIX = "irctl;"
_SAFE_COMMENT = set(string.printable) - set('"\\\t\n\r\x0b\x0c')


@dataclass(frozen=True)
class FilterSpec:
    """One filter: one CIDR on some ports of some hosts, with its id and metadata."""

    id: str
    cidr: IpNetwork
    ports: tuple[int, ...]
    action: Action
    ttl: int  # seconds; 0 = permanent
    reason: str
    operator: str

    @property
    def family(self) -> int:
        return self.cidr.version


def parse_cidr(text: str) -> IpNetwork:
    """A CIDR (or a single address) as a network; InputError when malformed."""
    value = str(text).strip()
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise InputError(
            f"malformed CIDR {text!r}", "write it like 198.51.100.0/24 or 2001:db8::/48"
        ) from None
    if "/" in value and ipaddress.ip_address(value.split("/")[0]) != net.network_address:
        # 198.51.100.7/24 means a different range than it looks like: make the operator say it.
        raise InputError(
            f"{text!r} has host bits set", f"did you mean {net}? write the network address"
        )
    return net


def parse_port(value: int | str) -> int:
    text = str(value).strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InputError(f"malformed port {value!r}", "ports are numbers from 1 to 65535")
    return int(text)


def parse_ttl(ttl: str | int | float | None, *, permanent: bool) -> int:
    """TTL in whole seconds; 0 means permanent (only with `permanent`)."""
    if permanent:
        if ttl not in (None, "", 0, "0"):
            raise InputError("--permanent and --ttl together", "give one of them")
        return 0
    seconds = DEFAULT_TTL if ttl in (None, "") else parse_duration_with_unit(ttl, "TTL")
    if seconds < 1:
        raise InputError(f"TTL {ttl!r} is shorter than a second", "give e.g. 30s, 10m or 2h")
    if seconds > MAX_TTL:
        raise RefusedError(
            f"TTL {ttl!r} is longer than 24h",
            "use a shorter --ttl, or --permanent with a --reason if it must stay",
        )
    return round(seconds)


def check_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise InputError("a filter needs a reason", "pass --reason 'what this filter is for'")
    if len(text) > 500 or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InputError(
            "the reason must be one line of at most 500 characters", "shorten the --reason"
        )
    return text


def check_cidrs(cidrs: Sequence[IpNetwork], allowlist: Iterable[str], *, force: bool) -> None:
    """Refuse /0, anything overlapping the allowlist, and (without force) too-broad ranges."""
    allowed = [ipaddress.ip_network(a, strict=False) for a in allowlist]
    for net in cidrs:
        if net.prefixlen == 0:
            raise RefusedError(
                f"{net} would block every client", "name the offending range, never the world"
            )
        for entry in allowed:
            if entry.version == net.version and net.overlaps(entry):
                raise RefusedError(
                    f"{net} overlaps the allowlisted {entry}",
                    "narrow the CIDR so it leaves the allowlist out; nothing was applied",
                )
        if net.prefixlen < BROADEST[net.version] and not force:
            raise RefusedError(
                f"{net} is broader than /{BROADEST[net.version]}",
                "narrow it, or pass --force if you really mean that many clients",
            )


def check_ports(ports: Sequence[int], ssh_ports: Iterable[int]) -> None:
    blocked = sorted(set(ports) & set(ssh_ports))
    if blocked:
        raise RefusedError(
            f"port {blocked[0]} is the SSH port", "filters apply to service ports only"
        )


def check_operator_address(cidrs: Sequence[IpNetwork], host: str, peer: str) -> None:
    address = ipaddress.ip_address(peer)
    for net in cidrs:
        if address.version == net.version and address in net:
            raise RefusedError(
                f"{net} contains your own address {peer} as {host} sees it",
                "narrow the CIDR; blocking yourself would cut off the operator",
            )


def filter_id(run_id: str, step: str | None, item: str | None, cidr: IpNetwork) -> str:
    """Stable per (run, step, item, CIDR): plan and run agree, and resume can find it."""
    digest = hashlib.sha256(f"{run_id}/{step}/{item}/{cidr}".encode()).hexdigest()
    return f"flt-{digest[:8]}"


def check_filter_id(value: str) -> str:
    if not FILTER_ID.match(value):
        raise InputError(f"malformed filter id {value!r}", "ids look like flt-1a2b3c4d")
    return value


def _clean(text: str) -> str:
    return "".join(c if c in _SAFE_COMMENT else "?" for c in text)


def encode_comment(spec: FilterSpec, created: int) -> str:
    """`irctl;id=..;op=..;at=..;ttl=..;why=..` cut to nft's comment limit (the reason last)."""
    operator = re.sub(r"[^A-Za-z0-9._@-]", "?", spec.operator)[:32]
    head = f"{_COMMENT_PREFIX}id={spec.id};op={operator};at={created};ttl={spec.ttl};why="
    reason = _clean(spec.reason)
    room = MAX_COMMENT - len(head)
    if len(reason) > room:
        reason = reason[: room - 3] + "..."
    return head + reason


@dataclass(frozen=True)
class CommentInfo:
    id: str
    operator: str
    created: int
    ttl: int
    reason: str


def decode_comment(comment: str | None) -> CommentInfo | None:
    """The metadata in an irctl element comment; None for anything else."""
    if not comment or not comment.startswith(_COMMENT_PREFIX):
        return None
    fields: dict[str, str] = {}
    rest = comment[len(_COMMENT_PREFIX) :]
    while rest:
        key, _, rest = rest.partition("=")
        if key == "why":
            fields[key] = rest
            break
        value, _, rest = rest.partition(";")
        fields[key] = value
    try:
        return CommentInfo(
            id=check_filter_id(fields["id"]),
            operator=fields.get("op", ""),
            created=int(fields.get("at", "0")),
            ttl=int(fields.get("ttl", "0")),
            reason=fields.get("why", ""),
        )
    except (KeyError, ValueError, InputError):
        return None
