"""The journal: append-only, hash-chained JSONL. It is the audit log and the run state.

Every record is one line, flushed and fsynced before `append` returns. Each
carries `prev` (the previous record's hash) and `hash` (SHA-256 of its own
canonical JSON without `hash`), so an edited, removed or reordered line is
caught by `verify`. Records are bounded: large outputs go to a side file whose
hash is in the record, strings are cut, lists are sampled. Several irctl
processes may share one journal; appends hold an exclusive `flock`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from irctl.errors import JournalError, one_line

GENESIS = "0" * 64
MAX_RECORD = 8192  # bytes of JSON; beyond this the outcome moves to a side file
MAX_STRING = 1000
MAX_LIST = 50
_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|api_key|apikey|webhook_url|authorization)", re.I
)
REDACTED = "***"
# Fields whose values come from operators and runbooks, where a secret may sit under its
# name; everywhere else known secret values are replaced wherever they appear.
_KEYED = {"", "params", "inputs", "record", "undo"}


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def bound(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of `value` with strings cut and lists sampled, so no record can flood."""
    if depth > 8:
        return "…"
    if isinstance(value, str):
        return value if len(value) <= MAX_STRING else value[: MAX_STRING - 1] + "…"
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): bound(v, depth + 1) for k, v in list(value.items())[:200]}
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        out = [bound(v, depth + 1) for v in items[:MAX_LIST]]
        if len(items) > MAX_LIST:
            out.append(f"… {len(items) - MAX_LIST} more")
        return out
    return bound(str(value), depth + 1)


def aggregate_errors(errors: list[tuple[str, str]], samples: int = 5) -> dict[str, Any]:
    """Many failures as one bounded summary: a count, counts per message, a few samples."""
    by_message: dict[str, int] = {}
    for _, message in errors:
        key = one_line(message, 200)
        by_message[key] = by_message.get(key, 0) + 1
    top = sorted(by_message.items(), key=lambda kv: -kv[1])[:10]
    return {
        "count": len(errors),
        "by_message": dict(top),
        "samples": [{"target": t, "error": one_line(m, 200)} for t, m in errors[:samples]],
    }


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    bad_line: int | None = None
    reason: str | None = None


