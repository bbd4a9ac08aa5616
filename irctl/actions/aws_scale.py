"""`aws.scale_proxies`: add N proxies to a cluster and wait until they serve.

With an Auto Scaling group: raise desired capacity (and max size when needed) and wait
for N new InService instances that the target group reports healthy. Otherwise: launch
N instances from the launch template, spread over the subnets the cluster's proxies use
and tagged like them, register them and wait until healthy. Its undo deregisters and
terminates exactly the instances it added (through the group, lowering desired capacity).
A failure on the way takes out what was added.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from irctl.actions import base
from irctl.actions.aws import (
    NEW,
    TAG_ADDED,
    TAG_RUN,
    TAG_STEP,
    ApiCall,
    Wait,
    aws_of,
    client_token,
    copyable_tags,
    execute,
    step_key,
    tag_list,
    tagged_instances,
    tags_of,
    target_group,
    template_spec,
    wait_for,
)
from irctl.actions.base import Context, Effect, Outcome, Plan, Reconciled
from irctl.errors import InputError, IrctlError


class ScaleProxies(base.BaseAction):
    name = "aws.scale_proxies"
    description = "add proxies to a cluster (through its Auto Scaling group or launch template)"
    effect = Effect.MUTATE
    reversible = True

    class Params(base.Params):
        cluster: str
        add: int = Field(ge=1, le=100)

    def plan(self, params: Any, ctx: Context) -> Plan:
        spec = ctx.inventory.cluster(params.cluster)
        target_group(params.cluster, spec)
        if spec.autoscaling_group:
            from irctl.actions.aws_scale_asg import group_plan

            steps, how = group_plan(ctx, spec.autoscaling_group, params.add)
        else:
            steps = [
                *launch_calls(ctx, params.cluster, params.add),
                *after_launch(ctx, params, [NEW]),
            ]
            how = f"template {spec.launch_template}"
        return Plan(
            summary=f"add {params.add} proxies to {params.cluster} through {how}",
            details=[s.text() for s in steps],
            targets=[params.cluster],
            reversible=True,
            data={"calls": [s.to_dict() for s in steps]},
        )

    def run(self, params: Any, ctx: Context) -> Outcome:
        spec = ctx.inventory.cluster(params.cluster)
        target_group(params.cluster, spec)
        if spec.autoscaling_group:
            from irctl.actions.aws_scale_asg import scale_group

            return scale_group(ctx, params.cluster, spec.autoscaling_group, params.add)
        return scale_from_template(ctx, params.cluster, params.add)

    def undo(self, record: dict[str, Any], ctx: Context) -> Outcome:
        from irctl.actions.aws_scale_asg import remove_added

        return remove_added(ctx, record)

    def reconcile(self, intent: dict[str, Any], ctx: Context) -> Reconciled:
        from irctl.actions.aws_scale_asg import reconcile_scale

        return reconcile_scale(ctx, intent)


def launch_calls(ctx: Context, cluster: str, add: int) -> list[ApiCall]:
    """One RunInstances per new proxy: each gets its own subnet (round robin) and token."""
    from irctl.discovery import proxies_for

    spec = ctx.inventory.cluster(cluster)
    ids = [p.instance_id for p in proxies_for(ctx, cluster) if p.instance_id]
    current = aws_of(ctx).instances(ids) if ids else []
    if not current:
        raise InputError(
            f"cluster {cluster!r} has no proxy instance to copy subnet and tags from",
            "list its proxies (with instance_id) in the inventory or set discover",
        )
    subnets = sorted({i["SubnetId"] for i in current if i.get("SubnetId")})
    base_tags = {k: v for k, v in copyable_tags(current[0]).items() if k != "Name"}
    run_id, step = ctx.run_id, step_key(ctx.step_id, ctx.item_key)
    calls = []
    for index in range(add):
        tags = base_tags | {
            "Name": f"{cluster}-proxy-{run_id[-8:]}-{index + 1}",
            TAG_RUN: run_id,
            TAG_STEP: step,
            TAG_ADDED: str(index),
        }
        calls.append(
            ApiCall(
                "ec2",
                "run_instances",
                {
                    "LaunchTemplate": template_spec(cluster, spec),
                    "MinCount": 1,
                    "MaxCount": 1,
                    "SubnetId": subnets[index % len(subnets)],
                    "ClientToken": client_token(run_id, step, f"{cluster}/add/{index}"),
                    "TagSpecifications": [{"ResourceType": "instance", "Tags": tag_list(tags)}],
                },
            )
        )
    return calls


def targets_of(ctx: Context, cluster: str, ids: list[str]) -> dict[str, Any]:
    spec = ctx.inventory.cluster(cluster)
    return {
        "TargetGroupArn": target_group(cluster, spec),
        "Targets": [{"Id": i, "Port": spec.proxy_port} for i in ids],
    }


def after_launch(ctx: Context, params: Any, ids: list[str]) -> list[ApiCall | Wait]:
    return [
        Wait("new instances running and passing status checks"),
        ApiCall("elbv2", "register_targets", targets_of(ctx, params.cluster, ids)),
        Wait("new instances healthy in the target group (target_in_service)"),
    ]


def scale_from_template(ctx: Context, cluster: str, add: int) -> Outcome:
    from irctl.actions.aws_scale_asg import remove_added

    aws = aws_of(ctx)
    step = step_key(ctx.step_id, ctx.item_key)
    adopted = {
        tags_of(i).get(TAG_ADDED): str(i["InstanceId"])
        for i in tagged_instances(aws, ctx.run_id, step)
    }
    context = {"cluster": cluster, "step_key": step, "add": add}
    ids: list[str] = []
    for index, call in enumerate(launch_calls(ctx, cluster, add)):
        if str(index) in adopted:
            ids.append(adopted[str(index)])
            continue
        try:
            response = execute(ctx, call, [cluster], **context)
        except IrctlError as exc:
            undo = remove_added(ctx, _undo_record(ctx, cluster, ids))
            return Outcome.failed(
                f"launch {index + 1} of {add} failed: {exc.message}; {undo.summary}"
            )
        ids.append(str(response["Instances"][0]["InstanceId"]))
    tg_params = targets_of(ctx, cluster, ids)
    try:
        wait_for(
            ctx, "ec2", "instance_running", f"{len(ids)} new proxies starting", InstanceIds=ids
        )
        wait_for(ctx, "ec2", "instance_status_ok", "status checks", InstanceIds=ids)
        health = aws.target_health(tg_params["TargetGroupArn"])
        missing = [i for i in ids if i not in health]
        if missing:
            call = ApiCall("elbv2", "register_targets", targets_of(ctx, cluster, missing))
            execute(ctx, call, missing, **context)
        wait_for(
            ctx,
            "elbv2",
            "target_in_service",
            f"{len(ids)} new proxies turning healthy",
            **tg_params,
        )
    except IrctlError as exc:
        undo = remove_added(ctx, _undo_record(ctx, cluster, ids))
        return Outcome.failed(f"new proxies did not become healthy ({exc.message}); {undo.summary}")
    return _added(ctx, cluster, ids, mode="launch_template")


def _undo_record(ctx: Context, cluster: str, ids: list[str], **extra: Any) -> dict[str, Any]:
    spec = ctx.inventory.cluster(cluster)
    return {
        "cluster": cluster,
        "mode": "autoscaling_group" if spec.autoscaling_group else "launch_template",
        "instance_ids": ids,
        "target_group_arn": spec.target_group_arn,
        "port": spec.proxy_port,
        **extra,
    }


def _added(ctx: Context, cluster: str, ids: list[str], *, mode: str, **extra: Any) -> Outcome:
    from irctl.discovery import proxy_of, record_added

    proxies = [proxy_of(i) for i in aws_of(ctx).instances(ids)]
    message = record_added(ctx.inventory, ctx.settings, cluster, proxies, ctx.run_id)
    if message:
        ctx.ui.warn(message)
    added = [{"name": p.name, "instance_id": p.instance_id, "address": p.address} for p in proxies]
    return Outcome(
        ok=True,
        output={"cluster": cluster, "mode": mode, "count": len(ids), "added": added},
        summary=f"added {len(ids)} proxies to {cluster}: {', '.join(ids[:10])}",
        targets=ids,
        undo=_undo_record(ctx, cluster, ids, **extra),
    )
