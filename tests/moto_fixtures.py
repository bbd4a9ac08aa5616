"""moto in server mode as a real HTTP endpoint on a free loopback port, and the AWS picture.

`moto_endpoint` (session scope) starts one `ThreadedMotoServer` on 127.0.0.1:0.
`aws` (function scope) resets moto, points the standard credential chain at dummy keys
(and away from ~/.aws and the instance metadata service, so nothing leaves loopback),
and returns an `AwsWorld` builder: VPC, subnets, launch template, target group,
instances registered as targets, optionally an Auto Scaling group. The lab reuses
`start_moto` and `AwsWorld` outside pytest.
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
AMI = "ami-12c6146b"  # one of moto's built-in images
# Addresses moto hands out come from these ranges; nothing ever connects to them.
VPC_CIDR = "198.19.0.0/16"
SUBNET_CIDRS = ("198.19.1.0/24", "198.19.2.0/24")

DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    # Never ask the instance metadata service (169.254.169.254) for credentials.
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/irctl-test-credentials",
    "AWS_CONFIG_FILE": "/nonexistent/irctl-test-config",
}
CLEARED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


def start_moto() -> tuple[ThreadedMotoServer, str]:
    # werkzeug logs every request to stderr; test output should show failures, not traffic.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def reset_moto(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@dataclass
class AwsWorld:
    """Builds and inspects the AWS picture of one cluster in moto, through the real API."""

    endpoint: str
    cluster: str = "use1-a"
    vpc_id: str = ""
    subnet_ids: list[str] = field(default_factory=list)
    launch_template: str = ""
    target_group_arn: str = ""
    instance_ids: list[str] = field(default_factory=list)
    asg_name: str | None = None
    port: int = 11211

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)

    def build(self, proxies: int = 3, *, asg: bool = False, drain_seconds: int = 0) -> AwsWorld:
        ec2, elbv2 = self.client("ec2"), self.client("elbv2")
        self.vpc_id = ec2.create_vpc(CidrBlock=VPC_CIDR)["Vpc"]["VpcId"]
        for i, cidr in enumerate(SUBNET_CIDRS):
            subnet = ec2.create_subnet(
                VpcId=self.vpc_id, CidrBlock=cidr, AvailabilityZone=f"{REGION}{'ab'[i]}"
            )
            self.subnet_ids.append(subnet["Subnet"]["SubnetId"])
        self.launch_template = f"proxy-{self.cluster}"
        ec2.create_launch_template(
            LaunchTemplateName=self.launch_template,
            LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"},
        )
        self.target_group_arn = elbv2.create_target_group(
            Name=f"tg-{self.cluster}",
            Protocol="TCP",
            Port=self.port,
            VpcId=self.vpc_id,
            TargetType="instance",
        )["TargetGroups"][0]["TargetGroupArn"]
        elbv2.modify_target_group_attributes(
            TargetGroupArn=self.target_group_arn,
            Attributes=[
                {"Key": "deregistration_delay.timeout_seconds", "Value": str(drain_seconds)}
            ],
        )
        if asg:
            self.asg_name = f"asg-{self.cluster}"
            self.client("autoscaling").create_auto_scaling_group(
                AutoScalingGroupName=self.asg_name,
                LaunchTemplate={"LaunchTemplateName": self.launch_template},
                MinSize=1,
                MaxSize=proxies,
                DesiredCapacity=proxies,
                VPCZoneIdentifier=",".join(self.subnet_ids),
                TargetGroupARNs=[self.target_group_arn],
                Tags=[
                    {"Key": "cluster", "Value": self.cluster, "PropagateAtLaunch": True},
                    {"Key": "role", "Value": "proxy", "PropagateAtLaunch": True},
                ],
            )
            self.instance_ids = self.asg_instances()
            return self
        for i in range(proxies):
            self.instance_ids.append(self.launch(f"proxy-{i + 1}", self.subnet_ids[i % 2]))
        elbv2.register_targets(
            TargetGroupArn=self.target_group_arn,
            Targets=[{"Id": iid, "Port": self.port} for iid in self.instance_ids],
        )
        return self

    def launch(self, name: str, subnet_id: str) -> str:
        reservation = self.client("ec2").run_instances(
            LaunchTemplate={"LaunchTemplateName": self.launch_template},
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet_id,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "Name", "Value": name},
                        {"Key": "cluster", "Value": self.cluster},
                        {"Key": "role", "Value": "proxy"},
                    ],
                }
            ],
        )
        return str(reservation["Instances"][0]["InstanceId"])

    # -- inspection ----------------------------------------------------------
    def instances(self) -> dict[str, dict[str, Any]]:
        """Every instance moto knows, by id."""
        pages = self.client("ec2").get_paginator("describe_instances").paginate()
        return {
            inst["InstanceId"]: inst
            for page in pages
            for res in page["Reservations"]
            for inst in res["Instances"]
        }

    def states(self) -> dict[str, str]:
        return {iid: inst["State"]["Name"] for iid, inst in self.instances().items()}

    def tags(self, instance_id: str) -> dict[str, str]:
        inst = self.instances()[instance_id]
        return {t["Key"]: t["Value"] for t in inst.get("Tags", [])}

    def targets(self) -> dict[str, str]:
        response = self.client("elbv2").describe_target_health(TargetGroupArn=self.target_group_arn)
        return {
            d["Target"]["Id"]: d["TargetHealth"]["State"]
            for d in response["TargetHealthDescriptions"]
        }

    def asg_instances(self) -> list[str]:
        assert self.asg_name
        group = self.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.asg_name]
        )["AutoScalingGroups"][0]
        return sorted(i["InstanceId"] for i in group["Instances"])

    def address(self, instance_id: str) -> str:
        return str(self.instances()[instance_id]["PrivateIpAddress"])

    def inventory(
        self, *, discover: bool = False, poll: float = 0.01, timeout: float = 2.0
    ) -> dict[str, Any]:
        """An inventory dict for this world: a static proxy list, or `discover` by tags."""
        cluster: dict[str, Any] = {
            "target_group_arn": self.target_group_arn,
            "launch_template": self.launch_template,
            "proxy_port": self.port,
        }
        if self.asg_name:
            cluster["autoscaling_group"] = self.asg_name
        if discover:
            cluster["discover"] = {"tag:cluster": self.cluster, "tag:role": "proxy"}
        else:
            cluster["proxies"] = [
                {
                    "name": self.tags(iid).get("Name", iid),
                    "address": self.address(iid),
                    "instance_id": iid,
                }
                for iid in self.instance_ids
            ]
        return {
            "aws": {
                "region": REGION,
                "endpoint_url": self.endpoint,
                "poll_interval": poll,
                "wait_timeout": timeout,
            },
            "clusters": {self.cluster: cluster},
        }


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server, endpoint = start_moto()
    yield endpoint
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in CLEARED_ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in DUMMY_ENV.items():
        monkeypatch.setenv(key, value)
    return dict(os.environ)


@pytest.fixture
def aws(moto_endpoint: str, aws_env: dict[str, str]) -> AwsWorld:
    reset_moto(moto_endpoint)
    return AwsWorld(moto_endpoint)