class Journal:
    def __init__(self, path: Path, *, fsync: bool = True, secrets: set[str] | None = None) -> None:
        self.path = path
        self.fsync = fsync
        self.secrets: set[str] = {s for s in (secrets or set()) if len(s) >= 4}

    # -- writing -------------------------------------------------------------
    def add_secret(self, value: str | None) -> None:
        if value and len(value) >= 4:
            self.secrets.add(value)

    def redact(self, value: Any, key: str = "") -> Any:
        """Blank values under secret-looking keys, then every known secret value anywhere."""
        if key in _KEYED:
            value = self._redact_keys(value, key)
        if not self.secrets:
            return value
        text = json.dumps(value, default=str)
        if not any(secret in text for secret in self.secrets):
            return value
        for secret in self.secrets:
            text = text.replace(json.dumps(secret)[1:-1], REDACTED)
        return json.loads(text)

    def _redact_keys(self, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: self._redact_keys(v, str(k)) for k, v in value.items()}
        if key and isinstance(value, str) and value and _SECRET_KEY.search(key):
            return REDACTED
        if isinstance(value, list) and value and isinstance(value[0], dict | list):
            return [self._redact_keys(v) for v in value]
        return value

    def check_writable(self) -> None:
        """Raise JournalError unless a record could be appended now (checked before mutating)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            os.close(fd)
        except OSError as exc:
            raise JournalError(
                f"cannot write the journal {self.path}: {exc.strerror}",
                "fix its folder or pass --journal PATH; nothing was changed",
            ) from None

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one record; returns it with seq and hash. Raises JournalError if not on disk."""
        fields = {k: self.redact(v, k) for k, v in fields.items() if v is not None}
        # Large outputs keep their full value (resume needs it) in a side file named by hash.
        for key in ("output", "outcome", "plan", "undo"):
            if key in fields and len(canonical({"v": fields[key]})) > MAX_RECORD // 2:
                fields[key] = self._spill(fields[key])
        record: dict[str, Any] = {"event": event, **bound(fields)}
        if "error" in record:
            record["error"] = one_line(str(record["error"]))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    last = _last_record(fh)
                    record = {
                        "seq": (int(last["seq"]) + 1) if last else 1,
                        "ts": datetime.now(UTC)
                        .isoformat(timespec="milliseconds")
                        .replace("+00:00", "Z"),
                        **record,
                        "prev": last["hash"] if last else GENESIS,
                    }
                    record = self._fit(record)
                    record["hash"] = record_hash(record)
                    fh.write(canonical(record) + b"\n")
                    fh.flush()
                    if self.fsync:
                        os.fsync(fh.fileno())
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        except OSError as exc:
            raise JournalError(
                f"cannot write the journal {self.path}: {exc.strerror}",
                "free space or fix permissions; mutating steps refuse until it can be written",
            ) from None
        return record

    def _fit(self, record: dict[str, Any]) -> dict[str, Any]:
        """Move oversized outcome/output to a side file named by its hash; keep the record small."""
        if len(canonical(record)) <= MAX_RECORD:
            return record
        for key in ("outcome", "output", "params", "plan"):
            if key in record and len(canonical(record)) > MAX_RECORD:
                record[key] = self._spill(record[key])
        if len(canonical(record)) > MAX_RECORD:
            for key, value in list(record.items()):
                if isinstance(value, dict | list) and key not in ("targets",):
                    record[key] = {"_truncated": True}
        return record

    def _spill(self, value: Any) -> dict[str, Any]:
        data = canonical({"value": value})
        digest = hashlib.sha256(data).hexdigest()
        side = self.path.parent / "blobs" / f"{digest}.json"
        side.parent.mkdir(parents=True, exist_ok=True)
        if not side.exists():
            tmp = side.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, side)
        return {"_blob": digest}

    def load_blob(self, value: Any) -> Any:
        """Undo `_spill`: the full value of a record field, checked against its hash."""
        if not (isinstance(value, dict) and set(value) == {"_blob"}):
            return value
        side = self.path.parent / "blobs" / f"{value['_blob']}.json"
        try:
            data = side.read_bytes()
        except OSError:
            raise JournalError(f"missing journal blob {side}", "restore it from backup") from None
        if hashlib.sha256(data).hexdigest() != value["_blob"]:
            raise JournalError(f"journal blob {side} was changed", "restore it from backup")
        return json.loads(data)["value"]

    # -- reading -------------------------------------------------------------
    def records(self, run_id: str | None = None) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        try:
            with open(self.path, "rb") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        raise JournalError(
                            f"{self.path}:{lineno}: not a JSON record", "run `irctl log verify`"
                        ) from None
                    if run_id is None or rec.get("run_id") == run_id:
                        yield rec
        except OSError as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc.strerror}") from None

    def verify(self) -> VerifyResult:
        """Walk the chain; the first line whose hash, link or sequence is wrong is reported."""
        prev, expected_seq, count = GENESIS, 1, 0
        if not self.path.exists():
            return VerifyResult(True, 0)
        with open(self.path, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    return VerifyResult(False, count, lineno, "not a JSON record")
                if not isinstance(rec, dict):
                    return VerifyResult(False, count, lineno, "not a JSON object")
                if rec.get("hash") != record_hash(rec):
                    return VerifyResult(False, count, lineno, "hash does not match its content")
                if rec.get("prev") != prev:
                    return VerifyResult(
                        False, count, lineno, "chain broken: a line before it was removed or moved"
                    )
                if rec.get("seq") != expected_seq:
                    return VerifyResult(
                        False, count, lineno, f"sequence {rec.get('seq')}, expected {expected_seq}"
                    )
                prev, expected_seq, count = rec["hash"], expected_seq + 1, count + 1
        return VerifyResult(True, count)


def _last_record(fh: Any) -> dict[str, Any] | None:
    """The last record of an open journal, reading only its tail (records are bounded)."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    if size == 0:
        return None
    chunk = min(size, MAX_RECORD * 4)
    fh.seek(size - chunk)
    tail = fh.read(chunk)
    lines = [ln for ln in tail.split(b"\n") if ln.strip()]
    if not lines:
        return None
    try:
        rec: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise JournalError(
            "the journal's last line is not a record (a torn write?)",
            "run `irctl log verify`, then move the damaged journal aside",
        ) from None
    return rec
