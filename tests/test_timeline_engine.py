"""A real small runbook through the engine, notifications to a real local HTTP server,
then its timeline through the real CLI, checked line by line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

import irctl.journal
from irctl.actions.base import Context
from irctl.providers.http import HttpProvider
from irctl.runbook.engine import Engine
from irctl.runbook.model import Runbook
from tests.engine_actions import TEST_ACTIONS


@pytest.fixture(autouse=True)
def _test_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    from irctl.actions import ACTIONS

    for name, target in TEST_ACTIONS.items():
        monkeypatch.setitem(ACTIONS, name, target)


T0 = datetime(2026, 11, 30, 21, 0, 0, tzinfo=UTC)

RUNBOOK = {
    "apiVersion": "irctl/v1",
    "kind": "Runbook",
    "name": "tell-and-fix",
    "title": "Tell customers, fix, tell again",
    "inputs": {"dir": {"required": True}},
    "steps": [
        {
            "id": "open",
            "action": "notify.statuspage",
            "with": {
                "status": "investigating",
                "name": "Cache errors",
                "body": "Investigating (run {{ run.id }}, {{ run.operator }})",
            },
        },
        {"id": "fix", "action": "test.touch", "with": {"path": "{{ inputs.dir }}/fixed"}},
        {"id": "page", "action": "notify.slack", "with": {"text": "Fixed: {{ inputs.dir }}"}},
        {
            "id": "close",
            "action": "notify.statuspage",
            "with": {"status": "resolved", "body": "Resolved"},
        },
    ],
}


@pytest.fixture
def ticking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Journal timestamps one second apart, so the timeline can be compared exactly."""
    now = [T0]

    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            now[0] += timedelta(seconds=1)
            return now[0]

    monkeypatch.setattr(irctl.journal, "datetime", Clock)


