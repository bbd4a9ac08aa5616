"""The JSON Schema of the runbook format, for editors (yaml-language-server) and `irctl schema`.

Built from the pydantic models, with descriptions, `action` as an enum of the
registry and, per action, its `with` parameters (from the action's Params) under
`if action == X then with: ...`. A parameter may always be a template string
instead, since its value is known only at run time.
"""

from __future__ import annotations

import json
from typing import Any

from irctl.runbook.model import Runbook

DRAFT = "http://json-schema.org/draft-07/schema#"
# parse_duration's forms: plain seconds, or number+unit pairs like 1h30m, 500ms.
DURATION_PATTERN = r"^\s*([0-9]+(\.[0-9]+)?|([0-9]+(\.[0-9]+)?([mM][sS]|[sSmMhHdD]))+)\s*$"
TEMPLATE = {
    "type": "string",
    "pattern": r"\{\{|\{%",
    "description": "A Jinja2 template, rendered when the step runs",
}

RUNBOOK_DOCS = {
    "apiVersion": "Version of the runbook format: irctl/v1.",
    "kind": "Always Runbook.",
    "name": "What `irctl run NAME` calls it; keep it equal to the file name without .yaml.",
    "title": "One line: the incident this runbook handles.",
    "severity": "The severity this incident type usually is.",
    "description": "When to reach for this runbook, in a few sentences.",
    "inputs": "Values the operator passes with `-p name=value`; templates read `inputs.name`.",
    "lock": "Template naming the cluster this run locks; default: the `cluster` input.",
    "steps": "Run in order; a step sees the output of earlier steps as steps.<id>.output.",
    "on_failure": "When a step fails: abort (stop), continue, or rollback (undo this run's "
    "reversible actions, newest first). A step may override it.",
}
STEP_DOCS = {
    "id": "Unique in the runbook; templates reach it as steps.<id> (- may be written _).",
    "title": "One line shown while the step runs; default: the id.",
    "action": "What the step does: an action name from `irctl schema`'s enum.",
    "with": "The action's parameters; any value may be a {{ template }}.",
    "when": "Bare Jinja2 expression; false: the step is `not run` with this reason.",
    "foreach": "Bare expression giving a list; the action runs once per `item`.",
    "concurrency": "With foreach: how many items run at once.",
    "max_failures": "With foreach: how many items may fail before the step fails.",
    "expect": "Bare expression over `output` (and `item`) that must hold, else the step fails.",
    "retries": "How many times to retry a failed step (or unmet expect).",
    "retry_delay": "Pause between retries: 10s, 1m, 1h30m, 500ms or plain seconds.",
    "timeout": "Cancel the step after this long: 30s, 10m, or plain seconds.",
    "confirm": "Ask the operator before running; default: mutating steps ask.",
    "on_failure": "Override the runbook's on_failure for this step.",
    "description": "Notes for the operator reading `irctl runbooks show`.",
}
INPUT_DOCS = {
    "type": "How `-p name=value` is parsed.",
    "default": "Used when the operator does not pass the input.",
    "required": "The run refuses to start without it.",
    "description": "Shown by `irctl runbooks show`.",
    "choices": "The only values accepted.",
}


def runbook_schema() -> dict[str, Any]:
    base = Runbook.model_json_schema(by_alias=True)
    defs: dict[str, Any] = base.pop("$defs")
    base.pop("title", None)
    _describe(base, RUNBOOK_DOCS)
    _describe(defs["Step"], STEP_DOCS)
    _describe(defs["InputSpec"], INPUT_DOCS)
    step = defs["Step"]["properties"]
    for name in ("retry_delay", "timeout"):
        for option in step[name].get("anyOf", []):
            if option.get("type") == "string":
                option["pattern"] = DURATION_PATTERN
    from irctl.actions import ACTIONS

    step["action"]["enum"] = sorted(ACTIONS)
    rules = []
    for action in sorted(ACTIONS):
        params = action_params_schema(action, defs)
        if params is not None:
            rules.append(
                {
                    "if": {"properties": {"action": {"const": action}}, "required": ["action"]},
                    "then": {"properties": {"with": params}},
                }
            )
    defs["Step"]["allOf"] = rules
    return {
        "$schema": DRAFT,
        "title": "irctl runbook (irctl/v1)",
        "description": "A codified incident procedure run by `irctl run`. "
        "Check one with `irctl validate FILE`.",
        **base,
        "$defs": dict(sorted(defs.items())),
    }


def action_params_schema(action: str, defs: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of an action's `with`, its nested definitions moved into `defs`."""
    from irctl.actions import get_action

    try:
        loaded = get_action(action)
        schema: dict[str, Any] = loaded.Params.model_json_schema(by_alias=True)
        description = loaded.description
    except Exception:  # an action that does not load gets no `with` schema
        return None
    prefix = f"{action}."
    for name, sub in schema.pop("$defs", {}).items():
        defs[prefix + name] = _rename_refs(sub, prefix)
    schema = _rename_refs(schema, prefix)
    schema.pop("title", None)
    schema["description"] = f"{action}: {description}"
    props = schema.get("properties", {})
    for name, prop in list(props.items()):
        props[name] = _or_template(prop)
    return schema


def _or_template(prop: dict[str, Any]) -> dict[str, Any]:
    outer: dict[str, Any] = {
        k: prop.pop(k) for k in ("title", "description", "default") if k in prop
    }
    outer.pop("title", None)
    return {**outer, "anyOf": [prop, TEMPLATE]}


def _rename_refs(node: Any, prefix: str) -> Any:
    if isinstance(node, dict):
        out = {k: _rename_refs(v, prefix) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = "#/$defs/" + prefix + ref.removeprefix("#/$defs/")
        return out
    if isinstance(node, list):
        return [_rename_refs(v, prefix) for v in node]
    return node


def _describe(model_schema: dict[str, Any], docs: dict[str, str]) -> None:
    for name, prop in model_schema.get("properties", {}).items():
        prop.pop("title", None)
        if name in docs:
            prop["description"] = docs[name]


def schema_text() -> str:
    """The schema as `irctl schema` prints it and docs/runbook.schema.json holds it."""
    return json.dumps(runbook_schema(), indent=2, ensure_ascii=False) + "\n"
