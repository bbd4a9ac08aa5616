"""Small real actions for engine tests: they touch files, so effects and undo are observable."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from irctl.actions.base import (
    ActionParams,
    BaseAction,
    Context,
    Effect,
    Outcome,
    Params,
    Plan,
    Reconciled,
)
from irctl.errors import RefusedError


class Touch(BaseAction):
    name = "test.touch"
    description = "create a file (undo removes it)"
    effect = Effect.MUTATE
    reversible = True

    class Params(Params):
        path: str
        fail: bool = False
        crash_after: bool = False  # simulate a crash between the change and its result record
        crash_once: str | None = None  # marker file: crash (before the change) only the first time
        sleep: float = 0.0
        refuse_plan: bool = False  # plan() raises, like a safety check on the live world
        hang: float = 0.0  # ignores cancel: a stuck API call
        token: str | None = None
        ids: list[str] = []

    def plan(self, params: Any, ctx: Context) -> Plan:
        if params.refuse_plan:
            raise RefusedError(f"refusing to create {params.path}", "the world says no")
        return Plan(
            summary=f"create {params.path}",
            details=[f"touch {params.path}"],
            targets=[params.path],
            reversible=True,
        )

    def run(self, params: Any, ctx: Context) -> Outcome:
        if params.hang:
            time.sleep(params.hang)
        if params.sleep:
            ctx.clock.sleep(params.sleep)  # cooperative: wakes early when the step is cancelled
        if params.crash_once and not Path(params.crash_once).exists():
            Path(params.crash_once).write_text("crashed")
            os._exit(98)
        if params.fail:
            return Outcome.failed(f"could not create {params.path}")
        Path(params.path).write_text(ctx.run_id)
        if params.crash_after and not Path(params.path + ".crashed").exists():
            Path(params.path + ".crashed").write_text("")
            os._exit(99)
        undo: dict[str, Any] = {"path": params.path, "ids": params.ids}
        return Outcome(ok=True, output={"path": params.path}, undo=undo, targets=[params.path])

    def undo(self, record: dict[str, Any], ctx: Context) -> Outcome:
        Path(record["path"]).unlink(missing_ok=True)
        return Outcome(ok=True, output={"removed": record["path"]})

    def reconcile(self, intent: dict[str, Any], ctx: Context) -> Reconciled:
        path = Path(intent["params"]["path"])
        if path.exists():
            return Reconciled(
                "applied",
                Outcome(ok=True, output={"path": str(path)}, undo={"path": str(path)}),
                "the file exists",
            )
        return Reconciled("not_applied", detail="no file")


class Count(BaseAction):
    name = "test.count"
    description = "read: count files in a folder"
    effect = Effect.READ

    class Params(Params):
        folder: str
        flaky_file: str | None = None  # fails while this file is absent

    def run(self, params: Any, ctx: Context) -> Outcome:
        if params.flaky_file and not Path(params.flaky_file).exists():
            Path(params.flaky_file).write_text("x")
            return Outcome.failed("flaky: first attempt fails")
        folder = Path(params.folder)
        names = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        return Outcome(ok=True, output={"count": len(names), "names": names})


class Dyn(BaseAction):
    """Reads or mutates depending on its params, like ssh.run."""

    name = "test.dyn"
    description = "touch a file when mutate is true"
    effect = Effect.READ

    class Params(ActionParams):
        path: str
        mutate: bool = False

    def effect_for(self, params: Any) -> Effect:
        return Effect.MUTATE if params.mutate else Effect.READ

    def plan(self, params: Any, ctx: Context) -> Plan:
        return Plan(summary=f"maybe touch {params.path}", targets=[params.path])

    def run(self, params: Any, ctx: Context) -> Outcome:
        if params.mutate:
            Path(params.path).write_text("x")
        return Outcome(ok=True, output={"mutated": params.mutate})


TEST_ACTIONS = {
    "test.dyn": "tests.engine_actions:Dyn",
    "test.touch": "tests.engine_actions:Touch",
    "test.count": "tests.engine_actions:Count",
}