@pytest.fixture
def server(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    monkeypatch.setenv("T_SLACK_URL", httpserver.url_for("/slack/secret-path-1234"))
    monkeypatch.setenv("T_SP_KEY", "statuspage-key-5678")
    httpserver.expect_request("/slack/secret-path-1234").respond_with_data("down", 500)
    httpserver.expect_request("/v1/pages/pg1/incidents", method="POST").respond_with_json(
        {"id": "inc42", "status": "investigating"}
    )

    def patch(request: Request) -> Response:
        return Response(json.dumps({"id": "inc42", **request.get_json()["incident"]}), 200)

    httpserver.expect_request("/v1/pages/pg1/incidents/inc42", method="PATCH").respond_with_handler(
        patch
    )
    return httpserver


def notify_inventory(server: HTTPServer) -> dict[str, Any]:
    """Slack and Statuspage pointed at the local recording server."""
    return {
        "notify": {
            "slack": {"webhook_url_env": "T_SLACK_URL"},
            "statuspage": {
                "page_id": "pg1",
                "api_key_env": "T_SP_KEY",
                "base_url": server.url_for("/v1"),
                "component_ids": {"cache": "cmpC"},
            },
        }
    }


def start(
    make_ctx: Callable[..., Context], server: HTTPServer, folder: Path, dry_run: bool = False
) -> tuple[Any, Context]:
    ctx = make_ctx(
        notify_inventory(server),
        step_id=None,
        dry_run=dry_run,
        overrides={HttpProvider: HttpProvider(timeout=2, retries=1, backoff=0.01)},
    )
    return Engine(Runbook.model_validate(RUNBOOK), ctx).start({"dir": str(folder)}), ctx


def cli(journal: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irctl", "--journal", str(journal), "timeline", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def masked(text: str) -> list[str]:
    # Durations come from the engine's monotonic clock; everything else is exact.
    return re.sub(r" in \d+(\.\d+)?(ms|s)\b", " in <t>", text).splitlines()


LIVE_EVENTS = """\
| Time (UTC) | Since start | Operator | Step | Action | Targets | Outcome |
|---|---|---|---|---|---|---|
| 21:00:01 | +0s | tester |  | run started |  | live run of tell-and-fix |
| 21:00:02 | +1s | tester | open | notify.statuspage | statuspage/pg1 | succeeded in <t>: \
delivered to statuspage (incident inc42: investigating) |
| 21:00:04 | +3s | tester | open | statuspage.create_incident | statuspage/pg1 | ok in <t>: \
attempts=1, http_status=200, incident_id=inc42, status=investigating |
| 21:00:08 | +7s | tester | fix | test.touch | {dir}/fixed | succeeded in <t>: path={dir}/fixed |
| 21:00:12 | +11s | tester | page | notify.slack | slack | succeeded in <t>: NOT delivered to \
slack: slack: HTTP 500 after 2 attempt(s): down |
| 21:00:14 | +13s | tester | page | slack.post | slack | FAILED: slack: HTTP 500 after 2 \
attempt(s): down |
| 21:00:18 | +17s | tester | close | notify.statuspage | statuspage/pg1 | succeeded in <t>: \
delivered to statuspage (incident inc42: resolved) |
| 21:00:20 | +19s | tester | close | statuspage.update_incident | statuspage/pg1 | ok in <t>: \
attempts=1, http_status=200, incident_id=inc42, status=resolved |
| 21:00:24 | +23s | tester |  | run finished |  | succeeded |
"""


def test_live_runbook_timeline_through_the_cli(
    make_ctx: Callable[..., Context], server: HTTPServer, tmp_path: Path, ticking: None
) -> None:
    result, ctx = start(make_ctx, server, tmp_path)
    assert result.status == "succeeded", result.to_dict()
    assert (tmp_path / "fixed").exists()
    sent = [(r.method, r.path) for r, _ in server.log]
    assert sent == [
        ("POST", "/v1/pages/pg1/incidents"),
        ("POST", "/slack/secret-path-1234"),
        ("POST", "/slack/secret-path-1234"),
        ("PATCH", "/v1/pages/pg1/incidents/inc42"),
    ]
    opened = server.log[0][0].get_json()["incident"]
    assert opened["body"] == "Investigating (run run-test, tester)"
    assert server.log[1][0].get_json()["blocks"][0]["text"]["text"] == f"Fixed: {tmp_path}"
    journal_text = ctx.journal.path.read_text()
    assert "secret-path-1234" not in journal_text and "statuspage-key-5678" not in journal_text

    done = cli(ctx.journal.path, "run-test")
    assert done.returncode == 0, done.stderr
    md = masked(done.stdout)
    assert md[:8] == [
        "# Incident timeline: tell-and-fix (run run-test)",
        "",
        "- **Mode:** live run",
        "- **Operators:** tester",
        "- **Started:** 2026-11-30 21:00:01 UTC",
        "- **Finished:** 2026-11-30 21:00:24 UTC, status **succeeded** after 23s",
        f"- **Inputs:** dir={tmp_path}",
        "- **Journal hash chain:** verified",
    ]
    assert "| Mitigated (first change to the fleet) | 21:00:10 | +9s | step fix |" in md
    assert "| Resolved (run succeeded) | 21:00:24 | +23s | run succeeded |" in md
    assert "- **Notifications:** 3 (1 not delivered)" in md
    events = md[md.index("## Events") + 2 :]
    assert events == LIVE_EVENTS.replace("{dir}", str(tmp_path)).splitlines()

    as_json = cli(ctx.journal.path, "run-test", "--format", "json")
    data = json.loads(as_json.stdout)
    assert [n["detail"] for n in data["changes"]["notifications"]] == [
        "delivered to statuspage (incident inc42: investigating)",
        "NOT delivered to slack: slack: HTTP 500 after 2 attempt(s): down",
        "delivered to statuspage (incident inc42: resolved)",
    ]
    via_output = subprocess.run(
        [
            sys.executable,
            "-m",
            "irctl",
            "timeline",
            "run-test",
            "--output",
            "json",
            "--journal",
            str(ctx.journal.path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(via_output.stdout) == data


def test_drill_timeline_through_the_cli(
    make_ctx: Callable[..., Context], server: HTTPServer, tmp_path: Path, ticking: None
) -> None:
    result, ctx = start(make_ctx, server, tmp_path, dry_run=True)
    assert result.status == "planned", result.to_dict()
    assert [s.status for s in result.steps] == ["planned"] * 4
    assert len(server.log) == 0 and not (tmp_path / "fixed").exists()
    md = masked(cli(ctx.journal.path, "run-test").stdout)
    assert md[0] == "# Drill timeline: tell-and-fix (run run-test)"
    assert "| Mitigated (first change to the fleet) | — | — | not in a drill |" in md
    assert "- **Notifications:** would send 3" in md
    plans = md[md.index("## What would have been done") + 2 : md.index("## Events") - 1]
    base = server.url_for("/v1")
    assert [line for line in plans if not line.startswith("  {")] == [
        "- 21:00:03 `open` notify.statuspage on statuspage/pg1: statuspage: POST incident "
        "investigating: Investigating (run run-test, tester)",
        "  ```",
        f"  POST {base}/pages/pg1/incidents",
        "  Authorization: OAuth $T_SP_KEY",
        "  ```",
        f"- 21:00:06 `fix` test.touch on {tmp_path}/fixed: create {tmp_path}/fixed",
        "  ```",
        f"  touch {tmp_path}/fixed",
        "  ```",
        "- 21:00:09 `page` notify.slack on slack: slack: POST Fixed: " + str(tmp_path),
        "  ```",
        "  POST $T_SLACK_URL",
        "  ```",
        "- 21:00:12 `close` notify.statuspage on statuspage/pg1: statuspage: PATCH incident "
        "resolved: Resolved",
        "  ```",
        f"  PATCH {base}/pages/pg1/incidents/<incident opened by step open>",
        "  Authorization: OAuth $T_SP_KEY",
        "  ```",
    ]


def test_cli_refuses_unknown_run_and_format(tmp_path: Path) -> None:
    missing = cli(tmp_path / "journal.jsonl", "r-nope")
    assert missing.returncode == 1 and "no run 'r-nope'" in missing.stderr
    assert missing.stdout == ""
    bad = cli(tmp_path / "journal.jsonl", "r-nope", "--format", "xml")
    assert bad.returncode == 2 and "--format md or --format json" in bad.stderr


def test_timeline_and_notify_import_no_cloud_or_ssh_library() -> None:
    code = (
        "import sys, irctl.timeline, irctl.cli.timeline, irctl.actions.notify, "
        "irctl.providers.http; "
        "print(sorted(m for m in ('boto3', 'botocore', 'paramiko') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
