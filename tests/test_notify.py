"""Notifications against a real local HTTP server that records every request."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from irctl.actions import get_action
from irctl.actions.base import Context
from irctl.providers.http import HttpProvider, encode_json
from irctl.ui import QuietUI

SLACK_PATH = "/services/T0SECRET/B0SECRET/xoxSecretPathToken"
SP_KEY = "sp-key-5f1e9c0d7a"
HOOK_SECRET = "hook-secret-91ab77"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer) -> None:
    monkeypatch.setenv("T_SLACK_URL", httpserver.url_for(SLACK_PATH))
    monkeypatch.setenv("T_SP_KEY", SP_KEY)
    monkeypatch.setenv("T_HOOK_SECRET", HOOK_SECRET)


def inventory(server: HTTPServer, **notify: Any) -> dict[str, Any]:
    return {
        "notify": {
            "slack": {"webhook_url_env": "T_SLACK_URL"},
            "statuspage": {
                "page_id": "pg1",
                "api_key_env": "T_SP_KEY",
                "base_url": server.url_for("/v1"),
                "component_ids": {"proxies": "cmpP", "cache": "cmpC"},
            },
            "webhooks": [
                {"name": "pager", "url": server.url_for("/hook"), "secret_env": "T_HOOK_SECRET"},
                {"name": "plain", "url": server.url_for("/plain")},
            ],
            "timeout": 2.0,
            "retries": 2,
            **notify,
        }
    }


@pytest.fixture
def ctx(make_ctx: Callable[..., Context], httpserver: HTTPServer, env: None) -> Context:
    fast = HttpProvider(timeout=2.0, retries=2, backoff=0.01)
    return make_ctx(inventory(httpserver), overrides={HttpProvider: fast})


def run(name: str, params: dict[str, Any], ctx: Context, step: str = "step") -> Any:
    action = get_action(name)
    return action.run(action.Params.model_validate(params), ctx.for_step(step))


def plan(name: str, params: dict[str, Any], ctx: Context, step: str = "step") -> Any:
    action = get_action(name)
    return action.plan(action.Params.model_validate(params), ctx.for_step(step))


def saved_text(ctx: Context) -> str:
    """Every byte irctl wrote under the state folder: journal and its side files."""
    root = ctx.journal.path.parent
    return "".join(p.read_text() for p in root.rglob("*") if p.is_file())


def journal_events(ctx: Context) -> list[dict[str, Any]]:
    return list(ctx.journal.records(ctx.run_id))


def test_slack_payload_carries_message_run_and_operator(
    ctx: Context, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(SLACK_PATH, method="POST").respond_with_data("ok")
    outcome = run("notify.slack", {"text": "Investigating elevated errors on use1-a"}, ctx)
    assert outcome.ok and outcome.output["delivered"] is True
    assert outcome.output["attempts"] == 1
    (request, _), *_ = httpserver.log
    body = request.get_json()
    assert body["text"].startswith("Investigating elevated errors on use1-a\n")
    assert "run `run-test`" in body["text"] and "operator tester" in body["text"]
    assert body["blocks"][0]["text"]["text"] == "Investigating elevated errors on use1-a"
    assert request.headers["Content-Type"] == "application/json"
    result = [r for r in journal_events(ctx) if r["event"] == "result"][-1]
    assert result["action"] == "slack.post" and result["ok"] is True
    assert "T0SECRET" not in saved_text(ctx)


def test_statuspage_incident_moves_through_phases_with_one_id(
    ctx: Context, httpserver: HTTPServer
) -> None:
    httpserver.expect_oneshot_request("/v1/pages/pg1/incidents", method="POST").respond_with_json(
        {"id": "inc42", "status": "investigating", "shortlink": "https://stspg.io/x"}, status=201
    )

    def echo(request: Request) -> Response:
        incident = request.get_json()["incident"]
        return Response(json.dumps({"id": "inc42", "status": incident["status"]}), 200)

    httpserver.expect_request("/v1/pages/pg1/incidents/inc42", method="PATCH").respond_with_handler(
        echo
    )
    first = run(
        "notify.statuspage",
        {
            "status": "investigating",
            "name": "Cache errors in US-East",
            "body": "Looking",
            "component_status": "major_outage",
            "impact": "major",
        },
        ctx,
        "open",
    )
    assert first.ok and first.output["incident_id"] == "inc42"
    assert ctx.run_state["statuspage_incident_id"] == "inc42"
    for phase in ("identified", "monitoring", "resolved"):
        out = run("notify.statuspage", {"status": phase, "body": f"now {phase}"}, ctx, phase)
        assert out.ok and out.output == {
            "delivered": True,
            "channel": "statuspage",
            "http_status": 200,
            "attempts": 1,
            "incident_id": "inc42",
            "status": phase,
            "shortlink": None,
            "summary": "delivered to statuspage (1 attempt(s))",
        }
    requests = [r for r, _ in httpserver.log]
    assert [(r.method, r.path) for r in requests] == [
        ("POST", "/v1/pages/pg1/incidents"),
        *[("PATCH", "/v1/pages/pg1/incidents/inc42")] * 3,
    ]
    assert all(r.headers["Authorization"] == f"OAuth {SP_KEY}" for r in requests)
    created = requests[0].get_json()["incident"]
    assert created["name"] == "Cache errors in US-East"
    assert created["status"] == "investigating" and created["impact_override"] == "major"
    assert created["component_ids"] == ["cmpP", "cmpC"]
    assert created["components"] == {"cmpP": "major_outage", "cmpC": "major_outage"}
    assert created["metadata"]["irctl"]["run_id"] == "run-test"
    assert created["metadata"]["irctl"]["operator"] == "tester"
    statuses = [r.get_json()["incident"]["status"] for r in requests]
    assert statuses == ["investigating", "identified", "monitoring", "resolved"]
    resolved = requests[-1].get_json()["incident"]
    assert resolved["components"] == {"cmpP": "operational", "cmpC": "operational"}
    assert "name" not in requests[1].get_json()["incident"]
    assert SP_KEY not in saved_text(ctx)


def test_resumed_run_updates_the_same_incident_from_the_journal(
    ctx: Context, make_ctx: Callable[..., Context], httpserver: HTTPServer
) -> None:
    httpserver.expect_oneshot_request("/v1/pages/pg1/incidents", method="POST").respond_with_json(
        {"id": "inc7", "status": "investigating"}
    )
    httpserver.expect_request("/v1/pages/pg1/incidents/inc7", method="PATCH").respond_with_json(
        {"id": "inc7", "status": "monitoring"}
    )
    assert run("notify.statuspage", {"status": "investigating", "body": "x", "name": "n"}, ctx).ok
    # A new process: empty run memory, same journal and run id.
    fresh = make_ctx(inventory(httpserver), overrides={HttpProvider: HttpProvider(backoff=0.01)})
    assert fresh.run_state == {}
    out = run("notify.statuspage", {"status": "monitoring", "body": "y"}, fresh)
    assert out.output["incident_id"] == "inc7"
    assert [r.method for r, _ in httpserver.log] == ["POST", "PATCH"]


def test_webhook_signature_verified_by_the_receiver(ctx: Context, httpserver: HTTPServer) -> None:
    seen: list[dict[str, Any]] = []

    def receiver(request: Request) -> Response:
        timestamp = request.headers["X-Irctl-Timestamp"]
        scheme, _, given = request.headers["X-Irctl-Signature"].partition("=")
        expected = hmac.new(
            HOOK_SECRET.encode(), timestamp.encode() + b"." + request.get_data(), hashlib.sha256
        ).hexdigest()
        if scheme != "sha256" or not hmac.compare_digest(given, expected):
            return Response("bad signature", 401)
        if abs(time.time() - int(timestamp)) > 300:
            return Response("stale", 401)
        seen.append(request.get_json())
        return Response("{}", 200)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(receiver)
    out = run(
        "notify.webhook",
        {
            "webhook": "pager",
            "event": "incident.mitigated",
            "message": "filters applied",
            "data": {"cluster": "use1-a", "filters": 2},
        },
        ctx,
        "page",
    )
    assert out.ok and out.output["delivered"] is True, out
    assert seen == [
        {
            "event": "incident.mitigated",
            "message": "filters applied",
            "data": {"cluster": "use1-a", "filters": 2},
            "run_id": "run-test",
            "operator": "tester",
            "runbook": "test",
            "step": "page",
            "item": None,
        }
    ]
    request = httpserver.log[0][0]
    assert request.headers["X-Irctl-Delivery"] == "run-test/page/-"
    assert request.headers["X-Irctl-Event"] == "incident.mitigated"
    assert HOOK_SECRET not in saved_text(ctx)


def test_webhook_with_wrong_secret_is_refused_and_recorded(
    ctx: Context, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("bad signature", 401)
    monkeypatch.setenv("T_HOOK_SECRET", "another-secret-value")
    out = run("notify.webhook", {"webhook": "pager", "message": "m"}, ctx)
    assert out.ok and out.output["delivered"] is False
    assert out.output["error"] == "webhook/pager: HTTP 401 after 1 attempt(s): bad signature"
    assert len(httpserver.log) == 1  # a 4xx is not retried
    result = [r for r in journal_events(ctx) if r["event"] == "result"][-1]
    assert result["ok"] is False and "HTTP 401" in result["error"]


def test_unsigned_webhook_and_only_one_name_needed(
    make_ctx: Callable[..., Context], httpserver: HTTPServer, env: None
) -> None:
    inv = inventory(httpserver)
    inv["notify"]["webhooks"] = [{"name": "plain", "url": httpserver.url_for("/plain")}]
    ctx = make_ctx(inv, overrides={HttpProvider: HttpProvider(backoff=0.01)})
    httpserver.expect_request("/plain", method="POST").respond_with_data("")
    assert run("notify.webhook", {"message": "m"}, ctx).output["delivered"] is True
    assert "X-Irctl-Signature" not in httpserver.log[0][0].headers


def test_retries_on_500_then_delivers(
    ctx: Context, httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    answers = iter([500, 503, 200])
    httpserver.expect_request(SLACK_PATH).respond_with_handler(
        lambda request: Response("", next(answers))
    )
    out = run("notify.slack", {"text": "hello"}, ctx)
    assert out.ok and out.output["delivered"] is True and out.output["attempts"] == 3
    assert len(httpserver.log) == 3
    bodies = {r.get_data() for r, _ in httpserver.log}
    assert len(bodies) == 1  # each retry sends the same bytes
    result = [r for r in journal_events(ctx) if r["event"] == "result"][-1]
    assert result["outcome"]["attempts"] == 3
    client_logs = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert not [m for m in client_logs if "T0SECRET" in m]  # urllib3 logs paths on retry


def test_429_with_retry_after_is_retried(ctx: Context, httpserver: HTTPServer) -> None:
    answers = iter([Response("slow down", 429, headers={"Retry-After": "0"}), Response("ok")])
    httpserver.expect_request("/plain").respond_with_handler(lambda request: next(answers))
    out = run("notify.webhook", {"webhook": "plain", "message": "m"}, ctx)
    assert out.output["delivered"] is True and out.output["attempts"] == 2


def test_retries_exhausted_on_500_is_recorded_not_raised(
    ctx: Context, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(SLACK_PATH).respond_with_data("down", 500)
    ui = QuietUI(assume_yes=True)
    out = run("notify.slack", {"text": "hello"}, ctx_with_ui(ctx, ui))
    assert out.ok and out.output["delivered"] is False
    assert out.output["error"] == "slack: HTTP 500 after 3 attempt(s): down"
    assert len(httpserver.log) == 3
    assert ui.messages == [
        "warning: slack notification not delivered: slack: HTTP 500 after 3 attempt(s): down "
        "(the run carries on)"
    ]


def ctx_with_ui(ctx: Context, ui: QuietUI) -> Context:
    from dataclasses import replace

    return replace(ctx, ui=ui)


@pytest.fixture
def slow_server() -> Iterator[tuple[HTTPServer, list[float]]]:
    """A threaded server whose handler hangs until released, to provoke client timeouts."""
    release = threading.Event()
    arrived: list[float] = []

    def hang(request: Request) -> Response:
        arrived.append(time.monotonic())
        release.wait(10)
        return Response("late", 200)

    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.expect_request("/slow").respond_with_handler(hang)
    server.start()
    yield server, arrived
    release.set()
    server.clear()
    server.stop()


def test_timeout_does_not_stop_the_run(
    make_ctx: Callable[..., Context],
    slow_server: tuple[HTTPServer, list[float]],
    env: None,
) -> None:
    server, arrived = slow_server
    inv = {"notify": {"webhooks": [{"name": "slow", "url": server.url_for("/slow")}]}}
    ctx = make_ctx(
        inv, overrides={HttpProvider: HttpProvider(timeout=0.3, retries=1, backoff=0.01)}
    )
    started = time.monotonic()
    out = run("notify.webhook", {"message": "m"}, ctx)
    elapsed = time.monotonic() - started
    assert out.ok and out.output == {
        "delivered": False,
        "channel": "webhook/slow",
        "error": "webhook/slow: timed out after 2 attempt(s)",
        "summary": "NOT delivered to webhook/slow: webhook/slow: timed out after 2 attempt(s)",
    }
    assert 0.6 <= elapsed < 5.0  # two 0.3 s timeouts, not the 10 s the server would take
    # The server's handler threads may record the second request a moment after the client
    # gave up on it.
    deadline = time.monotonic() + 5
    while len(arrived) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(arrived) == 2
    events = [(r["event"], r.get("ok")) for r in journal_events(ctx)]
    assert events == [("intent", None), ("result", False)]
    required = run("notify.webhook", {"message": "m", "required": True}, ctx)
    assert required.ok is False and "timed out" in (required.error or "")


def test_dry_run_plan_shows_exact_payload_and_sends_nothing(
    ctx: Context, make_ctx: Callable[..., Context], httpserver: HTTPServer
) -> None:
    drill = make_ctx(inventory(httpserver), dry_run=True)
    shown = plan("notify.slack", {"text": "Investigating"}, drill)
    assert shown.details[0] == "POST $T_SLACK_URL"
    assert shown.targets == ["slack"] and shown.reversible is False and not shown.warnings
    assert len(httpserver.log) == 0
    httpserver.expect_request(SLACK_PATH).respond_with_data("ok")
    run("notify.slack", {"text": "Investigating"}, ctx)
    assert httpserver.log[0][0].get_data() == shown.details[-1].encode()
    assert encode_json(shown.data["payload"]) == shown.details[-1].encode()
    assert "T0SECRET" not in json.dumps(shown.to_dict())


def test_drill_plans_later_statuspage_steps_as_updates(
    make_ctx: Callable[..., Context], httpserver: HTTPServer, env: None
) -> None:
    drill = make_ctx(inventory(httpserver), dry_run=True)
    first = plan(
        "notify.statuspage", {"status": "investigating", "body": "b", "name": "n"}, drill, "open"
    )
    later = plan("notify.statuspage", {"status": "resolved", "body": "done"}, drill, "close")
    assert first.details[:2] == [
        f"POST {httpserver.url_for('/v1')}/pages/pg1/incidents",
        "Authorization: OAuth $T_SP_KEY",
    ]
    assert later.details[0] == (
        f"PATCH {httpserver.url_for('/v1')}/pages/pg1/incidents/<incident opened by step open>"
    )
    assert len(httpserver.log) == 0 and SP_KEY not in json.dumps(first.to_dict())


def test_missing_secret_or_config_warns_and_sends_nothing(
    make_ctx: Callable[..., Context], httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("T_SLACK_URL", raising=False)
    ui = QuietUI(assume_yes=True)
    ctx = make_ctx(inventory(httpserver), ui=ui)
    shown = plan("notify.slack", {"text": "t"}, ctx)
    assert shown.warnings == [
        "the environment variable T_SLACK_URL is not set: this notification would not be delivered"
    ]
    out = run("notify.slack", {"text": "t"}, ctx)
    assert out.ok and out.output["error"] == "the environment variable T_SLACK_URL is not set"
    bare = make_ctx({}, ui=ui)
    out = run("notify.statuspage", {"status": "investigating", "body": "b"}, bare)
    assert out.output == {
        "delivered": False,
        "channel": "statuspage",
        "error": "notify.statuspage is not configured in the inventory",
        "summary": "NOT delivered to statuspage: notify.statuspage is not configured in the "
        "inventory",
    }
    out = run("notify.webhook", {"message": "m", "webhook": "nope"}, bare)
    assert out.output["error"] == "webhook 'nope' is not in the inventory (webhooks: none)"
    assert len(httpserver.log) == 0 and len(ui.messages) == 3
    assert journal_events(ctx) == []  # nothing was attempted, so no intent was written


def test_provider_takes_timeout_and_retries_from_the_inventory(
    make_ctx: Callable[..., Context], httpserver: HTTPServer, env: None
) -> None:
    ctx = make_ctx(inventory(httpserver, timeout=1.5, retries=4))
    provider = ctx.provider(HttpProvider)
    assert (provider.timeout, provider.retries) == (1.5, 4)
    httpserver.expect_request("/plain").respond_with_json({"ok": True})
    assert run("notify.webhook", {"message": "m", "webhook": "plain"}, ctx).output["delivered"]


def test_connection_refused_names_no_url(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = HttpProvider(timeout=0.5, retries=1, backoff=0.01)
    from irctl.errors import ProviderError

    with pytest.raises(ProviderError) as err:
        provider.request(
            "POST", f"http://127.0.0.1:{port}/hook/SECRETPATH", label="slack", json_body={}
        )
    assert err.value.message == "slack: connection refused or unreachable after 2 attempt(s)"
    assert "SECRETPATH" not in str(err.value)


def test_url_without_scheme_is_refused_before_any_lookup() -> None:
    from irctl.errors import ProviderError

    provider = HttpProvider(timeout=0.5, retries=0)
    for url in ("hooks.invalid/SECRETPATH", "ftp://127.0.0.1/SECRETPATH"):
        with pytest.raises(ProviderError) as err:
            provider.request("POST", url, label="webhook/x", json_body={})
        assert err.value.message == "webhook/x: the URL must start with https:// (or http://)"


def test_statuspage_reconcile_finds_the_incident_tagged_with_this_run(
    ctx: Context, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/v1/pages/pg1/incidents/unresolved", method="GET").respond_with_json(
        [
            {"id": "other", "metadata": {"irctl": {"run_id": "someone-else"}}},
            {
                "id": "inc9",
                "status": "investigating",
                "metadata": {"irctl": {"run_id": "run-test"}},
            },
        ]
    )
    action = get_action("notify.statuspage")
    # The engine hands over the step's own intent record.
    intent = {"action": "notify.statuspage", "params": {"status": "investigating", "body": "b"}}
    found = action.reconcile(intent, ctx)
    assert found.state == "applied" and found.outcome is not None
    assert found.outcome.output["incident_id"] == "inc9"
    assert ctx.run_state["statuspage_incident_id"] == "inc9"
    # Now the run has an incident: a later in-doubt step was an update, sent again.
    assert action.reconcile(intent, ctx).state == "not_applied"
    assert len(httpserver.log) == 1
    ctx.run_state.clear()
    httpserver.clear()
    httpserver.expect_request("/v1/pages/pg1/incidents/unresolved").respond_with_json([])
    assert action.reconcile(intent, ctx).state == "not_applied"
    httpserver.clear()
    httpserver.expect_request("/v1/pages/pg1/incidents/unresolved").respond_with_data("", 403)
    verdict = action.reconcile(intent, ctx)
    assert verdict.state == "not_applied" and "may be opened twice" in verdict.detail


def test_other_notifications_are_sent_again_after_a_crash(ctx: Context) -> None:
    for name in ("notify.slack", "notify.webhook"):
        verdict = get_action(name).reconcile({"action": name, "params": {}}, ctx)
        assert verdict.state == "not_applied"


def test_secret_echoed_by_the_server_is_redacted_everywhere(
    make_ctx: Callable[..., Context], httpserver: HTTPServer, env: None
) -> None:
    # Some APIs echo the credential back in their error; it must not reach any output.
    httpserver.expect_request("/v1/pages/pg1/incidents").respond_with_handler(
        lambda request: Response(f"bad key {request.headers['Authorization']}", 401)
    )
    ui = QuietUI(assume_yes=True)
    ctx = make_ctx(
        inventory(httpserver), ui=ui, overrides={HttpProvider: HttpProvider(backoff=0.01)}
    )
    out = run("notify.statuspage", {"status": "investigating", "body": "b", "name": "n"}, ctx)
    assert out.output["delivered"] is False
    assert out.output["error"] == "statuspage: HTTP 401 after 1 attempt(s): bad key OAuth ***"
    shown = json.dumps(out.output) + (out.summary or "") + " ".join(ui.messages)
    assert SP_KEY not in shown and SP_KEY not in saved_text(ctx)
    assert "OAuth ***" in saved_text(ctx)


def test_statuspage_components_by_name_and_unknown_ones_left_out(
    make_ctx: Callable[..., Context], httpserver: HTTPServer, env: None
) -> None:
    drill = make_ctx(inventory(httpserver), dry_run=True)
    shown = plan(
        "notify.statuspage",
        {
            "status": "identified",
            "body": "b",
            "components": ["cache", "nope", "cmpP"],
            "component_status": "partial_outage",
        },
        drill,
    )
    incident = shown.data["payload"]["incident"]
    assert incident["component_ids"] == ["cmpC", "cmpP"]
    assert incident["components"] == {"cmpC": "partial_outage", "cmpP": "partial_outage"}
    assert shown.warnings == [
        "unknown Statuspage component 'nope' left out (inventory has: cache, proxies)"
    ]
    assert len(httpserver.log) == 0
