"""A cluster's effective proxy list: from EC2 tags, or the static list plus recorded changes.

Other modules (diagnosis, filters, cache) call `effective_proxies(inventory, settings,
cluster)` (or `proxies_for(ctx, cluster)` inside an action) instead of reading
`cluster.proxies`, so that after `replace-proxy` or `scale-proxies` they act on the
machines that actually serve:

- a cluster with `discover` (EC2 filter names to values, e.g. `{tag:cluster: use1-a}`)
  takes its proxies from running instances carrying those tags: the inventory stays true
  after replacements without anyone editing it;
- a cluster with a static `proxies` list gets the replacements, additions and removals
  irctl made applied on top, from `<state_dir>/fleet/<cluster>.jsonl`, until the
  operator updates the file (each change tells them to).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irctl.errors import InputError
from irctl.inventory import Proxy

if TYPE_CHECKING:
    from irctl.actions.base import Context
    from irctl.inventory import Cluster, Inventory
    from irctl.providers.aws import AwsProvider
    from irctl.settings import Settings


def effective_proxies(
    inventory: Inventory,
    settings: Settings,
    cluster: str,
    *,
    aws: AwsProvider | None = None,
) -> list[Proxy]:
    """The proxies of `cluster` as they are now (InputError for an unknown cluster).

    A discovered cluster asks EC2 (through `aws`, or a provider built and closed here);
    a static one reads the state folder and never touches the network.
    """
    spec = inventory.cluster(cluster)
    if spec.discover:
        if aws is not None:
            return discover_proxies(aws, spec)
        from irctl.providers.aws import AwsProvider

        own = AwsProvider.create(inventory, settings)
        try:
            return discover_proxies(own, spec)
        finally:
            own.close()
    return apply_changes(spec.proxies, FleetRecords(settings.state_dir, cluster).read())


def proxies_for(ctx: Context, cluster: str) -> list[Proxy]:
    """`effective_proxies` inside an action: discovery uses the run's AWS provider."""
    spec = ctx.inventory.cluster(cluster)
    if spec.discover:
        from irctl.providers.aws import AwsProvider

        return discover_proxies(ctx.provider(AwsProvider), spec)
    return effective_proxies(ctx.inventory, ctx.settings, cluster)


def find_proxy(proxies: list[Proxy], cluster: str, ref: str) -> Proxy:
    """A proxy by name, address or instance id (INTERFACE.md's PROXY)."""
    for proxy in proxies:
        if ref in (proxy.name, proxy.address, proxy.instance_id):
            return proxy
    names = ", ".join(p.name for p in proxies[:20]) or "none"
    raise InputError(
        f"unknown proxy {ref!r} in cluster {cluster!r}",
        f"use a name, address or instance id; proxies: {names}",
    )


def discover_filters(spec: Cluster) -> list[dict[str, Any]]:
    filters = [{"Name": k, "Values": [v]} for k, v in sorted((spec.discover or {}).items())]
    filters.append({"Name": "instance-state-name", "Values": ["running"]})
    return filters


def discover_proxies(aws: AwsProvider, spec: Cluster) -> list[Proxy]:
    proxies = [
        proxy_of(inst)
        for inst in aws.instances(filters=discover_filters(spec))
        if inst.get("PrivateIpAddress")
    ]
    return sorted(proxies, key=lambda p: p.name)


def proxy_of(instance: dict[str, Any], name: str | None = None) -> Proxy:
    """An EC2 instance as an inventory proxy: named by its Name tag, else its id."""
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    return Proxy(
        name=name or tags.get("Name") or instance["InstanceId"],
        address=instance["PrivateIpAddress"],
        instance_id=instance["InstanceId"],
    )


# -- the state-folder record for static inventories ----------------------------------------
@dataclass(frozen=True)
class FleetRecords:
    """Append-only JSONL of fleet changes irctl made to one static cluster."""

    state_dir: Path
    cluster: str

    @property
    def path(self) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.cluster)
        return self.state_dir / "fleet" / f"{safe}.jsonl"

    def read(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise InputError(
                f"cannot read {self.path}: {exc.strerror}", "fix the state folder's permissions"
            ) from None
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line from a crash: the change it described is redone
        return records

    def append(self, op: str, run_id: str, **fields: Any) -> None:
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="seconds"),
            "op": op,
            "run_id": run_id,
            **fields,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def apply_changes(static: list[Proxy], records: list[dict[str, Any]]) -> list[Proxy]:
    """The static list with recorded replacements, additions and removals applied in order.

    A change the operator already made in the file (the new instance is listed) is a no-op.
    """
    proxies = list(static)
    for rec in records:
        ids = {p.instance_id for p in proxies if p.instance_id} | {p.address for p in proxies}
        if rec.get("op") == "replace":
            old, new = rec["old"], Proxy.model_validate(rec["new"])
            if new.instance_id in ids or new.address in ids:
                continue
            proxies = [
                new.model_copy(update={"name": p.name}) if _same(p, old) else p for p in proxies
            ]
        elif rec.get("op") == "add":
            new = Proxy.model_validate(rec["proxy"])
            if new.instance_id not in ids and new.address not in ids:
                proxies.append(new)
        elif rec.get("op") == "remove":
            gone = set(rec.get("instance_ids", []))
            proxies = [p for p in proxies if p.instance_id not in gone]
    return proxies


def _same(proxy: Proxy, old: dict[str, Any]) -> bool:
    if old.get("instance_id") and proxy.instance_id:
        return bool(proxy.instance_id == old["instance_id"])
    return bool(proxy.address == old.get("address"))


def record_replacement(
    inventory: Inventory, settings: Settings, cluster: str, old: Proxy, new: Proxy, run_id: str
) -> str | None:
    """Remember a replacement for a static cluster; the message asks to update the file."""
    if inventory.cluster(cluster).discover:
        return None
    records = FleetRecords(settings.state_dir, cluster)
    records.append("replace", run_id, old=old.model_dump(), new=new.model_dump())
    where = inventory.source or "the inventory"
    return (
        f"{where} lists {old.name} as {old.address} ({old.instance_id}); it is now "
        f"{new.address} ({new.instance_id}). Update the file; until then irctl uses "
        f"{records.path}"
    )


def record_added(
    inventory: Inventory, settings: Settings, cluster: str, added: list[Proxy], run_id: str
) -> str | None:
    if inventory.cluster(cluster).discover or not added:
        return None
    records = FleetRecords(settings.state_dir, cluster)
    for proxy in added:
        records.append("add", run_id, proxy=proxy.model_dump())
    where = inventory.source or "the inventory"
    listed = ", ".join(f"{p.name} {p.address} ({p.instance_id})" for p in added[:10])
    return f"add to {where}: {listed}; until then irctl uses {records.path}"


def record_removed(
    inventory: Inventory, settings: Settings, cluster: str, instance_ids: list[str], run_id: str
) -> None:
    if inventory.cluster(cluster).discover or not instance_ids:
        return
    FleetRecords(settings.state_dir, cluster).append("remove", run_id, instance_ids=instance_ids)
