"""The nft text irctl sends and the `nft -j` JSON it reads back. Pure: no I/O.

Layout on every host (table `inet irctl`, created on first use):

    set reject4 { type ipv4_addr . inet_service; flags interval, timeout; }   # and reject6
    set drop4   { type ipv4_addr . inet_service; flags interval, timeout; }   # and drop6
    chain input { type filter hook input priority -10; policy accept;
        tcp flags syn / syn,ack ip saddr . tcp dport @reject4 reject with tcp reset
        ... }

An element is `CIDR . PORT timeout Ns comment "irctl;id=..."`: the kernel expires it
even if irctl dies, and the comment lets `filter list` read everything back from the
host alone. Only new connections (SYN without ACK) are matched: established ones keep
flowing unless `--kill-existing`, and no conntrack is needed (an overloaded proxy must
not start tracking its connections because of us). The chain is flushed and rewritten
in the same transaction as the elements, so a batch is idempotent and self-healing.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from irctl.filters.spec import CommentInfo, FilterSpec, IpNetwork, decode_comment, encode_comment

TABLE = "inet irctl"
SETS = ("reject4", "reject6", "drop4", "drop6")


def set_name(action: str, family: int) -> str:
    return f"{action}{family}"


def _structure() -> list[str]:
    lines = [f"add table {TABLE}"]
    for name in SETS:
        addr = "ipv4_addr" if name.endswith("4") else "ipv6_addr"
        lines.append(
            f"add set {TABLE} {name} {{ type {addr} . inet_service; flags interval, timeout; }}"
        )
    lines += [
        f"add chain {TABLE} input {{ type filter hook input priority -10; policy accept; }}",
        f"flush chain {TABLE} input",
    ]
    for name in SETS:
        proto = "ip" if name.endswith("4") else "ip6"
        verdict = "reject with tcp reset" if name.startswith("reject") else "drop"
        lines.append(
            f"add rule {TABLE} input tcp flags & (syn | ack) == syn "
            f"{proto} saddr . tcp dport @{name} {verdict}"
        )
    return lines


def element_key(cidr: IpNetwork, port: int) -> str:
    return f"{cidr} . {port}"


def block_batch(specs: list[FilterSpec], created: int) -> str:
    """One atomic `nft -f -` transaction adding every element of `specs` (plus the structure)."""
    lines = _structure()
    for spec in specs:
        timeout = f" timeout {spec.ttl}s" if spec.ttl else ""
        comment = encode_comment(spec, created)
        for port in spec.ports:
            lines.append(
                f"add element {TABLE} {set_name(spec.action, spec.family)} "
                f'{{ {element_key(spec.cidr, port)}{timeout} comment "{comment}" }}'
            )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Element:
    """One element of an irctl set as the kernel reports it."""

    set: str
    cidr: str
    port: int
    timeout: int  # seconds; 0 = permanent
    expires: int | None  # seconds left; None = permanent
    comment: str
    info: CommentInfo | None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.set, self.cidr, self.port)

    @property
    def action(self) -> str:
        return self.set[:-1]


def revert_batch(elements: list[Element]) -> str:
    """Delete exactly these elements (each must still exist, or the batch fails as a whole)."""
    return "".join(f"delete element {TABLE} {e.set} {{ {e.cidr} . {e.port} }}\n" for e in elements)


def _cidr(value: Any) -> str:
    if isinstance(value, str):
        return str(ipaddress.ip_network(value, strict=False))
    if isinstance(value, dict) and "prefix" in value:
        p = value["prefix"]
        return str(ipaddress.ip_network(f"{p['addr']}/{p['len']}", strict=False))
    if isinstance(value, dict) and "range" in value:
        lo, hi = (ipaddress.ip_address(a) for a in value["range"])
        nets = list(ipaddress.summarize_address_range(lo, hi))
        return ",".join(str(n) for n in nets)
    raise ValueError(f"unexpected set element address {value!r}")


def parse_table(text: str) -> list[Element]:
    """Elements of the irctl sets in `nft -j list table inet irctl` output."""
    if not text.strip():
        return []
    doc = json.loads(text)
    out: list[Element] = []
    for item in doc.get("nftables", []):
        nset = item.get("set")
        if not nset or nset.get("table") != "irctl" or nset.get("name") not in SETS:
            continue
        for raw in nset.get("elem", []):
            # Elements with a timeout or comment come wrapped as {"elem": {"val": ...}}.
            wrapped = isinstance(raw, dict) and "elem" in raw
            elem: dict[str, Any] = raw["elem"] if wrapped else {}
            val = elem.get("val") if wrapped else raw
            if not isinstance(val, dict) or "concat" not in val:
                continue
            addr, port = val["concat"]
            comment = elem.get("comment", "")
            timeout = int(elem.get("timeout", 0))
            out.append(
                Element(
                    set=nset["name"],
                    cidr=_cidr(addr),
                    port=int(port),
                    timeout=timeout,
                    expires=int(elem["expires"]) if "expires" in elem else None,
                    comment=comment,
                    info=decode_comment(comment),
                )
            )
    return out
