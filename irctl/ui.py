"""How irctl talks to the operator while it works: the `UI` protocol and its terminals.

Live output (step status, plans, prompts, progress) goes to stderr so stdout
carries only the final document (text or `--output json`). Without a terminal
and without `--yes`, anything that needs an answer refuses instead of hanging.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

from irctl.errors import RefusedError

if TYPE_CHECKING:
    from irctl.actions.base import Plan


class Progress(Protocol):
    def update(self, completed: float | None = None, description: str | None = None) -> None: ...


class UI(Protocol):
    interactive: bool
    assume_yes: bool

    def info(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def step(self, step_id: str, status: str, detail: str = "") -> None: ...
    def show_plan(self, title: str, plan: Plan) -> None: ...
    def confirm(self, question: str, default: bool = False, always_ask: bool = False) -> bool:
        """Yes/no; `--yes` answers it unless `always_ask` (a decision --yes could not foresee)."""
        ...

    def ask_text(self, prompt: str) -> str: ...
    def checklist(self, title: str, items: Sequence[str]) -> bool: ...
    def progress(
        self, description: str, total: float | None = None
    ) -> AbstractContextManager[Progress]: ...


class _NullProgress:
    def update(self, completed: float | None = None, description: str | None = None) -> None:
        return None


class QuietUI:
    """No terminal output; answers from `assume_yes` or refuses. For tests and pipes."""

    def __init__(self, assume_yes: bool = False, interactive: bool = False) -> None:
        self.assume_yes = assume_yes
        self.interactive = interactive
        self.messages: list[str] = []

    def info(self, message: str) -> None:
        self.messages.append(message)

    def warn(self, message: str) -> None:
        self.messages.append(f"warning: {message}")

    def step(self, step_id: str, status: str, detail: str = "") -> None:
        self.messages.append(f"{step_id}: {status} {detail}".rstrip())

    def show_plan(self, title: str, plan: Plan) -> None:
        self.messages.append(f"plan {title}: {plan.summary}")

    def _refuse(self, what: str) -> None:
        raise RefusedError(
            f"{what} needs an answer, and there is no terminal",
            "run it in a terminal, or pass --yes to answer yes",
        )

    def confirm(self, question: str, default: bool = False, always_ask: bool = False) -> bool:
        if self.assume_yes and not always_ask:
            return True
        self._refuse(f"{question!r}")
        return False

    def ask_text(self, prompt: str) -> str:
        self._refuse(f"{prompt!r}")
        return ""

    def checklist(self, title: str, items: Sequence[str]) -> bool:
        if self.assume_yes:
            return True
        self._refuse(f"the checklist {title!r}")
        return False

    def progress(
        self, description: str, total: float | None = None
    ) -> AbstractContextManager[Progress]:
        return nullcontext(_NullProgress())


class ConsoleUI(QuietUI):
    """Rich output on stderr; prompts on the terminal."""

    def __init__(self, assume_yes: bool = False, interactive: bool | None = None) -> None:
        from rich.console import Console

        super().__init__(
            assume_yes=assume_yes,
            interactive=sys.stdin.isatty() if interactive is None else interactive,
        )
        # emoji off: `:pager:` in a label must print as written, not as 📟.
        self.console = Console(stderr=True, highlight=False, emoji=False)

    def info(self, message: str) -> None:
        self.console.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {_esc(message)}")

    _STYLE = {
        "running": "cyan",
        "succeeded": "green",
        "executed": "green",
        "planned": "blue",
        "not_run": "dim",
        "failed": "red",
        "declined": "yellow",
        "interrupted": "yellow",
        "undone": "magenta",
        "retrying": "yellow",
    }

    def step(self, step_id: str, status: str, detail: str = "") -> None:
        style = self._STYLE.get(status, "white")
        text = f"[{style}]{status:>11}[/] [bold]{_esc(step_id)}[/]"
        if detail:
            text += f"  {_esc(detail)}"
        self.console.print(text)

    def show_plan(self, title: str, plan: Plan) -> None:
        self.console.print(f"[bold]{_esc(title)}[/]: {_esc(plan.summary)}")
        for line in plan.details:
            # Soft wrap: a JSON body or an nft line must stay one line to copy it whole.
            self.console.print(f"    {line}", markup=False, soft_wrap=True)
        for warning in plan.warnings:
            self.console.print(f"    [yellow]! {_esc(warning)}[/]")
        if plan.details and not plan.reversible:
            self.console.print("    [yellow]! irreversible[/]")

    def confirm(self, question: str, default: bool = False, always_ask: bool = False) -> bool:
        if self.assume_yes and not always_ask:
            return True
        if not self.interactive:
            self._refuse(f"{question!r}")
        from rich.prompt import Confirm

        return bool(Confirm.ask(question, default=default, console=self.console))

    def ask_text(self, prompt: str) -> str:
        if not self.interactive:
            self._refuse(f"{prompt!r}")
        from rich.prompt import Prompt

        return str(Prompt.ask(prompt, console=self.console))

    def checklist(self, title: str, items: Sequence[str]) -> bool:
        if self.assume_yes:
            return True
        if not self.interactive:
            self._refuse(f"the checklist {title!r}")
        from rich.prompt import Confirm

        self.console.print(f"[bold]{_esc(title)}[/]")
        for number, item in enumerate(items, 1):
            if not Confirm.ask(
                f"  [{number}/{len(items)}] {_esc(item)} — done?", console=self.console
            ):
                return False
        return True

    def progress(
        self, description: str, total: float | None = None
    ) -> AbstractContextManager[Progress]:
        from rich.progress import Progress as RichProgress

        return _RichProgress(RichProgress(console=self.console, transient=True), description, total)


class _RichProgress:
    def __init__(self, progress: Any, description: str, total: float | None) -> None:
        self.progress = progress
        self.task = None
        self.description = description
        self.total = total

    def __enter__(self) -> Progress:
        self.progress.__enter__()
        self.task = self.progress.add_task(self.description, total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def update(self, completed: float | None = None, description: str | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if completed is not None:
            kwargs["completed"] = completed
        if description is not None:
            kwargs["description"] = description
        self.progress.update(self.task, **kwargs)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
