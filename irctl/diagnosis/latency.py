"""Latency and loss per network path: the statistics, and the probe that runs on a proxy.

A sample is one TCP connect plus one memcached `version` round trip on that
connection. It fails when either does not finish within the timeout. Network
trouble shows up as a share of samples above a few milliseconds (the incident:
10-20 % of packets at 5-15 ms instead of ~0.3 ms) and as failed samples, so both
shares are kept beside the percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SLOW_MS_DEFAULT = 5.0


@dataclass(frozen=True)
class Sample:
    """One probe: connect and round-trip time in ms, or `failed` with a short reason."""

    connect_ms: float | None = None
    rtt_ms: float | None = None
    failed: str | None = None

    @property
    def total_ms(self) -> float | None:
        if self.failed or self.connect_ms is None:
            return None
        return self.connect_ms + (self.rtt_ms or 0.0)


@dataclass(frozen=True)
class PathStats:
    """What one path looked like over its samples."""

    source: str
    target: str
    samples: int
    failed_share: float
    slow_share: float  # share of all samples whose connect or round trip took more than slow_ms
    connect: dict[str, float | None]
    rtt: dict[str, float | None]
    errors: dict[str, int]

    def degraded(self, slow_share: float, loss_share: float, *, count_slow: bool = True) -> bool:
        """Too many slow or failed samples; `count_slow=False` when the source's own timers
        fire late, which makes samples slow without any network involved.

        One failed sample of ten does degrade a path: asking for two would leave half of
        ten-sample paths clean under 15 % loss (one in six now). A lone timeout on a
        healthy fleet raises no alarm anyway: the verdicts need more than a fifth of all
        paths degraded (one of twelve is still `healthy`)."""
        if self.samples == 0:
            return False
        return self.failed_share > loss_share or (count_slow and self.slow_share > slow_share)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "samples": self.samples,
            "failed_share": self.failed_share,
            "slow_share": self.slow_share,
            "connect_ms": self.connect,
            "rtt_ms": self.rtt,
            "errors": self.errors,
        }


@dataclass(frozen=True)
class TimerLag:
    """How late a 2 ms timer fires on a machine: its scheduler's delay, no network involved.

    Measured beside the probes, under the same load. When it is often above `slow_ms`,
    that machine's slow samples say more about its CPU than about the network.
    """

    samples: int
    p50: float | None
    p90: float | None
    max: float | None
    slow_share: float

    @classmethod
    def of(cls, lags_ms: Sequence[float], slow_ms: float) -> TimerLag | None:
        if not lags_ms:
            return None
        d = distribution([max(0.0, x) for x in lags_ms])
        slow = sum(1 for x in lags_ms if x > slow_ms) / len(lags_ms)
        return cls(len(lags_ms), d["p50"], d["p90"], d["max"], round(slow, 4))

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "p50": self.p50,
            "p90": self.p90,
            "max": self.max,
            "slow_share": self.slow_share,
        }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: always a value that was observed, never an interpolation."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)
    return {
        "p50": round(percentile(ordered, 50), 3),
        "p90": round(percentile(ordered, 90), 3),
        "p99": round(percentile(ordered, 99), 3),
        "max": round(ordered[-1], 3),
    }


def summarize(
    source: str, target: str, samples: Sequence[Sample], slow_ms: float = SLOW_MS_DEFAULT
) -> PathStats:
    ok = [s for s in samples if not s.failed]
    errors: dict[str, int] = {}
    for s in samples:
        if s.failed:
            errors[s.failed] = errors.get(s.failed, 0) + 1
    slow = sum(1 for s in ok if (s.connect_ms or 0.0) > slow_ms or (s.rtt_ms or 0.0) > slow_ms)
    n = len(samples)
    return PathStats(
        source=source,
        target=target,
        samples=n,
        failed_share=round((n - len(ok)) / n, 4) if n else 0.0,
        slow_share=round(slow / n, 4) if n else 0.0,
        connect=distribution([s.connect_ms for s in ok if s.connect_ms is not None]),
        rtt=distribution([s.rtt_ms for s in ok if s.rtt_ms is not None]),
        errors=dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5]),
    )


# -- the proxy -> backend probe, run by bash on the proxy ------------------------------------
#
# Bash is what nearly every host has; `$EPOCHREALTIME` (bash 5) gives microseconds without
# forking `date`, and `/dev/tcp` connects without nc, so a sample costs no process at all.
# Backends are probed in parallel (one subshell each), samples of one backend one after
# another. A connect to a host that drops SYNs blocks for the kernel's retry schedule, which
# bash cannot interrupt: a watchdog stops every loop after the budget, and the samples that
# never reported are counted as timed out by irctl. Each sample prints one line at once,
# `@@s HOST:PORT TOKEN`, where TOKEN is `CONNECT_US/RTT_US`, `F` (connect failed), `T`
# (connect slower than the timeout) or `R` (no reply in time). A backend that refuses its
# first three connects is down: the rest are reported as refused without trying. Timeouts
# never cut a path short: under packet loss a dropped SYN costs a 1 s retry, so three slow
# connects in a row happen by chance, and reporting them as twenty would read as a dead
# backend (backend_failure) when the network is what is lossy.
BASH_PROBE = r"""
export LC_ALL=C
if [ -z "${EPOCHREALTIME:-}" ]; then
  echo "@@probe_unavailable bash older than 5.0 (no EPOCHREALTIME)"; exit 0
