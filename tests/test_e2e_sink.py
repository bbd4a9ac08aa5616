"""The lab's notification sink, driven by irctl's real notify actions over loopback HTTP.

The sink runs as `lab up` starts it (`python -m irctl.lab.sink --dir ...`, its own
process); the inventory's `notify` section and the environment are the ones the lab
writes. What it answers must be what irctl relies on from Slack, Statuspage and a
signature-checking webhook receiver, or a drill would prove nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from irctl.actions import get_action
from irctl.actions.base import Context
from irctl.lab import sink
from irctl.lab.state import pid_alive


@pytest.fixture
def running_sink(tmp_path: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "irctl.lab.sink", "--dir", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        endpoint = tmp_path / sink.ENDPOINT_FILE
        deadline = time.monotonic() + 20
        while not endpoint.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the sink did not start"
            time.sleep(0.02)
        yield endpoint.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@pytest.fixture
def lab_ctx(
    running_sink: str, make_ctx: Callable[..., Context], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Context]:
    for key, value in sink.notify_env(running_sink).items():
        monkeypatch.setenv(key, value)

    def factory(run_id: str = "run-sink") -> Context:
        return make_ctx({"notify": sink.notify_section(running_sink)}, run_id=run_id)

    return factory


def send(name: str, params: dict[str, Any], ctx: Context, step: str) -> Any:
    action = get_action(name)
    return action.run(action.Params.model_validate(params), ctx.for_step(step))


def test_every_channel_is_delivered_and_recorded(lab_ctx: Callable[..., Context]) -> None:
    ctx = lab_ctx()
    opened = send(
        "notify.statuspage",
        {"status": "investigating", "name": "Cache errors in lab", "body": "Looking"},
        ctx,
        "open",
    )
    assert opened.output["delivered"] and opened.output["http_status"] == 201
    incident = opened.output["incident_id"]
    assert incident and opened.output["shortlink"].endswith(incident)
    for phase in ("identified", "resolved"):
        out = send("notify.statuspage", {"status": phase, "body": phase}, ctx, phase)
        assert out.output["delivered"] and out.output["http_status"] == 200
        assert out.output["incident_id"] == incident and out.output["status"] == phase
    slack = send("notify.slack", {"text": "lab: investigating"}, ctx, "slack")
    assert slack.output["delivered"] and slack.output["http_status"] == 200
    hook = send("notify.webhook", {"message": "paging", "data": {"sev": 1}}, ctx, "page")
    assert hook.output["delivered"] and hook.output["channel"] == "webhook/pager"


def test_records_hold_what_was_sent(lab_ctx: Callable[..., Context], tmp_path: Path) -> None:
    ctx = lab_ctx(run_id="run-rec")
    send("notify.statuspage", {"status": "investigating", "body": "b", "name": "n"}, ctx, "a")
    send("notify.slack", {"text": "hello lab"}, ctx, "b")
    send("notify.webhook", {"message": "m"}, ctx, "c")
    rows = sink.records(tmp_path)
    assert [(r["method"], r["path"].split("/")[1], r["status"]) for r in rows] == [
        ("POST", "v1", 201),
        ("POST", "slack", 200),
        ("POST", "hooks", 200),
    ]
    assert sink.count(tmp_path) == 3
    assert rows[0]["body"]["incident"]["metadata"]["irctl"]["run_id"] == "run-rec"
    assert rows[0]["authorized"] and not rows[1]["authorized"]
    assert rows[1]["body"]["text"].startswith("hello lab\n")
    assert rows[2]["headers"]["x-irctl-signature"].startswith("sha256=")
    # Records never carry the Statuspage key.
    assert sink.STATUSPAGE_KEY not in (tmp_path / sink.RECORDS_FILE).read_text()


def test_statuspage_reconcile_finds_the_incident_a_crashed_run_opened(
    lab_ctx: Callable[..., Context], running_sink: str
) -> None:
    # The POST reached the page but the process died before journaling its result.
    body = {"incident": {"name": "n", "status": "investigating",
                         "metadata": {"irctl": {"run_id": "run-crashed"}}}}  # fmt: skip
    request = urllib.request.Request(
        f"{running_sink}/v1/pages/{sink.PAGE_ID}/incidents",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"OAuth {sink.STATUSPAGE_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        opened = json.loads(response.read())
    action = get_action("notify.statuspage")
    resumed = lab_ctx(run_id="run-crashed").for_step("open")
    found = action.reconcile({"params": {"status": "investigating"}}, resumed)
    assert found.state == "applied", found
    assert found.outcome is not None
    assert found.outcome.output["incident_id"] == opened["id"]
    other = lab_ctx(run_id="run-other").for_step("open")
    assert action.reconcile({"params": {}}, other).state == "not_applied"


def test_wrong_secrets_are_refused_like_the_services_would(
    lab_ctx: Callable[..., Context], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = lab_ctx()
    monkeypatch.setenv("IRCTL_STATUSPAGE_KEY", "wrong-key")
    monkeypatch.setenv("IRCTL_HOOK_SECRET", "wrong-secret")
    page = send(
        "notify.statuspage", {"status": "investigating", "body": "b", "name": "n"}, ctx, "a"
    )
    assert not page.output["delivered"] and "401" in page.output["error"]
    hook = send("notify.webhook", {"message": "m"}, ctx, "b")
    assert not hook.output["delivered"] and "401" in hook.output["error"]
    # An update to an incident the page never opened is a 404, not a silent success.
    monkeypatch.setenv("IRCTL_STATUSPAGE_KEY", sink.STATUSPAGE_KEY)
    ghost = send(
        "notify.statuspage", {"status": "resolved", "body": "b", "incident_id": "nope"}, ctx, "c"
    )
    assert not ghost.output["delivered"] and "404" in ghost.output["error"]


def test_sink_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "irctl.lab.sink", "--dir", str(tmp_path)],
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not (tmp_path / sink.ENDPOINT_FILE).exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert not pid_alive(proc.pid)
