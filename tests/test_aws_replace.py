"""aws.replace_proxy against moto in server mode (a real HTTP endpoint on loopback).

What moto does, read from its 5.x source: a registered instance target reports
`healthy` at once (unless the instance is stopped), a deregistered one disappears from
DescribeTargetHealth, instances are `running` with status `ok` as soon as they launch,
and ClientToken is accepted but not deduplicated. So the flows below exercise real
calls and states; where AWS would be slow or unhealthy, a botocore `after-call` hook
rewrites moto's answer (said in each such test).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import pytest

from irctl.actions import get_action
from irctl.actions.base import Context
from irctl.discovery import effective_proxies
from irctl.errors import InputError, RefusedError
from irctl.providers.aws import AwsProvider
from irctl.ui import QuietUI

if TYPE_CHECKING:
    from tests.moto_fixtures import AwsWorld

pytest_plugins = ["tests.moto_fixtures"]

ACTION = "aws.replace_proxy"


def params(**kw: Any) -> Any:
    return get_action(ACTION).Params(**{"cluster": "use1-a", **kw})


def mutations(ctx: Context) -> list[tuple[str, str, bool | None]]:
    """(event, operation, ok) of the call-level journal records, in order."""
    return [
        (r["event"], r["action"], r.get("ok"))
        for r in ctx.journal.records()
        if r["event"] in ("intent", "result")
    ]


def rewrite_health(ctx: Context, fake: Callable[[str, str], str]) -> None:
    """Rewrite each target's state in DescribeTargetHealth answers before irctl sees them."""

    def hook(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "DescribeTargetHealth":
            for d in parsed.get("TargetHealthDescriptions", []):
                d["TargetHealth"]["State"] = fake(d["Target"]["Id"], d["TargetHealth"]["State"])

    ctx.provider(AwsProvider).client("elbv2").meta.events.register("after-call", hook)


def test_replace_through_launch_template(aws: AwsWorld, make_ctx: Callable[..., Context]) -> None:
    world = aws.build(3)
    ctx = make_ctx(world.inventory(), run_id="run-lt", step_id="replace")
    old = world.instance_ids[1]
    old_subnet = world.instances()[old]["SubnetId"]

    outcome = get_action(ACTION).run(params(proxy="proxy-2"), ctx)

    assert outcome.ok, outcome.error
    new = outcome.output["new_instance_id"]
    states = world.states()
    assert states[old] == "terminated" and states[new] == "running"
    assert len(states) == 4
    targets = world.targets()
    assert targets.get(new) == "healthy" and old not in targets and len(targets) == 3
    assert world.instances()[new]["SubnetId"] == old_subnet
    tags = world.tags(new)
    assert tags["Name"] == "proxy-2" and tags["cluster"] == "use1-a"
    assert tags["irctl:run-id"] == "run-lt" and tags["irctl:step"] == "replace"
    assert tags["irctl:replaces"] == old
    # Every change is an intent then a result, in the order that keeps the old one serving.
    assert mutations(ctx) == [
        ("intent", "ec2.run_instances", None),
        ("result", "ec2.run_instances", True),
        ("intent", "elbv2.register_targets", None),
        ("result", "elbv2.register_targets", True),
        ("intent", "elbv2.deregister_targets", None),
        ("result", "elbv2.deregister_targets", True),
        ("intent", "ec2.terminate_instances", None),
        ("result", "ec2.terminate_instances", True),
    ]
    results = [r for r in ctx.journal.records() if r["event"] == "result"]
    assert results[0]["outcome"]["instance_ids"] == [new]
    assert all(
        r["params"]["old_instance_id"] == old
        for r in ctx.journal.records()
        if r["event"] == "intent"
    )
    # The static inventory is stale now: later commands use the record, and the operator is told.
    proxies = effective_proxies(ctx.inventory, ctx.settings, "use1-a")
    assert [p.instance_id for p in proxies] == [world.instance_ids[0], new, world.instance_ids[2]]
    assert proxies[1].name == "proxy-2" and proxies[1].address == world.address(new)
    assert any("Update the file" in m for m in ctx.ui.messages)


def test_keep_old_stops_and_tags_and_undo_brings_it_back(
    aws: AwsWorld, make_ctx: Callable[..., Context]
) -> None:
    world = aws.build(2)
    ctx = make_ctx(world.inventory(), run_id="run-keep")
    old = world.instance_ids[0]
    action = get_action(ACTION)

    outcome = action.run(params(proxy=old, keep_old=True), ctx)

    assert outcome.ok, outcome.error
    new = outcome.output["new_instance_id"]
    assert world.states()[old] == "stopped"
    assert world.tags(old)["irctl:retired-by"] == "run-keep"
    assert world.tags(old)["irctl:replaced-by"] == new
    assert old not in world.targets()
    assert outcome.undo is not None

    undone = action.undo(outcome.undo, ctx)

    assert undone.ok, undone.error
    assert world.states()[old] == "running" and world.states()[new] == "terminated"
    assert world.targets().get(old) == "healthy" and new not in world.targets()
    assert old in {p.instance_id for p in effective_proxies(ctx.inventory, ctx.settings, "use1-a")}


def test_replace_through_autoscaling_group(aws: AwsWorld, make_ctx: Callable[..., Context]) -> None:
    world = aws.build(3, asg=True)
    ctx = make_ctx(world.inventory(discover=True), run_id="run-asg")
    old = world.instance_ids[0]
    drill = make_ctx(world.inventory(discover=True), dry_run=True)
    plan = get_action(ACTION).plan(params(proxy=old), drill)
    assert plan.details[0] == (
        "autoscaling.TerminateInstanceInAutoScalingGroup("
        f"InstanceId='{old}', ShouldDecrementDesiredCapacity=False)"
    )
    assert world.asg_instances() == sorted(world.instance_ids)

    outcome = get_action(ACTION).run(params(proxy=old), ctx)

    assert outcome.ok, outcome.error
    new = outcome.output["new_instance_id"]
    assert new not in world.instance_ids
    assert world.states()[old] == "terminated"
    members = world.asg_instances()
    assert old not in members and new in members and len(members) == 3  # capacity kept
    assert world.targets()[new] == "healthy"
    assert [op for ev, op, _ in mutations(ctx) if ev == "intent"] == [
        "autoscaling.terminate_instance_in_auto_scaling_group"
    ]
    # Discovery from tags sees the group's new member without any record.
    found = {p.instance_id for p in effective_proxies(ctx.inventory, ctx.settings, "use1-a")}
    assert new in found and old not in found
    assert not (ctx.settings.state_dir / "fleet").exists()


def test_refuses_the_last_healthy_target(aws: AwsWorld, make_ctx: Callable[..., Context]) -> None:
    world = aws.build(1)
    ctx = make_ctx(world.inventory())
    action = get_action(ACTION)
    before = (world.states(), world.targets())

    with pytest.raises(RefusedError, match="last healthy target") as refused:
        action.plan(params(proxy="proxy-1"), ctx)
    assert "--force" in (refused.value.hint or "")
    with pytest.raises(RefusedError):
        action.run(params(proxy="proxy-1"), ctx)

    assert (world.states(), world.targets()) == before
    assert mutations(ctx) == []

    forced = action.run(params(proxy="proxy-1", force=True), ctx)
    assert forced.ok, forced.error
    overrides = [r for r in ctx.journal.records() if r["event"] == "override"]
    assert len(overrides) == 1 and "last healthy target" in overrides[0]["reason"]


def test_rollback_when_the_new_instance_never_turns_healthy(
    aws: AwsWorld, make_ctx: Callable[..., Context]
) -> None:
    """moto reports every registered target healthy at once; an `after-call` hook makes the
    replacement report `unhealthy` forever, as a proxy that never comes up would in AWS."""
    world = aws.build(2)
    ctx = make_ctx(world.inventory(timeout=0.3))
    originals = set(world.instance_ids)
    rewrite_health(ctx, lambda iid, state: state if iid in originals else "unhealthy")
    old = world.instance_ids[1]

    outcome = get_action(ACTION).run(params(proxy="proxy-2"), ctx)

    assert not outcome.ok
    assert "rolled back" in (outcome.error or "")
    new = outcome.output["new_instance_id"]
    assert world.states()[new] == "terminated"
    assert world.states()[old] == "running"
    assert world.targets() == {i: "healthy" for i in world.instance_ids}
    ops = [op for ev, op, _ in mutations(ctx) if ev == "intent"]
    assert ops == [
        "ec2.run_instances",
        "elbv2.register_targets",
        "elbv2.deregister_targets",
        "ec2.terminate_instances",
    ]
    rollback_intents = [
        r for r in ctx.journal.records() if r["event"] == "intent" and r["params"].get("rollback")
    ]
    assert [r["targets"] for r in rollback_intents] == [[new], [new]]
    # The old instance was never deregistered: every rollback call names only the new one.
    assert all(old not in str(r["params"].get("Targets", "")) for r in rollback_intents)


class Crash(BaseException):
    """Stands in for the process dying: not an Exception, so no code path catches it."""


def test_resume_after_crash_between_launch_and_registration_launches_nothing(
    aws: AwsWorld, make_ctx: Callable[..., Context]
) -> None:
    world = aws.build(3)
    inventory = world.inventory()
    action = get_action(ACTION)
    p = params(proxy="proxy-3")
    first = make_ctx(inventory, run_id="run-crash", step_id="replace")
    # The engine's step-level intent (scope=step), written before run(), never gets a result.
    intent = first.journal.append(
        "intent",
        run_id="run-crash",
        step="replace",
        action=ACTION,
        scope="step",
        params=p.model_dump(mode="json"),
    )

    def crash(model: Any, **_: Any) -> None:
        if model.name == "RegisterTargets":
            raise Crash

    first.provider(AwsProvider).client("elbv2").meta.events.register("before-call", crash)
    with pytest.raises(Crash):
        action.run(p, first)
    launched = [i for i in world.states() if i not in world.instance_ids]
    assert len(launched) == 1 and launched[0] not in world.targets()

    resumed = make_ctx(inventory, run_id="run-crash", step_id="replace")
    verdict = action.reconcile(intent, resumed)
    assert verdict.state == "not_applied"
    assert launched[0] in verdict.detail

    outcome = action.run(p, resumed)

    assert outcome.ok, outcome.error
    assert outcome.output["new_instance_id"] == launched[0]
    assert len(world.states()) == 4  # three originals and the one replacement
    launches = [
        r
        for r in resumed.journal.records()
        if r["event"] == "intent" and r["action"] == "ec2.run_instances"
    ]
    assert len(launches) == 1
    assert action.reconcile(intent, resumed).state == "applied"


def test_drill_plans_exact_calls_and_changes_nothing(
    aws: AwsWorld, make_ctx: Callable[..., Context]
) -> None:
    world = aws.build(3)
    ctx = make_ctx(world.inventory(), dry_run=True, run_id="run-drill", step_id="replace")
    old = world.instance_ids[2]
    subnet = world.instances()[old]["SubnetId"]
    before = (world.states(), world.targets())

    plan = get_action(ACTION).plan(params(proxy=world.address(old)), ctx)

    text = "\n".join(plan.details)
    assert (
        f"ec2.RunInstances(LaunchTemplate={{'LaunchTemplateName': '{world.launch_template}'}}"
        in text
    )
    assert f"SubnetId='{subnet}'" in text and "ClientToken='irctl-" in text
    assert "{'Key': 'irctl:replaces', 'Value': '" + old + "'}" in text
    assert (
        f"elbv2.RegisterTargets(TargetGroupArn='{world.target_group_arn}', Targets=[{{'Id': '<new>'"
        in text
    )
    deregister = f"elbv2.DeregisterTargets(TargetGroupArn='{world.target_group_arn}'"
    assert f"{deregister}, Targets=[{{'Id': '{old}'" in text
    assert plan.details[-1] == f"ec2.TerminateInstances(InstanceIds=['{old}'])"
    assert [c["call"] for c in plan.data["calls"] if "call" in c] == [
        "ec2.run_instances",
        "elbv2.register_targets",
        "elbv2.deregister_targets",
        "ec2.terminate_instances",
    ]
    # Planning only read: every API call it made was a Describe*.
    calls = ctx.provider(AwsProvider).calls
    assert calls and all(name.split(".")[1].startswith("Describe") for name in calls)
    assert (world.states(), world.targets()) == before
    assert mutations(ctx) == []


def test_unknown_proxy_and_cluster_are_one_line_and_change_nothing(
    aws: AwsWorld, make_ctx: Callable[..., Context]
) -> None:
    world = aws.build(2)
    ctx = make_ctx(world.inventory())
    before = (world.states(), world.targets())
    action = get_action(ACTION)
    with pytest.raises(InputError, match="unknown proxy 'proxy-9'") as err:
        action.run(params(proxy="proxy-9"), ctx)
    assert "proxy-1" in (err.value.hint or "")
    with pytest.raises(InputError, match="unknown cluster 'nope'"):
        action.run(params(cluster="nope", proxy="proxy-1"), ctx)
    assert "\n" not in str(err.value)
    assert (world.states(), world.targets()) == before
    assert mutations(ctx) == []


class RecordingUI(QuietUI):
    """Keeps every progress bar's description and updates, as a terminal would show them."""

    def __init__(self) -> None:
        super().__init__(assume_yes=True)
        self.bars: list[tuple[str, float | None, list[float]]] = []

    def progress(self, description: str, total: float | None = None) -> Any:
        updates: list[float] = []
        self.bars.append((description, total, updates))

        class Bar:
            def update(
                self, completed: float | None = None, description: str | None = None
            ) -> None:
                updates.append(completed or 0.0)

        return nullcontext(Bar())


def test_draining_is_shown_and_waited_for_before_termination(
    aws: AwsWorld, make_ctx: Callable[..., Context]
) -> None:
    """moto drops a deregistered target at once; an `after-call` hook reports the old target
    `draining` for its next three health checks, as AWS does during the deregistration delay."""
    world = aws.build(2, drain_seconds=2)
    ui = RecordingUI()
    ctx = make_ctx(world.inventory(poll=0.05), ui=ui)
    old = world.instance_ids[0]
    drained = 0

    def draining(iid: str, state: str) -> str:
        nonlocal drained
        if iid == old and state == "unused" and drained < 3:
            drained += 1
            return "draining"
        return state

    rewrite_health(ctx, draining)
    terminated_after: list[int] = []

    def on_terminate(model: Any, **_: Any) -> None:
        if model.name == "TerminateInstances":
            terminated_after.append(drained)

    ctx.provider(AwsProvider).client("ec2").meta.events.register("before-call", on_terminate)

    outcome = get_action(ACTION).run(params(proxy=old), ctx)

    assert outcome.ok, outcome.error
    assert terminated_after == [3]
    bar = next(b for b in ui.bars if b[0].startswith(f"draining {old}"))
    assert "deregistration delay 2s" in bar[0] and bar[1] == 2
    assert len(bar[2]) >= 4  # one update per poll: three draining answers, then unused


def test_static_proxy_without_instance_id_resolves_by_address(
    aws: AwsWorld, make_ctx: Callable[..., Context]
) -> None:
    world = aws.build(2)
    inventory = world.inventory()
    for proxy in inventory["clusters"]["use1-a"]["proxies"]:
        del proxy["instance_id"]
    ctx = make_ctx(inventory)
    outcome = get_action(ACTION).run(params(proxy="proxy-1"), ctx)
    assert outcome.ok, outcome.error
    assert outcome.output["old_instance_id"] == world.instance_ids[0]
    assert world.states()[world.instance_ids[0]] == "terminated"


def test_group_replacement_resumed_after_crash_terminates_nothing_more(
    aws: AwsWorld, make_ctx: Callable[..., Context]
) -> None:
    """The process dies right after the group was told to terminate the old instance."""
    world = aws.build(3, asg=True)
    inventory = world.inventory(discover=True)
    old = world.instance_ids[1]
    action = get_action(ACTION)
    first = make_ctx(inventory, run_id="run-asg-crash", step_id="replace")
    seen: list[str] = []

    def crash(model: Any, **_: Any) -> None:
        seen.append(model.name)
        if model.name == "DescribeAutoScalingGroups" and (
            "TerminateInstanceInAutoScalingGroup" in seen
        ):
            raise Crash

    first.provider(AwsProvider).client("autoscaling").meta.events.register("before-call", crash)
    with pytest.raises(Crash):
        action.run(params(proxy=old), first)
    assert world.states()[old] == "terminated"
    members = world.asg_instances()

    resumed = make_ctx(inventory, run_id="run-asg-crash", step_id="replace")
    outcome = action.run(params(proxy=old), resumed)

    assert outcome.ok, outcome.error
    assert outcome.output["new_instance_id"] in set(members) - set(world.instance_ids)
    assert world.asg_instances() == members  # nothing else was terminated or launched
    terminations = [
        r
        for r in resumed.journal.records()
        if r["event"] == "intent" and r["action"].startswith("autoscaling.terminate")
    ]
    assert len(terminations) == 1