fi
N=$1; TMO=$2; BUDGET=$3; SELF=$4; shift 4
TMO_US=$(( 10#${TMO/./} * 1000 ))
path() {
  local h=${1%:*} p=${1##*:} i=0 s c e r t live=
  h=${h#[}; h=${h%]}
  while [ "$i" -lt "$N" ]; do
    i=$((i + 1))
    s=$EPOCHREALTIME
    if ! exec 3<>"/dev/tcp/$h/$p"; then
      t=F
    else
      c=$EPOCHREALTIME
      t=T
      if [ $(( ${c/./} - ${s/./} )) -le "$TMO_US" ]; then
        printf 'version\r\n' >&3
        t=R
        if IFS= read -r -t "$TMO" r <&3; then
          e=$EPOCHREALTIME
          t="$(( ${c/./} - ${s/./} ))/$(( ${e/./} - ${c/./} ))"
        fi
      fi
      exec 3>&-
    fi
    echo "@@s $1 $t"
    case $t in F) ;; *) live=1 ;; esac
    if [ "$i" -eq 3 ] && [ -z "$live" ]; then
      while [ "$i" -lt "$N" ]; do i=$((i + 1)); echo "@@s $1 $t"; done
    fi
  done
}
# The timer control: an idle connection to this host's own proxy port never gets data,
# so each 2 ms read timeout measures how late this host wakes a waiting process.
control() {
  local i=0 s e x
  exec 5<>"/dev/tcp/${1%:*}/${1##*:}" || return
  while [ "$i" -lt "$N" ]; do
    i=$((i + 1))
    s=$EPOCHREALTIME
    IFS= read -r -t 0.002 x <&5
    e=$EPOCHREALTIME
    echo "@@c $(( ${e/./} - ${s/./} - 2000 ))"
  done
  exec 5>&-
}
pids=
control "$SELF" 2>/dev/null & pids="$pids $!"
for b in "$@"; do path "$b" 2>/dev/null & pids="$pids $!"; done
( trap 'kill $! 2>/dev/null; exit 0' TERM; sleep "$BUDGET" & wait $!; kill $pids ) \
  >/dev/null 2>&1 &
dog=$!
wait $pids
kill "$dog" 2>/dev/null
wait
"""


def parse_probe_token(token: str) -> Sample:
    if token == "F":
        return Sample(failed="connect failed")
    if token == "R":
        return Sample(failed="no reply")
    if token == "T":
        return Sample(failed="timed out")
    connect, _, rtt = token.partition("/")
    try:
        return Sample(connect_ms=int(connect) / 1000.0, rtt_ms=int(rtt) / 1000.0)
    except ValueError:
        return Sample(failed="unparsable sample")


def parse_timer_lines(lines: Sequence[str]) -> list[float]:
    """`@@c LAG_US` lines (the timer control) as milliseconds."""
    out: list[float] = []
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0] == "@@c" and parts[1].lstrip("-").isdigit():
            out.append(int(parts[1]) / 1000.0)
    return out


def parse_probe_lines(lines: Sequence[str], expected: int | None = None) -> dict[str, list[Sample]]:
    """`@@s HOST:PORT TOKEN` lines into samples per backend; missing samples timed out."""
    out: dict[str, list[Sample]] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "@@s":
            out.setdefault(parts[1], []).append(parse_probe_token(parts[2]))
    if expected:
        for samples in out.values():
            del samples[expected:]
            samples += [Sample(failed="timed out")] * (expected - len(samples))
    return out
