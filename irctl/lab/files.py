"""What the lab hands the operator: an inventory, an env file, and the clients' proxy list."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import yaml

from irctl.lab import cloud
from irctl.lab.hosts import cluster_spec
from irctl.lab.sink import notify_env, notify_section
from irctl.lab.state import LabState

# Every lab host shares this machine's cores: the scheduler alone delays some samples by
# 5-17 ms, which a fleet of real machines does not (see tests/test_diagnose_lab.py).
THRESHOLDS = {"slow_ms": 25.0}


def inventory_dict(state: LabState) -> dict[str, Any]:
    spec = cluster_spec(state)
    cluster: dict[str, Any] = {
        "target_group_arn": state.aws["target_group_arn"],
        "launch_template": state.aws["launch_template"],
        "proxy_port": state.proxy_port,
        # Proxies by tags: replacements and additions are visible to the next command.
        "discover": {"tag:cluster": cloud.CLUSTER, "tag:role": "proxy"},
        "shards": [s.model_dump() for s in spec.shards],
        "backends": [b.model_dump(exclude_none=True) for b in spec.backends],
        "hashing": spec.hashing.model_dump(),
        "thresholds": THRESHOLDS,
        "min_healthy_proxies": 1,
    }
    if state.aws.get("autoscaling_group"):
        cluster["autoscaling_group"] = state.aws["autoscaling_group"]
    doc: dict[str, Any] = {
        "aws": {
            "region": cloud.REGION,
            "endpoint_url": state.endpoint,
            "poll_interval": 0.5,
            "wait_timeout": 60.0,
        },
        "ssh": {
            "user": "root",
            "key_file": state.files["key"],
            "known_hosts": state.files["known_hosts"],
            "config_file": None,
            "connect_timeout": 5.0,
            "command_timeout": 20.0,
        },
        # Empty: the lab's clients are the ones faults and filters are about.
        "allowlist": [],
        "clusters": {cloud.CLUSTER: cluster},
    }
    if state.sink:
        # The lab's notification sink stands in for Slack, Statuspage and a pager webhook.
        doc["notify"] = notify_section(state.sink)
    return doc


def write_inventory(state: LabState) -> Path:
    path = Path(state.files["inventory"])
    text = "# Written by `irctl lab up`; removed by `irctl lab down`.\n" + yaml.safe_dump(
        inventory_dict(state), sort_keys=False
    )
    path.write_text(text)
    return path


def env_vars(state: LabState) -> dict[str, str]:
    sink = notify_env(state.sink) if state.sink else {}
    return {"IRCTL_INVENTORY": state.files["inventory"], **cloud.AWS_ENV, **sink}


def write_env(state: LabState) -> Path:
    path = Path(state.files["env"])
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env_vars(state).items()]
    lines += [f"unset {k}" for k in cloud.CLEARED_ENV]
    path.write_text("# source this file: irctl then talks to the lab\n" + "\n".join(lines) + "\n")
    return path


def write_targets(state: LabState) -> None:
    """The proxies' client addresses, one a line: the load generators follow this file."""
    path = Path(state.files["targets"])
    text = "".join(
        f"{h.address}:{state.proxy_port}\n"
        for h in state.by_role("proxy")
        if "nutcracker" in h.pids
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
