"""Run the real `irctl` in a subprocess with its own state folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TEST_ACTIONS = "test.touch=tests.engine_actions:Touch,test.count=tests.engine_actions:Count"


def cli_env(state: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "IRCTL_STATE_DIR": str(state),
            "IRCTL_OPERATOR": "alice",
            "IRCTL_ACTION_PLUGINS": TEST_ACTIONS,
            "PYTHONPATH": str(REPO),
            "COLUMNS": "200",
        }
    )
    env.pop("IRCTL_JOURNAL", None)
    env.pop("IRCTL_INVENTORY", None)
    env.update(extra)
    return env


def irctl(
    state: Path, *args: str, timeout: float = 60, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irctl", *args],
        env=cli_env(state, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_json(state: Path, *args: str, **extra: str) -> tuple[int, dict[str, Any]]:
    proc = irctl(state, *args, "--output", "json", **extra)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"stdout is not one JSON document: {proc.stdout!r} / {proc.stderr!r}"
        ) from None


def write_runbook(folder: Path, name: str, steps: list[dict[str, Any]], **extra: Any) -> Path:
    import yaml

    doc = {
        "apiVersion": "irctl/v1",
        "kind": "Runbook",
        "name": name,
        "title": name,
        "inputs": {
            "dir": {"type": "string", "required": True},
            "cluster": {"type": "string", "default": "test-cluster"},
        },
        "steps": steps,
        **extra,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
