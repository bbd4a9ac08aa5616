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
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from irctl.actions.base import BaseAction, Context, Effect, Outcome, Params, Plan, Reconciled
from irctl.errors import ProviderError, one_line

INCIDENT_KEY = "statuspage_incident_id"
INCIDENT_STATUS_KEY = "statuspage_incident_status"
PLANNED_INCIDENT_KEY = "statuspage_planned_incident"
IncidentStatus = Literal["investigating", "identified", "monitoring", "resolved"]
ComponentStatus = Literal[
    "operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage"
]


@dataclass
class Delivery:
    """One request a notification would send, in a form that is safe to show and journal."""

    channel: str
    operation: str  # the journaled mutation, e.g. "slack.post"
    target: str
    method: str
    shown_url: str  # never a secret: a credential URL is shown as $ENV_NAME
    payload: dict[str, Any]
    url: str | None = None  # the real URL; None when it cannot be sent
    shown_headers: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # why it cannot be sent
    warnings: list[str] = field(default_factory=list)
    retry_reads: bool = True
    secret_env: str | None = None  # signs the body when set (webhooks)
    incident_id: str | None = None  # the Statuspage incident an update goes to


def env_secret(ctx: Context, name: str) -> str | None:
    value = os.environ.get(name) or None
    ctx.journal.add_secret(value)
    return value


def meta(ctx: Context) -> dict[str, Any]:
    """Who and what sent a notification; every payload carries it."""
    return {
        "run_id": ctx.run_id,
        "operator": ctx.operator,
        "runbook": ctx.runbook,
        "step": ctx.step_id,
        "item": ctx.item_key,
    }


class _Notify(BaseAction):
    effect: ClassVar[Effect] = Effect.MUTATE
    reversible: ClassVar[bool] = False

    def delivery(self, params: Any, ctx: Context) -> Delivery:
        raise NotImplementedError

    def plan(self, params: Any, ctx: Context) -> Plan:
        from irctl.providers.http import encode_json

        d = self.delivery(params, ctx)
        warnings = list(d.warnings)
        if d.problem:
            warnings.append(f"{d.problem}: this notification would not be delivered")
        return Plan(
            summary=f"{d.channel}: {d.method} {one_line(_describe(d.payload), 120)}",
            details=[
                f"{d.method} {d.shown_url}",
                *d.shown_headers,
                encode_json(d.payload).decode(),
            ],
            targets=[d.target],
            reversible=False,
            data={
                "channel": d.channel,
                "method": d.method,
                "url": d.shown_url,
                "payload": d.payload,
            },
            warnings=warnings,
        )

    def run(self, params: Any, ctx: Context) -> Outcome:
        from irctl.providers.http import HttpProvider, encode_json

        d = self.delivery(params, ctx)
        if d.problem or d.url is None:
            return self.undelivered(params, ctx, d, d.problem or "no URL")
        body = encode_json(d.payload)
        with ctx.mutation(
            d.operation,
            targets=[d.target],
            params={"method": d.method, "url": d.shown_url, "payload": d.payload},
        ) as m:
            try:
                response = ctx.provider(HttpProvider).request(
                    d.method,
                    d.url,
                    label=d.channel,
                    body=body,
                    headers={**d.headers, **self.send_headers(d, body)},
                    retry_reads=d.retry_reads,
                )
            except ProviderError as exc:
                error = str(ctx.journal.redact(exc.message))
                m.result(ok=False, error=error)
                return self.undelivered(params, ctx, d, error)
            extra = self.delivered(response.data, d, ctx)
            m.result(http_status=response.status, attempts=response.attempts, **extra)
        summary = f"delivered to {d.channel} ({response.attempts} attempt(s))"
        output = {
            "delivered": True,
            "channel": d.channel,
            "http_status": response.status,
            "attempts": response.attempts,
            **extra,
            "summary": summary,  # the run table's detail column shows it
        }
        return Outcome(ok=True, output=output, targets=[d.target], summary=summary)

    def reconcile(self, intent: dict[str, Any], ctx: Context) -> Reconciled:
        # A sent message cannot be looked up; sending it again beats blocking the resume.
        return Reconciled("not_applied", detail="cannot check a sent message; it is sent again")

    def send_headers(self, d: Delivery, body: bytes) -> dict[str, str]:
        return {}

    def delivered(self, data: Any, d: Delivery, ctx: Context) -> dict[str, Any]:
        return {}

    def undelivered(self, params: Any, ctx: Context, d: Delivery, error: str) -> Outcome:
        error = one_line(str(ctx.journal.redact(error)))
        summary = f"NOT delivered to {d.channel}: {error}"
        output = {"delivered": False, "channel": d.channel, "error": error, "summary": summary}
        if getattr(params, "required", False):
            return Outcome(
                ok=False, output=output, error=error, targets=[d.target], summary=summary
            )
        ctx.ui.warn(f"{d.channel} notification not delivered: {error} (the run carries on)")
        return Outcome(ok=True, output=output, targets=[d.target], summary=summary)


