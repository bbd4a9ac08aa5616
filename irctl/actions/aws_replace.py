"""`aws.replace_proxy`: put a new machine in front of clients, then retire the old one.

With the cluster's Auto Scaling group the group replaces the instance (terminated, or
detached with `keep_old`, without lowering desired capacity). Otherwise a replacement
is launched from the launch template in the old instance's subnet, registered, and only
once the target group reports it healthy is the old one deregistered (draining shown),
then terminated or, with `keep_old`, stopped and tagged for forensics. A failure before
the old instance is deregistered rolls back: the new one is deregistered and terminated
and the old one keeps serving.

Each stage checks the world first (replacement already tagged with this run and step?
already registered? old already deregistered?), so a resumed run finishes the job
instead of launching a second instance.
"""

from __future__ import annotations

from typing import Any

from irctl.actions import base
from irctl.actions.aws import (
    NEW,
    TAG_REPLACES,
    TAG_RUN,
    TAG_STEP,
    ApiCall,
    Wait,
    aws_of,
    client_token,
    copyable_tags,
    execute,
    tag_list,
    tagged_instances,
    template_spec,
    wait_for,
)
from irctl.actions.aws_preflight import Preflight, preflight
from irctl.actions.base import Context, Effect, Outcome, Plan, Reconciled
from irctl.errors import IrctlError, one_line

GONE = ("shutting-down", "terminated", "stopping", "stopped")


class ReplaceProxy(base.BaseAction):
    name = "aws.replace_proxy"
    description = "replace a proxy machine with a new one, then retire the old one"
    effect = Effect.MUTATE
    reversible = True  # when the old machine is kept (`keep_old`); see `undo`

    class Params(base.Params):
        cluster: str
        proxy: str
        keep_old: bool = False
        force: bool = False

    def plan(self, params: Any, ctx: Context) -> Plan:
        pre = preflight(ctx, params.cluster, params.proxy, params.force)
        steps = planned_steps(pre, params, ctx)
        warnings = [f"forced: {pre.forced}"] if pre.forced else []
        if not params.keep_old:
            warnings.append(
                f"{pre.old_id} will be terminated: pass keep_old (--keep-old) to keep it stopped"
            )
        how = f"group {pre.asg_name}" if pre.asg_name else f"template {pre.spec.launch_template}"
        return Plan(
            summary=f"replace {pre.proxy.name} ({pre.old_id}) in {pre.cluster} through {how}",
            details=[s.text() for s in steps],
            targets=[pre.old_id],
            reversible=params.keep_old,
            data={"mode": pre.mode, "calls": [s.to_dict() for s in steps]},
            warnings=warnings,
        )

    def run(self, params: Any, ctx: Context) -> Outcome:
        pre = preflight(ctx, params.cluster, params.proxy, params.force)
        if pre.forced:
            ctx.journal.append(
                "override",
                run_id=ctx.run_id,
                operator=ctx.operator,
                step=ctx.step_id,
                item=ctx.item_key,
                action=self.name,
                targets=[pre.old_id],
                reason=pre.forced,
            )
            ctx.ui.warn(f"forced: {pre.forced}")
        if pre.asg_name:
            from irctl.actions.aws_replace_asg import replace_in_group

            return replace_in_group(ctx, pre, params.keep_old)
        return replace_from_template(ctx, pre, params.keep_old)

    def undo(self, record: dict[str, Any], ctx: Context) -> Outcome:
        if record.get("autoscaling_group"):
            from irctl.actions.aws_replace_group_undo import undo_group_replacement

            return undo_group_replacement(ctx, record)
        from irctl.actions.aws_replace_undo import undo_replacement

        return undo_replacement(ctx, record)

    def reconcile(self, intent: dict[str, Any], ctx: Context) -> Reconciled:
        from irctl.actions.aws_replace_undo import reconcile_replacement

        return reconcile_replacement(ctx, intent)


def launch_call(pre: Preflight) -> ApiCall:
    tags = copyable_tags(pre.old) | {
        TAG_RUN: pre.run_id,
        TAG_STEP: pre.step,
        TAG_REPLACES: pre.old_id,
    }
    return ApiCall(
        "ec2",
        "run_instances",
        {
            "LaunchTemplate": template_spec(pre.cluster, pre.spec),
            "MinCount": 1,
            "MaxCount": 1,
            "SubnetId": pre.old["SubnetId"],
            "ClientToken": client_token(pre.run_id, pre.step, pre.old_id),
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tag_list(tags)}],
        },
    )


def target_call(pre: Preflight, method: str, instance_id: str) -> ApiCall:
    return ApiCall(
        "elbv2",
        method,
        {"TargetGroupArn": pre.tg, "Targets": [{"Id": instance_id, "Port": pre.port}]},
    )


def retire_calls(pre: Preflight, keep_old: bool, new_id: str) -> list[ApiCall]:
    ids = {"InstanceIds": [pre.old_id]}
    if not keep_old:
        return [ApiCall("ec2", "terminate_instances", ids)]
    marks = {"irctl:retired-by": pre.run_id, "irctl:replaced-by": new_id, "irctl:forensics": "keep"}
    return [
        ApiCall("ec2", "stop_instances", ids),
        ApiCall("ec2", "create_tags", {"Resources": [pre.old_id], "Tags": tag_list(marks)}),
    ]


