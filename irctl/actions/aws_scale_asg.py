"""Scaling through an Auto Scaling group, taking added proxies out again, and reconcile.

Raising desired capacity lets the group launch; irctl remembers which instances were
members before, so "the new ones" are exactly the InService instances that were not.
Taking them out terminates those instances through the group with
`ShouldDecrementDesiredCapacity`, so the group never picks an old proxy instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from irctl.actions.aws import (
    ApiCall,
    Wait,
    aws_of,
    execute,
    poll_until,
    step_key,
    tagged_instances,
    wait_for,
)
from irctl.actions.base import Outcome, Reconciled
from irctl.errors import IrctlError

if TYPE_CHECKING:
    from irctl.actions.base import Context


def _update_call(group: dict[str, Any], add: int) -> ApiCall:
    desired = int(group["DesiredCapacity"]) + add
    params: dict[str, Any] = {
        "AutoScalingGroupName": group["AutoScalingGroupName"],
        "DesiredCapacity": desired,
    }
    if desired > int(group["MaxSize"]):
        params["MaxSize"] = desired
    return ApiCall("autoscaling", "update_auto_scaling_group", params)


def group_plan(ctx: Context, name: str, add: int) -> tuple[list[ApiCall | Wait], str]:
    group = aws_of(ctx).auto_scaling_group(name)
    steps: list[ApiCall | Wait] = [
        _update_call(group, add),
        Wait(f"{add} new InService instances of {name} healthy in the target group"),
    ]
    return steps, f"group {name}"


def scale_group(ctx: Context, cluster: str, name: str, add: int) -> Outcome:
    from irctl.actions.aws_scale import _added

    aws = aws_of(ctx)
    prior = _prior_update(ctx, ctx.run_id, ctx.step_id, ctx.item_key)
    group = aws.auto_scaling_group(name)
    if prior is not None and int(group["DesiredCapacity"]) >= int(prior["DesiredCapacity"]):
        # A resumed step: capacity is still raised; raising it again would add 2N. (After a
        # failed attempt that took its instances out, capacity is back and this is skipped.)
        before = [str(i) for i in prior.get("before", [])]
        extra = {k: prior[k] for k in ("group", "previous_desired", "previous_max")}
    else:
        before = sorted(i["InstanceId"] for i in group.get("Instances", []))
        extra = {
            "group": name,
            "previous_desired": int(group["DesiredCapacity"]),
            "previous_max": int(group["MaxSize"]),
        }
        context = {"cluster": cluster, "step_key": step_key(ctx.step_id, ctx.item_key), **extra}
        execute(ctx, _update_call(group, add), [name], before=before, **context)
    tg = ctx.inventory.cluster(cluster).target_group_arn or ""

    def new_members() -> list[str] | None:
        fresh = _fresh(ctx, name, tg, set(before))
        return fresh if len(fresh) >= add else None

    try:
        ids = poll_until(ctx, f"group {name}: {add} new proxies healthy", new_members)
    except IrctlError as exc:
        fresh = [i["InstanceId"] for i in aws.auto_scaling_group(name)["Instances"]]
        added = [i for i in fresh if i not in before]
        undo = remove_added(
            ctx, {"cluster": cluster, "mode": "autoscaling_group", "instance_ids": added, **extra}
        )
        return Outcome.failed(
            f"group {name} did not bring {add} healthy proxies ({exc.message}); {undo.summary}"
        )
    return _added(ctx, cluster, ids, mode="autoscaling_group", **extra)


def _fresh(ctx: Context, name: str, tg: str, before: set[str]) -> list[str]:
    aws = aws_of(ctx)
    health = aws.target_health(tg)
    return sorted(
        i["InstanceId"]
        for i in aws.auto_scaling_group(name).get("Instances", [])
        if i["InstanceId"] not in before
        and i.get("LifecycleState") == "InService"
        and health.get(i["InstanceId"]) == "healthy"
    )


def remove_added(ctx: Context, record: dict[str, Any]) -> Outcome:
    """Undo of a scale-out: deregister (draining) and terminate exactly what was added."""
    from irctl.discovery import record_removed

    ids = list(record.get("instance_ids", []))
    cluster = record["cluster"]
    context = {"cluster": cluster, "undo_of": "aws.scale_proxies"}
    if not ids and record.get("mode") != "autoscaling_group":
        return Outcome(ok=True, summary="nothing was added")
    try:
        if record.get("mode") == "autoscaling_group":
            for iid in ids:
                call = ApiCall(
                    "autoscaling",
                    "terminate_instance_in_auto_scaling_group",
                    {"InstanceId": iid, "ShouldDecrementDesiredCapacity": True},
                )
                execute(ctx, call, [iid], **context)
            _restore_max(ctx, record, context)
        else:
            _drain_and_terminate(ctx, record, ids, context)
    except IrctlError as exc:
        return Outcome.failed(f"taking out the added proxies stopped: {exc.message}")
    record_removed(ctx.inventory, ctx.settings, cluster, ids, ctx.run_id)
    return Outcome(
        ok=True,
        output={"removed": ids},
        summary=f"removed {len(ids)} added proxies: {', '.join(ids[:10])}",
        targets=ids,
    )


def _restore_max(ctx: Context, record: dict[str, Any], context: dict[str, Any]) -> None:
    group = aws_of(ctx).auto_scaling_group(record["group"])
    previous_max = int(record.get("previous_max", group["MaxSize"]))
    if int(group["MaxSize"]) > previous_max >= int(group["DesiredCapacity"]):
        call = ApiCall(
            "autoscaling",
            "update_auto_scaling_group",
            {"AutoScalingGroupName": record["group"], "MaxSize": previous_max},
        )
        execute(ctx, call, [record["group"]], **context)


def _drain_and_terminate(
    ctx: Context, record: dict[str, Any], ids: list[str], context: dict[str, Any]
) -> None:
    aws = aws_of(ctx)
    tg, port = str(record["target_group_arn"]), int(record["port"])
    health = aws.target_health(tg)
    registered = [i for i in ids if health.get(i) not in (None, "unused", "draining")]
    if registered:
        targets = {"TargetGroupArn": tg, "Targets": [{"Id": i, "Port": port} for i in registered]}
        execute(ctx, ApiCall("elbv2", "deregister_targets", targets), registered, **context)
        delay = aws.deregistration_delay(tg)
        wait_for(
            ctx,
            "elbv2",
            "target_deregistered",
            f"draining {len(registered)} proxies (deregistration delay {delay:g}s)",
            timeout=delay + ctx.inventory.aws.wait_timeout,
            total=delay,
            **targets,
        )
    live = [
        i["InstanceId"]
        for i in aws.instances(ids)
        if i["State"]["Name"] in ("pending", "running", "stopped")
    ]
    if live:
        execute(ctx, ApiCall("ec2", "terminate_instances", {"InstanceIds": live}), live, **context)


def reconcile_scale(ctx: Context, intent: dict[str, Any]) -> Reconciled:
    """Applied when every instance the step meant to add serves; otherwise a re-run adopts
    the ones already launched (template: by their `irctl:added` index tag)."""
    from irctl.actions.aws_scale import _undo_record

    params = intent.get("params") or {}
    run_id = str(intent.get("run_id") or ctx.run_id)
    step = str(params.get("step_key") or step_key(intent.get("step"), intent.get("item")))
    cluster, add = str(params.get("cluster", "")), int(params.get("add", 0))
    try:
        spec = ctx.inventory.cluster(cluster)
        aws = aws_of(ctx)
        if spec.autoscaling_group:
            return _reconcile_group(ctx, run_id, intent, cluster, add)
        found = [str(i["InstanceId"]) for i in tagged_instances(aws, run_id, step)]
        health = aws.target_health(spec.target_group_arn or "")
    except IrctlError as exc:
        return Reconciled("unknown", detail=exc.message)
    if not found:
        return Reconciled(
            "not_applied", detail=f"no instance tagged with run {run_id}, step {step}"
        )
    if len(found) >= add and all(health.get(i) == "healthy" for i in found):
        outcome = Outcome(
            ok=True,
            output={"cluster": cluster, "added": found},
            targets=found,
            undo=_undo_record(ctx, cluster, found),
        )
        return Reconciled("applied", outcome, detail=f"{len(found)} added proxies serve")
    return Reconciled(
        "not_applied", detail=f"{len(found)} of {add} launched; re-running adopts them"
    )


def _prior_update(
    ctx: Context, run_id: str, step: str | None, item: str | None
) -> dict[str, Any] | None:
    """The latest capacity change this step journaled before a crash, if it made one."""
    found = None
    for record in ctx.journal.records(run_id):
        if (
            record.get("event") == "intent"
            and record.get("action") == "autoscaling.update_auto_scaling_group"
            and record.get("step") == step
            and record.get("item") == item
            and "before" in (record.get("params") or {})
        ):
            found = dict(record["params"])
    return found


def _reconcile_group(
    ctx: Context, run_id: str, intent: dict[str, Any], cluster: str, add: int
) -> Reconciled:
    from irctl.actions.aws_scale import _undo_record

    call = _prior_update(ctx, run_id, intent.get("step"), intent.get("item"))
    if call is None:
        return Reconciled(
            "not_applied", detail="the group's capacity was never changed by this step"
        )
    spec = ctx.inventory.cluster(cluster)
    fresh = _fresh(ctx, call["group"], spec.target_group_arn or "", set(call.get("before", [])))
    if len(fresh) >= add:
        keep = {k: call[k] for k in ("group", "previous_desired", "previous_max") if k in call}
        outcome = Outcome(
            ok=True,
            output={"cluster": cluster, "added": fresh},
            targets=fresh,
            undo=_undo_record(ctx, cluster, fresh, **keep),
        )
        return Reconciled("applied", outcome, detail=f"{len(fresh)} new proxies in service")
    return Reconciled("unknown", detail=f"capacity was raised; {len(fresh)} of {add} serve so far")
