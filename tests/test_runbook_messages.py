"""What a runbook tells the operator when the diagnosis is not its case: a command to paste,
or that there is nothing to do, never "run None instead"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from irctl.runbook.templating import render

RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"
# (runbook, step, the field that speaks to the operator)
MESSAGES = [
    ("client-connection-storm", "check", "message"),
    ("backend-failure", "check", "message"),
    ("network-degradation", "check", "message"),
    ("single-proxy-overload", "confirm-verdict", "instructions"),
]


def said(runbook: str, step_id: str, field: str, output: dict[str, Any]) -> str:
    doc = yaml.safe_load((RUNBOOKS / f"{runbook}.yaml").read_text())
    step = next(s for s in doc["steps"] if s["id"] == step_id)
    scope = {"steps": {"diagnose": {"output": output}}, "inputs": {"cluster": "lab"},
             "run": {"id": "r-1", "operator": "alice"}}  # fmt: skip
    return str(render(step["with"][field], scope))


@pytest.mark.parametrize(("runbook", "step_id", "field"), MESSAGES)
def test_a_healthy_cluster_reads_nothing_to_do(runbook: str, step_id: str, field: str) -> None:
    text = said(runbook, step_id, field, {"classification": "healthy", "recommended_runbook": None})
    assert "None" not in text and "nothing to do" in text, text


@pytest.mark.parametrize(("runbook", "step_id", "field"), MESSAGES)
def test_an_unknown_verdict_points_at_the_evidence(runbook: str, step_id: str, field: str) -> None:
    text = said(runbook, step_id, field, {"classification": "unknown", "recommended_runbook": None})
    assert "None" not in text and "evidence" in text, text


@pytest.mark.parametrize(("runbook", "step_id", "field"), MESSAGES)
def test_another_verdict_gives_a_command_to_paste(runbook: str, step_id: str, field: str) -> None:
    output = {"classification": "x", "recommended_runbook": "cluster-wide-failure"}
    text = said(runbook, step_id, field, output)
    assert "cluster-wide-failure -p cluster=lab" in text, text


def test_the_status_page_step_is_named_for_what_it_posts() -> None:
    doc = yaml.safe_load((RUNBOOKS / "backend-failure.yaml").read_text())
    for step in doc["steps"]:
        status = (
            (step.get("with") or {}).get("status")
            if step["action"] == "notify.statuspage"
            else None
        )
        if status:
            assert step["id"] == f"tell-{status}", step
