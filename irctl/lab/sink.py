"""The lab's notification sink: Slack, Statuspage and a webhook, answered and recorded locally.

    python -m irctl.lab.sink --dir $IRCTL_STATE_DIR/lab

A stdlib HTTP server on 127.0.0.1 (a free port, written to `<dir>/sink`) so that a
runbook's notify steps are really delivered in the lab instead of reporting "not
configured". It answers like the services do, as far as irctl uses them:

- `POST /slack/...`: a Slack incoming webhook, `200 ok`;
- `POST /v1/pages/{page}/incidents`: Atlassian Statuspage opens an incident, `201` with a
  generated `id`; `PATCH /v1/pages/{page}/incidents/{id}` updates it (`200`, `404` for an
  unknown id); `GET .../incidents/unresolved` lists the open ones (irctl's resume asks);
  every Statuspage call needs `Authorization: OAuth <key>` (`401` otherwise);
- `POST /hooks/...`: a generic webhook, `200`; a request whose HMAC signature does not
  match the lab's secret gets `401`, as a receiver that checks signatures would answer.

Every request, answered or not, is one JSON line in `<dir>/notifications.jsonl`.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ENDPOINT_FILE = "sink"
RECORDS_FILE = "notifications.jsonl"
PAGE_ID = "lab"
# Dummy secrets: the lab's env file exports them so irctl signs and authorizes for real.
STATUSPAGE_KEY = "lab-statuspage-key"
HOOK_SECRET = "lab-hook-secret"
SLACK_PATH = "/slack/T0LAB/B0LAB/lab"
HOOK_NAME = "pager"
MAX_BODY = 1 << 20

_INCIDENTS = re.compile(r"^/v1/pages/(?P<page>[^/]+)/incidents(?:/(?P<id>[^/]+))?$")


def notify_env(url: str) -> dict[str, str]:
    """The variables the lab inventory's `notify` section names, pointing at this sink."""
    return {
        "IRCTL_SLACK_WEBHOOK": url + SLACK_PATH,
        "IRCTL_STATUSPAGE_KEY": STATUSPAGE_KEY,
        "IRCTL_HOOK_SECRET": HOOK_SECRET,
    }


def notify_section(url: str) -> dict[str, Any]:
    return {
        "slack": {"webhook_url_env": "IRCTL_SLACK_WEBHOOK"},
        "statuspage": {
            "page_id": PAGE_ID,
            "api_key_env": "IRCTL_STATUSPAGE_KEY",
            "base_url": f"{url}/v1",
        },
        "webhooks": [
            {
                "name": HOOK_NAME,
                "url": f"{url}/hooks/{HOOK_NAME}",
                "secret_env": "IRCTL_HOOK_SECRET",
            }
        ],
        # A sink on loopback answers at once; a dead one should not hold a drill up.
        "timeout": 2.0,
        "retries": 1,
    }


def records(directory: Path) -> list[dict[str, Any]]:
    """Every request the sink has recorded, oldest first."""
    try:
        lines = (directory / RECORDS_FILE).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def count(directory: Path) -> int:
    try:
        with open(directory / RECORDS_FILE, "rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


class Sink:
    """The services' state (open incidents) and the record file, shared by handler threads."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / RECORDS_FILE
        self.lock = threading.Lock()
        self.incidents: dict[str, dict[str, Any]] = {}

    def record(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self.lock, open(self.path, "a") as fh:
            fh.write(line)

    def answer(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, body: Any
    ) -> tuple[int, Any]:
        if path.startswith("/slack/") and method == "POST":
            ok = isinstance(body, dict) and bool(body.get("text"))
            return (200, "ok") if ok else (400, "no_text")
        if path.startswith("/hooks/") and method == "POST":
            return self._hook(headers, raw)
        match = _INCIDENTS.match(path)
        if match:
            if headers.get("authorization") != f"OAuth {STATUSPAGE_KEY}":
                return 401, {"error": "Could not authenticate"}
            return self._statuspage(method, match["page"], match["id"], body)
        return 404, {"error": f"the lab sink has nothing at {method} {path}"}

    def _hook(self, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        stamp = headers.get("x-irctl-timestamp", "")
        expected = hmac.new(HOOK_SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256)
        given = headers.get("x-irctl-signature", "")
        if not hmac.compare_digest(given, "sha256=" + expected.hexdigest()):
            return 401, {"error": "bad signature"}
        return 200, {"ok": True}

    def _statuspage(
        self, method: str, page: str, incident_id: str | None, body: Any
    ) -> tuple[int, Any]:
        if page != PAGE_ID:
            return 404, {"error": f"no page {page}"}
        fields = body.get("incident") if isinstance(body, dict) else None
        with self.lock:
            if method == "GET" and incident_id == "unresolved":
                open_ = [i for i in self.incidents.values() if i["status"] != "resolved"]
                return 200, open_
            if method == "POST" and incident_id is None:
                if not isinstance(fields, dict) or not fields.get("name"):
                    return 422, {"error": "incident name can't be blank"}
                new_id = secrets.token_hex(6)
                now = _now()
                incident = {
                    "id": new_id,
                    "page_id": page,
                    "shortlink": f"https://stspg.io/lab{new_id}",
                    "created_at": now,
                    "incident_updates": [],
                    **fields,
                }
                incident["incident_updates"] = [_update(fields, now)]
                self.incidents[new_id] = incident
                return 201, incident
            if incident_id is None or incident_id not in self.incidents:
                return 404, {"error": "Incident not found"}
            incident = self.incidents[incident_id]
            if method == "GET":
                return 200, incident
            if method == "PATCH" and isinstance(fields, dict):
                incident.update({k: v for k, v in fields.items() if k != "incident_updates"})
                incident["incident_updates"].append(_update(fields, _now()))
                return 200, incident
        return 405, {"error": f"{method} not allowed here"}


def _update(fields: dict[str, Any], when: str) -> dict[str, Any]:
    return {"status": fields.get("status"), "body": fields.get("body"), "created_at": when}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def handler_for(sink: Sink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as urllib3's pool expects

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the record file is the log

        def _handle(self) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, reply = sink.answer(self.command, self.path, headers, raw, body)
            sink.record(
                {
                    "ts": _now(),
                    "method": self.command,
                    "path": self.path,
                    "status": status,
                    "headers": {
                        k: v
                        for k, v in headers.items()
                        if k.startswith("x-irctl-") or k in ("content-type", "user-agent")
                    },
                    "authorized": "authorization" in headers,
                    "body": body,
                }
            )
            text = reply if isinstance(reply, str) else json.dumps(reply)
            data = text.encode()
            self.send_response(status)
            kind = "text/plain" if isinstance(reply, str) else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    return Handler


def serve(directory: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(Sink(directory)))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    endpoint = directory / ENDPOINT_FILE
    tmp = endpoint.with_suffix(".tmp")
    tmp.write_text(f"http://{host!s}:{port}")
    os.replace(tmp, endpoint)
    # shutdown() must come from another thread than serve_forever's.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m irctl.lab.sink")
    parser.add_argument("--dir", required=True, type=Path, help="the lab's state folder")
    serve(parser.parse_args(argv).dir)


if __name__ == "__main__":
    main()
