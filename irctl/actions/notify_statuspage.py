"""`notify.statuspage`: open this run's incident on the Atlassian Statuspage page, then update it.

The incident a run opened is remembered in the run's state and found again in the
journal on resume, so later steps update it rather than opening a second one.
"""

from __future__ import annotations

from typing import Any, Literal

from irctl.actions.base import Context, Outcome, Params, Reconciled
from irctl.actions.notify_delivery import Delivery, NotifyAction, env_secret, meta
from irctl.errors import ProviderError

INCIDENT_KEY = "statuspage_incident_id"
INCIDENT_STATUS_KEY = "statuspage_incident_status"
PLANNED_INCIDENT_KEY = "statuspage_planned_incident"
IncidentStatus = Literal["investigating", "identified", "monitoring", "resolved"]
ComponentStatus = Literal[
    "operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage"
]


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


class NotifyStatuspage(NotifyAction):
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
        key = d.secret(ctx, cfg.api_key_env)
        if key is None:
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
