"""What every notification shares: the request it would send, and plan/run/undelivered.

A channel (`irctl.actions.notify`, `irctl.actions.notify_statuspage`) only builds its
`Delivery`; sending it, journaling it and turning a failure into a warning happen here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from irctl.actions.base import BaseAction, Context, Effect, Outcome, Plan, Reconciled
from irctl.errors import ProviderError, one_line


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

    def secret(self, ctx: Context, env_name: str) -> str | None:
        """The secret in `env_name`, registered for redaction; when unset, say why not sent."""
        value = env_secret(ctx, env_name)
        if value is None:
            self.problem = f"the environment variable {env_name} is not set"
        return value


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


class NotifyAction(BaseAction):
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


def _describe(payload: dict[str, Any]) -> str:
    if "incident" in payload:
        inc = payload["incident"]
        return f"incident {inc.get('status')}: {inc.get('body', '')}"
    return str(payload.get("message") or payload.get("text") or "").split("\n")[0]
