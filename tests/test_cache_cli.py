"""`irctl cache ...` as an operator runs it: a real process, a real pseudo-terminal, real shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
import yaml

from irctl.actions.cache import locate_key
from irctl.inventory import load_inventory
from tests.test_cache_lab import Memcached, needs_binaries

pytestmark = [needs_binaries, pytest.mark.slow]
NAMES = ["shard-0", "shard-1", "shard-2"]
KEYS = [f"tenant:{i}" for i in range(300)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    servers = dict(zip(NAMES, (Memcached() for _ in NAMES), strict=True))
    shards = [{"name": n, "servers": [m.address]} for n, m in servers.items()]
    inventory = tmp_path / "irctl.yaml"
    inventory.write_text(yaml.safe_dump({"clusters": {"lab": {"shards": shards}}}))
    env = {**os.environ, "IRCTL_INVENTORY": str(inventory), "IRCTL_STATE_DIR": str(tmp_path / "st"),
           "IRCTL_OPERATOR": "tester", "COLUMNS": "160"}  # fmt: skip
    yield {"servers": servers, "env": env}
    for server in servers.values():
        server.stop()


def irctl(lab: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irctl", *args], env=lab["env"], capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=180,
    )  # fmt: skip


def seed(lab: dict[str, Any]) -> dict[str, set[str]]:
    """Write each key straight to the shard `irctl cache locate` names; return what each holds."""
    placed: dict[str, set[str]] = {name: set() for name in NAMES}
    for key in KEYS[:30]:
        out = json.loads(
            irctl(lab, "cache", "locate", key, "--cluster", "lab", "--output", "json").stdout
        )
        placed[out["shard"]].add(key)
    for name, keys in placed.items():
        client = lab["servers"][name].client()
        client.set_many({k: b"x" for k in keys})
        client.close()
    return placed


def holding(lab: dict[str, Any]) -> dict[str, set[str]]:
    out = {}
    for name, server in lab["servers"].items():
        client = server.client()
        out[name] = set(client.get_many(KEYS))
        client.close()
    return out


def test_stats_json_and_table(lab: dict[str, Any]) -> None:
    done = irctl(lab, "cache", "stats", "--cluster", "lab", "--output", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [s["name"] for s in data["shards"]] == NAMES and data["unreachable"] == []
    assert all(s["servers"][0]["version"].startswith("1.") for s in data["shards"])
    table = irctl(lab, "cache", "stats", "--cluster", "lab", "--shard", "shard-1")
    assert "shard-1" in table.stdout and "shard-0" not in table.stdout
    located = irctl(lab, "cache", "locate", "tenant:7", "--cluster", "lab", "--output", "json")
    inventory = load_inventory(Path(lab["env"]["IRCTL_INVENTORY"]))
    assert json.loads(located.stdout) == locate_key(inventory, "lab", "tenant:7")


def test_wrong_shard_name_at_the_prompt_aborts(lab: dict[str, Any]) -> None:
    placed = seed(lab)
    args = ["-m", "irctl", "cache", "flush", "--cluster", "lab", "--shard", "shard-1"]
    child = pexpect.spawn(sys.executable, args, env=lab["env"], encoding="utf-8", timeout=120)
    # One question, the strong one: no yes/no first.
    child.expect("Type the shard name")
    child.sendline("shard-2")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert "nothing was flushed" in (child.before or "")
    assert "aborted" in (child.before or "")
    assert holding(lab) == placed

    child = pexpect.spawn(sys.executable, args, env=lab["env"], encoding="utf-8", timeout=120)
    child.expect("Type the shard name")
    child.sendline("shard-1")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert holding(lab) == {**placed, "shard-1": set()}


def test_no_terminal_refuses_and_dry_run_changes_nothing(lab: dict[str, Any]) -> None:
    placed = seed(lab)
    refused = irctl(lab, "cache", "flush", "--cluster", "lab", "--shard", "shard-0")
    assert refused.returncode == 1 and "no terminal" in refused.stderr
    drill = irctl(lab, "cache", "flush", "--cluster", "lab", "--shard", "shard-0", "--dry-run",
                  "--output", "json")  # fmt: skip
    assert drill.returncode == 0 and json.loads(drill.stdout)["status"] == "planned"
    bad = irctl(lab, "cache", "flush", "--cluster", "lab", "--shard", "shard-0", "--delay", "soon")
    # A usage error (exit 2) naming the option and what it takes.
    assert bad.returncode == 2 and "--delay 'soon': give seconds >= 0" in bad.stderr
    assert holding(lab) == placed


def test_yes_flushes_and_a_stopped_server_is_named(lab: dict[str, Any]) -> None:
    placed = seed(lab)
    done = irctl(lab, "cache", "flush", "--cluster", "lab", "--shard", "shard-2", "--yes",
                 "--output", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"][0]["output"]["failed"] == []
    assert holding(lab) == {**placed, "shard-2": set()}
    dead = lab["servers"]["shard-0"]
    dead.stop()
    failed = irctl(lab, "cache", "flush", "--cluster", "lab", "--shard", "shard-0", "--yes")
    assert failed.returncode == 1 and dead.address in failed.stdout + failed.stderr
