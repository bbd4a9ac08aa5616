"""effective_proxies: static lists with recorded changes, and discovery from EC2 tags (moto)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from irctl.discovery import FleetRecords, apply_changes, effective_proxies
from irctl.inventory import Inventory, Proxy
from irctl.settings import Settings

if TYPE_CHECKING:
    from tests.moto_fixtures import AwsWorld

pytest_plugins = ["tests.moto_fixtures"]

P1 = Proxy(name="proxy-1", address="10.0.0.11", instance_id="i-1")
P2 = Proxy(name="proxy-2", address="10.0.0.12", instance_id="i-2")
NEW2 = {"name": "proxy-2", "address": "10.0.0.22", "instance_id": "i-22"}


def test_changes_apply_in_order_and_are_noops_once_the_file_is_updated() -> None:
    records = [
        {"op": "replace", "old": P2.model_dump(), "new": NEW2},
        {"op": "add", "proxy": {"name": "x", "address": "10.0.0.30", "instance_id": "i-30"}},
        {"op": "add", "proxy": {"name": "y", "address": "10.0.0.31", "instance_id": "i-31"}},
        {"op": "remove", "instance_ids": ["i-31"]},
    ]
    got = apply_changes([P1, P2], records)
    assert [(p.name, p.instance_id) for p in got] == [
        ("proxy-1", "i-1"),
        ("proxy-2", "i-22"),
        ("x", "i-30"),
    ]
    # The operator edited the file: recorded changes it already holds change nothing.
    updated = [
        P1,
        Proxy.model_validate(NEW2),
        Proxy(name="x", address="10.0.0.30", instance_id="i-30"),
    ]
    assert apply_changes(updated, records) == updated


def test_static_cluster_reads_the_state_folder_without_network(tmp_path: Path) -> None:
    inventory = Inventory.model_validate(
        {"clusters": {"c": {"proxies": [P1.model_dump(), P2.model_dump()]}}}
    )
    settings = Settings.resolve(environ={"IRCTL_STATE_DIR": str(tmp_path)})
    records = FleetRecords(tmp_path, "c")
    records.append("replace", "run-1", old=P2.model_dump(), new=NEW2)
    with records.path.open("a") as fh:
        fh.write('{"op": "add", "proxy": {"na')  # a torn line from a crash is skipped
    got = effective_proxies(inventory, settings, "c")
    assert [p.address for p in got] == ["10.0.0.11", "10.0.0.22"]


def test_discovered_cluster_follows_ec2_tags(aws: AwsWorld, tmp_path: Path) -> None:
    world = aws.build(3)
    inventory = Inventory.model_validate(world.inventory(discover=True))
    settings = Settings.resolve(environ={"IRCTL_STATE_DIR": str(tmp_path)})
    got = effective_proxies(inventory, settings, "use1-a")
    assert [p.name for p in got] == ["proxy-1", "proxy-2", "proxy-3"]
    assert {p.instance_id for p in got} == set(world.instance_ids)
    world.client("ec2").stop_instances(InstanceIds=[world.instance_ids[0]])
    world.launch("proxy-other", world.subnet_ids[0])  # same tags: a proxy added by hand
    got = effective_proxies(inventory, settings, "use1-a")
    assert [p.name for p in got] == ["proxy-2", "proxy-3", "proxy-other"]
