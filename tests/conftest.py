"""Shared fixtures. `make_ctx` builds an action Context on a temporary state folder."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from irctl.actions.base import Context, SystemClock
from irctl.inventory import Inventory
from irctl.journal import Journal
from irctl.providers import Providers
from irctl.settings import Settings
from irctl.ui import QuietUI

# Registered here, before any test module imports them, so pytest can rewrite their asserts.
pytest_plugins = ["tests.lab_fixtures", "tests.moto_fixtures"]

# CI gates a submission: property tests draw the same examples every run and no example
# fails for being slow on a loaded machine. `HYPOTHESIS_PROFILE=explore` searches afresh.
hypothesis_settings.register_profile("ci", deadline=None, derandomize=True)
hypothesis_settings.register_profile("explore", deadline=None, max_examples=2000)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# An operator's ssh-agent would offer its keys before the test key (and sshd allows six
# tries): tests use only the keys they make.
os.environ.pop("SSH_AUTH_SOCK", None)


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Beside tmp_path, not in it: tests may count what is in tmp_path.
    state = tmp_path.parent / f"{tmp_path.name}-state"
    state.mkdir(exist_ok=True)
    monkeypatch.setenv("IRCTL_STATE_DIR", str(state))
    monkeypatch.delenv("IRCTL_JOURNAL", raising=False)
    monkeypatch.delenv("IRCTL_INVENTORY", raising=False)
    monkeypatch.setenv("IRCTL_OPERATOR", "tester")
    return state


@pytest.fixture
def make_ctx(state_dir: Path) -> Iterator[Callable[..., Context]]:
    """make_ctx(inventory=..., overrides={ProviderClass: instance}, dry_run=False, yes=True)."""
    built: list[Providers] = []

    def factory(
        inventory: Inventory | dict[str, Any] | None = None,
        *,
        overrides: dict[type[Any], Any] | None = None,
        dry_run: bool = False,
        yes: bool = True,
        run_id: str = "run-test",
        step_id: str | None = "step",
        ui: Any = None,
    ) -> Context:
        inv = (
            inventory
            if isinstance(inventory, Inventory)
            else Inventory.model_validate(inventory or {})
        )
        settings = Settings.resolve(inventory=None, operator="tester")
        providers = Providers(inv, settings, overrides)
        built.append(providers)
        return Context(
            inventory=inv,
            settings=settings,
            providers=providers,
            ui=ui or QuietUI(assume_yes=yes),
            journal=Journal(settings.journal_path, fsync=False),
            clock=SystemClock(),
            run_id=run_id,
            operator="tester",
            dry_run=dry_run,
            runbook="test",
            step_id=step_id,
            assume_yes=yes,
        )

    yield factory
    for providers in built:
        providers.close()