def planned_steps(pre: Preflight, params: Any, ctx: Context) -> list[ApiCall | Wait]:
    if pre.asg_name:
        from irctl.actions.aws_replace_asg import group_steps

        return group_steps(pre, params.keep_old)
    delay = aws_of(ctx).deregistration_delay(pre.tg)
    return [
        launch_call(pre),
        Wait(f"{NEW} running and passing status checks (instance_running, instance_status_ok)"),
        target_call(pre, "register_targets", NEW),
        Wait(f"{NEW} healthy in the target group (target_in_service)"),
        target_call(pre, "deregister_targets", pre.old_id),
        Wait(f"{pre.old_id} draining: deregistration delay {delay:g}s (target_deregistered)"),
        *retire_calls(pre, params.keep_old, NEW),
    ]


def replace_from_template(ctx: Context, pre: Preflight, keep_old: bool) -> Outcome:
    aws = aws_of(ctx)
    found = tagged_instances(aws, pre.run_id, pre.step, **{TAG_REPLACES: pre.old_id})
    if found:
        new_id = str(found[0]["InstanceId"])
        ctx.ui.info(f"adopting {new_id}: launched for this step before the interruption")
    else:
        response = execute(ctx, launch_call(pre), [pre.old_id], **pre.context())
        new_id = str(response["Instances"][0]["InstanceId"])
    registered = new_id in pre.health
    try:
        wait_for(ctx, "ec2", "instance_running", f"{new_id} starting", InstanceIds=[new_id])
        wait_for(ctx, "ec2", "instance_status_ok", f"{new_id} status checks", InstanceIds=[new_id])
        if not registered:
            execute(ctx, target_call(pre, "register_targets", new_id), [new_id], **pre.context())
            registered = True
        wait_for(
            ctx,
            "elbv2",
            "target_in_service",
            f"{new_id} turning healthy in the target group",
            TargetGroupArn=pre.tg,
            Targets=[{"Id": new_id, "Port": pre.port}],
        )
    except IrctlError as exc:
        notes = rollback(ctx, pre, new_id, registered)
        return Outcome.failed(
            f"replacement {new_id} did not become healthy ({exc.message}); {notes}",
            old_instance_id=pre.old_id,
            new_instance_id=new_id,
            rolled_back=True,
        )
    if aws.target_health(pre.tg).get(pre.old_id) not in (None, "unused", "draining"):
        execute(
            ctx, target_call(pre, "deregister_targets", pre.old_id), [pre.old_id], **pre.context()
        )
    delay = aws.deregistration_delay(pre.tg)
    wait_for(
        ctx,
        "elbv2",
        "target_deregistered",
        f"draining {pre.old_id} (deregistration delay {delay:g}s)",
        timeout=delay + ctx.inventory.aws.wait_timeout,
        total=delay,
        TargetGroupArn=pre.tg,
        Targets=[{"Id": pre.old_id, "Port": pre.port}],
    )
    if pre.old["State"]["Name"] not in GONE:
        for call in retire_calls(pre, keep_old, new_id):
            execute(ctx, call, [pre.old_id], **pre.context())
    return finished(ctx, pre, new_id, keep_old, mode="launch_template")


def rollback(ctx: Context, pre: Preflight, new_id: str, registered: bool) -> str:
    """Take the failed replacement out; the old instance was never touched."""
    problems: list[str] = []
    calls = [target_call(pre, "deregister_targets", new_id)] if registered else []
    calls.append(ApiCall("ec2", "terminate_instances", {"InstanceIds": [new_id]}))
    for call in calls:
        try:
            execute(ctx, call, [new_id], rollback=True, **pre.context())
        except IrctlError as exc:
            problems.append(exc.message)
    if problems:
        return (
            f"rollback incomplete: {one_line('; '.join(problems), 200)}; {pre.old_id} still serves"
        )
    return f"rolled back: terminated {new_id}; {pre.old_id} still serves"


def finished(ctx: Context, pre: Preflight, new_id: str, keep_old: bool, *, mode: str) -> Outcome:
    from irctl.discovery import proxy_of, record_replacement

    new = aws_of(ctx).instances([new_id])[0]
    new_proxy = proxy_of(new, name=pre.proxy.name)
    message = record_replacement(
        ctx.inventory, ctx.settings, pre.cluster, pre.proxy, new_proxy, ctx.run_id
    )
    if message:
        ctx.ui.warn(message)
    output = {
        "cluster": pre.cluster,
        "proxy": pre.proxy.name,
        "mode": mode,
        "old_instance_id": pre.old_id,
        "old_address": pre.proxy.address,
        "new_instance_id": new_id,
        "new_address": new_proxy.address,
        "kept_old": keep_old,
    }
    undo = None
    if keep_old:
        undo = {**output, "target_group_arn": pre.tg, "port": pre.port}
        if mode == "autoscaling_group":
            undo["autoscaling_group"] = pre.asg_name
    return Outcome(
        ok=True,
        output=output,
        summary=f"{pre.proxy.name}: {pre.old_id} -> {new_id} ({new_proxy.address})",
        targets=[pre.old_id, new_id],
        undo=undo,
    )
