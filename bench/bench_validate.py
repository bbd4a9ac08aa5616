"""How long validation takes: every shipped runbook, and a generated 30-step one.

Run: python bench/bench_validate.py [--repeat N]
Prints the first (cold: action modules imported) and the median warm time per file,
and the wall time of `irctl validate` as a process, which is what an operator waits for.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from irctl.runbook.loader import find_runbooks, validate_file
from irctl.settings import SHIPPED_RUNBOOKS


def thirty_steps() -> str:
    """A 30-step runbook touching every checked construct: templates, foreach, expect, refs."""
    steps = []
    for i in range(30):
        step: dict[str, object] = {"id": f"step-{i}", "title": f"step {i}"}
        if i % 3 == 0:
            step.update(action="wait", with_={"duration": "1s", "reason": f"settle {i}"})
        elif i % 3 == 1:
            step.update(
                action="assert",
                with_={"that": f"{{{{ steps.step_{i - 1}.status == 'succeeded' }}}}"},
                when=f"inputs.cluster != '' and steps['step-{i - 1}'].status != 'failed'",
            )
        else:
            step.update(
                action="confirm",
                foreach="[1, 2, 3]",
                concurrency=2,
                with_={"message": f"item {{{{ item }}}} of {{{{ inputs.cluster }}}} ({i})"},
                expect="output is defined",
                retries=2,
                retry_delay="10s",
                timeout="1m",
            )
        step["with"] = step.pop("with_")
        steps.append(step)
    doc = {
        "apiVersion": "irctl/v1",
        "kind": "Runbook",
        "name": "thirty",
        "title": "Thirty steps",
        "inputs": {"cluster": {"type": "string", "required": True}},
        "steps": steps,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def timed(path: Path, repeat: int) -> tuple[float, float, float, int]:
    """(cold wall, median warm wall, median warm CPU, problems); CPU is steady on a busy box."""
    start = time.perf_counter()
    _, problems = validate_file(path)
    cold = time.perf_counter() - start
    walls, cpus = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        validate_file(path)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return cold, statistics.median(walls), statistics.median(cpus), len(problems)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        generated = Path(folder) / "thirty.yaml"
        generated.write_text(thirty_steps())
        files = [*find_runbooks([SHIPPED_RUNBOOKS]).values(), generated]
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        header = (
            f"{'file':<36} {'lines':>6} {'cold ms':>8} {'warm ms':>8} {'cpu ms':>7} {'problems':>8}"
        )
        print(header)
        total_cpu = 0.0
        for path in files:
            cold, warm, cpu, problems = timed(path, args.repeat)
            total_cpu += cpu
            lines = path.read_text().count("\n")
            print(
                f"{path.name:<36} {lines:>6} {cold * 1000:>8.1f} {warm * 1000:>8.1f} "
                f"{cpu * 1000:>7.1f} {problems:>8}"
            )
        print(f"all {len(files)} files: {total_cpu * 1000:.1f} ms CPU (warm)")
        walls, cpus = [], []
        for _ in range(5):
            start, cpu = time.perf_counter(), _children_cpu()
            subprocess.run(
                [sys.executable, "-m", "irctl", "validate", *map(str, files)],
                capture_output=True,
                check=False,
            )
            walls.append(time.perf_counter() - start)
            cpus.append(_children_cpu() - cpu)
        wall_ms, cpu_ms = statistics.median(walls) * 1000, statistics.median(cpus) * 1000
        print(
            f"`irctl validate` of all, as a process: median {wall_ms:.0f} ms wall, "
            f"{cpu_ms:.0f} ms CPU"
        )


if __name__ == "__main__":
    main()
