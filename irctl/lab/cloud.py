"""The lab's AWS picture in moto, built through the real API (irctl's own AWS provider).

A VPC and one subnet with the lab's /24, a launch template, a TCP target group of the
proxies, optionally an Auto Scaling group, and one EC2 instance per lab host whose private
address is the host's own (`PrivateIpAddress=`), tagged `cluster`, `role` and `Name`.
Proxies are launched from the template, like the replacements irctl will launch.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from irctl.lab.state import LabState
    from irctl.providers.aws import AwsProvider

REGION = "us-east-1"
AMI = "ami-12c6146b"  # one of moto's built-in images
CLUSTER = "lab"

# Fake credentials for moto: botocore signs every request and moto accepts any key.
# The rest keeps the credential chain away from ~/.aws and the instance metadata service.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/irctl-lab-credentials",
    "AWS_CONFIG_FILE": "/nonexistent/irctl-lab-config",
}
CLEARED_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


def use_lab_credentials() -> None:
    """Point this process's credential chain at moto's fake keys."""
    for key in CLEARED_ENV:
        os.environ.pop(key, None)
    os.environ.update(AWS_ENV)


def provider(endpoint: str) -> AwsProvider:
    from irctl.providers.aws import AwsProvider

    use_lab_credentials()
    return AwsProvider(region=REGION, endpoint_url=endpoint)


def tags(**kv: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in kv.items()]


def build(state: LabState, *, asg: bool) -> dict[str, Any]:
    """Create the picture for the hosts in `state`; returns ids and sets each host's instance."""
    assert state.endpoint
    aws = provider(state.endpoint)
    try:
        vpc = aws.call("ec2", "create_vpc", CidrBlock=state.subnet)["Vpc"]["VpcId"]
        subnet = aws.call(
            "ec2", "create_subnet", VpcId=vpc, CidrBlock=state.subnet, AvailabilityZone="us-east-1a"
        )["Subnet"]["SubnetId"]
        template = f"proxy-{CLUSTER}"
        aws.call(
            "ec2",
            "create_launch_template",
            LaunchTemplateName=template,
            LaunchTemplateData={
                "ImageId": AMI,
                "InstanceType": "t3.micro",
                "TagSpecifications": [
                    {"ResourceType": "instance", "Tags": tags(cluster=CLUSTER, role="proxy")}
                ],
            },
        )
        tg = aws.call(
            "elbv2",
            "create_target_group",
            Name=f"tg-{CLUSTER}-{state.token}",
            Protocol="TCP",
            Port=state.proxy_port,
            VpcId=vpc,
            TargetType="instance",
        )["TargetGroups"][0]["TargetGroupArn"]
        # Drills should not sit through AWS's default five minutes of draining.
        aws.call(
            "elbv2",
            "modify_target_group_attributes",
            TargetGroupArn=tg,
            Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "1"}],
        )
        for host in state.hosts.values():
            launch: dict[str, Any] = (
                {"LaunchTemplate": {"LaunchTemplateName": template}}
                if host.role == "proxy"
                else {"ImageId": AMI, "InstanceType": "t3.micro"}
            )
            reservation = aws.call(
                "ec2",
                "run_instances",
                MinCount=1,
                MaxCount=1,
                SubnetId=subnet,
                PrivateIpAddress=host.address,
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": tags(Name=host.name, cluster=CLUSTER, role=host.role),
                    }
                ],
                **launch,
            )
            host.instance_id = reservation["Instances"][0]["InstanceId"]
        proxies = [h.instance_id for h in state.by_role("proxy") if h.instance_id]
        aws.call(
            "elbv2",
            "register_targets",
            TargetGroupArn=tg,
            Targets=[{"Id": iid, "Port": state.proxy_port} for iid in proxies],
        )
        group = None
        if asg:
            group = f"asg-{CLUSTER}"
            aws.call(
                "autoscaling",
                "create_auto_scaling_group",
                AutoScalingGroupName=group,
                LaunchTemplate={"LaunchTemplateName": template},
                MinSize=0,
                MaxSize=max(len(proxies) * 2, 4),
                DesiredCapacity=0,
                VPCZoneIdentifier=subnet,
                TargetGroupARNs=[tg],
                Tags=[
                    {"Key": "cluster", "Value": CLUSTER, "PropagateAtLaunch": True},
                    {"Key": "role", "Value": "proxy", "PropagateAtLaunch": True},
                ],
            )
            # Attaching raises the desired capacity to the lab's proxies without moto
            # launching instances of its own at addresses no namespace has.
            aws.call(
                "autoscaling",
                "attach_instances",
                AutoScalingGroupName=group,
                InstanceIds=proxies,
            )
            aws.call(
                "autoscaling",
                "update_auto_scaling_group",
                AutoScalingGroupName=group,
                MinSize=1,
            )
        return {
            "region": REGION,
            "vpc_id": vpc,
            "subnet_id": subnet,
            "launch_template": template,
            "target_group_arn": tg,
            "autoscaling_group": group,
        }
    finally:
        aws.close()


def lab_instances(aws: AwsProvider, subnet_id: str) -> list[dict[str, Any]]:
    """Every instance in the lab's subnet, whatever its state."""
    return aws.instances(filters=[{"Name": "subnet-id", "Values": [subnet_id]}])
