"""`irctl replace-proxy` / `scale-proxies` as operators run them: a real irctl process, moto
in server mode on loopback, the engine's journal, lock and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from tests.moto_fixtures import AwsWorld

pytest_plugins = ["tests.moto_fixtures"]


def irctl(world: AwsWorld, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    inventory = tmp_path / "irctl.yaml"
    if not inventory.exists():
        inventory.write_text(yaml.safe_dump(world.inventory()))
    environ = dict(env if env is not None else os.environ)
    environ["IRCTL_STATE_DIR"] = str(tmp_path / "state")
    return subprocess.run(
        ["irctl", "--inventory", str(inventory), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_drill_prints_exact_calls_and_changes_nothing(aws: AwsWorld, tmp_path: Path) -> None:
    world = aws.build(3)
    before = (world.states(), world.targets())
    old = world.instance_ids[0]

    done = irctl(
        world, tmp_path, "replace-proxy", "proxy-1", "-c", "use1-a", "--dry-run", "--output", "json"
    )

    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "planned"
    # The operator sees the calls on stderr, exactly as they would be sent.
    assert "ec2.RunInstances(LaunchTemplate={'LaunchTemplateName': 'proxy-use1-a'}" in done.stderr
    assert f"ec2.TerminateInstances(InstanceIds=['{old}'])" in done.stderr
    assert (world.states(), world.targets()) == before
    journal = [json.loads(line) for line in (tmp_path / "state" / "journal.jsonl").open()]
    assert not [r for r in journal if r["event"] == "intent"]

    done = irctl(world, tmp_path, "scale-proxies", "-c", "use1-a", "--add", "2", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("ec2.RunInstances(") == 2
    assert (world.states(), world.targets()) == before


def test_live_replace_then_later_commands_use_the_record(aws: AwsWorld, tmp_path: Path) -> None:
    world = aws.build(2)
    old = world.instance_ids[1]
    done = irctl(
        world,
        tmp_path,
        "replace-proxy",
        world.address(old),
        "-c",
        "use1-a",
        "--yes",
        "--output",
        "json",
    )
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)["steps"][0]["output"]
    new = output["new_instance_id"]
    assert "Update the file" in done.stderr
    # The file still names the old machine; the next command resolves proxy-2 to the new one.
    done = irctl(
        world, tmp_path, "replace-proxy", "proxy-2", "-c", "use1-a", "--dry-run", "--output", "json"
    )
    assert done.returncode == 0, done.stderr
    assert {"Key": "irctl:replaces", "Value": new} in launch_tags(json.loads(done.stdout))


def launch_tags(doc: Any) -> list[Any]:
    """The tags of the planned RunInstances call, wherever the run document nests the plan."""
    if isinstance(doc, dict):
        if doc.get("call") == "ec2.run_instances":
            return list(doc["params"]["TagSpecifications"][0]["Tags"])
        doc = list(doc.values())
    if isinstance(doc, list):
        for value in doc:
            if found := launch_tags(value):
                return found
    return []


def test_bad_input_is_one_line_and_changes_nothing(aws: AwsWorld, tmp_path: Path) -> None:
    world = aws.build(2)
    before = (world.states(), world.targets())
    cases = [
        (["replace-proxy", "proxy-9", "-c", "use1-a", "--yes"], {}, "unknown proxy 'proxy-9'"),
        (["replace-proxy", "proxy-1", "-c", "nope", "--yes"], {}, "unknown cluster 'nope'"),
        (["scale-proxies", "-c", "nope", "--add", "1", "--yes"], {}, "unknown cluster 'nope'"),
    ]
    no_keys = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    }
    cases.append(
        (["replace-proxy", "proxy-1", "-c", "use1-a", "--yes"], no_keys, "no AWS credentials found")
    )
    for args, env, message in cases:
        done = irctl(world, tmp_path, *args, "--output", "json", env=env or None)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        doc = json.loads(done.stdout)
        error = doc.get("error") or ""
        assert message in error and "\n" not in error, (args, doc)
        assert "Traceback" not in done.stderr
    assert (world.states(), world.targets()) == before


DIE_ON_REGISTER = """
import os
import botocore.client

_real = botocore.client.BaseClient._make_api_call


def _die(self, operation_name, api_params):
    if operation_name == "RegisterTargets":
        os._exit(137)  # the process dies between launch and registration: no cleanup at all
    return _real(self, operation_name, api_params)


botocore.client.BaseClient._make_api_call = _die
"""


def test_killed_replacement_resumes_without_a_second_launch(aws: AwsWorld, tmp_path: Path) -> None:
    world = aws.build(3)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(DIE_ON_REGISTER)
    dying = dict(os.environ, PYTHONPATH=str(hook))

    done = irctl(world, tmp_path, "replace-proxy", "proxy-1", "-c", "use1-a", "--yes", env=dying)

    assert done.returncode == 137, done.stderr
    launched = set(world.states()) - set(world.instance_ids)
    assert len(launched) == 1
    journal = [json.loads(line) for line in (tmp_path / "state" / "journal.jsonl").open()]
    run_id = journal[0]["run_id"]

    done = irctl(world, tmp_path, "resume", run_id, "--yes", "--output", "json")

    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "succeeded"
    assert doc["steps"][0]["output"]["new_instance_id"] in launched
    assert set(world.states()) - set(world.instance_ids) == launched  # no second instance
    assert world.states()[world.instance_ids[0]] == "terminated"
    assert "reconcile" in done.stderr and "not_applied" in done.stderr
