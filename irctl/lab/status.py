"""`irctl lab status`: hosts and their daemons, the instances moto holds, faults in force."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from irctl.errors import IrctlError
from irctl.lab import cloud, sink
from irctl.lab.cluster import SINK, daemon_is_ours
from irctl.lab.faults import dropped
from irctl.lab.hosts import alive_in
from irctl.lab.state import FaultRecord, LabState, lab_dir, read_state


def status(state_dir: Path) -> dict[str, Any]:
    directory = lab_dir(state_dir)
    state = read_state(directory)
    if state is None:
        return {"up": False, "directory": str(directory)}
    hosts = []
    loss = {n for f in state.faults if f.kind == "loss" for n in f.hosts}
    for rec in sorted(state.hosts.values(), key=lambda h: (h.role, h.name)):
        row: dict[str, Any] = {
            "name": rec.name,
            "role": rec.role,
            "address": rec.address,
            "instance_id": rec.instance_id,
            "namespace": rec.netns,
            "daemons": alive_in(rec),
        }
        if rec.role == "client":
            row["load"] = _load(directory, rec.name)
        if rec.name in loss:
            row["loss_dropped_packets"] = dropped(state, rec)
        hosts.append(row)
    daemon = daemon_is_ours(state.daemon_pid)
    return {
        "up": True,
        "ready": state.ready,
        "directory": str(directory),
        "subnet": state.subnet,
        "bridge": state.bridge,
        "endpoint": state.endpoint,
        "reconciler": {"pid": state.daemon_pid, "alive": daemon},
        "sink": {
            "pid": state.sink_pid,
            "alive": daemon_is_ours(state.sink_pid, SINK),
            "url": state.sink,
            "notifications": sink.count(directory),
            "file": str(directory / sink.RECORDS_FILE),
        },
        "inventory": state.files.get("inventory"),
        "env_file": state.files.get("env"),
        "aws": state.aws,
        "hosts": hosts,
        "instances": _instances(state) if daemon and state.ready else [],
        "faults": [_fault(state, f) for f in state.faults],
    }


def _fault(state: LabState, fault: FaultRecord) -> dict[str, Any]:
    """A fault and where it still is: hosts replaced since have left it behind."""
    row: dict[str, Any] = {
        "kind": fault.kind,
        "hosts": [h for h in fault.hosts if h in state.hosts],
        "processes": len(fault.pids),
        **fault.detail,
    }
    gone = [h for h in fault.hosts if h not in state.hosts]
    if gone:
        row["gone"] = gone
    return row


def _load(directory: Path, name: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((directory / f"loadgen-{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return data


def _instances(state: LabState) -> list[dict[str, Any]]:
    aws = cloud.provider(str(state.endpoint))
    try:
        health = aws.target_health(state.aws["target_group_arn"])
        rows = []
        for inst in cloud.lab_instances(aws, state.aws["subnet_id"]):
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
            rows.append(
                {
                    "instance_id": inst["InstanceId"],
                    "state": inst["State"]["Name"],
                    "address": inst.get("PrivateIpAddress"),
                    "name": tags.get("Name"),
                    "role": tags.get("role"),
                    "target_health": health.get(inst["InstanceId"]),
                }
            )
        return rows
    except IrctlError as exc:
        return [{"error": exc.message}]
    finally:
        aws.close()
