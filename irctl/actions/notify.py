"""Telling people: `notify.slack`, `notify.statuspage`, `notify.webhook`.

A notification never aborts incident work. When it cannot be delivered (not
configured, secret missing, endpoint down after retries) the step still
succeeds with `output.delivered == false` and the error, the mutation's
`result` record says it failed, and the operator sees a warning. A runbook
that must stop when, say, the pager is unreachable sets `required: true`.

Secrets come only from environment variables named in the inventory; each is
registered with the journal before use so it is redacted everywhere, and URLs
that are credentials (Slack webhooks) are shown as the variable's name.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from typing import Any

from irctl.actions.base import Context, Params
from irctl.actions.notify_delivery import Delivery, NotifyAction, env_secret, meta
from irctl.actions.notify_statuspage import (
    INCIDENT_KEY,
    INCIDENT_STATUS_KEY,
    PLANNED_INCIDENT_KEY,
    NotifyStatuspage,
    StatuspageParams,
    current_incident,
)

# The registry and older importers find every notify name here.
__all__ = [
    "INCIDENT_KEY",
    "INCIDENT_STATUS_KEY",
    "PLANNED_INCIDENT_KEY",
    "Delivery",
    "NotifySlack",
    "NotifyStatuspage",
    "NotifyWebhook",
    "SlackParams",
    "StatuspageParams",
    "WebhookParams",
    "current_incident",
    "env_secret",
    "meta",
    "sign",
]


class SlackParams(Params):
    text: str
    required: bool = False


class NotifySlack(NotifyAction):
    name = "notify.slack"
    description = "Post a message to Slack through the inventory's incoming webhook"
    Params = SlackParams

    def delivery(self, params: SlackParams, ctx: Context) -> Delivery:
        context = f"run `{ctx.run_id}` · runbook {ctx.runbook or '-'} · operator {ctx.operator}"
        payload = {
            "text": f"{params.text}\n{context}",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": params.text}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
            ],
        }
        cfg = ctx.inventory.notify.slack
        d = Delivery("slack", "slack.post", "slack", "POST", "(Slack not configured)", payload)
        if cfg is None:
            d.problem = "notify.slack is not configured in the inventory"
            return d
        d.shown_url = f"${cfg.webhook_url_env}"
        d.url = d.secret(ctx, cfg.webhook_url_env)
        return d


class WebhookParams(Params):
    message: str
    webhook: str | None = None  # a name from the inventory; default: the only one configured
    event: str = "irctl.notification"
    data: dict[str, Any] = {}
    required: bool = False


class NotifyWebhook(NotifyAction):
    name = "notify.webhook"
    description = "POST a JSON event to a configured webhook, signed with HMAC-SHA256"
    Params = WebhookParams

    def delivery(self, params: WebhookParams, ctx: Context) -> Delivery:
        hooks = ctx.inventory.notify.webhooks
        payload = {
            "event": params.event,
            "message": params.message,
            "data": params.data,
            **meta(ctx),
        }
        label = f"webhook/{params.webhook or '-'}"
        d = Delivery(label, "webhook.post", label, "POST", "(webhook not configured)", payload)
        matches = [h for h in hooks if params.webhook in (None, h.name)]
        if len(matches) != 1:
            names = ", ".join(h.name for h in hooks) or "none"
            d.problem = (
                f"webhook {params.webhook!r} is not in the inventory (webhooks: {names})"
                if params.webhook
                else f"name the webhook to use (webhooks: {names})"
            )
            return d
        hook = matches[0]
        d.channel = d.target = f"webhook/{hook.name}"
        d.shown_url = d.url = hook.url
        d.headers = {
            "X-Irctl-Event": params.event,
            "X-Irctl-Delivery": f"{ctx.run_id}/{ctx.step_id}/{ctx.item_key or '-'}",
        }
        d.shown_headers = [f"{k}: {v}" for k, v in d.headers.items()]
        if hook.secret_env:
            d.shown_headers += [
                "X-Irctl-Timestamp: <unix seconds at send time>",
                f"X-Irctl-Signature: sha256=<HMAC-SHA256 with ${hook.secret_env}>",
            ]
            d.secret_env = hook.secret_env
            if d.secret(ctx, hook.secret_env) is None:
                d.url = None
        return d

    def send_headers(self, d: Delivery, body: bytes) -> dict[str, str]:
        secret = os.environ.get(d.secret_env) if d.secret_env else None
        if not secret:
            return {}
        timestamp = str(int(time.time()))
        return {
            "X-Irctl-Timestamp": timestamp,
            "X-Irctl-Signature": "sha256=" + sign(secret, timestamp, body),
        }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `<timestamp>.<body>`: the timestamp is signed so replays can be refused."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
