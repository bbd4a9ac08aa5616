"""Checking the templates and expressions of a runbook: syntax, names, inputs, step references.

A template may only name what the engine puts in its scope, declared inputs, and
steps that run before it; `foreach` steps add `item`, `expect` adds `output`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jinja2 import TemplateSyntaxError, nodes
from jinja2.parser import Parser

from irctl.errors import one_line
from irctl.runbook.templating import ENV, is_template, parse_template, references
from irctl.runbook.validate_report import Report, suggest
from irctl.runbook.yamlpos import Path_

# What the engine puts in a template's scope (engine.Engine._scope), plus Jinja's globals.
CORE_NAMES = ("inputs", "steps", "inventory", "run")
SCOPE_NAMES = frozenset({*CORE_NAMES, *ENV.globals})
EXPRESSIONS = ("when", "foreach", "expect")


@dataclass(frozen=True)
class Site:
    """One template or expression in a runbook and what its scope holds."""

    path: Path_
    text: str
    field: str  # when | foreach | expect | with | lock
    index: int  # the step it belongs to; -1 for the runbook's lock (before any step)
    has_item: bool


def parse_site(site: Site) -> nodes.Node:
    if site.field not in EXPRESSIONS:
        return parse_template(site.text)
    # As Environment.compile_expression parses it, without compiling.
    parser = Parser(ENV, site.text, state="variable")
    tree = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
    return tree


def check_template(site: Site, declared: set[str], order: dict[str, int], report: Report) -> None:
    def add(message: str) -> None:
        report.add(site.path, f"{site.field}: {message}")

    if site.field in EXPRESSIONS and is_template(site.text):
        add("this is a bare expression: write it without {{ }}")
        return
    try:
        tree = parse_site(site)
    except TemplateSyntaxError as exc:
        where = f" (line {exc.lineno} of the template)" if exc.lineno and exc.lineno > 1 else ""
        add(f"template syntax: {one_line(exc.message or 'invalid')}{where}")
        return
    except RecursionError:
        add("template nested too deeply")
        return
    names, inputs, steps = references(tree)
    every = list(tree.find_all(nodes.Node))  # one walk for the checks below
    for name in sorted(names - _allowed(site, every)):
        add(f"undefined name {name!r}{_name_hint(name, site, declared, order)}")
    for name in sorted(inputs - declared):
        add(f"undefined input {name!r}{suggest(name, declared) or _declared(declared)}")
    for ref in sorted(steps):
        _check_reference(ref, site, order, add)
    for node in every:
        if isinstance(node, nodes.Filter) and node.name not in ENV.filters:
            add(f"unknown filter {node.name!r}{suggest(node.name, ENV.filters)}")
        elif isinstance(node, nodes.Test) and node.name not in ENV.tests:
            add(f"unknown test {node.name!r}{suggest(node.name, ENV.tests)}")


def _allowed(site: Site, every: list[nodes.Node]) -> set[str]:
    allowed = set(SCOPE_NAMES)
    for node in every:
        if isinstance(node, nodes.Name) and node.ctx in ("store", "param"):
            allowed.add(node.name)
        elif isinstance(node, nodes.For):
            allowed.add("loop")
        elif isinstance(node, nodes.Macro):
            allowed |= {"caller", "varargs", "kwargs"}
    if site.has_item:
        allowed.add("item")
    if site.field == "expect":
        allowed.add("output")
    return allowed


def _name_hint(name: str, site: Site, declared: set[str], order: dict[str, int]) -> str:
    if name == "item":
        return ": item is defined only in `with` and `expect` of a step with foreach"
    if name == "output":
        return ": output is defined only in `expect` (elsewhere: steps.<id>.output)"
    if name in declared:
        return f" (did you mean inputs.{name}?)"
    if name in order:
        return f" (did you mean steps.{name}.output?)"
    return suggest(name, CORE_NAMES) or f" (templates see {', '.join(CORE_NAMES)})"


def _declared(declared: set[str]) -> str:
    return f" (declared: {', '.join(sorted(declared))})" if declared else " (no inputs declared)"


def _check_reference(
    ref: str, site: Site, order: dict[str, int], add: Callable[[str], None]
) -> None:
    if ref not in order:
        add(f"unknown step {ref!r}{suggest(ref, order)}")
    elif site.index < 0:
        add(f"steps.{ref}: the lock is rendered before any step runs")
    elif order[ref] == site.index:
        tip = ": use `output` for this step's own result" if site.field == "expect" else ""
        add(f"step {ref!r} refers to itself{tip}")
    elif order[ref] > site.index:
        add(f"step {ref!r} runs later (step {order[ref] + 1}); only earlier steps have output")
