"""Templates and conditions: Jinja2's sandbox with undefined names as errors. No `eval`.

A value that is exactly one `{{ expression }}` keeps its native type (a list
stays a list, as in Ansible); any other string with template syntax renders to
a string. `when`, `expect` and `foreach` are bare expressions.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from irctl.durations import parse_duration
from irctl.errors import InputError, one_line


def _cidr(value: Any) -> str:
    return str(ipaddress.ip_network(str(value), strict=False))


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox, plus bounds on `**` and `*` so a runbook cannot hang the process."""

    intercepted_binops = frozenset({"**", "*"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise ValueError("exponent too large in a template")
            return left**right
        if isinstance(left, str | list | tuple) or isinstance(right, str | list | tuple):
            count = right if isinstance(right, int) else left
            if isinstance(count, int) and count > 10_000:
                raise ValueError("repetition too large in a template")
        return left * right


def _build_env() -> ImmutableSandboxedEnvironment:
    env = _Env(undefined=StrictUndefined, autoescape=False)
    env.filters["cidr"] = _cidr
    env.filters["seconds"] = parse_duration
    return env


ENV = _build_env()


class TemplateFailure(InputError):
    """A template or condition could not be evaluated (a name is undefined, a syntax error)."""

    source: str = ""  # the template or expression as written in the runbook


def _failure(source: str, detail: str) -> TemplateFailure:
    failure = TemplateFailure(f"in {source!r}: {detail}")
    failure.source = source
    return failure


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


@lru_cache(maxsize=4096)
def _expression(source: str) -> Any:
    return ENV.compile_expression(source, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _template(source: str) -> Any:
    return ENV.from_string(source)


@lru_cache(maxsize=4096)
def _single_expression(value: str) -> str | None:
    text = value.strip()
    if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
        return text[2:-2].strip()
    return None


_DOTTED = re.compile(r"^\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*$")
_MISSING = object()


@lru_cache(maxsize=4096)
def _dotted_parts(expression: str) -> tuple[str, ...] | None:
    match = _DOTTED.match(expression)
    return tuple(match.group(1).split(".")) if match else None


def _dotted(expression: str, scope: dict[str, Any]) -> Any:
    """Resolve `a.b.c` over plain dicts without Jinja (hot in foreach over many items).

    Returns _MISSING whenever Jinja's semantics could differ (attribute lookups,
    missing keys, names shadowed by dict methods): Jinja then decides.
    """
    parts = _dotted_parts(expression)
    if parts is None:
        return _MISSING
    value: Any = scope.get(parts[0], _MISSING)
    for part in parts[1:]:
        if not isinstance(value, dict) or part not in value or hasattr(dict, part):
            return _MISSING
        value = value[part]
    if value is _MISSING or not isinstance(value, str | int | float | bool | list | dict):
        return _MISSING
    return value


def evaluate(expression: str, scope: dict[str, Any]) -> Any:
    fast = _dotted(expression, scope)
    if fast is not _MISSING:
        return fast
    try:
        result = _expression(expression)(**scope)
        if isinstance(result, Undefined):
            result._fail_with_undefined_error()
        return result
    except TemplateError as exc:
        raise _failure(expression, one_line(str(exc))) from None
    except (TypeError, ValueError, ArithmeticError, KeyError, AttributeError) as exc:
        raise _failure(expression, f"{type(exc).__name__}: {one_line(str(exc))}") from None


def render(value: Any, scope: dict[str, Any]) -> Any:
    """Render every string inside `value` (dicts and lists walked)."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        single = _single_expression(value)
        if single is not None:
            return evaluate(single, scope)
        try:
            return _template(value).render(**scope)
        except TemplateError as exc:
            raise _failure(value, one_line(str(exc))) from None
    if isinstance(value, dict):
        return {k: render(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope) for v in value]
    return value


def parse_expression(expression: str) -> nodes.Node:
    """The AST of an expression (raises jinja2.TemplateSyntaxError)."""
    return ENV.parse("{{ " + expression + " }}")


def parse_template(source: str) -> nodes.Node:
    return ENV.parse(source)


def references(tree: nodes.Node) -> tuple[set[str], set[str], set[str]]:
    """(top-level names, `inputs.X` names, `steps.X` ids) a template refers to."""
    names = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
    inputs: set[str] = set()
    steps: set[str] = set()
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name):
            if node.node.name == "inputs":
                inputs.add(node.attr)
            elif node.node.name == "steps":
                steps.add(node.attr)
    for item in tree.find_all(nodes.Getitem):
        if isinstance(item.node, nodes.Name) and isinstance(item.arg, nodes.Const):
            if item.node.name == "inputs":
                inputs.add(str(item.arg.value))
            elif item.node.name == "steps":
                steps.add(str(item.arg.value))
    return names, inputs, steps


def step_key(step_id: str) -> str:
    """Step ids may contain '-'; templates reach them as `steps.block_storm` too."""
    return step_id.replace("-", "_")
