"""Run the real `irctl` in a subprocess with its own state folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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


def hold_lock(
    folder: Path, state: Path, cluster: str, operator: str = "alice"
) -> subprocess.Popen[bytes]:
    """A real `irctl run` that takes `cluster`'s lock and sits on its step `hold` for a minute."""
    work = folder / "held"
    work.mkdir(exist_ok=True)
    step = {
        "id": "hold",
        "action": "test.touch",
        "with": {"path": "{{ inputs.dir }}/a", "sleep": 60},
    }
    rb = write_runbook(folder, f"hold-{cluster}", [step])
    holder = subprocess.Popen(
        [sys.executable, "-m", "irctl", "run", str(rb), "-p", f"dir={work}",
         "-p", f"cluster={cluster}", "--yes"],
        env=cli_env(state, IRCTL_OPERATOR=operator),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    lock = state / "locks" / f"{cluster}.lock"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if lock.exists() and json.loads(lock.read_text() or "{}").get("step") == "hold":
            return holder
        time.sleep(0.1)
    holder.kill()
    raise AssertionError(f"the holder never took the lock of {cluster}")
