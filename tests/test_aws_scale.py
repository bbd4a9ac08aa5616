"""aws.scale_proxies against moto in server mode: scale out, its undo, the drill, reconcile."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from irctl.actions import get_action
from irctl.actions.base import Context
from irctl.discovery import effective_proxies
from irctl.errors import InputError
from irctl.providers.aws import AwsProvider

if TYPE_CHECKING:
    from tests.moto_fixtures import AwsWorld

pytest_plugins = ["tests.moto_fixtures"]

ACTION = "aws.scale_proxies"


def params(**kw: Any) -> Any:
    return get_action(ACTION).Params(**{"cluster": "use1-a", **kw})


def intents(ctx: Context) -> list[str]:
    return [r["action"] for r in ctx.journal.records() if r["event"] == "intent"]


def test_scale_out_from_template_and_undo(aws: AwsWorld, make_ctx: Callable[..., Context]) -> None:
    world = aws.build(2)
    ctx = make_ctx(world.inventory(), run_id="run-scale-1234", step_id="add")
    action = get_action(ACTION)

    outcome = action.run(params(add=3), ctx)

    assert outcome.ok, outcome.error
    added = [a["instance_id"] for a in outcome.output["added"]]
    assert len(added) == 3 and not set(added) & set(world.instance_ids)
    targets = world.targets()
    assert all(targets[i] == "healthy" for i in added) and len(targets) == 5
    # Spread over the subnets the proxies use, tagged like them so discovery finds them.
    assert {world.instances()[i]["SubnetId"] for i in added} == set(world.subnet_ids)
    for index, iid in enumerate(sorted(added, key=lambda i: world.tags(i)["irctl:added"])):
        tags = world.tags(iid)
        assert tags["cluster"] == "use1-a" and tags["role"] == "proxy"
        assert tags["irctl:run-id"] == "run-scale-1234" and tags["irctl:added"] == str(index)
    assert intents(ctx) == ["ec2.run_instances"] * 3 + ["elbv2.register_targets"]
    listed = {p.instance_id for p in effective_proxies(ctx.inventory, ctx.settings, "use1-a")}
    assert listed == set(world.instance_ids) | set(added)

    assert outcome.undo is not None
    undone = action.undo(outcome.undo, ctx)

    assert undone.ok, undone.error
    states = world.states()
    assert all(states[i] == "terminated" for i in added)
    assert all(states[i] == "running" for i in world.instance_ids)
    assert set(world.targets()) == set(world.instance_ids)
    listed = {p.instance_id for p in effective_proxies(ctx.inventory, ctx.settings, "use1-a")}
    assert listed == set(world.instance_ids)


def test_scale_out_through_group_and_undo(aws: AwsWorld, make_ctx: Callable[..., Context]) -> None:
    world = aws.build(2, asg=True)  # MaxSize 2: adding needs a larger max too
    ctx = make_ctx(world.inventory(discover=True), run_id="run-scale-asg")
    action = get_action(ACTION)

    plan = action.plan(params(add=2), ctx)
    assert plan.details[0] == (
        f"autoscaling.UpdateAutoScalingGroup(AutoScalingGroupName='{world.asg_name}', "
        "DesiredCapacity=4, MaxSize=4)"
    )
    outcome = action.run(params(add=2), ctx)

    assert outcome.ok, outcome.error
    added = [a["instance_id"] for a in outcome.output["added"]]
    members = world.asg_instances()
    assert len(members) == 4 and set(added) == set(members) - set(world.instance_ids)
    group = world.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[world.asg_name]
    )["AutoScalingGroups"][0]
    assert (group["DesiredCapacity"], group["MaxSize"]) == (4, 4)

    assert outcome.undo is not None
    undone = action.undo(outcome.undo, ctx)

    assert undone.ok, undone.error
    assert world.asg_instances() == sorted(world.instance_ids)  # the originals stay
    group = world.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[world.asg_name]
    )["AutoScalingGroups"][0]
    assert (group["DesiredCapacity"], group["MaxSize"]) == (2, 2)
    assert all(world.states()[i] == "terminated" for i in added)


def test_scale_drill_changes_nothing(aws: AwsWorld, make_ctx: Callable[..., Context]) -> None:
    world = aws.build(2)
    ctx = make_ctx(world.inventory(), dry_run=True, run_id="run-drill")
    before = (world.states(), world.targets())

    plan = get_action(ACTION).plan(params(add=2), ctx)

    runs = [d for d in plan.details if d.startswith("ec2.RunInstances(")]
    assert len(runs) == 2
    assert all(f"'LaunchTemplateName': '{world.launch_template}'" in d for d in runs)
    assert len({d.split("ClientToken=")[1][:60] for d in runs}) == 2  # one token per new proxy
    assert any(d.startswith("elbv2.RegisterTargets(") for d in plan.details)
    calls = ctx.provider(AwsProvider).calls
    assert all(name.split(".")[1].startswith("Describe") for name in calls)
    assert (world.states(), world.targets()) == before
    assert intents(ctx) == []


def test_resumed_scale_adopts_what_was_launched(
    aws: AwsWorld, make_ctx: Callable[..., Context]
) -> None:
    """The process dies (a BaseException from a botocore hook) after the second launch."""
    world = aws.build(2)
    inventory = world.inventory()
    action = get_action(ACTION)
    p = params(add=3)
    first = make_ctx(inventory, run_id="run-resume", step_id="add")
    intent = first.journal.append(
        "intent",
        run_id="run-resume",
        step="add",
        action=ACTION,
        scope="step",
        params=p.model_dump(),
    )
    launches = 0

    class Crash(BaseException):
        pass

    def crash(model: Any, **_: Any) -> None:
        nonlocal launches
        if model.name == "RunInstances":
            launches += 1
            if launches == 3:
                raise Crash

    first.provider(AwsProvider).client("ec2").meta.events.register("before-call", crash)
    with pytest.raises(Crash):
        action.run(p, first)
    assert len(world.states()) == 4

    resumed = make_ctx(inventory, run_id="run-resume", step_id="add")
    verdict = action.reconcile(intent, resumed)
    assert verdict.state == "not_applied" and "2 of 3" in verdict.detail
    outcome = action.run(p, resumed)

    assert outcome.ok, outcome.error
    assert len(world.states()) == 5  # two adopted, one launched
    assert action.reconcile(intent, resumed).state == "applied"


def test_scale_bad_input(aws: AwsWorld, make_ctx: Callable[..., Context]) -> None:
    world = aws.build(1)
    ctx = make_ctx(world.inventory())
    with pytest.raises(InputError, match="unknown cluster 'nope'"):
        get_action(ACTION).run(params(cluster="nope", add=1), ctx)
    with pytest.raises(ValueError):
        params(add=0)
    assert intents(ctx) == []


def test_resumed_group_scale_does_not_raise_capacity_twice(
    aws: AwsWorld, make_ctx: Callable[..., Context]
) -> None:
    """The process dies (a BaseException from a botocore hook) right after the capacity change."""
    world = aws.build(2, asg=True)
    inventory = world.inventory(discover=True)
    action = get_action(ACTION)
    first = make_ctx(inventory, run_id="run-asg-resume", step_id="add")
    seen: list[str] = []

    class Crash(BaseException):
        pass

    def crash(model: Any, **_: Any) -> None:
        seen.append(model.name)
        if model.name == "DescribeAutoScalingGroups" and "UpdateAutoScalingGroup" in seen:
            raise Crash

    first.provider(AwsProvider).client("autoscaling").meta.events.register("before-call", crash)
    with pytest.raises(Crash):
        action.run(params(add=1), first)

    resumed = make_ctx(inventory, run_id="run-asg-resume", step_id="add")
    outcome = action.run(params(add=1), resumed)

    assert outcome.ok, outcome.error
    assert len(world.asg_instances()) == 3
    assert intents(resumed) == ["autoscaling.update_auto_scaling_group"]
    assert outcome.undo is not None and outcome.undo["previous_desired"] == 2
