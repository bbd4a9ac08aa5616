"""A bad option value is a usage error: exit 2, one line naming the option and what it takes,
never pydantic's wording ("Input should be...", "Value error, ..."); nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import irctl

CASES = [
    (["diagnose", "--cluster", "c", "--samples", "0"], "--samples", "must be 1..200, not 0"),
    (["diagnose", "--cluster", "c", "--backend-samples", "-1"], "--backend-samples",
     "must be 0..100"),
    (["diagnose", "--cluster", "c", "--top", "0"], "--top", "must be 1..100"),
    (["diagnose", "--cluster", "c", "--timeout", "0"], "--timeout", "must be > 0"),
    (["diagnose", "--cluster", "c", "--timeout", "20s"], "--timeout", "must be > 0 and <= 10"),
    (["diagnose", "--cluster", "c", "--threshold", "nope"], "--threshold", "KEY=NUMBER"),
    (["cache", "flush", "--cluster", "c", "--shard", "s", "--delay", "-1"], "--delay '-1'",
     "seconds >= 0"),
    (["cache", "flush", "--cluster", "c", "--shard", "s", "--stagger", "x"], "--stagger 'x'",
     "seconds >= 0"),
    (["scale-proxies", "--cluster", "c", "--add", "0"], "--add", "must be 1..100, not 0"),
    (["filter", "block", "198.18.0.0/24", "--cluster", "c", "--reason", "r", "--ttl", "30"],
     "TTL '30' has no unit", "say 30s or 30m"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "names", "allowed"), CASES)
def test_bad_option_values_exit_2_in_one_line(
    tmp_path: Path, args: list[str], names: str, allowed: str
) -> None:
    done = irctl(tmp_path, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    text = " ".join(done.stderr.split())  # click boxes its message; rich may wrap
    assert names in text and allowed in text, done.stderr
    assert "Input should" not in text and "Value error" not in text, done.stderr
    assert not (tmp_path / "journal.jsonl").exists()
