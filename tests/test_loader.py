"""Finding runbooks by name, describing them, and the validate/runbooks commands end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from irctl.cli.main import main
from irctl.errors import InputError
from irctl.runbook.loader import (
    describe_runbook,
    find_runbooks,
    list_runbooks,
    load_runbook,
    resolve_runbook,
)
from tests.test_validate import GOOD, demo_actions

__all__ = ["demo_actions"]  # the fixture, re-used here

BUILTIN = """\
apiVersion: irctl/v1
kind: Runbook
name: {name}
title: Pause and check
inputs:
  cluster: {{type: string, required: true, description: "which cluster"}}
steps:
  - id: settle
    action: wait
    with: {{duration: 1s, reason: "let it settle"}}
  - id: ok
    action: confirm
    with: {{message: "is {{{{ inputs.cluster }}}} healthy?"}}
"""


def write(folder: Path, name: str, text: str | None = None, suffix: str = ".yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{suffix}"
    path.write_text(BUILTIN.format(name=name) if text is None else text)
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_find_runbooks_later_folder_wins(tmp_path: Path) -> None:
    shipped, local = tmp_path / "shipped", tmp_path / "local"
    write(shipped, "a")
    write(shipped, "b", suffix=".yml")
    override = write(local, "a")
    (local / "notes.txt").write_text("not a runbook")
    write(local, ".hidden")
    found = find_runbooks([shipped, local, tmp_path / "missing"])
    assert found == {"a": override, "b": shipped / "b.yml"}


def test_resolve_by_name_path_and_unknown(tmp_path: Path) -> None:
    folder = tmp_path / "rb"
    path = write(folder, "pause-and-check")
    assert resolve_runbook("pause-and-check", [folder]) == path
    assert resolve_runbook(str(path), []) == path
    with pytest.raises(InputError) as caught:
        resolve_runbook("pause-and-chek", [folder])
    assert caught.value.message == f"no runbook named 'pause-and-chek' in {folder}"
    assert caught.value.hint is not None
    assert caught.value.hint.startswith("did you mean pause-and-check? known runbooks: pause-and")
    with pytest.raises(InputError, match="no runbook file"):
        resolve_runbook(str(tmp_path / "nope.yaml"), [folder])


def test_list_marks_broken_runbooks(tmp_path: Path) -> None:
    folder = tmp_path / "rb"
    write(folder, "good")
    write(folder, "broken", "apiVersion: irctl/v1\nkind: Runbook\n")
    entries = list_runbooks([folder])
    assert entries == [
        {
            "name": "broken",
            "title": None,
            "severity": None,
            "file": str(folder / "broken.yaml"),
            "problems": 3,
        },
        {
            "name": "good",
            "title": "Pause and check",
            "severity": None,
            "file": str(folder / "good.yaml"),
            "steps": 2,
        },
    ]


def test_describe_says_what_mutates(demo_actions: None, tmp_path: Path) -> None:
    path = write(tmp_path, "demo", GOOD)
    info = describe_runbook(load_runbook(path), path)
    effects = {s["id"]: (s["effect"], s["confirm"], s["reversible"]) for s in info["steps"]}
    assert effects == {
        "look": ("read", False, False),
        "block-storm": ("mutate", True, True),
        "each": ("read", False, False),
        "verify": ("read", False, False),
    }
    assert info["mutating_steps"] == ["block-storm"]
    assert info["lock"] == "{{ inputs.cluster }}"
    block = info["steps"][1]
    assert block["when"].startswith("steps.look.output.storm")
    assert block["touches"].startswith("cluster={{ inputs.cluster }}, cidrs=")


def test_cli_validate_reports_all_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = write(tmp_path, "good")
    bad = write(
        tmp_path,
        "bad",
        BUILTIN.format(name="bad").replace("wait", "wiat").replace("message:", "mesage:"),
    )
    code, out, _ = cli(capsys, "validate", str(good), str(bad))
    lines = out.splitlines()
    assert code == 1
    assert lines == [
        f"{bad}:9:13: unknown action 'wiat' (did you mean wait?)",
        f"{bad}:13:5: action 'confirm' needs parameter 'message'",
        f"{bad}:13:12: action 'confirm' takes no parameter 'mesage' (did you mean message?)",
        "3 problem(s) in 1 of 2 runbook file(s)",
    ]
    code, out, _ = cli(capsys, "validate", str(good))
    assert (code, out) == (0, "1 runbook file(s) valid\n")
    code, out, _ = cli(capsys, "--output", "json", "validate", str(bad))
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False
    assert doc["problems"][0] == {
        "file": str(bad),
        "line": 9,
        "col": 13,
        "message": "unknown action 'wiat' (did you mean wait?)",
    }


def test_cli_validate_without_paths_uses_runbook_dirs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write(tmp_path, "one")
    write(tmp_path, "two")
    code, out, _ = cli(capsys, "--runbooks", str(tmp_path), "validate")
    assert (code, out) == (0, "2 runbook file(s) valid\n")
    code, out, _ = cli(capsys, "validate", str(tmp_path))  # a folder given as a path
    assert (code, out) == (0, "2 runbook file(s) valid\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(capsys, "--runbooks", str(empty), "validate")
    assert code == 1 and f"error: no runbooks in {empty}" in err


def test_cli_runbooks_list_and_show(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write(tmp_path, "pause")
    code, out, _ = cli(capsys, "--runbooks", str(tmp_path), "--output", "json", "runbooks", "list")
    assert code == 0
    assert json.loads(out) == [
        {
            "name": "pause",
            "title": "Pause and check",
            "severity": None,
            "file": str(tmp_path / "pause.yaml"),
            "steps": 2,
        }
    ]
    code, out, _ = cli(capsys, "--runbooks", str(tmp_path), "runbooks", "list")
    assert out.splitlines() == [
        "NAME   SEVERITY  TITLE            FILE",
        f"pause  -         Pause and check  {tmp_path / 'pause.yaml'}",
    ]
    code, out, _ = cli(capsys, "--runbooks", str(tmp_path), "runbooks", "show", "pause")
    assert code == 0
    assert "  1. settle  wait  [read]\n       does: pause for a while" in out
    assert "  2. ok  confirm  [interact]\n" in out
    assert "  cluster (string, required) which cluster" in out
    assert "read-only: no step mutates" in out
    code, out, _ = cli(
        capsys, "--runbooks", str(tmp_path), "runbooks", "show", "pause", "--format", "md"
    )
    assert code == 0 and out.startswith("# Pause and check\n")
    row = (
        "| 1 | **settle** pause for a while (lets a change settle before the next measurement) "
        "| `wait` | read |  | `duration=1s, reason=let it settle` |"
    )
    assert row in out
    code, _, err = cli(capsys, "--runbooks", str(tmp_path), "runbooks", "show", "paus")
    assert code == 1 and "did you mean pause?" in err


def test_cli_show_refuses_an_invalid_runbook(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write(tmp_path, "bad", "apiVersion: irctl/v1\n")
    code, out, err = cli(capsys, "--runbooks", str(tmp_path), "runbooks", "show", "bad")
    assert code == 1 and out == ""
    assert f"error: {tmp_path / 'bad.yaml'}:1:1: missing required field" in err
    assert "(3 more)" in err and "irctl validate" in err


def test_validate_as_a_real_process(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad", "steps: [\n")
    env = {**os.environ, "IRCTL_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-m", "irctl", "validate", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout.splitlines()[0].startswith(
        f"{bad}:2:1: YAML syntax: did not find expected node"
    )
    assert "Traceback" not in done.stderr
