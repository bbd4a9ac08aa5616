"""The published JSON Schema: current, well-formed, and agreeing with the validator."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from irctl.actions import ACTIONS
from irctl.cli.main import main
from irctl.runbook.loader import find_runbooks, validate_file
from irctl.runbook.schema import runbook_schema, schema_text
from irctl.runbook.validate import validate_text
from irctl.settings import SHIPPED_RUNBOOKS

DOC = Path(__file__).resolve().parent.parent / "docs" / "runbook.schema.json"

EXAMPLE: dict[str, Any] = {
    "apiVersion": "irctl/v1",
    "kind": "Runbook",
    "name": "example",
    "title": "Example",
    "severity": "sev3",
    "inputs": {"cluster": {"type": "string", "required": True}},
    "steps": [
        {"id": "settle", "action": "wait", "with": {"duration": "1m30s"}, "retry_delay": "10s"},
        {
            "id": "ask",
            "action": "confirm",
            "with": {"message": "go?", "default": "{{ inputs.cluster == 'x' }}"},
            "timeout": 30,
        },
    ],
    "on_failure": "rollback",
}


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = runbook_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)  # the schema itself is valid JSON Schema (draft-07)
    return cls(schema)


def test_published_schema_is_current() -> None:
    assert DOC.read_text() == schema_text(), (
        "docs/runbook.schema.json is stale: regenerate it with "
        "`python -m irctl schema > docs/runbook.schema.json`"
    )


def test_irctl_schema_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["schema"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and out == schema_text()
    doc = json.loads(out)
    assert doc["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert doc["title"] == "irctl runbook (irctl/v1)"
    step = doc["$defs"]["Step"]
    assert step["properties"]["action"]["enum"] == sorted(ACTIONS)
    assert all(p.get("description") for p in step["properties"].values())
    rules = {r["if"]["properties"]["action"]["const"] for r in step["allOf"]}
    assert {"wait", "confirm", "manual", "assert"} <= rules


def test_the_example_and_shipped_runbooks_pass(validator: jsonschema.protocols.Validator) -> None:
    assert list(validator.iter_errors(EXAMPLE)) == []
    for path in find_runbooks([SHIPPED_RUNBOOKS]).values():
        data = yaml.safe_load(path.read_text())
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(data)
        ]
        assert errors == [], path
        assert validate_file(path)[1] == [], path  # and the validator agrees


def test_the_documented_example_is_valid(validator: jsonschema.protocols.Validator) -> None:
    guide = (DOC.parent / "writing-runbooks.md").read_text()
    example = guide.split("## An example", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    runbook, problems = validate_text(example, "example.yaml")
    assert problems == [] and runbook is not None
    assert list(validator.iter_errors(yaml.safe_load(example))) == []


def _errors(validator: jsonschema.protocols.Validator, data: dict[str, Any]) -> list[str]:
    return sorted(
        f"{'/'.join(map(str, e.absolute_path))}: {e.validator}" for e in validator.iter_errors(data)
    )


def test_the_schema_catches_what_the_validator_catches(
    validator: jsonschema.protocols.Validator,
) -> None:
    def broken(**changes: Any) -> dict[str, Any]:
        data = copy.deepcopy(EXAMPLE)
        for path, value in changes.items():
            *parents, last = path.split("__")
            node: Any = data
            for part in parents:
                node = node[int(part)] if part.isdigit() else node[part]
            node[last] = value
        return data

    assert _errors(validator, broken(colour="red")) == [": additionalProperties"]
    assert _errors(validator, broken(steps__0__action="wiat")) == ["steps/0/action: enum"]
    # Per-action parameters: an unknown one, a wrong literal type, a duration that isn't one.
    assert _errors(validator, broken(steps__0__with={"duration": "1s", "bogus": 1})) == [
        "steps/0/with: additionalProperties"
    ]
    assert _errors(validator, broken(steps__1__with={"message": "go?", "default": 3})) == [
        "steps/1/with/default: anyOf"
    ]
    assert _errors(validator, broken(steps__1__with={"default": True})) == [
        "steps/1/with: required"
    ]
    assert _errors(validator, broken(steps__0__retry_delay="soon")) == [
        "steps/0/retry_delay: anyOf"
    ]
    assert _errors(validator, broken(steps__0__retry_delay="1h30m")) == []
