"""`irctl --help` start-up: wall time beside `python -c pass`, and what it imports.

Prints medians over N runs; the aim is a median under 150 ms with boto3,
botocore and paramiko never imported.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 15


def timed(argv: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - began) * 1000


def median_ms(argv: list[str]) -> float:
    timed(argv)  # warm the page cache
    return statistics.median(timed(argv) for _ in range(RUNS))


def heavy_imports() -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "irctl", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    return sorted(
        n for n in names if n.split(".")[0] in {"boto3", "botocore", "paramiko", "pymemcache"}
    )


def main() -> None:
    base = median_ms([sys.executable, "-c", "pass"])
    help_ms = median_ms([sys.executable, "-m", "irctl", "--help"])
    print(f"python -c pass      median {base:7.1f} ms  ({RUNS} runs)")
    print(
        f"irctl --help        median {help_ms:7.1f} ms  (irctl's own share {help_ms - base:.1f} ms)"
    )
    heavy = heavy_imports()
    print(f"heavy modules imported by --help: {', '.join(heavy) if heavy else 'none'}")
    print(f"aim: median under 150 ms -> {'met' if help_ms < 150 else 'NOT met'}")


if __name__ == "__main__":
    main()