class SlackParams(Params):
    text: str
    required: bool = False


class NotifySlack(_Notify):
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
        d.url = env_secret(ctx, cfg.webhook_url_env)
        if d.url is None:
            d.problem = f"the environment variable {cfg.webhook_url_env} is not set"
        return d


class StatuspageParams(Params):
    status: IncidentStatus
    body: str
    name: str | None = None  # the incident's title; needed when this step opens the incident
    incident_id: str | None = None  # default: the incident this run opened
    components: list[str] | None = None  # names from the inventory (or ids); default: all
    component_status: ComponentStatus | None = None  # default: operational once resolved
    impact: Literal["none", "minor", "major", "critical"] | None = None
    deliver_notifications: bool = True
    required: bool = False


class NotifyStatuspage(_Notify):
    name = "notify.statuspage"
    description = "Open or update this run's incident on the Atlassian Statuspage page"
    Params = StatuspageParams

    def delivery(self, params: StatuspageParams, ctx: Context) -> Delivery:
        cfg = ctx.inventory.notify.statuspage
        incident_id = params.incident_id or current_incident(ctx)
        if incident_id is None and ctx.dry_run:
            incident_id = ctx.run_state.get(PLANNED_INCIDENT_KEY)
        creating = incident_id is None
        incident: dict[str, Any] = {
            "status": params.status,
            "body": params.body,
            "deliver_notifications": params.deliver_notifications,
            "metadata": {"irctl": meta(ctx)},
        }
        if params.name or creating:
            incident["name"] = params.name or f"Service disruption ({ctx.runbook or ctx.run_id})"
        if params.impact:
            incident["impact_override"] = params.impact
        warnings: list[str] = []
        ids = _component_ids(params.components, cfg.component_ids if cfg else {}, warnings)
        status = params.component_status or ("operational" if params.status == "resolved" else None)
        if ids:
            incident["component_ids"] = ids
            if status:
                incident["components"] = {cid: status for cid in ids}
        base = cfg.base_url.rstrip("/") if cfg else "(Statuspage not configured)"
        page = cfg.page_id if cfg else "-"
        path = f"/pages/{page}/incidents" + ("" if creating else f"/{incident_id}")
        d = Delivery(
            "statuspage",
            "statuspage.create_incident" if creating else "statuspage.update_incident",
            f"statuspage/{page}",
            "POST" if creating else "PATCH",
            base + path,
            {"incident": incident},
            warnings=warnings,
            retry_reads=not creating,
            incident_id=incident_id,
        )
        if creating and ctx.dry_run:
            ctx.run_state[PLANNED_INCIDENT_KEY] = f"<incident opened by step {ctx.step_id}>"
        if cfg is None:
            d.problem = "notify.statuspage is not configured in the inventory"
            return d
        d.shown_headers = [f"Authorization: OAuth ${cfg.api_key_env}"]
        key = env_secret(ctx, cfg.api_key_env)
        if key is None:
            d.problem = f"the environment variable {cfg.api_key_env} is not set"
            return d
        d.url, d.headers = d.shown_url, {"Authorization": f"OAuth {key}"}
        return d

    def delivered(self, data: Any, d: Delivery, ctx: Context) -> dict[str, Any]:
        incident = data if isinstance(data, dict) else {}
        incident_id = incident.get("id") or d.incident_id
        status = incident.get("status") or d.payload["incident"]["status"]
        ctx.run_state[INCIDENT_KEY] = incident_id
        ctx.run_state[INCIDENT_STATUS_KEY] = status
        return {
            "incident_id": incident_id,
            "status": status,
            "shortlink": incident.get("shortlink"),
        }

    def reconcile(self, intent: dict[str, Any], ctx: Context) -> Reconciled:
        """After a crash mid-step: an update is simply sent again; an opening is looked up."""
        from irctl.providers.http import HttpProvider

        cfg = ctx.inventory.notify.statuspage
        params = intent.get("params") or {}
        if cfg is None or params.get("incident_id") or current_incident(ctx) is not None:
            return Reconciled("not_applied", detail="the incident update is sent again")
        key = env_secret(ctx, cfg.api_key_env)
        if key is None:
            return Reconciled("not_applied", detail=f"{cfg.api_key_env} is not set")
        try:
            response = ctx.provider(HttpProvider).request(
                "GET",
                f"{cfg.base_url.rstrip('/')}/pages/{cfg.page_id}/incidents/unresolved",
                label="statuspage",
                headers={"Authorization": f"OAuth {key}"},
            )
        except ProviderError as exc:
            # Not knowing must not block the resume: at worst customers see two incidents.
            error = ctx.journal.redact(exc.message)
            return Reconciled("not_applied", detail=f"{error}; the incident may be opened twice")
        for incident in response.data if isinstance(response.data, list) else []:
            tag = ((incident.get("metadata") or {}).get("irctl") or {}).get("run_id")
            if tag == ctx.run_id:
                ctx.run_state[INCIDENT_KEY] = incident["id"]
                ctx.run_state[INCIDENT_STATUS_KEY] = incident.get("status")
                output = {
                    "delivered": True,
                    "channel": "statuspage",
                    "incident_id": incident["id"],
                    "status": incident.get("status"),
                    "summary": f"incident {incident['id']} was opened before the crash",
                }
                return Reconciled(
                    "applied",
                    Outcome(ok=True, output=output, targets=[f"statuspage/{cfg.page_id}"]),
                    detail=f"incident {incident['id']} carries this run's id",
                )
        return Reconciled("not_applied", detail="no unresolved incident carries this run's id")


