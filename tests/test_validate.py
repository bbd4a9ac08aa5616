"""The validator: each kind of problem at its exact line and column, all of them at once."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import field_validator

import irctl.actions as registry
from irctl.actions.base import BaseAction, Context, Effect, Outcome, Params
from irctl.durations import parse_duration
from irctl.runbook.loader import RunbookInvalid, load_runbook, validate_file
from irctl.runbook.validate import validate_text


class Look(BaseAction):
    name = "demo.look"
    description = "read a cluster"
    effect = Effect.READ

    class Params(Params):
        cluster: str
        limit: int = 10

    def run(self, params: Any, ctx: Context) -> Outcome:
        return Outcome(ok=True)


class Block(BaseAction):
    name = "demo.block"
    description = "block addresses"
    effect = Effect.MUTATE
    reversible = True

    class Params(Params):
        cluster: str
        cidrs: list[str]
        ttl: str = "30m"
        reason: str

        @field_validator("ttl")
        @classmethod
        def _ttl(cls, value: str) -> str:
            parse_duration(value)  # InputError: the validator must report it, not crash
            return value

    def run(self, params: Any, ctx: Context) -> Outcome:
        return Outcome(ok=True)


@pytest.fixture
def demo_actions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two actions with known Params, registered as the engine would find them."""
    for action in (Look(), Block()):
        monkeypatch.setitem(
            registry.ACTIONS, action.name, f"tests.test_validate:{type(action).__name__}"
        )
        monkeypatch.setitem(registry._loaded, action.name, action)
    monkeypatch.setitem(registry.ACTIONS, "demo.broken", "irctl.no_such_module:Nothing")
    yield


GOOD = """\
apiVersion: irctl/v1
kind: Runbook
name: demo
title: Demo runbook
severity: sev2
inputs:
  cluster: {type: string, required: true}
  wait_for: {type: duration, default: 10s}
steps:
  - id: look
    action: demo.look
    with: {cluster: "{{ inputs.cluster }}"}
  - id: block-storm
    when: "steps.look.output.storm and inputs.cluster != ''"
    action: demo.block
    with:
      cluster: "{{ inputs.cluster }}"
      cidrs: "{{ steps.look.output.sources }}"
      ttl: 30m
      reason: storm of {{ steps.look.output.count }} connections
  - id: each
    foreach: "steps.block_storm.output.ids"
    concurrency: 2
    action: demo.look
    with: {cluster: "{{ item }}", limit: "{{ inputs.wait_for | seconds | int }}"}
    expect: "output.ok and item"
    retries: 2
    retry_delay: 1m30s
    timeout: 500ms
  - id: verify
    action: demo.look
    with:
      cluster: >-
        {% for h in steps.each.output['items'] %}{{ h.item }}{{ loop.index }}{% endfor %}
    expect: "steps['block-storm'].status == 'succeeded' and run.dry_run is false"
on_failure: rollback
"""


def check(text: str) -> list[str]:
    _, problems = validate_text(textwrap.dedent(text), "rb.yaml")
    return [p.render() for p in problems]


def at(text: str, needle: str, nth: int = 0, offset: int = 0) -> str:
    """`rb.yaml:line:col` of the nth occurrence of `needle` in `text`, computed independently."""
    index = -1
    for _ in range(nth + 1):
        index = text.index(needle, index + 1)
    index += offset
    line = text.count("\n", 0, index) + 1
    return f"rb.yaml:{line}:{index - (text.rfind(chr(10), 0, index) + 1) + 1}"


