"""Undo of a group replacement that kept the old machine, against moto in server mode.

The fixture's group has MaxSize == DesiredCapacity, so the undo must raise the maximum
for the swap (AttachInstances refuses to exceed it) and put it back afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from irctl.actions import get_action
from irctl.actions.base import Context

if TYPE_CHECKING:
    from tests.moto_fixtures import AwsWorld

pytest_plugins = ["tests.moto_fixtures"]

ACTION = "aws.replace_proxy"


def group(world: AwsWorld) -> dict[str, Any]:
    found: dict[str, Any] = world.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[world.asg_name]
    )["AutoScalingGroups"][0]
    return found


def test_group_keep_old_then_undo_restores_the_group_as_it_was(
    aws: AwsWorld, make_ctx: Callable[..., Context]
) -> None:
    world = aws.build(3, asg=True)
    inventory = world.inventory(discover=True)
    action = get_action(ACTION)
    old = world.instance_ids[0]
    params = action.Params(cluster="use1-a", proxy=old, keep_old=True)
    drill = make_ctx(inventory, dry_run=True)
    assert action.plan(params, drill).reversible

    ctx = make_ctx(inventory, run_id="run-asg-keep", step_id="replace")
    outcome = action.run(params, ctx)

    assert outcome.ok, outcome.error
    new = outcome.output["new_instance_id"]
    assert world.states()[old] == "stopped" and old not in world.asg_instances()
    assert new in world.asg_instances() and world.targets()[new] == "healthy"
    assert outcome.undo is not None and outcome.undo["autoscaling_group"] == world.asg_name

    undone = action.undo(outcome.undo, ctx)

    assert undone.ok, undone.error
    assert world.states()[old] == "running" and world.states()[new] == "terminated"
    assert world.asg_instances() == sorted(world.instance_ids)
    assert world.targets().get(old) == "healthy" and new not in world.targets()
    after = group(world)
    assert (after["DesiredCapacity"], after["MaxSize"]) == (3, 3)
    calls = [
        r["action"]
        for r in ctx.journal.records()
        if r["event"] == "intent" and (r.get("params") or {}).get("undo_of")
    ]
    assert calls == [
        "autoscaling.update_auto_scaling_group",
        "ec2.start_instances",
        "autoscaling.attach_instances",
        "elbv2.register_targets",
        "elbv2.deregister_targets",
        "autoscaling.terminate_instance_in_auto_scaling_group",
        "autoscaling.update_auto_scaling_group",
    ]


def test_group_undo_refuses_when_the_new_instance_already_left_the_group(
    aws: AwsWorld, make_ctx: Callable[..., Context]
) -> None:
    world = aws.build(2, asg=True)
    inventory = world.inventory(discover=True)
    action = get_action(ACTION)
    old = world.instance_ids[0]
    ctx = make_ctx(inventory, run_id="run-asg-gone", step_id="replace")
    outcome = action.run(action.Params(cluster="use1-a", proxy=old, keep_old=True), ctx)
    assert outcome.ok and outcome.undo is not None
    new = outcome.output["new_instance_id"]
    world.client("autoscaling").terminate_instance_in_auto_scaling_group(
        InstanceId=new, ShouldDecrementDesiredCapacity=True
    )

    undone = action.undo(outcome.undo, ctx)

    assert not undone.ok and f"{new} is no longer in group" in (undone.error or "")
    assert world.states()[old] == "stopped"  # nothing was touched
