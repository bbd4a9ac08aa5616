"""The postmortem timeline, from journal records written in the engine's shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import irctl.journal
from irctl.cli.timeline import render_markdown
from irctl.errors import InputError
from irctl.journal import Journal
from irctl.timeline import build_timeline

T0 = datetime(2026, 11, 30, 20, 0, 0, tzinfo=UTC)

Writer = Callable[..., dict[str, Any]]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.jsonl", fsync=False)


@pytest.fixture
def write(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> Writer:
    """write(seconds_after_T0, event, **fields): a journal record stamped at a chosen time."""
    now = [T0]

    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return now[0]

    monkeypatch.setattr(irctl.journal, "datetime", Clock)

    def append(at: float, event: str, **fields: Any) -> dict[str, Any]:
        now[0] = T0 + timedelta(seconds=at)
        return journal.append(event, **fields)

    return append


def live_run(write: Writer) -> None:
    """A recorded incident: diagnose, tell customers, block, replace, flush, notify, revert."""
    r = {"run_id": "r-live", "runbook": "cluster-wide-failure", "dry_run": False}
    alice, bob = {**r, "operator": "alice"}, {**r, "operator": "bob"}

    def step(at: float, sid: str, action: str, who: dict[str, Any] = alice) -> None:
        write(at, "step_started", **who, step=sid, action=action)

    def finish(
        at: float, sid: str, action: str, ms: int, who: dict[str, Any] = alice, **kw: Any
    ) -> None:
        write(at, "step_finished", **who, step=sid, action=action, duration_ms=ms, **kw)

    def mutation(
        at: float,
        took: float,
        sid: str,
        op: str,
        targets: list[str],
        ok: bool = True,
        item: str | None = None,
        **outcome: Any,
    ) -> None:
        seq = write(
            at,
            "intent",
            **alice,
            scope="call",
            step=sid,
            item=item,
            action=op,
            targets=targets,
            params={},
        )["seq"]
        write(
            at + took,
            "result",
            **alice,
            scope="call",
            step=sid,
            item=item,
            action=op,
            intent_seq=seq,
            targets=targets,
            ok=ok,
            outcome=outcome or None,
            error=None if ok else "slack: timed out after 4 attempt(s)",
            duration_ms=int(took * 1000),
        )

    def work(
        at: float,
        took: float,
        sid: str,
        action: str,
        targets: list[str],
        output: dict[str, Any],
        item: str | None = None,
        ok: bool = True,
    ) -> None:
        seq = write(
            at,
            "intent",
            **alice,
            scope="step",
            step=sid,
            item=item,
            action=action,
            targets=targets,
            params={},
        )["seq"]
        write(
            at + took,
            "result",
            **alice,
            scope="step",
            step=sid,
            item=item,
            action=action,
            intent_seq=seq,
            ok=ok,
            output=output,
            targets=targets,
            duration_ms=int(took * 1000),
        )

    write(0, "run_started", **alice, inputs={"cluster": "use1-a"}, host="ops1", pid=42)
    step(1, "diagnose", "diagnose.cluster")
    finish(
        4.5,
        "diagnose",
        "diagnose.cluster",
        3500,
        status="succeeded",
        output={
            "classification": "client_storm",
            "storm_sources": ["198.51.100.0/24"],
            "hosts": [{"name": "proxy-1"}],
        },
    )
    step(5, "tell", "notify.statuspage")
    incident = {
        "delivered": True,
        "channel": "statuspage",
        "incident_id": "inc42",
        "status": "investigating",
    }
    seq = write(
        5.01,
        "intent",
        **alice,
        scope="step",
        step="tell",
        action="notify.statuspage",
        targets=["statuspage/pg1"],
        params={},
    )["seq"]
    mutation(
        5.1,
        0.3,
        "tell",
        "statuspage.create_incident",
        ["statuspage/pg1"],
        http_status=201,
        incident_id="inc42",
    )
    write(
        5.42,
        "result",
        **alice,
        scope="step",
        step="tell",
        action="notify.statuspage",
        intent_seq=seq,
        ok=True,
        output=incident,
        targets=["statuspage/pg1"],
    )
    finish(5.5, "tell", "notify.statuspage", 500, status="succeeded", output=incident)
    step(6, "block", "filter.block")
    seq = write(
        6.01,
        "intent",
        **alice,
        scope="step",
        step="block",
        action="filter.block",
        targets=["proxy-1", "proxy-2"],
        params={},
    )["seq"]
    mutation(6.1, 0.2, "block", "nft.apply", ["proxy-1", "proxy-2"], filter_id="f-1")
    write(
        6.4,
        "result",
        **alice,
        scope="step",
        step="block",
        action="filter.block",
        intent_seq=seq,
        ok=True,
        output={"filter_ids": ["f-1"], "cidrs": ["198.51.100.0/24"]},
        targets=["proxy-1", "proxy-2"],
        undo={"filter_ids": ["f-1"]},
    )
    finish(
        6.5,
        "block",
        "filter.block",
        500,
        status="succeeded",
        output={"filter_ids": ["f-1"], "cidrs": ["198.51.100.0/24"]},
    )
    step(10, "replace", "aws.replace_proxy", bob)
    seq = write(
        10.01,
        "intent",
        **alice,
        scope="step",
        step="replace",
        item="proxy-1",
        action="aws.replace_proxy",
        targets=["i-0abc"],
        params={},
    )["seq"]
    mutation(
        10.1, 30, "replace", "ec2.run_instances", ["i-0abc"], item="proxy-1", instance_id="i-0new"
    )
    write(
        70,
        "result",
        **alice,
        scope="step",
        step="replace",
        item="proxy-1",
        action="aws.replace_proxy",
        intent_seq=seq,
        ok=True,
        output={"old_instance": "i-0abc", "new_instance": "i-0new"},
        targets=["i-0abc"],
    )
    finish(
        70.5,
        "replace",
        "aws.replace_proxy",
        60500,
        bob,
        status="succeeded",
        output={"items": [{"item": "proxy-1", "status": "done"}], "succeeded": 1, "failed": 0},
    )
    step(71, "flush", "cache.flush")
    work(71.1, 1.9, "flush", "cache.flush", ["shard-0"], {"flushed": ["shard-0"]})
    finish(73.5, "flush", "cache.flush", 2500, status="succeeded", output={"flushed": ["shard-0"]})
    step(75, "page", "notify.slack")
    lost = {"delivered": False, "channel": "slack", "error": "slack: timed out after 4 attempt(s)"}
    seq = write(
        75.01,
        "intent",
        **alice,
        scope="step",
        step="page",
        action="notify.slack",
        targets=["slack"],
        params={},
    )["seq"]
    mutation(75.1, 6, "page", "slack.post", ["slack"], ok=False)
    write(
        81.2,
        "result",
        **alice,
        scope="step",
        step="page",
        action="notify.slack",
        intent_seq=seq,
        ok=True,
        output=lost,
        targets=["slack"],
    )
    finish(81.3, "page", "notify.slack", 6300, status="succeeded", output=lost)
    step(85, "revert", "filter.revert")
    work(85.1, 0.4, "revert", "filter.revert", ["proxy-1", "proxy-2"], {"reverted": ["f-1"]})
    finish(85.6, "revert", "filter.revert", 600, status="succeeded", output={"reverted": ["f-1"]})
    write(90, "run_finished", **alice, status="succeeded")


LIVE_MD = """\
# Incident timeline: cluster-wide-failure (run r-live)

