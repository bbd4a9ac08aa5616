"""Undo and reconcile for `aws.replace_proxy`.

Undo exists only when the old machine was kept (stopped, `keep_old`). For a replacement
from the launch template: start the old one, put it back in the target group, wait until
healthy, then deregister and terminate the replacement (a group replacement is undone in
`aws_replace_group_undo`).

Reconcile judges the whole step from the world, whichever of its journaled calls was
in doubt: `applied` when the replacement tagged with this run and step is healthy and
the old instance is out and retired; otherwise `not_applied`, because re-running the
step adopts a replacement that already exists (found by the same tags) instead of
launching a second one; `unknown` when the world cannot be read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from irctl.actions.aws import (
    TAG_REPLACES,
    ApiCall,
    aws_of,
    execute,
    step_key,
    tagged_instances,
    tags_of,
    wait_for,
)
from irctl.actions.base import Outcome, Reconciled
from irctl.errors import IrctlError

if TYPE_CHECKING:
    from irctl.actions.base import Context

RETIRED = ("shutting-down", "terminated", "stopping", "stopped")


def undo_replacement(ctx: Context, record: dict[str, Any]) -> Outcome:
    old_id, new_id = record["old_instance_id"], record["new_instance_id"]
    tg, port = record["target_group_arn"], int(record["port"])
    context = {"cluster": record["cluster"], "undo_of": "aws.replace_proxy"}
    targets = {"TargetGroupArn": tg}
    try:
        execute(
            ctx, ApiCall("ec2", "start_instances", {"InstanceIds": [old_id]}), [old_id], **context
        )
        wait_for(ctx, "ec2", "instance_running", f"{old_id} starting", InstanceIds=[old_id])
        execute(
            ctx,
            ApiCall(
                "elbv2", "register_targets", {**targets, "Targets": [{"Id": old_id, "Port": port}]}
            ),
            [old_id],
            **context,
        )
        wait_for(
            ctx,
            "elbv2",
            "target_in_service",
            f"{old_id} healthy again",
            **targets,
            Targets=[{"Id": old_id, "Port": port}],
        )
        execute(
            ctx,
            ApiCall(
                "elbv2",
                "deregister_targets",
                {**targets, "Targets": [{"Id": new_id, "Port": port}]},
            ),
            [new_id],
            **context,
        )
        wait_for(
            ctx,
            "elbv2",
            "target_deregistered",
            f"draining {new_id}",
            timeout=aws_of(ctx).deregistration_delay(tg) + ctx.inventory.aws.wait_timeout,
            **targets,
            Targets=[{"Id": new_id, "Port": port}],
        )
        execute(
            ctx,
            ApiCall("ec2", "terminate_instances", {"InstanceIds": [new_id]}),
            [new_id],
            **context,
        )
    except IrctlError as exc:
        return Outcome.failed(f"undo of the replacement of {old_id} stopped: {exc.message}")
    from irctl.discovery import FleetRecords

    if not ctx.inventory.cluster(record["cluster"]).discover:
        FleetRecords(ctx.settings.state_dir, record["cluster"]).append(
            "replace",
            ctx.run_id,
            old={"name": record["proxy"], "address": record["new_address"], "instance_id": new_id},
            new={"name": record["proxy"], "address": record["old_address"], "instance_id": old_id},
        )
    return Outcome(
        ok=True,
        output={"restored_instance_id": old_id, "terminated_instance_id": new_id},
        summary=f"{old_id} serves again; {new_id} terminated",
        targets=[old_id, new_id],
    )


def reconcile_replacement(ctx: Context, intent: dict[str, Any]) -> Reconciled:
    """`intent` is the engine's step-level intent (the action's params) or one call's intent."""
    params = intent.get("params") or {}
    run_id = str(intent.get("run_id") or ctx.run_id)
    step = str(params.get("step_key") or step_key(intent.get("step"), intent.get("item")))
    cluster = str(params.get("cluster", ""))
    try:
        spec = ctx.inventory.cluster(cluster)
        aws = aws_of(ctx)
        old_id = params.get("old_instance_id") or _old_from_journal(ctx, run_id, intent)
        if spec.autoscaling_group:
            if not old_id:
                return Reconciled("not_applied", detail="no call of this step reached AWS")
            return _reconcile_group(
                ctx, spec.autoscaling_group, spec.target_group_arn or "", old_id
            )
        found = tagged_instances(aws, run_id, step)
        if old_id:
            found = [i for i in found if tags_of(i).get(TAG_REPLACES) == old_id]
        if not found:
            return Reconciled(
                "not_applied",
                detail=f"no instance tagged with run {run_id}, step {step}: none launched",
            )
        new_id = str(found[0]["InstanceId"])
        old_id = old_id or tags_of(found[0]).get(TAG_REPLACES, "")
        health = aws.target_health(spec.target_group_arn or "")
        old_state = aws.instances([old_id])[0]["State"]["Name"]
    except IrctlError as exc:
        return Reconciled("unknown", detail=exc.message)
    if health.get(new_id) == "healthy" and old_id not in health and old_state in RETIRED:
        output = {
            "cluster": cluster,
            "mode": "launch_template",
            "old_instance_id": old_id,
            "new_instance_id": new_id,
            "new_address": found[0].get("PrivateIpAddress"),
            "kept_old": old_state in ("stopping", "stopped"),
        }
        return Reconciled(
            "applied",
            Outcome(
                ok=True, output=output, summary=f"{old_id} -> {new_id}", targets=[old_id, new_id]
            ),
            detail=f"{new_id} serves and {old_id} is {old_state}",
        )
    return Reconciled(
        "not_applied",
        detail=f"replacement {new_id} exists (this run): a re-run adopts it, launches none",
    )


def _old_from_journal(ctx: Context, run_id: str, intent: dict[str, Any]) -> str | None:
    """The old instance id from this step's call-level intents (written before each call)."""
    for record in ctx.journal.records(run_id):
        if (
            record.get("event") == "intent"
            and record.get("step") == intent.get("step")
            and record.get("item") == intent.get("item")
            and (record.get("params") or {}).get("old_instance_id")
        ):
            return str(record["params"]["old_instance_id"])
    return None


def _reconcile_group(ctx: Context, group_name: str, tg: str, old_id: str) -> Reconciled:
    aws = aws_of(ctx)
    group = aws.auto_scaling_group(group_name)
    members = {i["InstanceId"]: i.get("LifecycleState") for i in group.get("Instances", [])}
    if members.get(old_id) == "InService":
        return Reconciled("not_applied", detail=f"{old_id} is still in service in {group_name}")
    health = aws.target_health(tg)
    in_service = [i for i, s in members.items() if s == "InService" and health.get(i) == "healthy"]
    if len(in_service) >= int(group.get("DesiredCapacity", 0)):
        return Reconciled(
            "applied",
            Outcome(ok=True, output={"old_instance_id": old_id, "mode": "autoscaling_group"}),
            detail=f"{old_id} left {group_name}, which is back at capacity",
        )
    return Reconciled("unknown", detail=f"{old_id} left {group_name}; the group is still refilling")
