"""Replacing a proxy through its Auto Scaling group.

The group does the launching: the old instance is terminated (or, with `keep_old`,
detached) without lowering desired capacity, and the group starts a new one from its
own launch template. irctl waits until the group has a new InService instance that the
target group reports healthy. There is nothing to roll back: the old instance is out
as soon as the group acts, which is why the last-healthy-target check comes first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from irctl.actions.aws import ApiCall, Wait, aws_of, execute, poll_until
from irctl.errors import IrctlError

if TYPE_CHECKING:
    from irctl.actions.aws_preflight import Preflight
    from irctl.actions.base import Context, Outcome


def group_steps(pre: Preflight, keep_old: bool) -> list[ApiCall | Wait]:
    from irctl.actions.aws_replace import retire_calls, target_call

    assert pre.asg_name is not None
    wait = Wait(
        f"group {pre.asg_name} has a new InService instance that is healthy in the target group"
    )
    if not keep_old:
        return [
            ApiCall(
                "autoscaling",
                "terminate_instance_in_auto_scaling_group",
                {"InstanceId": pre.old_id, "ShouldDecrementDesiredCapacity": False},
            ),
            wait,
        ]
    return [
        ApiCall(
            "autoscaling",
            "detach_instances",
            {
                "InstanceIds": [pre.old_id],
                "AutoScalingGroupName": pre.asg_name,
                "ShouldDecrementDesiredCapacity": False,
            },
        ),
        wait,
        target_call(pre, "deregister_targets", pre.old_id),
        *retire_calls(pre, True, "<new>"),
    ]


def replace_in_group(ctx: Context, pre: Preflight, keep_old: bool) -> Outcome:
    from irctl.actions.aws_replace import GONE, finished, retire_calls, target_call
    from irctl.actions.base import Outcome

    aws = aws_of(ctx)
    assert pre.asg is not None and pre.asg_name is not None
    members = sorted(i["InstanceId"] for i in pre.asg.get("Instances", []))
    # Members from before this replacement are never taken for the new one; a resumed
    # step reads them from its journaled call (bounded: exact up to 50 members).
    before = (pre.prior or {}).get("before") or members
    known = {str(i) for i in before} | {pre.old_id}
    if pre.old_id in members:
        first = group_steps(pre, keep_old)[0]
        assert isinstance(first, ApiCall)
        execute(ctx, first, [pre.old_id], before=members, **pre.context())

    def new_member() -> str | None:
        group = aws.auto_scaling_group(pre.asg_name or "")
        health = aws.target_health(pre.tg)
        for inst in group.get("Instances", []):
            iid = inst["InstanceId"]
            in_service = inst.get("LifecycleState") == "InService"
            if iid not in known and in_service and health.get(iid) == "healthy":
                return str(iid)
        return None

    try:
        new_id = poll_until(
            ctx, f"group {pre.asg_name} replacing {pre.old_id}: new instance healthy", new_member
        )
    except IrctlError as exc:
        return Outcome.failed(
            f"group {pre.asg_name} did not bring a healthy replacement for {pre.old_id}: "
            f"{exc.message}",
            old_instance_id=pre.old_id,
        )
    if keep_old:
        if aws.target_health(pre.tg).get(pre.old_id) not in (None, "unused", "draining"):
            execute(ctx, target_call(pre, "deregister_targets", pre.old_id), [pre.old_id])
        if pre.old["State"]["Name"] not in GONE:
            for call in retire_calls(pre, True, new_id):
                execute(ctx, call, [pre.old_id], **pre.context())
    return finished(ctx, pre, new_id, keep_old, mode="autoscaling_group")
