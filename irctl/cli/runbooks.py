"""`irctl validate`, `irctl schema`, `irctl runbooks list|show`: the runbooks themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from irctl.cli.common import emit, state
from irctl.errors import UsageError

runbooks_app = typer.Typer(help="The codified incident types.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("schema")(schema)
    app.add_typer(runbooks_app, name="runbooks")


def validate(
    paths: list[Path] = typer.Argument(None, help="Runbook files or folders [default: all]"),
) -> None:
    """Lint runbooks: every problem as file:line:col, exit 1 if any."""
    from irctl.runbook.loader import validate_paths

    results = validate_paths(paths or [], state().settings.runbook_dirs)
    problems = [p for found in results.values() for p in found]
    bad = sum(1 for found in results.values() if found)
    data = {
        "ok": not problems,
        "files": [{"file": f, "problems": len(found)} for f, found in results.items()],
        "problems": [
            {"file": p.file, "line": p.line, "col": p.col, "message": p.message} for p in problems
        ],
    }
    if problems:
        summary = f"{len(problems)} problem(s) in {bad} of {len(results)} runbook file(s)"
        emit(data, "\n".join([*(p.render() for p in problems), summary]))
        raise typer.Exit(1)
    emit(data, f"{len(results)} runbook file(s) valid")


def schema() -> None:
    """JSON Schema of the runbook format (for yaml-language-server and other editors)."""
    from irctl.runbook.schema import runbook_schema, schema_text

    emit(runbook_schema(), schema_text())


@runbooks_app.command("list")
def list_() -> None:
    """The runbooks found, with title, severity and file."""
    from irctl.runbook.loader import list_runbooks

    entries = list_runbooks(state().settings.runbook_dirs)
    emit(entries, _list_table(entries))


@runbooks_app.command("show")
def show(
    name: str = typer.Argument(..., help="Runbook name or file"),
    format_: str = typer.Option("text", "--format", help="text or md (Markdown)"),
) -> None:
    """Inputs and steps of a runbook: what each step does and touches."""
    from irctl.runbook.loader import describe_runbook, load_runbook, resolve_runbook

    if format_ not in ("text", "md"):
        raise UsageError(f"--format must be text or md, not {format_!r}")
    path = resolve_runbook(name, state().settings.runbook_dirs)
    info = describe_runbook(load_runbook(path), path)
    emit(info, markdown(info) if format_ == "md" else plain(info))


def _list_table(entries: list[dict[str, Any]]) -> str:
    """Aligned columns: readable in a pipe and a narrow terminal, unlike a wrapped table."""
    if not entries:
        return "no runbooks found (see --runbooks)"
    rows = [("NAME", "SEVERITY", "TITLE", "FILE")]
    for e in entries:
        title = e["title"] or f"(invalid: {e.get('problems', 0)} problem(s), see irctl validate)"
        rows.append((e["name"], e["severity"] or "-", title, e["file"]))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
        for row in rows
    )


def _effect_label(step: dict[str, Any]) -> str:
    parts = ["MUTATES" if step["effect"] == "mutate" else step["effect"]]
    if step["effect"] == "mutate":
        parts.append("reversible" if step["reversible"] else "irreversible")
    if step["confirm"]:
        parts.append("asks first")
    return ", ".join(parts)


def _conditions(step: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(k, str(step[k])) for k in ("when", "foreach", "expect") if step[k]]
    if step["foreach"]:
        found.append(
            ("per item", f"concurrency {step['concurrency']}, max_failures {step['max_failures']}")
        )
    if step["retries"]:
        found.append(("retries", str(step["retries"])))
    return found


def plain(info: dict[str, Any]) -> str:
    lines = [
        f"{info['name']}: {info['title']}" + (f" ({info['severity']})" if info["severity"] else "")
    ]
    lines.append(
        f"file: {info['file']}   on failure: {info['on_failure']}   locks: {info['lock'] or '-'}"
    )
    if info["description"]:
        lines += ["", info["description"].strip()]
    lines += ["", "inputs:" if info["inputs"] else "inputs: none"]
    for name, spec in info["inputs"].items():
        need = "required" if spec["required"] else f"default {spec['default']!r}"
        lines.append(f"  {name} ({spec['type']}, {need}) {spec['description']}".rstrip())
    lines += ["", "steps:"]
    for number, step in enumerate(info["steps"], 1):
        title = f"  {step['title']}" if step["title"] else ""
        lines.append(f"  {number}. {step['id']}  {step['action']}  [{_effect_label(step)}]{title}")
        if step["action_description"]:
            verb = "CHANGES" if step["effect"] == "mutate" else "does"
            lines.append(f"       {verb}: {step['action_description']}")
        for key, value in _conditions(step):
            lines.append(f"       {key}: {value}")
        if step["touches"]:
            lines.append(f"       touches: {step['touches']}")
    mutating = info["mutating_steps"]
    lines += [
        "",
        f"changes the world in: {', '.join(mutating)}"
        if mutating
        else "read-only: no step mutates",
    ]
    return "\n".join(lines)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") if text not in (None, "") else ""


def markdown(info: dict[str, Any]) -> str:
    sev = f" ({info['severity']})" if info["severity"] else ""
    out = [
        f"# {info['title']}{sev}",
        "",
        f"Runbook `{info['name']}` · file `{info['file']}` · "
        f"on failure: **{info['on_failure']}** · locks: `{info['lock'] or '-'}`",
        "",
    ]
    if info["description"]:
        out += [info["description"].strip(), ""]
    out += ["## Inputs", ""]
    if info["inputs"]:
        out += ["| input | type | required | default | description |", "|---|---|---|---|---|"]
        for name, spec in info["inputs"].items():
            out.append(
                f"| `{name}` | {spec['type']} | {'yes' if spec['required'] else 'no'} | "
                f"{_cell(spec['default'])} | {_cell(spec['description'])} |"
            )
    else:
        out.append("None.")
    out += [
        "",
        "## Steps",
        "",
        "| # | step | action | effect | conditions | touches |",
        "|---|---|---|---|---|---|",
    ]
    for number, step in enumerate(info["steps"], 1):
        conditions = "<br>".join(f"{k}: `{_cell(v)}`" for k, v in _conditions(step))
        what = _cell(step["title"] or step["action_description"])
        touches = f"`{_cell(step['touches'])}`" if step["touches"] else ""
        out.append(
            f"| {number} | **{_cell(step['id'])}** {what} | `{step['action']}` | "
            f"{_effect_label(step)} | {conditions} | {touches} |"
        )
    mutating = info["mutating_steps"]
    out += [
        "",
        f"**Changes the world in:** {', '.join(mutating)}."
        if mutating
        else "**Read-only:** no step mutates.",
    ]
    return "\n".join(out) + "\n"
