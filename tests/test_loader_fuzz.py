"""Random YAML, bytes, structures and templates at the loader: clean problems, never a crash."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irctl.actions import ACTIONS
from irctl.runbook.loader import validate_file
from irctl.runbook.model import Runbook
from irctl.runbook.validate import validate_text
from irctl.runbook.yamlpos import Problem, load_with_positions
from irctl.settings import SHIPPED_RUNBOOKS

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BASE: dict[str, Any] = {
    "apiVersion": "irctl/v1",
    "kind": "Runbook",
    "name": "fuzz",
    "title": "Fuzz",
    "inputs": {"cluster": {"type": "string", "required": True}},
    "steps": [
        {"id": "settle", "action": "wait", "with": {"duration": "1s"}},
        {
            "id": "each",
            "action": "confirm",
            "foreach": "[1, 2]",
            "with": {"message": "{{ item }} on {{ inputs.cluster }}"},
            "expect": "output.ok",
        },
    ],
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["{{ inputs.cluster }}", "{{ steps.settle.output }}", "{% for", "30m", "5x"]),
)
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=25,
)
TOKENS = [
    "{",
    "}",
    "[",
    "]",
    ":",
    ": ",
    "- ",
    "&a ",
    "*a ",
    "&b ",
    "*b ",
    "<<: ",
    "? ",
    "|",
    ">-",
    "!!binary ",
    "!!python/object:os.system ",
    "!!set ",
    "!!timestamp ",
    "!custom ",
    "%YAML 1.1\n",
    "---\n",
    "...\n",
    "\n",
    "  ",
    "\t",
    "'",
    '"',
    "#",
    "x",
    "1",
    "-1e999",
    "2001-13-45",
    "{{",
    "}}",
    "{%",
    "%}",
    "steps:",
    "id: a",
    "action: wait",
    "with:",
    "\\",
    "\x00",
    "\ufeff",
]
jinja_soup = st.lists(
    st.sampled_from(
        [
            "{{",
            "}}",
            "{%",
            "%}",
            "(",
            ")",
            "[",
            "]",
            "steps",
            "inputs",
            ".",
            "item",
            "output",
            "|",
            "seconds",
            "nosuch",
            " and ",
            " is ",
            "defined",
            "'",
            '"',
            "1",
            "x",
            "for",
            "in",
            "endfor",
            "set",
            "=",
            "loop",
            "-",
            "_",
            "block-storm",
            "\n",
            "#}",
            "{#",
            "**",
            "~",
        ]
    ),
    max_size=20,
).map("".join)


def assert_clean(result: tuple[Runbook | None, list[Problem]]) -> None:
    runbook, problems = result
    assert isinstance(problems, list)
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.line >= 1 and problem.col >= 1
        assert problem.message and "\n" not in problem.render()
        assert "Traceback" not in problem.message
    assert (runbook is None) == bool(problems)


@FUZZ
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    assert_clean(validate_text(text, "f.yaml"))
    data, _, problems = load_with_positions(text, "f.yaml")
    assert data is None or not problems or all(p.message for p in problems)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_yaml_token_soup(text: str) -> None:
    assert_clean(validate_text(text, "f.yaml"))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_from_a_file(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.yaml"
        path.write_bytes(raw)
        assert_clean(validate_file(path))


@FUZZ
@given(structures)
def test_random_structures(value: Any) -> None:
    assert_clean(validate_text(yaml.safe_dump(value), "f.yaml"))


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    (),
                    ("inputs",),
                    ("inputs", "cluster"),
                    ("steps",),
                    ("steps", 0),
                    ("steps", 1),
                    ("steps", 0, "with"),
                    ("steps", 1, "with"),
                ]
            ),
            st.one_of(
                st.sampled_from(
                    [
                        "id",
                        "action",
                        "with",
                        "when",
                        "foreach",
                        "expect",
                        "retries",
                        "retry_delay",
                        "timeout",
                        "type",
                        "default",
                        "lock",
                        "steps",
                        "duration",
                        "message",
                        "concurrency",
                        "on_failure",
                    ]
                ),
                st.text(max_size=8),
            ),
            st.one_of(structures, jinja_soup, st.sampled_from(sorted(ACTIONS))),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_runbooks(changes: list[tuple[tuple[Any, ...], str, Any]]) -> None:
    """A valid runbook with random values put at random places: the deep checks get exercised."""
    data = copy.deepcopy(BASE)
    for parent, key, value in changes:
        node: Any = data
        for part in parent:
            if (
                isinstance(node, dict)
                and isinstance(part, str)
                and isinstance(node.get(part), dict | list)
            ) or (isinstance(node, list) and isinstance(part, int) and part < len(node)):
                node = node[part]
        if isinstance(node, dict):
            node[key] = value
        elif isinstance(node, list):
            node.append({key: value})
    assert_clean(validate_text(yaml.safe_dump(data), "f.yaml"))


@FUZZ
@given(jinja_soup, jinja_soup, jinja_soup)
def test_random_templates(when: str, message: str, foreach: str) -> None:
    data = copy.deepcopy(BASE)
    data["steps"][1].update(when=when, foreach=foreach, with_={})
    data["steps"][1]["with"] = {"message": message}
    del data["steps"][1]["with_"]
    data["lock"] = message
    assert_clean(validate_text(yaml.safe_dump(data), "f.yaml"))


SHIPPED = [yaml.safe_load(p.read_text()) for p in sorted(SHIPPED_RUNBOOKS.glob("*.yaml"))]


@FUZZ
@given(
    st.sampled_from(SHIPPED or [BASE]),
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=40),
            st.sampled_from(["with", "when", "foreach", "expect", "action", "id"]),
            st.text(max_size=12),
            st.one_of(structures, jinja_soup),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_shipped_runbooks(
    original: dict[str, Any], changes: list[tuple[int, str, str, Any]]
) -> None:
    """Real actions' Params (their own validators included) meet random values."""
    data = copy.deepcopy(original)
    for index, field, key, value in changes:
        step = data["steps"][index % len(data["steps"])]
        if field == "with" and isinstance(step.get("with"), dict):
            params = list(step["with"]) or [key]
            step["with"][params[index % len(params)] if index % 3 else key] = value
        else:
            step[field] = value
    assert_clean(validate_text(yaml.safe_dump(data), "f.yaml"))


def test_the_base_runbook_is_valid() -> None:
    """Without this the mutation test could pass on a runbook that never got past the model."""
    runbook, problems = validate_text(yaml.safe_dump(BASE), "f.yaml")
    assert problems == [] and runbook is not None
