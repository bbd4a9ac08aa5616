"""Undo of a group replacement that kept the old machine (`keep_old` with an Auto Scaling group).

The replacement detached the old instance (desired capacity unchanged, so the group
launched a new one), deregistered and stopped it. Undo puts the group back as it was,
old machine serving first, new one out last, so capacity never drops below where it
was: start the old instance, attach it to the group (AttachInstances adds one to
desired capacity and registers it with the group's target groups), register it
explicitly too (idempotent; covers a group without the target group attached), wait
until it is healthy, deregister the new one and let it drain, then terminate it through
the group with ShouldDecrementDesiredCapacity so the group returns to its former size.
AttachInstances fails when desired + 1 would exceed the group's maximum, so the maximum
is raised by one for the swap and restored afterwards; both changes are journaled calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from irctl.actions.aws import ApiCall, aws_of, execute, poll_until, wait_for
from irctl.actions.base import Outcome
from irctl.errors import IrctlError

if TYPE_CHECKING:
    from irctl.actions.base import Context


def undo_group_replacement(ctx: Context, record: dict[str, Any]) -> Outcome:
    old_id, new_id = record["old_instance_id"], record["new_instance_id"]
    group_name, tg, port = record["autoscaling_group"], record["target_group_arn"], record["port"]
    context = {"cluster": record["cluster"], "undo_of": "aws.replace_proxy"}
    target = {"TargetGroupArn": tg, "Targets": [{"Id": old_id, "Port": int(port)}]}
    aws = aws_of(ctx)
    try:
        group = aws.auto_scaling_group(group_name)
        members = {i["InstanceId"] for i in group.get("Instances", [])}
        if new_id not in members:
            raise IrctlError(
                f"{new_id} is no longer in group {group_name}",
                "someone changed the group since the replacement; restore it by hand",
            )
        max_size, desired = int(group["MaxSize"]), int(group["DesiredCapacity"])
        raised = old_id not in members and desired + 1 > max_size
        if raised:
            execute(ctx, _max_size(group_name, desired + 1), [group_name], **context)
        execute(
            ctx, ApiCall("ec2", "start_instances", {"InstanceIds": [old_id]}), [old_id], **context
        )
        wait_for(ctx, "ec2", "instance_running", f"{old_id} starting", InstanceIds=[old_id])
        if old_id not in members:
            attach = {"InstanceIds": [old_id], "AutoScalingGroupName": group_name}
            execute(ctx, ApiCall("autoscaling", "attach_instances", attach), [old_id], **context)
        execute(ctx, ApiCall("elbv2", "register_targets", target), [old_id], **context)
        wait_for(ctx, "elbv2", "target_in_service", f"{old_id} healthy again", **target)
        # Drain before the group terminates it: a group does deregister first, but only
        # from the target groups attached to it, and irctl's own record is what it knows.
        leaving = {"TargetGroupArn": tg, "Targets": [{"Id": new_id, "Port": int(port)}]}
        execute(ctx, ApiCall("elbv2", "deregister_targets", leaving), [new_id], **context)
        wait_for(
            ctx,
            "elbv2",
            "target_deregistered",
            f"draining {new_id}",
            timeout=aws.deregistration_delay(tg) + ctx.inventory.aws.wait_timeout,
            **leaving,
        )
        terminate = {"InstanceId": new_id, "ShouldDecrementDesiredCapacity": True}
        execute(
            ctx,
            ApiCall("autoscaling", "terminate_instance_in_auto_scaling_group", terminate),
            [new_id],
            **context,
        )
        poll_until(
            ctx,
            f"group {group_name} lets {new_id} go",
            lambda: _left_group(ctx, group_name, new_id),
        )
        if raised:
            execute(ctx, _max_size(group_name, max_size), [group_name], **context)
    except IrctlError as exc:
        return Outcome.failed(f"undo of the replacement of {old_id} stopped: {exc.message}")
    return Outcome(
        ok=True,
        output={"restored_instance_id": old_id, "terminated_instance_id": new_id},
        summary=f"{old_id} serves again in {group_name}; {new_id} terminated",
        targets=[old_id, new_id],
    )


def _max_size(group_name: str, size: int) -> ApiCall:
    return ApiCall(
        "autoscaling",
        "update_auto_scaling_group",
        {"AutoScalingGroupName": group_name, "MaxSize": size},
    )


def _left_group(ctx: Context, group_name: str, instance_id: str) -> bool | None:
    group = aws_of(ctx).auto_scaling_group(group_name)
    still = any(i["InstanceId"] == instance_id for i in group.get("Instances", []))
    return None if still else True
