"""What `aws.replace_proxy` and `aws.scale_proxies` share: planned calls, tokens, waiting.

A plan is a list of `ApiCall`s; `run` executes those same dicts, so what a drill prints
is what a live run sends. Instances this run creates carry `irctl:run-id` and
`irctl:step` tags and a ClientToken derived from run, step and proxy: after a crash,
`reconcile` and a re-run find them by tag instead of launching again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from irctl.errors import InputError

if TYPE_CHECKING:
    from irctl.actions.base import Context
    from irctl.inventory import Cluster
    from irctl.providers.aws import AwsProvider

T = TypeVar("T")
NEW = "<new>"  # stands for an instance id a plan cannot know yet

TAG_RUN = "irctl:run-id"
TAG_STEP = "irctl:step"
TAG_REPLACES = "irctl:replaces"
TAG_ADDED = "irctl:added"
LIVE_STATES = ["pending", "running"]


@dataclass
class ApiCall:
    service: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def operation(self) -> str:
        return f"{self.service}.{self.method}"

    def text(self) -> str:
        from irctl.providers.aws_errors import api_name

        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{api_name(self.service, self.method)}({args})"

    def to_dict(self) -> dict[str, Any]:
        return {"call": self.operation, "params": self.params}


@dataclass
class Wait:
    """A waiting step in a plan: shown, never an API change."""

    what: str

    def text(self) -> str:
        return f"wait: {self.what}"

    def to_dict(self) -> dict[str, Any]:
        return {"wait": self.what}


def aws_of(ctx: Context) -> AwsProvider:
    from irctl.providers.aws import AwsProvider

    return ctx.provider(AwsProvider)


def step_key(step: str | None, item: str | None) -> str:
    base = step or "-"
    return f"{base}[{item}]" if item else base


def client_token(run_id: str, step: str, subject: str) -> str:
    """Idempotency token for RunInstances: the same run, step and proxy give the same token,
    so AWS returns the first launch instead of a second instance (<= 64 ASCII chars)."""
    digest = hashlib.sha256(f"{run_id}\0{step}\0{subject}".encode()).hexdigest()
    return f"irctl-{digest[:48]}"


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def copyable_tags(instance: dict[str, Any]) -> dict[str, str]:
    """Tags a replacement inherits: not AWS's reserved ones, not an earlier run's marks."""
    return {
        k: v
        for k, v in tags_of(instance).items()
        if not k.startswith("aws:") and not k.startswith("irctl:")
    }


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def template_spec(cluster: str, spec: Cluster) -> dict[str, str]:
    if not spec.launch_template:
        raise InputError(
            f"cluster {cluster!r} has neither autoscaling_group nor launch_template",
            "set one of them in the inventory",
        )
    key = "LaunchTemplateId" if spec.launch_template.startswith("lt-") else "LaunchTemplateName"
    return {key: spec.launch_template}


def target_group(cluster: str, spec: Cluster) -> str:
    if not spec.target_group_arn:
        raise InputError(
            f"cluster {cluster!r} has no target_group_arn",
            "set the target group its proxies sit behind in the inventory",
        )
    return spec.target_group_arn


def tagged_instances(aws: AwsProvider, run_id: str, step: str, **tags: str) -> list[dict[str, Any]]:
    """Live instances this run's step created (found by tags, as reconcile does)."""
    filters = [
        {"Name": f"tag:{TAG_RUN}", "Values": [run_id]},
        {"Name": f"tag:{TAG_STEP}", "Values": [step]},
        {"Name": "instance-state-name", "Values": LIVE_STATES},
    ]
    filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
    return aws.instances(filters=filters)


def wait_for(
    ctx: Context,
    service: str,
    waiter: str,
    what: str,
    *,
    timeout: float | None = None,
    total: float | None = None,
    **params: Any,
) -> None:
    """A botocore waiter with the inventory's poll interval, a timeout and a progress bar.

    `total` sets the bar's length when the expected duration is known (draining: the
    deregistration delay); otherwise the bar runs against the timeout.
    """
    settings = ctx.inventory.aws
    limit = settings.wait_timeout if timeout is None else timeout
    started = ctx.clock.monotonic()
    with ctx.ui.progress(what, total=total or limit) as bar:

        def on_poll(_: int) -> None:
            ctx.check_cancelled()
            bar.update(completed=ctx.clock.monotonic() - started)

        aws_of(ctx).wait(
            service,
            waiter,
            timeout=limit,
            poll=settings.poll_interval,
            sleep=ctx.clock.sleep,
            on_poll=on_poll,
            **params,
        )


def poll_until(
    ctx: Context, what: str, check: Callable[[], T | None], *, timeout: float | None = None
) -> T:
    """Poll `check` until it returns a value; there is no botocore waiter for these states."""
    from irctl.providers.aws import WaitTimeout

    settings = ctx.inventory.aws
    limit = settings.wait_timeout if timeout is None else timeout
    started = ctx.clock.monotonic()
    with ctx.ui.progress(what, total=limit) as bar:
        while True:
            ctx.check_cancelled()
            value = check()
            if value is not None:
                return value
            elapsed = ctx.clock.monotonic() - started
            bar.update(completed=elapsed)
            if elapsed + settings.poll_interval > limit:
                raise WaitTimeout(
                    f"waited {limit:g}s: {what}",
                    "check the group and target group in the AWS console; raise aws.wait_timeout",
                )
            ctx.clock.sleep(settings.poll_interval)


def execute(ctx: Context, call: ApiCall, targets: list[str], **context: Any) -> dict[str, Any]:
    """Make one changing API call inside a journaled mutation (intent before, result after)."""
    with ctx.mutation(call.operation, targets=targets, params={**context, **call.params}) as m:
        response = aws_of(ctx).call(call.service, call.method, **call.params)
        ids = sorted(_instance_ids(response))
        m.result(instance_ids=ids or targets)
    return response


def _instance_ids(response: dict[str, Any]) -> set[str]:
    found = {i["InstanceId"] for i in response.get("Instances", []) if "InstanceId" in i}
    for key in ("TerminatingInstances", "StoppingInstances", "StartingInstances"):
        found |= {i["InstanceId"] for i in response.get(key, [])}
    return found