- **Mode:** live run
- **Operators:** alice, bob
- **Started:** 2026-11-30 20:00:00 UTC
- **Finished:** 2026-11-30 20:01:30 UTC, status **succeeded** after 1m30s
- **Inputs:** cluster=use1-a
- **Journal hash chain:** verified

## Key times

| Milestone | At (UTC) | Since start | What |
|---|---|---|---|
| Diagnosed (first diagnose step done) | 20:00:04 | +4.5s | step diagnose |
| Mitigated (first change to the fleet) | 20:00:06 | +6.3s | nft.apply in step block |
| Resolved (run succeeded) | 20:01:30 | +1m30s | run succeeded |

Diagnosis steps took 3.5s in total.

## What changed

- **Filters applied:** 1
  - 20:00:06 `block` filter.block on proxy-1, proxy-2: cidrs=198.51.100.0/24, filter_ids=f-1
- **Filters reverted:** 1
  - 20:01:25 `revert` filter.revert on proxy-1, proxy-2: reverted=f-1
- **Instances replaced:** 1
  - 20:01:10 `replace` [proxy-1] aws.replace_proxy on i-0abc: new_instance=i-0new, \
old_instance=i-0abc
- **Proxies added:** none
- **Shards flushed:** 1
  - 20:01:13 `flush` cache.flush on shard-0: flushed=shard-0
