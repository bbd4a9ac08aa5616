"""What is measured on a proxy: the one remote script, and the parsers of what it prints.

One SSH exec of `sh -s` per proxy reads everything: the established connections on the
proxy port aggregated per client address on the host (only the top N and the totals
travel), /proc/net/sockstat, the TCP counters of /proc/net/netstat and /proc/net/snmp,
the load average, /proc/sys/fs/file-nr, and the proxy -> backend probe. Files are read
with shell builtins so the only processes started are ss (or awk over /proc/net/tcp),
awk and bash. Never lsof: it walks every process's fd table, which is what hurt most in
the incident this tool exists for.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from irctl.diagnosis.latency import BASH_PROBE, Sample, parse_probe_lines, parse_timer_lines

# One awk pass: pick the peer address (from ss, or hex from /proc/net/tcp{,6} where state 01
# is ESTABLISHED), count per address, then keep the top N by insertion into a fixed-size
# list, so the output stays bounded however many distinct clients there are and no
# sort(1) runs over all of them.
_AGGREGATE = r"""
$1 == "@@failed" { failed = $2; next }
mode == "ss" { a = $4; sub(/:[0-9]+$/, "", a); gsub(/[][]/, "", a) }
mode == "proc" {
  if (FNR == 1 || $4 != "01") next
  split($2, l, ":"); if (l[2] != port) next
  split($3, r, ":"); a = r[1]
}
{ c[a]++; n++ }
END {
  if (failed != "") { print "failed " failed; exit }
  k = 0
  for (a in c) {
    v = c[a]; i = k
    if (k < top) k++
    else if (v <= tv[k]) continue
    else i = k - 1
    while (i > 0 && tv[i] < v) { tv[i + 1] = tv[i]; ta[i + 1] = ta[i]; i-- }
    tv[i + 1] = v; ta[i + 1] = a
  }
  d = 0; for (a in c) d++
  printf "total %d %d\n", n, d
  for (i = 1; i <= k; i++) printf "%d %s\n", tv[i], ta[i]
}
"""

# Small /proc files through one awk: the shell's byte-wise `read` gets short answers from
# /proc/sys files, and one process beats one per file. Only the TCP lines of netstat/snmp.
_PROC_FILES = (
    "/proc/net/sockstat",
    "/proc/net/netstat",
    "/proc/net/snmp",
    "/proc/loadavg",
    "/proc/sys/fs/file-nr",
    "/proc/cpuinfo",
)
_DUMP = r"""
FNR == 1 { n = FILENAME; sub(/.*\//, "", n); print "@@" n }
FILENAME == "/proc/cpuinfo" { if ($1 == "processor") ncpu++; next }
FILENAME ~ /netstat|snmp/ && $1 !~ /^Tcp(Ext)?:$/ { next }
{ print }
END { print "@@ncpu"; print ncpu + 0 }
"""


def probe_budget(samples: int, timeout: float) -> int:
    """Seconds the proxy -> backend probe may run: a blocked connect can outlast `timeout`."""
    return int(samples * timeout * 2) + 1


def remote_script(
    proxy_port: int,
    backends: Sequence[str],
    *,
    top: int,
    samples: int,
    timeout: float,
    own_address: str = "127.0.0.1",
) -> str:
    """The `sh -s` script for one proxy. Every value is validated or quoted here."""
    if not 0 < proxy_port < 65536:
        raise ValueError(f"bad port {proxy_port}")
    top = max(1, int(top))
    host = ipaddress.ip_address(own_address)  # validated: it reaches a shell
    own = f"{host}:{int(proxy_port)}"
    targets = " ".join(shlex.quote(b) for b in backends)
    agg = shlex.quote(_AGGREGATE)
    lines = [
        "export LC_ALL=C",
        "echo @@clients",
        "if command -v ss >/dev/null 2>&1; then",
        # A failing ss (too old for the filter) must not read as zero connections.
        f"  {{ ss -Htn state established '( sport = :{int(proxy_port)} )' 2>/dev/null"
        f" || echo '@@failed ss'; }} </dev/null | awk -v mode=ss -v top={top} {agg}",
        "else",
        "  echo @@source proc",
        f"  awk -v mode=proc -v port={int(proxy_port):04X} -v top={top} {agg}"
        " /proc/net/tcp /proc/net/tcp6 </dev/null 2>/dev/null",
        "fi",
        f"awk {shlex.quote(_DUMP)} {' '.join(_PROC_FILES)} </dev/null 2>/dev/null",
        "echo @@probe",
    ]
    if backends and samples > 0:
        lines += [
            "if command -v bash >/dev/null 2>&1; then",
            f"bash -s {int(samples)} {timeout:.3f} {probe_budget(samples, timeout)}"
            f" {shlex.quote(own)} {targets}"
            " <<'IRCTL_PROBE'",
            BASH_PROBE.strip("\n"),
            "IRCTL_PROBE",
            "else echo '@@probe_unavailable no bash on this host'; fi",
        ]
    lines.append("echo @@end")
    return "\n".join(lines) + "\n"


@dataclass
class ClientCount:
    address: str
    count: int


@dataclass
class HostMeasurement:
    """One proxy's numbers as read from its own kernel."""

    established: int = 0
    distinct_clients: int = 0
    top_clients: list[ClientCount] = field(default_factory=list)
    sockstat: dict[str, int] = field(default_factory=dict)
    tcp: dict[str, int] = field(default_factory=dict)
    loadavg: list[float] = field(default_factory=list)
    fds: dict[str, int] = field(default_factory=dict)
    ncpu: int = 0
    backend_samples: dict[str, list[Sample]] = field(default_factory=dict)
    timer_lag_ms: list[float] = field(default_factory=list)
    clients_error: str | None = None  # set: `established` and the clients mean nothing
    probe_unavailable: str | None = None
    complete: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "established": None if self.clients_error else self.established,
            "clients_error": self.clients_error,
            "distinct_clients": self.distinct_clients,
            "top_clients": [{"address": c.address, "count": c.count} for c in self.top_clients],
            "sockstat": self.sockstat,
            "tcp": self.tcp,
            "loadavg": self.loadavg,
            "ncpu": self.ncpu,
            "fds": self.fds,
        }


def sections(text: str) -> dict[str, list[str]]:
    """Split the script's output on its `@@name` markers (probe lines keep theirs)."""
    out: dict[str, list[str]] = {}
    current = "_"
    for line in text.splitlines():
        if line.startswith("@@") and not line.startswith(
            ("@@s ", "@@c ", "@@probe_unavailable", "@@source")
        ):
            current = line[2:].split()[0] if line[2:].strip() else "_"
            out.setdefault(current, [])
        else:
            out.setdefault(current, []).append(line)
    return out


def decode_proc_address(hexaddr: str) -> str:
    """/proc/net/tcp's hex address (host byte order per 32-bit word, little-endian) as text."""
    raw = bytes.fromhex(hexaddr)
    if len(raw) not in (4, 16):
        raise ValueError(f"bad address {hexaddr!r}")
    swapped = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return normalize_address(str(ipaddress.ip_address(swapped)))


def normalize_address(text: str) -> str:
    """IPv4-mapped IPv6 (`::ffff:198.18.0.5`) as plain IPv4; scope ids dropped."""
    addr = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def parse_clients(lines: Sequence[str]) -> tuple[int, int, list[ClientCount], str | None]:
    """Totals, distinct clients, the top clients, and why they could not be counted."""
    proc = any(line.strip() == "@@source proc" for line in lines)
    total = distinct = 0
    merged: dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0] == "failed":
            return 0, 0, [], f"{parts[1]} failed: connections could not be counted"
        if len(parts) == 3 and parts[0] == "total":
            total, distinct = int(parts[1]), int(parts[2])
        elif len(parts) == 2 and parts[0].isdigit():
            try:
                addr = decode_proc_address(parts[1]) if proc else normalize_address(parts[1])
            except ValueError:
                continue
            # Mapped and plain forms of one client are one client.
            merged[addr] = merged.get(addr, 0) + int(parts[0])
    top = [ClientCount(a, n) for a, n in sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))]
    return total, distinct, top, None