def current_incident(ctx: Context) -> str | None:
    """This run's open incident: from run memory, else from the journal (a resumed run)."""
    if ctx.run_state.get(INCIDENT_KEY):
        return _open(ctx.run_state[INCIDENT_KEY], ctx.run_state.get(INCIDENT_STATUS_KEY))
    found: tuple[str, str | None] | None = None
    for rec in ctx.journal.records(ctx.run_id):
        out = rec.get("outcome") if rec.get("event") == "result" else rec.get("output")
        out = ctx.journal.load_blob(out) if isinstance(out, dict) else out
        if (
            isinstance(out, dict)
            and out.get("incident_id")
            and (
                str(rec.get("action", "")).startswith("statuspage.")
                or rec.get("action") == "notify.statuspage"
            )
        ):
            found = (str(out["incident_id"]), out.get("status"))
    if found is None:
        return None
    ctx.run_state[INCIDENT_KEY], ctx.run_state[INCIDENT_STATUS_KEY] = found
    return _open(*found)


def _open(incident_id: str, status: str | None) -> str | None:
    # A resolved incident is closed; a later "investigating" opens a new one.
    return None if status == "resolved" else incident_id


def _component_ids(
    names: list[str] | None, known: dict[str, str], warnings: list[str]
) -> list[str]:
    if names is None:
        return list(known.values())
    ids = []
    for ref in names:
        if ref in known:
            ids.append(known[ref])
        elif ref in known.values():
            ids.append(ref)
        else:
            warnings.append(
                f"unknown Statuspage component {ref!r} left out "
                f"(inventory has: {', '.join(sorted(known)) or 'none'})"
            )
    return ids


class WebhookParams(Params):
    message: str
    webhook: str | None = None  # a name from the inventory; default: the only one configured
    event: str = "irctl.notification"
    data: dict[str, Any] = {}
    required: bool = False


class NotifyWebhook(_Notify):
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
            secret = env_secret(ctx, hook.secret_env)
            d.secret_env = hook.secret_env
            if secret is None:
                d.url, d.problem = None, f"the environment variable {hook.secret_env} is not set"
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


def _describe(payload: dict[str, Any]) -> str:
    if "incident" in payload:
        inc = payload["incident"]
        return f"incident {inc.get('status')}: {inc.get('body', '')}"
    return str(payload.get("message") or payload.get("text") or "").split("\n")[0]