- **Notifications:** 2 (1 not delivered)
  - 20:00:05 `tell` notify.statuspage on statuspage/pg1: delivered to statuspage (incident \
inc42: investigating)
  - 20:01:21 `page` notify.slack on slack: NOT delivered to slack: slack: timed out after 4 \
attempt(s)

## Events

| Time (UTC) | Since start | Operator | Step | Action | Targets | Outcome |
|---|---|---|---|---|---|---|
| 20:00:00 | +0s | alice |  | run started |  | live run of cluster-wide-failure |
| 20:00:01 | +1s | alice | diagnose | diagnose.cluster |  | succeeded in 3.5s: \
classification=client_storm, storm_sources=198.51.100.0/24 |
| 20:00:05 | +5s | alice | tell | notify.statuspage | statuspage/pg1 | succeeded in 500ms: \
delivered to statuspage (incident inc42: investigating) |
| 20:00:05 | +5.1s | alice | tell | statuspage.create_incident | statuspage/pg1 | ok in 300ms: \
http_status=201, incident_id=inc42 |
| 20:00:06 | +6s | alice | block | filter.block | proxy-1, proxy-2 | succeeded in 500ms: \
cidrs=198.51.100.0/24, filter_ids=f-1 |
| 20:00:06 | +6.1s | alice | block | nft.apply | proxy-1, proxy-2 | ok in 200ms: filter_id=f-1 |
| 20:00:10 | +10s | bob | replace | aws.replace_proxy | i-0abc | succeeded in 1m: failed=0, \
succeeded=1 |
| 20:00:10 | +10.1s | alice | replace[proxy-1] | ec2.run_instances | i-0abc | ok in 30s: \
instance_id=i-0new |
| 20:01:11 | +1m11s | alice | flush | cache.flush | shard-0 | succeeded in 2.5s: \
flushed=shard-0 |
| 20:01:15 | +1m15s | alice | page | notify.slack | slack | succeeded in 6.3s: NOT delivered \
to slack: slack: timed out after 4 attempt(s) |
| 20:01:15 | +1m15s | alice | page | slack.post | slack | FAILED: slack: timed out after 4 \
attempt(s) |
| 20:01:25 | +1m25s | alice | revert | filter.revert | proxy-1, proxy-2 | succeeded in 600ms: \
reverted=f-1 |
| 20:01:30 | +1m30s | alice |  | run finished |  | succeeded |
"""


def test_recorded_run_timeline_line_by_line(journal: Journal, write: Writer) -> None:
    live_run(write)
    md = render_markdown(build_timeline(journal, "r-live"))
    assert md.splitlines() == LIVE_MD.splitlines()


def drill(write: Writer) -> None:
    """The same runbook with --dry-run: diagnose for real, plan the rest."""
    r = {
        "run_id": "r-drill",
        "runbook": "cluster-wide-failure",
        "dry_run": True,
        "operator": "carol",
    }
    write(0, "run_started", **r, inputs={"cluster": "use1-a"})
    write(0.5, "step_started", **r, step="diagnose", action="diagnose.cluster")
    write(
        2.75,
        "step_finished",
        **r,
        step="diagnose",
        action="diagnose.cluster",
        status="executed",
        output={"classification": "client_storm"},
        duration_ms=2250,
    )
    write(3, "step_started", **r, step="block", action="filter.block")
    nft = [
        f"add element inet irctl block_v4 {{ 198.51.100.{i}/32 timeout 30m }}" for i in range(10)
    ]
    write(
        3.1,
        "planned",
        **r,
        step="block",
        action="filter.block",
        targets=["proxy-1", "proxy-2"],
        plan={
            "summary": "block 10 sources on 2 proxies for 30m",
            "details": nft,
            "targets": ["proxy-1", "proxy-2"],
            "reversible": True,
            "data": {},
            "warnings": [],
        },
    )
    write(
        3.2,
        "step_finished",
        **r,
        step="block",
        action="filter.block",
        status="planned",
        duration_ms=200,
    )
    write(3.3, "step_started", **r, step="tell", action="notify.slack")
    write(
        3.4,
        "planned",
        **r,
        step="tell",
        action="notify.slack",
        targets=["slack"],
        plan={
            "summary": "slack: POST Investigating",
            "details": ["POST $SLACK", "{}"],
            "targets": ["slack"],
            "reversible": False,
            "data": {},
            "warnings": [],
        },
    )
    write(
        3.5,
        "step_finished",
        **r,
        step="tell",
        action="notify.slack",
        status="planned",
        duration_ms=100,
    )
    write(3.6, "step_started", **r, step="replace", action="aws.replace_proxy")
    write(
        3.7,
        "step_finished",
        **r,
        step="replace",
        action="aws.replace_proxy",
        status="not_run",
        reason="when: 'steps.diagnose.output.unhealthy' was false",
        duration_ms=1,
    )
    write(4, "run_finished", **r, status="planned")


DRILL_MD = """\
# Drill timeline: cluster-wide-failure (run r-drill)

