"""The AWS provider: EC2, ELBv2 and Auto Scaling through boto3, for one run.

The session comes from the inventory (`aws.region`, `aws.profile`, `aws.endpoint_url` for
emulators such as moto) and the standard credential chain. Clients use botocore's
`standard` retry mode and are built once per service per run. Every library error
leaves as a one-line `ProviderError` naming the API call (`ec2.RunInstances`) and a hint.

Waiting reuses botocore's waiters (their acceptors know what "running", "status ok",
"in service" and "deregistered" mean) but drives them one attempt at a time, so the
caller's `sleep` (which wakes on cancel) and progress callback run between attempts and
the timeout is the caller's, not the waiter's default.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

from irctl.errors import ProviderError
from irctl.providers.aws_errors import wrap

if TYPE_CHECKING:
    from irctl.inventory import Inventory
    from irctl.settings import Settings

SERVICES = ("ec2", "elbv2", "autoscaling")
# botocore's reason when one attempt just has not reached the state yet; any other
# WaiterError is a terminal state (an instance that terminated while we waited for it).
_WAIT_AGAIN = "Max attempts exceeded"


class WaitTimeout(ProviderError):
    """A waiter ran out of time without reaching its state."""


class AwsProvider:
    """One boto3 session and one client per service for the length of a run."""

    def __init__(
        self,
        *,
        region: str,
        profile: str | None = None,
        endpoint_url: str | None = None,
        max_attempts: int = 5,
    ) -> None:
        import boto3
        from botocore.config import Config

        try:
            self._session = boto3.Session(profile_name=profile, region_name=region)
        except Exception as exc:  # ProfileNotFound and friends: one line with a hint
            raise wrap(exc, "sts", "session") from None
        self._config = Config(
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=5,
            read_timeout=30,
            user_agent_extra="irctl",
        )
        self.region = region
        self.endpoint_url = endpoint_url
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()  # API calls made, by `service.Operation`
        self.requests = 0  # HTTP requests sent, retries included

    @classmethod
    def create(cls, inventory: Inventory, settings: Settings) -> Self:
        aws = inventory.aws
        return cls(region=aws.region, profile=aws.profile, endpoint_url=aws.endpoint_url)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    # -- calls ---------------------------------------------------------------
    def client(self, service: str) -> Any:
        """The run's client for `service`; event hooks count calls and HTTP attempts."""
        # foreach items may run in threads: clients are thread-safe, building one is not.
        with self._lock:
            if service not in self._clients:
                client = self._session.client(
                    service, endpoint_url=self.endpoint_url, config=self._config
                )
                client.meta.events.register("before-call", self._count_call)
                client.meta.events.register("before-send", self._count_request)
                self._clients[service] = client
            return self._clients[service]

    def _count_call(self, model: Any = None, **_: Any) -> None:
        if model is not None:
            self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def _count_request(self, **_: Any) -> None:
        self.requests += 1

    def call(self, service: str, method: str, **params: Any) -> dict[str, Any]:
        """One API call (`call("ec2", "run_instances", ...)`); errors as `ProviderError`."""
        try:
            response: dict[str, Any] = getattr(self.client(service), method)(**params)
        except ProviderError:
            raise
        except Exception as exc:
            raise wrap(exc, service, method) from None
        response.pop("ResponseMetadata", None)
        return response

    def paginate(self, service: str, method: str, key: str, **params: Any) -> list[Any]:
        """All items under `key` across pages, through botocore's paginator."""
        try:
            pages = self.client(service).get_paginator(method).paginate(**params)
            return [item for page in pages for item in page.get(key, [])]
        except Exception as exc:
            raise wrap(exc, service, method) from None

    # -- reads the actions share -------------------------------------------
    def instances(
        self, ids: list[str] | None = None, filters: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if ids:
            params["InstanceIds"] = ids
        if filters:
            params["Filters"] = filters
        reservations = self.paginate("ec2", "describe_instances", "Reservations", **params)
        return [inst for res in reservations for inst in res.get("Instances", [])]

    def target_health(self, target_group_arn: str) -> dict[str, str]:
        """Registered targets of a group and their state (`healthy`, `draining`, ...)."""
        response = self.call("elbv2", "describe_target_health", TargetGroupArn=target_group_arn)
        return {
            d["Target"]["Id"]: d["TargetHealth"]["State"]
            for d in response.get("TargetHealthDescriptions", [])
        }

    def deregistration_delay(self, target_group_arn: str) -> float:
        response = self.call(
            "elbv2", "describe_target_group_attributes", TargetGroupArn=target_group_arn
        )
        for attr in response.get("Attributes", []):
            if attr["Key"] == "deregistration_delay.timeout_seconds":
                return float(attr["Value"])
        return 300.0  # the AWS default

    def auto_scaling_group(self, name: str) -> dict[str, Any]:
        groups = self.call(
            "autoscaling", "describe_auto_scaling_groups", AutoScalingGroupNames=[name]
        ).get("AutoScalingGroups", [])
        if not groups:
            raise ProviderError(
                f"autoscaling.DescribeAutoScalingGroups: no group named {name!r}",
                "fix autoscaling_group in the inventory",
            )
        group: dict[str, Any] = groups[0]
        return group

    # -- waiting -------------------------------------------------------------
    def wait(
        self,
        service: str,
        waiter_name: str,
        *,
        timeout: float,
        poll: float,
        sleep: Callable[[float], None],
        on_poll: Callable[[int], None] | None = None,
        **params: Any,
    ) -> None:
        """Wait with botocore's waiter `waiter_name` until it succeeds, fails, or `timeout`.

        Raises `WaitTimeout` when time runs out and `ProviderError` on a terminal state.
        """
        from botocore import xform_name

        waiter = self.client(service).get_waiter(waiter_name)
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            if on_poll is not None:
                on_poll(attempt)
            try:
                waiter.wait(**params, WaiterConfig={"Delay": 0, "MaxAttempts": 1})
                return
            except Exception as exc:
                reason = str(getattr(exc, "kwargs", {}).get("reason", ""))
                if type(exc).__name__ != "WaiterError" or not reason.startswith(_WAIT_AGAIN):
                    raise wrap(exc, service, xform_name(waiter.config.operation)) from None
            if time.monotonic() + poll > deadline:
                break
            sleep(poll)
        raise WaitTimeout(
            f"waited {timeout:g}s for {service} {waiter_name} ({_describe(params)})",
            "check the instance and target group in the AWS console; raise aws.wait_timeout",
        )


def _describe(params: dict[str, Any]) -> str:
    for key in ("InstanceIds", "Targets"):
        if key in params:
            items = params[key]
            return ",".join(str(i["Id"]) if isinstance(i, dict) else str(i) for i in items)
    return ""