def edited(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def test_a_valid_runbook_has_no_problem(demo_actions: None) -> None:
    runbook, problems = validate_text(GOOD, "rb.yaml")
    assert problems == []
    assert runbook is not None and [s.id for s in runbook.steps][-1] == "verify"


def test_yaml_syntax_error_points_at_the_bad_spot() -> None:
    assert check("a: [1, 2\nb: 3\n") == [
        "rb.yaml:2:2: YAML syntax: did not find expected ',' or ']'"
    ]


def test_not_a_mapping_and_empty_file() -> None:
    assert check("- a\n- b\n") == [
        "rb.yaml:1:1: a runbook is a mapping of apiVersion, kind, name, title, steps; got a list"
    ]
    assert check("") == [
        "rb.yaml:1:1: a runbook is a mapping of apiVersion, kind, name, title, steps; "
        "got an empty file"
    ]


def test_unknown_field_points_at_its_key_with_a_suggestion(demo_actions: None) -> None:
    text = edited("    retries: 2\n", "    retries: 2\n    retyr_delay: 1s\n")
    assert check(text) == [
        f"{at(text, 'retyr_delay')}: step 'each': unknown field 'retyr_delay' "
        "(did you mean retry_delay?)"
    ]
    assert at(text, "retyr_delay") == "rb.yaml:28:5"  # the helper itself, checked by hand once
    text = edited("severity: sev2", "severity: sev2\ncolour: red")
    assert check(text) == ["rb.yaml:6:1: unknown field 'colour'"]


def test_missing_fields_point_at_their_mapping(demo_actions: None) -> None:
    assert check(edited("title: Demo runbook\n", "")) == [
        "rb.yaml:1:1: missing required field 'title'"
    ]
    text = edited('    action: demo.look\n    with: {cluster: "{{ inputs.cluster }}"}\n', "")
    assert check(text) == [f"{at(text, 'id: look')}: step 'look': missing required field 'action'"]


def test_wrong_types_point_at_the_value(demo_actions: None) -> None:
    text = edited("concurrency: 2", "concurrency: lots")
    assert check(text) == [
        f"{at(text, 'lots')}: step 'each': concurrency: expected an integer, got str"
    ]
    text = edited("timeout: 500ms", "timeout: [1]")
    assert check(text) == [
        f"{at(text, '[1]')}: step 'each': timeout: expected a string or a number, got list"
    ]
    assert check(edited("severity: sev2", "severity: sev9")) == [
        "rb.yaml:5:11: severity: Input should be 'sev1', 'sev2', 'sev3' or 'sev4'"
    ]


def test_bad_durations(demo_actions: None) -> None:
    text = edited("retry_delay: 1m30s", "retry_delay: 1m30x")
    assert check(text) == [f"{at(text, '1m30x')}: step 'each': retry_delay: bad duration '1m30x'"]
    text = edited("default: 10s", "default: soon")
    assert check(text) == [f"{at(text, 'soon')}: input 'wait_for': 'soon' is not a valid duration"]
    # Block's validator raises InputError rather than ValueError: still found, at the field.
    text = edited("ttl: 30m", "ttl: 30 minutes")
    assert check(text) == [f"{at(text, '30 minutes')}: demo.block: ttl: bad duration '30 minutes'"]


def test_unknown_action_lists_close_matches(demo_actions: None) -> None:
    text = edited("action: demo.block", "action: demo.blok")
    assert check(text) == [
        f"{at(text, 'demo.blok')}: unknown action 'demo.blok' "
        "(did you mean demo.block, demo.look, demo.broken?)"
    ]
    text = edited("action: demo.block", "action: reboot.everything")
    (problem,) = check(text)
    assert problem.startswith(f"{at(text, 'reboot')}: unknown action 'reboot.everything' (known: ")
    assert "demo.block" in problem and "wait" in problem


def test_an_action_that_cannot_load_is_a_problem_not_a_crash(demo_actions: None) -> None:
    text = edited("action: demo.block", "action: demo.broken")
    assert check(text) == [
        f"{at(text, 'demo.broken')}: action 'demo.broken' cannot be loaded: "
        "ModuleNotFoundError: No module named 'irctl.no_such_module'"
    ]


def test_parameters_against_the_action(demo_actions: None) -> None:
    # A parameter it does not take (templated or not), at its key.
    text = edited("ttl: 30m", "ttl: 30m\n      reasn: x")
    assert check(text) == [
        f"{at(text, 'reasn')}: action 'demo.block' takes no parameter 'reasn' "
        "(did you mean reason?)"
    ]
    text = edited("ttl: 30m", 'ttl: 30m\n      extra: "{{ inputs.cluster }}"')
    assert check(text) == [
        f"{at(text, 'extra')}: action 'demo.block' takes no parameter 'extra' "
        "(it takes: cidrs, cluster, reason, ttl)"
    ]
    # A missing required parameter, at the `with` key.
    text = edited('      cidrs: "{{ steps.look.output.sources }}"\n', "")
    assert check(text) == [f"{at(text, 'with:', 1)}: action 'demo.block' needs parameter 'cidrs'"]
    # A literal of the wrong type; a template in its place is checked at run time.
    text = edited('limit: "{{ inputs.wait_for | seconds | int }}"', "limit: many")
    assert check(text) == [f"{at(text, 'many')}: demo.look: limit: expected an integer, got str"]
    text = edited('cidrs: "{{ steps.look.output.sources }}"', "cidrs: 203.0.113.0/24")
    assert check(text) == [f"{at(text, '203.')}: demo.block: cidrs: expected a list, got str"]
    # No `with` at all: missing parameters point at the step.
    text = edited('    with: {cluster: "{{ inputs.cluster }}"}\n', "")
    assert check(text) == [f"{at(text, 'id: look')}: action 'demo.look' needs parameter 'cluster'"]


def test_duplicate_step_ids(demo_actions: None) -> None:
    text = edited("  - id: verify", "  - id: look")
    assert check(text) == [
        f"{at(text, '- id: look', 1, offset=6)}: duplicate step id 'look' (first at line 10)"
    ]
    # The second one is dropped, so steps.block_storm in its foreach is the first: no problem.
    text = edited("  - id: each", "  - id: block_storm").replace("steps.each.", "x.")
    assert check(text) == [
        f"{at(text, 'block_storm', 0)}: step id 'block_storm' is the same to templates "
        "(steps.block_storm) as an earlier one (first at line 13)",
        f"{at(text, '>-')}: with: undefined name 'x' (templates see inputs, steps, inventory, run)",
    ]


def test_references_to_unknown_later_and_own_steps(demo_actions: None) -> None:
    where = at(GOOD, '"steps.look.output.storm')
    assert check(edited("steps.look.output.storm", "steps.lok.output.storm")) == [
        f"{where}: when: unknown step 'lok' (did you mean look?)"
    ]
    assert check(edited("steps.look.output.storm", "steps.verify.output.storm")) == [
        f"{where}: when: step 'verify' runs later (step 4); only earlier steps have output"
    ]
    text = edited('expect: "output.ok and item"', 'expect: "steps.each.output.ok"')
    assert check(text) == [
        f"{at(text, chr(34) + 'steps.each')}: expect: step 'each' refers to itself: "
        "use `output` for this step's own result"
    ]
    text = edited("{{ steps.look.output.count }}", "{{ steps['verify'] }}")
    assert check(text) == [
        f"{at(text, 'storm of')}: with: step 'verify' runs later (step 4); "
        "only earlier steps have output"
    ]


def test_template_names(demo_actions: None) -> None:
    where = at(GOOD, '"{{ inputs.cluster }}"')
    assert check(edited("{{ inputs.cluster }}", "{{ inputs.clustr }}")) == [
        f"{where}: with: undefined input 'clustr' (did you mean cluster?)"
    ]
    assert check(edited("{{ inputs.cluster }}", "{{ cluster }}")) == [
        f"{where}: with: undefined name 'cluster' (did you mean inputs.cluster?)"
    ]
    assert check(edited("{{ inputs.cluster }}", "{{ inventori.clusters }}")) == [
        f"{where}: with: undefined name 'inventori' (did you mean inventory?)"
    ]
    assert check(edited("{{ inputs.cluster }}", "{{ look.output }}")) == [
        f"{where}: with: undefined name 'look' (did you mean steps.look.output?)"
    ]
    assert check(edited("{{ inputs.cluster }}", "{{ item }}")) == [
        f"{where}: with: undefined name 'item': "
        "item is defined only in `with` and `expect` of a step with foreach"
    ]
    assert check(edited("steps.look.output.storm", "output.storm")) == [
        f"{at(GOOD, chr(34) + 'steps.look')}: when: undefined name 'output': "
        "output is defined only in `expect` (elsewhere: steps.<id>.output)"
    ]
    text = edited("| seconds |", "| secs |")
    assert check(text) == [
        f"{at(text, chr(34) + '{{ inputs.wait_for')}: with: unknown filter 'secs' "
        "(did you mean seconds, select?)"
    ]


def test_template_syntax_errors(demo_actions: None) -> None:
    where = at(GOOD, '"{{ inputs.cluster }}"')
    assert check(edited("{{ inputs.cluster }}", "{{ inputs.cluster }")) == [
        f"{where}: with: template syntax: unexpected '}}'"
    ]
    assert check(edited("storm and inputs", "storm and (inputs")) == [
        f"{at(GOOD, chr(34) + 'steps.look')}: when: template syntax: "
        "unexpected end of template, expected ')'."
    ]
    text = edited('foreach: "steps.block_storm.output.ids"', 'foreach: "{{ x }}"')
    assert check(text) == [
        f"{at(text, chr(34) + '{{ x')}: foreach: "
        "this is a bare expression: write it without {{ }}"
    ]


def test_multi_line_templates_and_tests(demo_actions: None) -> None:
    # A literal block keeps the line break, so the error is on line 2 of the template.
    text = edited("{% endfor %}", "\n        {% endfro %}").replace("cluster: >-", "cluster: |-")
    assert check(text) == [
        f"{at(text, '|-')}: with: template syntax: Encountered unknown tag 'endfro'. "
        "Jinja was looking for the following tags: 'endfor' or 'else'. The innermost block "
        "that needs to be closed is 'for'. (line 2 of the template)"
    ]
    text = edited("run.dry_run is false", "run.dry_run is fals")
    assert check(text) == [
        f"{at(text, chr(34) + 'steps[')}: expect: unknown test 'fals' (did you mean false?)"
    ]


def test_lock_is_rendered_before_steps(demo_actions: None) -> None:
    text = edited("on_failure: rollback", 'on_failure: rollback\nlock: "{{ steps.look }}"')
    assert check(text) == [
        f"{at(text, chr(34) + '{{ steps.look }}')}: lock: steps.look: "
        "the lock is rendered before any step runs"
    ]


def test_many_problems_at_once_sorted_by_position(demo_actions: None) -> None:
    text = GOOD.replace("severity: sev2", "severity: sev9")
    text = text.replace("action: demo.block", "action: demo.blok")
    text = text.replace("retry_delay: 1m30s", "retry_delay: never")
    text = text.replace("  - id: verify", "  - id: look")
    problems = check(text)
    assert [p.split(": ")[0] for p in problems] == [
        at(text, "sev9"),
        at(text, "demo.blok"),
        at(text, "never"),
        at(text, "- id: look", 1, offset=6),
    ]


def test_files_load_runbook_and_its_error(demo_actions: None, tmp_path: Path) -> None:
    good = tmp_path / "demo.yaml"
    good.write_text(GOOD)
    assert load_runbook(good).name == "demo"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        GOOD.replace("severity: sev2", "severity: sev9").replace("kind: Runbook", "kind: X")
    )
    with pytest.raises(RunbookInvalid) as caught:
        load_runbook(bad)
    assert len(caught.value.problems) == 2
    assert caught.value.message.startswith(f"{bad}:2:7: kind: Input should be 'Runbook'")
    assert caught.value.message.endswith("(1 more)")
    assert "irctl validate" in (caught.value.hint or "")


def test_unreadable_files_are_problems(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert [p.render() for p in validate_file(missing)[1]] == [
        f"{missing}:1:1: cannot read: No such file or directory"
    ]
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"a: 1\nb: \xff\xfe\n")
    assert [p.render() for p in validate_file(binary)[1]] == [f"{binary}:2:4: not UTF-8 text"]
    huge = tmp_path / "huge.yaml"
    huge.write_text("a: " + "x" * (2 * 1024 * 1024))
    assert validate_file(huge)[1][0].message == "larger than 1024 KiB: not a runbook"


def test_alias_bomb_is_one_problem() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    problems = check("\n".join(lines) + "\n")
    assert len(problems) == 1 and "YAML too large" in problems[0]
    assert check("a: &a [*a]\n") == ["rb.yaml:1:4: YAML alias refers to a value that contains it"]