- **Mode:** drill (`--dry-run`): nothing was changed
- **Operators:** carol
- **Started:** 2026-11-30 20:00:00 UTC
- **Finished:** 2026-11-30 20:00:04 UTC, status **planned** after 4s
- **Inputs:** cluster=use1-a
- **Journal hash chain:** verified

## Key times

| Milestone | At (UTC) | Since start | What |
|---|---|---|---|
| Diagnosed (first diagnose step done) | 20:00:02 | +2.8s | step diagnose |
| Mitigated (first change to the fleet) | — | — | not in a drill |
| Resolved (run succeeded) | — | — | not in a drill |

Diagnosis steps took 2.2s in total.

## What would have changed

- **Filters applied:** would apply 1
  - 20:00:03 `block` filter.block on proxy-1, proxy-2: block 10 sources on 2 proxies for 30m
- **Filters reverted:** none
- **Instances replaced:** none
- **Proxies added:** none
- **Shards flushed:** none
- **Notifications:** would send 1
  - 20:00:03 `tell` notify.slack on slack: slack: POST Investigating

## What would have been done

- 20:00:03 `block` filter.block on proxy-1, proxy-2: block 10 sources on 2 proxies for 30m
  ```
  add element inet irctl block_v4 { 198.51.100.0/32 timeout 30m }
  add element inet irctl block_v4 { 198.51.100.1/32 timeout 30m }
  add element inet irctl block_v4 { 198.51.100.2/32 timeout 30m }
  add element inet irctl block_v4 { 198.51.100.3/32 timeout 30m }
  add element inet irctl block_v4 { 198.51.100.4/32 timeout 30m }
  add element inet irctl block_v4 { 198.51.100.5/32 timeout 30m }
  add element inet irctl block_v4 { 198.51.100.6/32 timeout 30m }
  add element inet irctl block_v4 { 198.51.100.7/32 timeout 30m }
  … 2 more lines
  ```
