"""Drills of every shipped runbook against a faulted lab change nothing.

`irctl run NAME --dry-run` in a real process, the incident's real fault in force: the
diagnosis really runs (its step `executed` with the fault's classification), every
mutating step is `planned`, and afterwards the nft rulesets of every proxy (the lab's own
fault table aside), the EC2 instances, the target group's targets, every backend's item
count and the notifications the sink received are exactly as before.

`--yes` answers the manual checklists a drill walks through (backend-failure asks to
bring the backend back; a drill cannot, and says the following check is for a live run).
The backend-failure drill runs last: clearing its fault restarts an empty memcached,
after which the item counts move until the load generators have set every key again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.test_e2e_helpers import LOSS_PERCENT, E2eLab, lab_fixture, step

pytestmark = pytest.mark.root

DRILLS = [
    ("cluster-wide-failure", ("loss", "--percent", LOSS_PERCENT), "cluster_wide_network"),
    ("network-degradation", ("loss", "--percent", LOSS_PERCENT), "cluster_wide_network"),
    ("single-proxy-overload", ("overload", "--per-client", "300"), "single_proxy_overload"),
    ("client-connection-storm", ("storm", "--connections", "2000"), "client_storm"),
    ("backend-failure", ("kill-backend", "--backend", "2"), "backend_failure"),
]


@pytest.fixture(scope="module")
def e2e_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2eLab]:
    yield from lab_fixture(tmp_path_factory)


@pytest.mark.parametrize(("runbook", "fault", "classification"), DRILLS, ids=[d[0] for d in DRILLS])
def test_drill_measures_for_real_and_changes_nothing(
    e2e_lab: E2eLab, runbook: str, fault: tuple[str, ...], classification: str
) -> None:
    lab = e2e_lab
    lab.start_clean()
    lab.fault(*fault)
    before = lab.snapshot()
    rc, doc, stderr = lab.runbook(runbook, dry_run=True)
    after = lab.snapshot()

    assert rc == 0 and doc["status"] == "planned", stderr
    diagnose = step(doc, "diagnose")
    assert diagnose["status"] == "executed", diagnose
    assert diagnose["output"]["classification"] == classification, diagnose["output"]
    assert diagnose["output"]["evidence"], diagnose["output"]
    statuses = {s["id"]: s["status"] for s in doc["steps"]}
    assert "planned" in statuses.values(), statuses
    assert not {"succeeded", "failed"} & set(statuses.values()), statuses
    # Read steps ran, mutating ones were shown: at least one plan carries its exact calls.
    assert any(s.get("plan") for s in doc["steps"] if s["status"] == "planned"), doc["steps"]

    for part in ("rulesets", "instances", "targets", "items", "notifications"):
        assert after[part] == before[part], f"{part} changed in a drill of {runbook}"
    assert before["instances"] and before["targets"] and before["rulesets"]
    lab.log_verify()
