"""Blocking and reverting filters across a cluster's hosts: preflight, apply, verify, roll back.

`preflight` validates everything and asks each host (over SSH, read-only) how it
sees the operator, what irctl elements it holds and how many established
connections the CIDRs have on the service ports. Both `plan` and `run` call it, so
the refusals are enforced at apply time too, not only in the plan.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from irctl.errors import InputError, IrctlError, ProviderError, RefusedError
from irctl.filters import spec as fs
from irctl.filters.nftables import Element, block_batch, revert_batch, set_name

if TYPE_CHECKING:
    from irctl.actions.base import Context
    from irctl.providers.nft import Nft
    from irctl.providers.ssh import HostRef, SshProvider


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class HostView:
    peer: str
    elements: list[Element]
    established: int


@dataclass
class Preflight:
    specs: list[fs.FilterSpec]
    hosts: list[HostRef]
    views: dict[str, HostView] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # host name -> why it cannot be read
    created: int = 0

    @property
    def ready_hosts(self) -> list[HostRef]:
        return [h for h in self.hosts if h.name in self.views]

    @property
    def batch(self) -> str:
        return block_batch(self.specs, self.created)

    def expected_keys(self) -> set[tuple[str, str, int]]:
        return {(set_name(s.action, s.family), str(s.cidr), p) for s in self.specs for p in s.ports}

    def filters(self, hosts: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {
                "id": s.id,
                "cidr": str(s.cidr),
                "ports": list(s.ports),
                "action": s.action,
                "ttl": s.ttl,
                "expires_at": iso(self.created + s.ttl) if s.ttl else None,
                "reason": s.reason,
                "operator": s.operator,
                "hosts": list(hosts),
            }
            for s in self.specs
        ]


def build_specs(params: Any, ctx: Context, ssh_ports: set[int]) -> list[fs.FilterSpec]:
    """Validated filter specs for a `filter.block` request, or InputError/RefusedError."""
    raw = [params.cidrs] if isinstance(params.cidrs, str) else list(params.cidrs)
    cidrs = list(dict.fromkeys(fs.parse_cidr(c) for c in raw))
    if not cidrs:
        raise InputError("no CIDR given", "name at least one CIDR to block")
    reason = fs.check_reason(params.reason)
    ttl = fs.parse_ttl(params.ttl, permanent=params.permanent)
    cluster = ctx.inventory.cluster(params.cluster)
    ports = sorted({fs.parse_port(p) for p in (params.ports or [cluster.proxy_port])})
    fs.check_ports(ports, ssh_ports)
    fs.check_cidrs(cidrs, ctx.inventory.allowlist, force=params.force)
    return [
        fs.FilterSpec(
            id=fs.filter_id(ctx.run_id, ctx.step_id, ctx.item_key, c),
            cidr=c,
            ports=tuple(ports),
            action=params.action,
            ttl=ttl,
            reason=reason,
            operator=ctx.operator,
        )
        for c in cidrs
    ]


def preflight(params: Any, ctx: Context, hosts: list[HostRef]) -> Preflight:
    from irctl.providers.nft import Nft
    from irctl.providers.ssh import SshProvider

    ssh = ctx.provider(SshProvider)
    specs = build_specs(params, ctx, {22} | {ssh.port_for(h) for h in hosts})
    nft = Nft(ssh)
    cidrs = [s.cidr for s in specs]
    ports = list(specs[0].ports)

    def look(host: HostRef) -> HostView:
        peer, established, elements = nft.preflight_one(host, cidrs, ports)
        return HostView(peer, elements, established)

    pf = Preflight(specs, hosts, created=int(time.time()))
    for outcome in ssh.each(hosts, look):
        if outcome.value is not None:
            pf.views[outcome.host.name] = outcome.value
        else:
            pf.errors[outcome.host.name] = outcome.error or "unknown error"
    # A refusal on any host refuses everywhere: it is about the request, not the host.
    for name, view in pf.views.items():
        fs.check_operator_address(cidrs, name, view.peer)
    _refuse_overlaps(pf)
    return pf


def _refuse_overlaps(pf: Preflight) -> None:
    import ipaddress

    for name, view in pf.views.items():
        for e in view.elements:
            if e.info is None:
                continue
            for s in pf.specs:
                if e.info.id == s.id or e.port not in s.ports or e.set[-1] != str(s.family):
                    continue
                if any(ipaddress.ip_network(c).overlaps(s.cidr) for c in e.cidr.split(",")):
                    raise RefusedError(
                        f"{s.cidr} port {e.port} is already blocked on {name} by filter "
                        f"{e.info.id} ({e.cidr})",
                        f"revert it first (irctl filter revert {e.info.id}) or let it expire",
                    )


def blast_radius_lines(pf: Preflight, kill: bool, dry_run: bool = False) -> list[str]:
    """One line per host that holds such connections; the quiet hosts summed up in one."""
    cut = "would be cut" if dry_run else "will be cut"
    what = f"{cut} (--kill-existing)" if kill else "stay open; new ones are refused"
    cidrs = ", ".join(str(s.cidr) for s in pf.specs)
    ports = ",".join(str(p) for p in pf.specs[0].ports)
    busy = [h for h in pf.ready_hosts if pf.views[h.name].established]
    lines = [
        f"{h.name}: {pf.views[h.name].established} established connection(s) from {cidrs} "
        f"on port(s) {ports} {what}"
        for h in busy
    ]
    quiet = len(pf.ready_hosts) - len(busy)
    if quiet:
        lines.append(f"{quiet} host(s): no established connection from {cidrs} on port(s) {ports}")
    lines += [f"{name}: cannot be read: {err}" for name, err in pf.errors.items()]
    return lines


def present(elements: list[Element], ids: set[str]) -> list[Element]:
    return [e for e in elements if e.info is not None and e.info.id in ids]


def apply_and_verify(nft: Nft, hosts: list[HostRef], pf: Preflight) -> dict[str, str]:
    """Apply the batch on every host and check what it reads back: {host: why it failed}."""
    want = pf.expected_keys()
    ids = {s.id for s in pf.specs}
    batch = pf.batch
    failed: dict[str, str] = {}
    for outcome in nft.ssh.each(hosts, lambda h: nft.apply_one(h, batch)):
        if outcome.value is None:
            failed[outcome.host.name] = outcome.error or "unknown error"
            continue
        missing = want - {e.key for e in present(outcome.value, ids)}
        if missing:
            s, cidr, port = sorted(missing)[0]
            failed[outcome.host.name] = f"read back without {cidr} . {port} in {s}"
    return failed


def revert_on(
    ssh: SshProvider, hosts: list[HostRef], ids: set[str]
) -> tuple[dict[str, int], dict[str, str]]:
    """Delete the elements carrying `ids` on `hosts`: ({host: removed count}, {host: error}).

    Idempotent: a host without them counts 0. An element can expire between our read
    and our delete (the batch then fails as a whole), so a failed batch is retried
    once from a fresh read.
    """
    from irctl.providers.nft import Nft

    nft = Nft(ssh)

    def one(host: HostRef) -> int:
        for attempt in (1, 2):
            elements = present(nft.read_one(host), ids)
            if not elements:
                return 0
            try:
                after = nft.apply_one(host, revert_batch(elements))
            except IrctlError:
                if attempt == 2:
                    raise
                continue
            if present(after, ids):
                raise ProviderError(f"{host.label}: elements still present after delete")
            return len(elements)
        return 0

    removed: dict[str, int] = {}
    errors: dict[str, str] = {}
    for outcome in ssh.each(hosts, one):
        if outcome.value is not None:
            removed[outcome.host.name] = outcome.value
        else:
            errors[outcome.host.name] = outcome.error or "unknown error"
    return removed, errors


def host_dicts(hosts: Sequence[HostRef]) -> list[dict[str, Any]]:
    return [{"name": h.name, "address": h.address, "port": h.port} for h in hosts]


def host_refs(rows: Sequence[dict[str, Any]]) -> list[HostRef]:
    from irctl.providers.ssh import HostRef

    return [HostRef(str(r["name"]), str(r["address"]), r.get("port")) for r in rows]
