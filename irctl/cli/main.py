"""`irctl`: the root command, global settings, and the one place errors become exit codes."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import typer

from irctl.cli.common import set_state, state
from irctl.errors import ExitCode, Interrupted, IrctlError, UsageError

app = typer.Typer(
    name="irctl",
    help="Incident response for cache proxy fleets: runbooks, drills, a verifiable journal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Each module exposes `register(app)`. Listed, not discovered, so start-up stays predictable.
COMMAND_MODULES = [
    "irctl.cli.runs",
    "irctl.cli.log",
    "irctl.cli.lock",
    "irctl.cli.runbooks",
    "irctl.cli.diagnose",
    "irctl.cli.aws",
    "irctl.cli.filter",
    "irctl.cli.cache",
    "irctl.cli.timeline",
    "irctl.cli.lab",
]

# Global flags are accepted anywhere on the line (`irctl diagnose --cluster c --output json`).
VALUE_FLAGS = {"--inventory", "--journal", "--operator", "--runbooks", "--output"}
BOOL_FLAGS = {"--debug", "--accept-new-host-keys"}


@app.callback()
def _root(
    inventory: Path = typer.Option(
        None,
        "--inventory",
        envvar="IRCTL_INVENTORY",
        help="Inventory file [default: ./irctl.yaml, else ~/.config/irctl/inventory.yaml]",
    ),
    journal: Path = typer.Option(
        None,
        "--journal",
        envvar="IRCTL_JOURNAL",
        help="Journal file [default: $IRCTL_STATE_DIR/journal.jsonl]",
    ),
    operator: str = typer.Option(
        None, "--operator", envvar="IRCTL_OPERATOR", help="Who is acting [default: the login name]"
    ),
    runbooks: Path = typer.Option(
        None,
        "--runbooks",
        envvar="IRCTL_RUNBOOKS",
        help="Runbook folder [default: shipped runbooks/ plus ./runbooks]",
    ),
    output: str = typer.Option(
        "text", "--output", help="text or json (one JSON document on stdout)"
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on the screen."),
    accept_new_host_keys: bool = typer.Option(
        False,
        "--accept-new-host-keys",
        help="Trust and record unknown SSH host keys (like accept-new).",
    ),
) -> None:
    """Global options may appear anywhere on the command line."""


def _split_globals(argv: list[str]) -> tuple[dict[str, str | bool], list[str]]:
    found: dict[str, str | bool] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name, eq, value = arg.partition("=")
        if name in VALUE_FLAGS:
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{name} needs a value")
                value = argv[i + 1]
                i += 1
            found[name] = value
        elif arg in BOOL_FLAGS:
            found[arg] = True
        else:
            rest.append(arg)
        i += 1
    return found, rest


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a command family not built yet
            raise
        module.register(app)


def _fail(exc: IrctlError, as_json: bool) -> int:
    if as_json:
        doc = {"error": exc.message, "hint": exc.hint, "exit_code": int(exc.exit_code)}
        sys.stdout.write(json.dumps(doc) + "\n")
    line = f"error: {exc.message}"
    if exc.hint:
        line += f"\n  hint: {exc.hint}"
    sys.stderr.write(line + "\n")
    return int(exc.exit_code)


def main(argv: list[str] | None = None) -> None:
    from irctl import signals
    from irctl.settings import Settings

    # SIGTERM/SIGHUP take Ctrl-C's path (a run ends journaled, lock released, exit 130).
    signals.install()
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = False
    debug = False
    try:
        flags, rest = _split_globals(args)
        output = str(flags.get("--output", "text"))
        if output not in ("text", "json"):
            raise UsageError(f"--output must be text or json, not {output!r}")
        as_json = output == "json"
        debug = bool(flags.get("--debug"))
        settings = Settings.resolve(
            inventory=Path(str(flags["--inventory"])) if "--inventory" in flags else None,
            journal=Path(str(flags["--journal"])) if "--journal" in flags else None,
            operator=str(flags["--operator"]) if "--operator" in flags else None,
            runbooks=Path(str(flags["--runbooks"])) if "--runbooks" in flags else None,
            output=output,
            debug=debug,
            accept_new_host_keys=bool(flags.get("--accept-new-host-keys")),
        )
        set_state(settings)
        _register()
        code = _invoke(rest)
    except IrctlError as exc:
        code = _fail(exc, as_json)
    except KeyboardInterrupt:
        code = _fail(Interrupted("interrupted"), as_json)
    except Exception as exc:
        if debug:
            raise
        from irctl.runbook.runner import write_crash

        where = write_crash(state().settings, exc)
        crash = IrctlError(
            f"internal error: {type(exc).__name__}: {exc}",
            f"traceback in {where}; please report it" if where else "rerun with --debug",
        )
        crash.exit_code = ExitCode.INTERNAL
        code = _fail(crash, as_json)
    _exit(code)


def _exit(code: int) -> None:
    from irctl.runbook.executor import ABANDONED

    if ABANDONED:
        # A hung action's thread would keep the process alive at exit; the journal already
        # holds its intent, and `irctl resume` reconciles it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _invoke(args: list[str]) -> int:
    # Newer typer vendors its own click; catch typer's names, which exist either way.
    try:
        result = app(args=args, prog_name="irctl", standalone_mode=False)
    except typer.Exit as exc:
        return int(getattr(exc, "exit_code", 0))
    except typer.Abort:
        return _fail(Interrupted("aborted"), state().settings.output == "json")
    except Exception as exc:
        show = getattr(exc, "show", None)
        if callable(show) and hasattr(exc, "exit_code"):  # a click/typer usage error
            show()
            if state().settings.output == "json":
                format_message = getattr(exc, "format_message", None)
                message = format_message() if callable(format_message) else str(exc)
                doc = {"error": str(message), "hint": "see --help", "exit_code": 2}
                sys.stdout.write(json.dumps(doc) + "\n")
            return int(ExitCode.USAGE)
        raise
    return int(result) if isinstance(result, int) else 0