- 20:00:03 `tell` notify.slack on slack: slack: POST Investigating
  ```
  POST $SLACK
  {}
  ```

## Events

| Time (UTC) | Since start | Operator | Step | Action | Targets | Outcome |
|---|---|---|---|---|---|---|
| 20:00:00 | +0s | carol |  | run started |  | drill (--dry-run) of cluster-wide-failure |
| 20:00:00 | +500ms | carol | diagnose | diagnose.cluster |  | executed in 2.2s: \
classification=client_storm |
| 20:00:03 | +3s | carol | block | filter.block | proxy-1, proxy-2 | planned in 200ms |
| 20:00:03 | +3.1s | carol | block | filter.block | proxy-1, proxy-2 | planned: block 10 sources \
on 2 proxies for 30m |
| 20:00:03 | +3.3s | carol | tell | notify.slack | slack | planned in 100ms |
| 20:00:03 | +3.4s | carol | tell | notify.slack | slack | planned: slack: POST Investigating |
| 20:00:03 | +3.6s | carol | replace | aws.replace_proxy |  | not_run in 1ms: when: \
'steps.diagnose.output.unhealthy' was false |
| 20:00:04 | +4s | carol |  | run finished |  | planned |
"""


def test_drill_timeline_line_by_line(journal: Journal, write: Writer) -> None:
    drill(write)
    assert render_markdown(build_timeline(journal, "r-drill")).splitlines() == DRILL_MD.splitlines()


def test_json_form_holds_the_same_facts(journal: Journal, write: Writer) -> None:
    live_run(write)
    data = json.loads(json.dumps(build_timeline(journal, "r-live").to_dict()))
    assert data["status"] == "succeeded" and data["dry_run"] is False
    assert data["operators"] == ["alice", "bob"]
    assert data["milestones"] == {
        "diagnosed": {
            "at": "2026-11-30T20:00:04.500Z",
            "since_start_s": 4.5,
            "what": "step diagnose",
        },
        "mitigated": {
            "at": "2026-11-30T20:00:06.300Z",
            "since_start_s": 6.3,
            "what": "nft.apply in step block",
        },
        "resolved": {
            "at": "2026-11-30T20:01:30.000Z",
            "since_start_s": 90.0,
            "what": "run succeeded",
        },
    }
    counts = {kind: len(found) for kind, found in data["changes"].items()}
    assert counts == {
        "filters_applied": 1,
        "filters_reverted": 1,
        "instances_replaced": 1,
        "proxies_added": 0,
        "shards_flushed": 1,
        "notifications": 2,
    }
    assert [n["ok"] for n in data["changes"]["notifications"]] == [True, False]
    assert data["changes"]["notifications"][1]["detail"].startswith("NOT delivered")
    assert len(data["events"]) == 13 and data["planned"] == []


def test_unknown_run_is_an_input_error(journal: Journal, write: Writer) -> None:
    live_run(write)
    with pytest.raises(InputError, match="no run 'r-nope'"):
        build_timeline(journal, "r-nope")


def test_rollback_crash_and_takeover_are_shown(journal: Journal, write: Writer) -> None:
    r = {"run_id": "r-rb", "runbook": "rb", "dry_run": False, "operator": "dave"}
    write(0, "run_started", **r, inputs={})
    write(1, "lock_takeover", **r, cluster="c1", previous_run="r-old", previous_operator="erin")
    write(2, "step_started", **r, step="block", action="filter.block")
    seq = write(
        2.1,
        "intent",
        **r,
        scope="step",
        step="block",
        action="filter.block",
        targets=["proxy-1"],
        params={},
    )["seq"]
    write(
        2.5,
        "result",
        **r,
        scope="step",
        step="block",
        action="filter.block",
        intent_seq=seq,
        ok=True,
        output={"filter_ids": ["f-9"]},
        undo={"filter_ids": ["f-9"]},
        targets=["proxy-1"],
    )
    write(
        2.6,
        "step_finished",
        **r,
        step="block",
        action="filter.block",
        status="succeeded",
        duration_ms=600,
    )
    write(3, "step_started", **r, step="replace", action="aws.replace_proxy")
    write(
        3.1,
        "intent",
        **r,
        scope="call",
        step="replace",
        action="ec2.terminate_instances",
        targets=["i-1"],
        params={},
    )
    write(
        9,
        "step_finished",
        **r,
        step="replace",
        action="aws.replace_proxy",
        status="failed",
        error="instance i-2 never passed health checks | see ELB",
        duration_ms=6000,
    )
    write(9.5, "undo_intent", **r, step="block", action="filter.block", undoes=seq, record={})
    write(10, "undo", **r, step="block", action="filter.block", undoes=seq, ok=True, output={})
    write(11, "run_finished", **r, status="rolled_back", error="step 'replace' failed")
    t = build_timeline(journal, "r-rb")
    assert t.milestones["resolved"] is None
    assert t.milestones["mitigated"] is not None and t.milestones["mitigated"].what == (
        "step block"
    )
    assert [(c.action, c.detail) for c in t.changes["filters_reverted"]] == [
        ("undo filter.block", "rollback of step block")
    ]
    md = render_markdown(t).splitlines()
    assert "| Resolved (run succeeded) | — | — | not reached |" in md
    assert "No diagnose step finished." in md
    assert ("| 20:00:01 | +1s | dave |  | lock taken over |  | from run r-old of erin |") in md
    assert (
        "| 20:00:03 | +3.1s | dave | replace | ec2.terminate_instances | i-1 "
        "| IN DOUBT: no result recorded |"
    ) in md
    assert (
        "| 20:00:03 | +3s | dave | replace | aws.replace_proxy | i-1 | failed in 6s: instance "
        "i-2 never passed health checks \\| see ELB |"
    ) in md
    assert "| 20:00:10 | +10s | dave | block | undo filter.block | proxy-1 | undone |" in md
    assert md[-1] == (
        "| 20:00:11 | +11s | dave |  | run finished |  | rolled_back: step 'replace' failed |"
    )


def test_broken_chain_and_spilled_outputs(journal: Journal, write: Writer) -> None:
    r = {"run_id": "r-big", "runbook": "rb", "dry_run": False, "operator": "fay"}
    write(0, "run_started", **r, inputs={})
    write(1, "step_started", **r, step="flush", action="cache.flush")
    big = {"flushed": ["shard-0"], "per_server": {f"s{i}": "x" * 200 for i in range(40)}}
    seq = write(
        1.5,
        "intent",
        **r,
        scope="step",
        step="flush",
        action="cache.flush",
        targets=["shard-0"],
        params={},
    )["seq"]
    rec = write(
        2,
        "result",
        **r,
        scope="step",
        step="flush",
        action="cache.flush",
        intent_seq=seq,
        ok=True,
        output=big,
        targets=["shard-0"],
    )
    assert set(rec["output"]) == {"_blob"}  # the journal moved it to a side file
    t = build_timeline(journal, "r-big")
    assert t.changes["shards_flushed"][0].detail == "flushed=shard-0"
    assert t.journal_verified and t.status == "unfinished"
    lines = journal.path.read_text().splitlines()
    lines[1] = lines[1].replace("flush", "flusx")
    journal.path.write_text("\n".join(lines) + "\n")
    md = render_markdown(build_timeline(journal, "r-big"))
    assert "- **Journal hash chain:** **BROKEN: run `irctl log verify`**" in md
    assert "- **Finished:** not recorded (the run was interrupted or is still going)" in md


def test_resume_reconciliation_settles_the_in_doubt_change(journal: Journal, write: Writer) -> None:
    r = {"run_id": "r-res", "runbook": "rb", "dry_run": False}
    write(0, "run_started", **r, operator="gus", inputs={})
    write(1, "step_started", **r, operator="gus", step="flush", action="cache.flush")
    seq = write(
        1.1,
        "intent",
        **r,
        operator="gus",
        scope="step",
        step="flush",
        action="cache.flush",
        targets=["shard-1"],
        params={},
    )["seq"]
    write(60, "run_resumed", **r, operator="hana")
    write(
        61,
        "reconciled",
        **r,
        operator="hana",
        step="flush",
        action="cache.flush",
        state="not_applied",
        detail="no flush recorded on shard-1",
        intent_seq=seq,
    )
    t = build_timeline(journal, "r-res")
    assert t.operators == ["gus", "hana"]
    write(62, "step_started", **r, operator="hana", step="flush", action="cache.flush")
    write(
        65,
        "step_finished",
        **r,
        operator="hana",
        step="flush",
        action="cache.flush",
        status="succeeded",
        output={"flushed": ["shard-1"]},
        duration_ms=3000,
    )
    write(66, "run_finished", **r, operator="hana", status="succeeded")
    t = build_timeline(journal, "r-res")
    assert [(e.since_start_s, e.operator, e.action, e.outcome) for e in t.events] == [
        (0.0, "gus", "run started", "live run of rb"),
        (1.0, "gus", "cache.flush", "started, no finish recorded (interrupted)"),
        (60.0, "hana", "run resumed", "reconciling, then continuing"),
        (61.0, "hana", "cache.flush", "reconcile: not_applied no flush recorded on shard-1"),
        (62.0, "hana", "cache.flush", "succeeded in 3s: flushed=shard-1"),
        (66.0, "hana", "run finished", "succeeded"),
    ]


def test_drill_counts_each_planned_item_and_says_would(journal: Journal, write: Writer) -> None:
    r = {"run_id": "r-plan", "runbook": "rb", "dry_run": True, "operator": "gil"}
    write(0, "run_started", **r, inputs={})
    write(1, "step_started", **r, step="replace", action="aws.replace_proxy")
    plans = [
        {"summary": f"replace proxy-{i} (i-{i}) in c1", "details": [f"ec2 RunInstances {i}"],
         "targets": [f"i-{i}"], "reversible": False, "data": {}, "warnings": []}
        for i in (1, 2, 3)
    ]  # fmt: skip
    write(
        1.1, "planned", **r, step="replace", action="aws.replace_proxy",
        targets=["i-1", "i-2", "i-3"], plan=plans,
    )  # fmt: skip
    write(1.2, "step_finished", **r, step="replace", action="aws.replace_proxy", status="planned")
    write(2, "run_finished", **r, status="planned")
    md = render_markdown(build_timeline(journal, "r-plan")).splitlines()
    at = md.index("- **Instances replaced:** would replace 3")
    assert md[at + 1 : at + 4] == [
        f"  - 20:00:01 `replace` aws.replace_proxy on i-{i}: replace proxy-{i} (i-{i}) in c1"
        for i in (1, 2, 3)
    ]
    assert "| 20:00:01 | +1.1s | gil | replace | aws.replace_proxy | i-1, i-2, i-3 | planned: " \
        "replace proxy-1 (i-1) in c1 (+2 more) |" in md  # fmt: skip


def test_step_and_item_cannot_break_code_spans() -> None:
    from irctl.cli.timeline import code, where

    assert where("replace", '"proxy-1"') == '`replace` ["proxy-1"]'
    assert where("odd`step", "a]b[`c") == "``odd`step`` [a\\]b\\[\\`c]"
    assert code("`x") == "`` `x ``"
