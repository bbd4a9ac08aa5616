"""The AWS provider: retries, error wrapping, waiter timeouts.

Throttling is served by a real local HTTP server (pytest-httpserver) speaking the EC2
Query protocol, so botocore's `standard` retry mode runs for real. Errors moto cannot
produce (access denied, expired tokens) come from botocore's Stubber, as said per test.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from botocore.stub import Stubber
from pytest_httpserver import HTTPServer

from irctl.errors import ProviderError
from irctl.providers.aws import AwsProvider, WaitTimeout

if TYPE_CHECKING:
    from tests.moto_fixtures import AwsWorld

pytest_plugins = ["tests.moto_fixtures"]

THROTTLED = (
    "<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
    "<Message>Request limit exceeded.</Message></Error></Errors>"
    "<RequestID>r-1</RequestID></Response>"
)
EMPTY = (
    '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
    "<requestId>r-2</requestId><reservationSet/></DescribeInstancesResponse>"
)


def provider(endpoint: str | None = None, **kw: Any) -> AwsProvider:
    return AwsProvider(region="us-east-1", endpoint_url=endpoint, **kw)


def test_throttling_is_retried_by_standard_mode(httpserver: HTTPServer, aws_env: Any) -> None:
    for _ in range(2):
        httpserver.expect_ordered_request("/", method="POST").respond_with_data(
            THROTTLED, status=503, content_type="text/xml"
        )
    httpserver.expect_ordered_request("/", method="POST").respond_with_data(
        EMPTY, status=200, content_type="text/xml"
    )
    aws = provider(httpserver.url_for("/"), max_attempts=3)

    assert aws.instances() == []

    assert aws.calls["ec2.DescribeInstances"] == 1
    assert aws.requests == 3  # two throttled attempts, then the answer
    httpserver.check_assertions()


def test_throttling_that_never_ends_is_one_line_with_a_hint(
    httpserver: HTTPServer, aws_env: Any
) -> None:
    httpserver.expect_request("/", method="POST").respond_with_data(
        THROTTLED, status=503, content_type="text/xml"
    )
    aws = provider(httpserver.url_for("/"), max_attempts=2)
    with pytest.raises(ProviderError) as err:
        aws.instances()
    assert err.value.message == (
        "ec2.DescribeInstances: AWS is throttling requests (RequestLimitExceeded) after retries"
    )
    assert "resume" in (err.value.hint or "")
    assert aws.requests == 2


def test_access_denied_names_the_permission(aws_env: Any) -> None:
    """Stubber: moto accepts every caller, so denial must be stubbed."""
    aws = provider("http://127.0.0.1:9")  # never contacted: the Stubber answers
    with Stubber(aws.client("elbv2")) as stub:
        stub.add_client_error("register_targets", "AccessDenied", "not allowed", 403)
        with pytest.raises(ProviderError) as err:
            aws.call(
                "elbv2",
                "register_targets",
                TargetGroupArn="arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/x/y",
                Targets=[{"Id": "i-1"}],
            )
    assert err.value.message == "elbv2.RegisterTargets: access denied (AccessDenied)"
    assert (
        err.value.hint == "the role needs the IAM permission elasticloadbalancing:RegisterTargets"
    )
    with Stubber(aws.client("ec2")) as stub:
        stub.add_client_error("run_instances", "UnauthorizedOperation", "no", 403)
        with pytest.raises(ProviderError, match="access denied") as err:
            aws.call("ec2", "run_instances", MinCount=1, MaxCount=1)
    assert "ec2:RunInstances" in (err.value.hint or "")


def test_expired_token(aws_env: Any) -> None:
    """Stubber: moto never expires credentials."""
    aws = provider("http://127.0.0.1:9")
    with Stubber(aws.client("ec2")) as stub:
        stub.add_client_error("describe_instances", "ExpiredToken", "expired", 400)
        with pytest.raises(ProviderError) as err:
            aws.instances()
    assert err.value.message == (
        "ec2.DescribeInstances: the AWS credentials have expired (ExpiredToken)"
    )
    assert "aws sso login" in (err.value.hint or "")


def test_missing_credentials_and_unknown_profile(
    aws_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    aws = provider("http://127.0.0.1:9")
    with pytest.raises(ProviderError) as err:
        aws.instances()
    assert err.value.message == "ec2.DescribeInstances: no AWS credentials found"
    assert 'eval "$(irctl lab env)"' in (err.value.hint or "")  # the lab's usual slip
    assert aws.requests == 0  # refused before anything was sent
    with pytest.raises(ProviderError, match="AWS profile not found"):
        provider(profile="nope")


def test_waiter_times_out_on_schedule(aws: AwsWorld) -> None:
    world = aws.build(1)
    aws_ = provider(world.endpoint)
    world.client("ec2").stop_instances(InstanceIds=world.instance_ids)
    polls: list[int] = []
    started = time.monotonic()
    # Generous numbers: moto calls can take hundreds of ms on a loaded CI machine.
    with pytest.raises(WaitTimeout, match=r"waited 3s for ec2 instance_running"):
        aws_.wait(
            "ec2",
            "instance_running",
            timeout=3.0,
            poll=0.05,
            sleep=time.sleep,
            on_poll=polls.append,
            InstanceIds=world.instance_ids,
        )
    assert 2.9 <= time.monotonic() - started < 20
    assert len(polls) >= 2
    # A terminal state ends the wait at once instead of running out the clock.
    world.client("ec2").terminate_instances(InstanceIds=world.instance_ids)
    with pytest.raises(ProviderError, match="terminal failure"):
        aws_.wait(
            "ec2",
            "instance_running",
            timeout=60,
            poll=0.05,
            sleep=time.sleep,
            InstanceIds=world.instance_ids,
        )
