"""Checking a runbook: every problem at once, each as `file:line:col: message`, never a traceback.

Structure and types come from the pydantic models; the checks pydantic cannot do
(actions and their parameters, step references, names in templates) walk the raw
data, so one broken field does not hide the problems after it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.parser import Parser
from pydantic import BaseModel, ValidationError

from irctl.errors import InputError, IrctlError, one_line
from irctl.runbook.model import InputSpec, Runbook, Step, coerce_input
from irctl.runbook.templating import ENV, is_template, parse_template, references, step_key
from irctl.runbook.yamlpos import Path_, Positions, Problem, load_with_positions

_KINDS = {
    "string_type": "a string",
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
# What the engine puts in a template's scope (engine.Engine._scope), plus Jinja's globals.
CORE_NAMES = ("inputs", "steps", "inventory", "run")
SCOPE_NAMES = frozenset({*CORE_NAMES, *ENV.globals})
EXPRESSIONS = ("when", "foreach", "expect")

Errors = list[dict[str, Any]]


class Report:
    """Problems of one file, located through the YAML positions."""

    def __init__(self, file: str, pos: Positions) -> None:
        self.file, self.pos = file, pos
        self.problems: list[Problem] = []

    def add(self, path: Path_, message: str, *, at_key: bool = False) -> None:
        line, col = self.pos.at(path, prefer_key=at_key)
        # One bounded line each, whatever an exception or a validator put in the message.
        self.problems.append(Problem(self.file, line, col, one_line(message, limit=1000)))


def validate_text(text: str, file: str) -> tuple[Runbook | None, list[Problem]]:
    """(the runbook when there is no problem, every problem sorted by position)."""
    data, pos, problems = load_with_positions(text, file)
    report = Report(file, pos)
    report.problems.extend(problems)
    runbook: Runbook | None = None
    if problems:
        pass  # the YAML did not parse: nothing more can be said reliably
    elif not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        report.add((), f"a runbook is a mapping of apiVersion, kind, name, title, steps; got {got}")
    else:
        runbook = _check_model(data, report)
        _check_inputs(data, report)
        _check_steps(data, report)
    ordered = sorted(set(report.problems), key=lambda p: (p.line, p.col, p.message))
    return (runbook if not ordered else None), ordered


# -- structure and types -------------------------------------------------------------------


def _check_model(data: dict[str, Any], report: Report) -> Runbook | None:
    try:
        return Runbook.model_validate(data)
    except ValidationError as exc:
        errors: Errors = [dict(e) for e in exc.errors(include_url=False)]
    for kind, loc, errs in group_errors(errors, data):
        where = _context(data, loc)
        if kind == "missing":
            report.add(loc[:-1], f"{where}missing required field {loc[-1]!r}")
        elif kind == "extra":
            hint = suggest(str(loc[-1]), field_names(_model_at(loc[:-1])))
            report.add(loc, f"{where}unknown field {loc[-1]!r}{hint}", at_key=True)
        else:
            report.add(loc, f"{where}{_field(loc)}: {fold(errs)}")
    return None


def group_errors(errors: Errors, data: Any) -> Iterator[tuple[str, Path_, Errors]]:
    """(kind, path, errors) per place: union branches of one value fold into one message."""
    grouped: dict[tuple[str, Path_], Errors] = {}
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "missing":
            key = ("missing", loc)
        elif err["type"] == "extra_forbidden":
            key = ("extra", loc)
        else:
            key = ("value", existing_prefix(data, loc))
        grouped.setdefault(key, []).append(err)
    for (kind, loc), errs in grouped.items():
        yield kind, loc, errs


def fold(errs: Errors) -> str:
    kinds = [_KINDS.get(e["type"]) for e in errs]
    if all(kinds):
        got = type(errs[0]["input"]).__name__
        return f"expected {' or '.join(dict.fromkeys(k for k in kinds if k))}, got {got}"
    return "; ".join(dict.fromkeys(str(e["msg"]).removeprefix("Value error, ") for e in errs))


def existing_prefix(data: Any, loc: Path_) -> Path_:
    """The longest prefix of a pydantic `loc` that is a real path in the data (drops union tags)."""
    node, kept = data, 0
    for part in loc:
        found = isinstance(node, dict) and part in node
        found = found or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if not found:
            break
        node = node[part]
        kept += 1
    return loc[:kept]


def _field(loc: Path_) -> str:
    return next((str(p) for p in reversed(loc) if isinstance(p, str)), "value")


def _model_at(loc: Path_) -> type[BaseModel]:
    if len(loc) == 2 and loc[0] == "steps":
        return Step
    if len(loc) == 2 and loc[0] == "inputs":
        return InputSpec
    return Runbook


def _context(data: dict[str, Any], loc: Path_) -> str:
    if len(loc) >= 3 and loc[0] == "steps" and isinstance(loc[1], int):
        return f"step {_step_label(data, loc[1])}: "
    if len(loc) >= 3 and loc[0] == "inputs":
        return f"input {loc[1]!r}: "
    return ""


def _step_label(data: dict[str, Any], index: int) -> str:
    steps = data.get("steps")
    if isinstance(steps, list) and 0 <= index < len(steps) and isinstance(steps[index], dict):
        sid = steps[index].get("id")
        if isinstance(sid, str):
            return repr(sid)
    return f"#{index + 1}"


def field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _check_inputs(data: dict[str, Any], report: Report) -> None:
    inputs = data.get("inputs")
    if not isinstance(inputs, dict):
        return
    for name, raw in inputs.items():
        if not isinstance(raw, dict) or raw.get("default") is None:
            continue
        default = raw["default"]
        if isinstance(default, str) and is_template(default):
            continue
        try:
            coerce_input(name, InputSpec.model_validate(raw), default)
        except ValidationError:
            continue  # the model check reports the spec itself
        except InputError as exc:
            report.add(("inputs", name, "default"), exc.message)


# -- steps: ids, references, templates, actions ------------------------------------------------


def _check_steps(data: dict[str, Any], report: Report) -> None:
    raw_inputs = data.get("inputs")
    declared = set(raw_inputs) if isinstance(raw_inputs, dict) else set()
    steps = data.get("steps")
    step_list: list[Any] = steps if isinstance(steps, list) else []
    order: dict[str, int] = {}  # step id and its template key -> index of the step
    ids: set[str] = set()
    for index, step in enumerate(step_list):
        sid = step.get("id") if isinstance(step, dict) else None
        if not isinstance(sid, str):
            continue
        if sid in order or step_key(sid) in order:
            first = order.get(sid, order.get(step_key(sid), 0))
            line = report.pos.at(("steps", first, "id"))[0]
            what = (
                f"duplicate step id {sid!r}"
                if sid in ids
                else f"step id {sid!r} is the same to templates (steps.{step_key(sid)})"
                " as an earlier one"
            )
            report.add(("steps", index, "id"), f"{what} (first at line {line})")
            continue
        ids.add(sid)
        order[sid] = order[step_key(sid)] = index
    lock = data.get("lock")
    if isinstance(lock, str):
        check_template(Site(("lock",), lock, "lock", -1, False), declared, order, report)
    for index, step in enumerate(step_list):
        if isinstance(step, dict):
            _check_step(index, step, declared, order, report)


def _check_step(
    index: int, step: dict[str, Any], declared: set[str], order: dict[str, int], report: Report
) -> None:
    at: Path_ = ("steps", index)
    loops = isinstance(step.get("foreach"), str)
    for field in EXPRESSIONS:
        value = step.get(field)
        if isinstance(value, str):
            site = Site((*at, field), value, field, index, loops and field == "expect")
            check_template(site, declared, order, report)
    with_ = step.get("with")
    if isinstance(with_, dict):
        for path, text in strings(with_, (*at, "with")):
            if is_template(text):
                check_template(Site(path, text, "with", index, loops), declared, order, report)
    action = step.get("action")
    if isinstance(action, str):
        check_params(action, with_ if isinstance(with_, dict) else {}, at, report)


def strings(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    """Every string inside nested dicts and lists, iteratively (no recursion limit to hit)."""
    stack: list[tuple[Path_, Any]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            yield where, node
        elif isinstance(node, dict):
            stack.extend(((*where, str(k)), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend(((*where, i), v) for i, v in enumerate(node))


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


# -- actions and their parameters --------------------------------------------------------------


def check_params(name: str, with_: dict[str, Any], at: Path_, report: Report) -> None:
    """`with` against the action's Params; values that are templates are checked at run time."""
    from irctl.actions import ACTIONS, get_action

    if name not in ACTIONS:
        known = suggest(name, ACTIONS) or f" (known: {', '.join(sorted(ACTIONS))})"
        report.add((*at, "action"), f"unknown action {name!r}{known}")
        return
    try:
        model = get_action(name).Params
    except Exception as exc:  # an action module is someone's code: report it, don't crash
        report.add(
            (*at, "action"), f"action {name!r} cannot be loaded: {type(exc).__name__}: {exc}"
        )
        return
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return
    templated = {k for k, v in with_.items() if any(is_template(s) for _, s in strings(v, ()))}
    literal = {k: v for k, v in with_.items() if k not in templated}
    accepted = set(field_names(model)) | set(model.model_fields)
    where: Path_ = (*at, "with")
    if model.model_config.get("extra") == "forbid":
        for key in sorted(templated - accepted):
            _unknown_param(name, key, accepted, (*where, key), report)
    try:
        model.model_validate(literal)
        return
    except ValidationError as exc:
        errors: Errors = [dict(e) for e in exc.errors(include_url=False)]
    except IrctlError as exc:
        # A validator that raised our own error instead of ValueError: find its field.
        culprit = next((k for k in literal if _raises_irctl(model, {k: literal[k]})), None)
        place, label = ((*where, culprit), f"{name}: {culprit}") if culprit else (where, "with")
        report.add(place, f"{label}: {exc.message}")
        return
    except Exception as exc:  # a Params validator that raised something odd: say so
        report.add(where, f"with: {name} parameters could not be checked: {type(exc).__name__}")
        return
    for kind, loc, errs in group_errors(errors, literal):
        if (loc and loc[0] in templated) or (not loc and templated):
            continue  # depends on a value known only at run time
        if kind == "missing":
            place = where if where in report.pos.keys else at
            report.add(place, f"action {name!r} needs parameter {loc[-1]!r}", at_key=True)
        elif kind == "extra":
            _unknown_param(name, str(loc[-1]), accepted, (*where, *loc), report)
        else:
            label = ".".join(str(p) for p in loc) or "with"
            report.add((*where, *loc), f"{name}: {label}: {fold(errs)}")


def _raises_irctl(model: type[BaseModel], data: dict[str, Any]) -> bool:
    try:
        model.model_validate(data)
    except IrctlError:
        return True
    except Exception:  # the field's other problems are reported elsewhere
        return False
    return False


def _unknown_param(name: str, key: str, accepted: set[str], path: Path_, report: Report) -> None:
    hint = suggest(key, accepted) or f" (it takes: {', '.join(sorted(accepted)) or 'nothing'})"
    report.add(path, f"action {name!r} takes no parameter {key!r}{hint}", at_key=True)
