"""Checks before a proxy is replaced, shared by plan and run so a drill refuses like a live run.

PROXY resolves by inventory name, address or instance id against the cluster's
effective proxy list. The instance must belong to the cluster (registered in its target
group, a member of its Auto Scaling group, or carrying its discovery tags), and may not
be the last healthy target of the target group unless forced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from irctl.actions.aws import TAG_REPLACES, aws_of, step_key, tagged_instances, target_group
from irctl.errors import InputError, RefusedError
from irctl.inventory import Proxy

if TYPE_CHECKING:
    from irctl.actions.base import Context
    from irctl.inventory import Cluster


@dataclass
class Preflight:
    cluster: str
    spec: Cluster
    proxy: Proxy
    old: dict[str, Any]
    tg: str
    health: dict[str, str]
    asg: dict[str, Any] | None
    run_id: str
    step: str
    forced: str | None = None
    prior: dict[str, Any] | None = None  # params of this step's calls before a crash

    @property
    def old_id(self) -> str:
        return str(self.old["InstanceId"])

    @property
    def port(self) -> int:
        return self.spec.proxy_port

    @property
    def asg_name(self) -> str | None:
        return self.spec.autoscaling_group

    @property
    def mode(self) -> str:
        return "autoscaling_group" if self.asg_name else "launch_template"

    def context(self) -> dict[str, Any]:
        """What every journal record of this replacement carries, for reconcile and audit."""
        return {
            "cluster": self.cluster,
            "proxy": self.proxy.name,
            "old_instance_id": self.old_id,
            "old_address": self.proxy.address,
            "step_key": self.step,
            "mode": self.mode,
        }


def preflight(ctx: Context, cluster: str, ref: str, force: bool) -> Preflight:
    from irctl.discovery import find_proxy, proxies_for

    spec = ctx.inventory.cluster(cluster)
    tg = target_group(cluster, spec)
    prior = prior_call(ctx)
    try:
        proxy = find_proxy(proxies_for(ctx, cluster), cluster, ref)
    except InputError:
        # A resumed step whose old instance is already out of the (discovered) list.
        if not prior or ref not in (prior.get("proxy"), prior.get("old_instance_id")):
            raise
        proxy = Proxy(
            name=prior["proxy"], address=prior["old_address"], instance_id=prior["old_instance_id"]
        )
    aws = aws_of(ctx)
    if proxy.instance_id:
        found = aws.instances(filters=[{"Name": "instance-id", "Values": [proxy.instance_id]}])
    else:
        found = aws.instances(
            filters=[
                {"Name": "private-ip-address", "Values": [proxy.address]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )
    if not found:
        raise InputError(
            f"no EC2 instance for proxy {proxy.name} ({proxy.instance_id or proxy.address})",
            "fix the proxy's instance_id/address in the inventory",
        )
    pre = Preflight(
        cluster=cluster,
        spec=spec,
        proxy=proxy,
        old=found[0],
        tg=tg,
        health=aws.target_health(tg),
        asg=aws.auto_scaling_group(spec.autoscaling_group) if spec.autoscaling_group else None,
        run_id=ctx.run_id,
        step=step_key(ctx.step_id, ctx.item_key),
    )
    pre.prior = prior
    if not prior:
        _check_membership(ctx, pre)
    pre.forced = _last_healthy(pre, force)
    return pre


def prior_call(ctx: Context) -> dict[str, Any] | None:
    """This step's first journaled AWS call from an earlier attempt (resume), if any."""
    for record in ctx.journal.records(ctx.run_id):
        params = record.get("params") or {}
        if (
            record.get("event") == "intent"
            and record.get("step") == ctx.step_id
            and record.get("item") == ctx.item_key
            and params.get("old_instance_id")
            and params.get("old_address")
        ):
            return dict(params)
    return None


def _check_membership(ctx: Context, pre: Preflight) -> None:
    if pre.old_id in pre.health:
        return
    if pre.asg and pre.old_id in {i["InstanceId"] for i in pre.asg.get("Instances", [])}:
        return
    tags = {t["Key"]: t["Value"] for t in pre.old.get("Tags", [])}
    wanted = {k[4:]: v for k, v in (pre.spec.discover or {}).items() if k.startswith("tag:")}
    if wanted and all(tags.get(k) == v for k, v in wanted.items()):
        return
    # A resumed run may already have taken the old instance out of the group.
    if tagged_instances(aws_of(ctx), pre.run_id, pre.step, **{TAG_REPLACES: pre.old_id}):
        return
    raise InputError(
        f"{pre.proxy.name} ({pre.old_id}) is not in cluster {pre.cluster!r}: "
        f"not registered in {pre.tg.rsplit(':', 1)[-1]}",
        "check the inventory entry for this proxy; nothing was changed",
    )


def _last_healthy(pre: Preflight, force: bool) -> str | None:
    """The refusal text if taking the old instance out leaves too few healthy targets."""
    healthy = {t for t, state in pre.health.items() if state == "healthy"}
    if pre.old_id not in healthy:
        return None
    others = len(healthy - {pre.old_id})
    if others >= pre.spec.min_healthy_proxies:
        return None
    reason = (
        f"{pre.proxy.name} ({pre.old_id}) is the last healthy target of "
        f"{pre.tg.rsplit(':', 1)[-1]} ({others} other healthy, "
        f"min_healthy_proxies {pre.spec.min_healthy_proxies})"
    )
    if not force:
        raise RefusedError(
            reason,
            "add a proxy first (irctl scale-proxies --add 1) or pass --force; nothing was changed",
        )
    return reason
