"""`irctl filter block|list|revert` as a user runs them, against namespace hosts."""

from __future__ import annotations

import json

import pytest

from tests.lab_fixtures import Irctl, Lab

pytest_plugins = ["tests.lab_fixtures"]
pytestmark = pytest.mark.root


@pytest.fixture
def irctl(lab_irctl: Irctl) -> Irctl:
    return lab_irctl


def rulesets(lab: Lab) -> list[str]:
    return [h.run(["nft", "list", "ruleset"]).stdout for h in lab.proxies]


def test_dry_run_prints_the_batch_and_changes_nothing(lab: Lab, irctl: Irctl) -> None:
    before = rulesets(lab)
    cidr = f"{lab.clients[0].address}/32"
    r = irctl("filter", "block", cidr, "--cluster", "lab", "--reason", "drill", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "add element inet irctl reject4" in r.stderr and "timeout 1800s" in r.stderr
    assert "planned" in r.stdout
    assert rulesets(lab) == before


def test_block_list_revert_json(lab: Lab, irctl: Irctl) -> None:
    cidr = f"{lab.clients[0].address}/32"
    r = irctl(
        "filter", "block", cidr, "--cluster", "lab", "--reason", "storm", "--ttl", "10m",
        "--yes", "--output", "json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (fid,) = doc["filter_ids"]
    assert doc["status"] == "succeeded"
    r = irctl("filter", "list", "--output", "json")
    (row,) = json.loads(r.stdout)
    assert {k: row[k] for k in ("id", "cidr", "ports", "reason", "operator")} == {
        "id": fid, "cidr": cidr, "ports": [lab.port], "reason": "storm", "operator": "carol",
    }  # fmt: skip
    assert row["hosts"] == [h.name for h in lab.proxies] and row["expires_at"]
    r = irctl("filter", "revert", fid, "--yes", "--output", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "succeeded"
    assert json.loads(irctl("filter", "list", "--output", "json").stdout) == []
    assert "irctl;id=" not in "".join(rulesets(lab))


def test_refusal_exits_1_with_one_line(lab: Lab, irctl: Irctl) -> None:
    before = rulesets(lab)
    r = irctl("filter", "block", "0.0.0.0/0", "--cluster", "lab", "--reason", "x", "--yes")
    assert r.returncode == 1
    assert "would block every client" in r.stdout + r.stderr
    assert rulesets(lab) == before


def test_rollback_reverts_the_filters_the_run_applied(lab: Lab, irctl: Irctl) -> None:
    cidr = f"{lab.clients[1].address}/32"
    r = irctl(
        "filter", "block", cidr, "--cluster", "lab", "--reason", "x", "--yes", "--output", "json"
    )
    run_id = json.loads(r.stdout)["run_id"]
    assert "irctl;id=" in "".join(rulesets(lab))
    r = irctl("rollback", run_id, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "irctl;id=" not in "".join(rulesets(lab))