def parse_sockstat(lines: Sequence[str]) -> dict[str, int]:
    """`TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1` -> {tcp_inuse: 5, ...}."""
    out: dict[str, int] = {}
    for line in lines:
        name, _, rest = line.partition(":")
        words = rest.split()
        for key, value in zip(words[::2], words[1::2], strict=False):
            if value.isdigit():
                out[f"{name.strip().lower()}_{key}"] = int(value)
    return out


def parse_header_pairs(lines: Sequence[str], prefix: str) -> dict[str, int]:
    """/proc/net/netstat and snmp: a header line of names, then a line of values, per prefix."""
    out: dict[str, int] = {}
    rows = [line.split() for line in lines if line.startswith(prefix + ":")]
    for names, values in zip(rows[::2], rows[1::2], strict=False):
        for key, value in zip(names[1:], values[1:], strict=False):
            try:
                out[key] = int(value)
            except ValueError:
                continue
    return out


TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPTimeouts", "TCPAbortOnTimeout")
SNMP_COUNTERS = (
    "RetransSegs",
    "OutSegs",
    "InSegs",
    "CurrEstab",
    "ActiveOpens",
    "PassiveOpens",
    "AttemptFails",
    "EstabResets",
)


def parse_measurement(text: str, expected_samples: int | None = None) -> HostMeasurement:
    """The script's whole output; missing sections leave fields empty and `complete` False."""
    sec = sections(text)
    m = HostMeasurement()
    clients = sec.get("clients")
    if clients is None:
        m.clients_error = "no connection counts in the output"
    else:
        m.established, m.distinct_clients, m.top_clients, m.clients_error = parse_clients(clients)
    m.sockstat = parse_sockstat(sec.get("sockstat", []))
    ext = parse_header_pairs(sec.get("netstat", []), "TcpExt")
    snmp = parse_header_pairs(sec.get("snmp", []), "Tcp")
    m.tcp = {k: ext[k] for k in TCP_COUNTERS if k in ext}
    m.tcp.update({k: snmp[k] for k in SNMP_COUNTERS if k in snmp})
    load = (sec.get("loadavg") or [""])[0].split()
    m.loadavg = [float(x) for x in load[:3]] if len(load) >= 3 else []
    fnr = (sec.get("file-nr") or [""])[0].split()
    if len(fnr) == 3:
        m.fds = {"allocated": int(fnr[0]), "max": int(fnr[2])}
    ncpu = (sec.get("ncpu") or ["0"])[0].strip()
    m.ncpu = int(ncpu) if ncpu.isdigit() else 0
    probe = sec.get("probe", [])
    for line in probe:
        if line.startswith("@@probe_unavailable"):
            m.probe_unavailable = line.split(None, 1)[1] if " " in line else "probe unavailable"
    m.backend_samples = parse_probe_lines(probe, expected_samples)
    m.timer_lag_ms = parse_timer_lines(probe)
    m.complete = "end" in sec
    return m
