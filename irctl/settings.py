"""Where irctl reads and writes: flags first, then environment, then defaults (INTERFACE.md)."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path

SHIPPED_RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    journal_path: Path
    inventory_path: Path | None
    operator: str
    runbook_dirs: tuple[Path, ...]
    output: str = "text"  # text | json
    debug: bool = False
    accept_new_host_keys: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def locks_dir(self) -> Path:
        return self.state_dir / "locks"

    @classmethod
    def resolve(
        cls,
        *,
        inventory: Path | None = None,
        journal: Path | None = None,
        operator: str | None = None,
        runbooks: Path | None = None,
        output: str = "text",
        debug: bool = False,
        accept_new_host_keys: bool = False,
        environ: dict[str, str] | None = None,
    ) -> Settings:
        env = dict(os.environ if environ is None else environ)
        state_dir = Path(
            env.get("IRCTL_STATE_DIR") or Path.home() / ".local" / "state" / "irctl"
        ).expanduser()
        journal_path = journal or (Path(env["IRCTL_JOURNAL"]) if env.get("IRCTL_JOURNAL") else None)
        inv = inventory or (Path(env["IRCTL_INVENTORY"]) if env.get("IRCTL_INVENTORY") else None)
        if inv is None:
            for candidate in (
                Path("irctl.yaml"),
                Path.home() / ".config" / "irctl" / "inventory.yaml",
            ):
                if candidate.is_file():
                    inv = candidate
                    break
        if runbooks is not None:
            dirs: tuple[Path, ...] = (runbooks,)
        elif env.get("IRCTL_RUNBOOKS"):
            dirs = tuple(Path(p) for p in env["IRCTL_RUNBOOKS"].split(os.pathsep) if p)
        else:
            dirs = (SHIPPED_RUNBOOKS, Path("runbooks"))
        return cls(
            state_dir=state_dir,
            journal_path=(journal_path or state_dir / "journal.jsonl").expanduser(),
            inventory_path=inv.expanduser() if inv else None,
            operator=operator or env.get("IRCTL_OPERATOR") or _default_operator(),
            runbook_dirs=dirs,
            output=output,
            debug=debug,
            accept_new_host_keys=accept_new_host_keys,
        )
