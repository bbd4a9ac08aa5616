"""`irctl rollback` as a user runs it, against namespace hosts: the plan before the question,
`--dry-run`, and a fleet that changed since the run (filter reverted, proxies replaced)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab_fixtures import Irctl, Lab

pytest_plugins = ["tests.lab_fixtures"]
pytestmark = pytest.mark.root


@pytest.fixture
def inventory(lab_inventory: Path) -> Path:
    return lab_inventory


@pytest.fixture
def irctl(lab_irctl: Irctl) -> Irctl:
    return lab_irctl


def held(lab: Lab) -> list[bool]:
    """Per proxy: does its ruleset hold an irctl filter element?"""
    return ["irctl;id=" in h.run(["nft", "list", "ruleset"]).stdout for h in lab.proxies]


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "state" / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def block(lab: Lab, irctl: Irctl) -> tuple[str, str]:
    cidr = f"{lab.clients[0].address}/32"
    r = irctl(
        "filter", "block", cidr, "--cluster", "lab", "--reason", "storm", "--yes",
        "--output", "json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (fid,) = doc["filter_ids"]
    assert held(lab) == [True] * len(lab.proxies)
    return doc["run_id"], fid


def test_dry_run_then_plan_before_question_then_rollback_and_timeline(
    lab: Lab, irctl: Irctl, tmp_path: Path
) -> None:
    run_id, fid = block(lab, irctl)
    before = journal(tmp_path)
    r = irctl("rollback", run_id, "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "would undo, newest first" in r.stderr
    for h in lab.proxies:  # the concrete targets: the filter id on each host, by address
        assert f"{h.name} ({h.address})" in r.stderr
    assert f"revert filter(s) {fid} on 4 host(s)" in " ".join(r.stderr.split())  # rich wraps
    assert journal(tmp_path) == before and held(lab) == [True] * len(lab.proxies)
    r = irctl("rollback", run_id, "--dry-run", "--output", "json")
    plan = json.loads(r.stdout)["rollback_plan"]
    assert [u["action"] for u in plan["undo"]] == ["filter.block"] and plan["irreversible"] == []

    # No terminal to answer on: refused, but only after the plan was on screen.
    r = irctl("rollback", run_id)
    assert r.returncode != 0
    said = " ".join(r.stderr.split())
    assert said.index(lab.proxies[0].address) < said.index("Undo these 1 change(s)")
    assert held(lab) == [True] * len(lab.proxies)

    r = irctl("rollback", run_id, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert held(lab) == [False] * len(lab.proxies)
    events = [rec["event"] for rec in journal(tmp_path) if rec.get("run_id") == run_id]
    assert events[events.index("rollback_started") :] == [
        "rollback_started", "undo_intent", "intent", "result", "undo", "run_rolled_back"
    ]  # fmt: skip

    md = irctl("timeline", run_id).stdout.splitlines()
    assert any(line.startswith("- **Rolled back:**") and "by carol" in line for line in md), md
    assert "- **Final state:** **rolled back**" in md
    rolled = md[md.index("## Rollback") + 2]
    assert rolled.endswith("by carol: rolled back, 1 change(s) undone"), rolled
    applied = md[md.index("- **Filters applied:** 1 (1 undone by a rollback)") + 1]
    assert "`filter-block` filter.block on" in applied
    assert "— **undone** at" in applied and "by carol" in applied
    doc = json.loads(irctl("timeline", run_id, "--format", "json").stdout)
    assert doc["final_state"] == "rolled back"
    assert doc["changes"]["filters_applied"][0]["undone_at"]
    assert doc["rollbacks"][0]["by"] == "carol" and doc["rollbacks"][0]["status"] == "rolled_back"


def test_rollback_after_revert_and_replacement_needs_no_ssh(
    lab: Lab, irctl: Irctl, tmp_path: Path, inventory: Path
) -> None:
    run_id, fid = block(lab, irctl)
    r = irctl("filter", "revert", fid, "--yes")
    assert r.returncode == 0, r.stderr
    assert held(lab) == [False] * len(lab.proxies)
    # The proxies were replaced: the cluster no longer lists the ones the block went to.
    inv = yaml.safe_load(inventory.read_text())
    inv["clusters"]["lab"]["proxies"] = inv["clusters"]["lab"]["proxies"][:1]
    inventory.write_text(yaml.safe_dump(inv))
    started = len(journal(tmp_path))
    r = irctl("rollback", run_id, "--yes", "--output", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "rolled_back"
    (undone,) = doc["undone"]
    assert undone["ok"] and "already reverted on" in undone["output"]["summary"]
    after = journal(tmp_path)[started:]
    assert not [rec for rec in after if rec.get("action") == "nft.revert"]  # no SSH at all


def test_rollback_skips_hosts_no_longer_in_the_cluster(
    lab: Lab, irctl: Irctl, tmp_path: Path, inventory: Path
) -> None:
    run_id, _ = block(lab, irctl)
    inv = yaml.safe_load(inventory.read_text())
    gone = inv["clusters"]["lab"]["proxies"].pop()
    inventory.write_text(yaml.safe_dump(inv))
    r = irctl("rollback", run_id, "--yes", "--output", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    (undone,) = json.loads(r.stdout)["undone"]
    assert f"{gone['name']} no longer in lab's proxies" in undone["output"]["summary"]
    # Reverted where the cluster still has the proxy; the dropped host was not touched.
    assert held(lab) == [False] * (len(lab.proxies) - 1) + [True]
