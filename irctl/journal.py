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
import threading
import time
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
SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|api_key|apikey|webhook_url|authorization)", re.I
)
REDACTED = "***"
# Fields resume and rollback read back: kept whole (spilled to a blob when large).
STATE_FIELDS = ("output", "outcome", "plan", "undo", "params", "inputs", "run_state", "record")


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
        """Whole values under secret-looking keys, and every known secret inside any string."""
        if key and SECRET_KEY.search(key) and isinstance(value, str | list | dict) and value:
            return REDACTED
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self.redact(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(v) for v in value]
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
        for key in STATE_FIELDS:
            # Resume and rollback read these back: never cut them, move them whole to a blob.
            if key in fields:
                value = fields[key]
                if bound(value) != value or len(canonical({"v": value})) > MAX_RECORD // 2:
                    fields[key] = self._spill(value)
        record: dict[str, Any] = {"event": event, **bound(fields)}
        if "error" in record:
            record["error"] = one_line(str(record["error"]))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    repaired = self._repair_torn_tail(fh)
                    last = _last_record(fh)
                    record = {
                        "seq": (int(last["seq"]) + 1) if last else 1,
                        "ts": datetime.now(UTC)
                        .isoformat(timespec="milliseconds")
                        .replace("+00:00", "Z"),
                        **record,
                        "prev": last["hash"] if last else GENESIS,
                    }
                    if repaired:
                        record["repaired_torn_tail"] = repaired
                    record = self._fit(record)
                    record["hash"] = record_hash(record)
                    fh.write(canonical(record) + b"\n")
                    fh.flush()
                    if self.fsync:
                        os.fsync(fh.fileno())
                    self._write_head(record)
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        except OSError as exc:
            raise JournalError(
                f"cannot write the journal {self.path}: {exc.strerror}",
                "free space or fix permissions; mutating steps refuse until it can be written",
            ) from None
        return record

    @property
    def head_path(self) -> Path:
        return self.path.with_name(self.path.name + ".head")

    def _write_head(self, record: dict[str, Any]) -> None:
        """The newest seq and hash beside the journal: `verify` catches lines cut off its end.

        Not fsynced: after a power loss it may lag the journal, which verify allows.
        """
        tmp = self.head_path.with_name(f"{self.head_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"seq": record["seq"], "hash": record["hash"]}))
        os.replace(tmp, self.head_path)

    def _repair_torn_tail(self, fh: Any) -> dict[str, Any] | None:
        """A write cut short (disk full, power loss) leaves a last line without a newline.

        Keep the journal usable: move those bytes to a `.torn` file and say so in the
        next record, instead of refusing every command until someone edits the file.
        """
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return None
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return None
        chunk = min(size, MAX_RECORD * 4)
        fh.seek(size - chunk)
        tail = fh.read(chunk)
        cut = tail.rfind(b"\n")
        keep = size - chunk + cut + 1 if cut >= 0 else (0 if chunk == size else None)
        if keep is None:
            raise JournalError(f"{self.path}: a damaged last line", "run `irctl log verify`")
        torn = self.path.with_name(f"{self.path.name}.torn-{int(time.time())}")
        torn.write_bytes(tail[len(tail) - (size - keep) :])
        fh.truncate(keep)
        return {"bytes": size - keep, "saved_to": str(torn)}

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
        side = self.blob_path(digest)
        side.parent.mkdir(parents=True, exist_ok=True)
        if not side.exists():
            # A name of our own: two processes spilling the same value must not collide.
            tmp = side.with_name(f"{digest}.{os.getpid()}.{threading.get_ident()}.tmp")
            with open(tmp, "wb") as out:
                out.write(data)
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
            os.replace(tmp, side)
        return {"_blob": digest}

    def blob_path(self, digest: str) -> Path:
        return self.path.parent / "blobs" / f"{digest}.json"

    def load_blob(self, value: Any) -> Any:
        """Undo `_spill`: the full value of a record field, checked against its hash."""
        if not (isinstance(value, dict) and set(value) == {"_blob"}):
            return value
        side = self.blob_path(str(value["_blob"]))
        try:
            data = side.read_bytes()
        except OSError:
            raise JournalError(f"missing journal blob {side}", "restore it from backup") from None
        if hashlib.sha256(data).hexdigest() != value["_blob"]:
            raise JournalError(f"journal blob {side} was changed", "restore it from backup")
        return json.loads(data)["value"]

    # -- reading -------------------------------------------------------------
    def records(
        self, run_id: str | None = None, *, check: bool = False, expand: bool = True
    ) -> Iterator[dict[str, Any]]:
        """Records in order, with spilled state fields read back from their blobs (`expand`).

        `check` refuses any record whose hash does not match (resume, rollback).
        """
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
                        if not line.endswith(b"\n"):
                            return  # a torn last write: the next append repairs it
                        raise JournalError(
                            f"{self.path}:{lineno}: not a JSON record", "run `irctl log verify`"
                        ) from None
                    if check and (not isinstance(rec, dict) or rec.get("hash") != record_hash(rec)):
                        raise JournalError(
                            f"{self.path}:{lineno}: the record was changed after it was written",
                            "run `irctl log verify`; nothing is done from a tampered journal",
                        )
                    if run_id is None or rec.get("run_id") == run_id:
                        yield self._expand(rec) if expand else rec
        except OSError as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc.strerror}") from None

    def _expand(self, rec: dict[str, Any]) -> dict[str, Any]:
        spilled = [k for k in STATE_FIELDS if isinstance(rec.get(k), dict) and "_blob" in rec[k]]
        if not spilled:
            return rec
        return {**rec, **{k: self.load_blob(rec[k]) for k in spilled}}

    def verify(self) -> VerifyResult:
        """Walk the chain; the first line whose hash, link, sequence or blob is wrong is reported.

        Lines cut off the end are caught against the head file written beside the journal.
        """
        prev, expected_seq, count, lineno = GENESIS, 1, 0, 0
        if not self.path.exists():
            head = self._read_head()
            if head is not None and int(head.get("seq", 0)) > 0:
                return VerifyResult(
                    False, 0, 1,
                    f"the journal is missing but had reached record {head['seq']}: "
                    "it was deleted or moved",
                )  # fmt: skip
            return VerifyResult(True, 0)
        with open(self.path, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    why = (
                        "torn last line (an interrupted write)" if not line.endswith(b"\n") else ""
                    )
                    return VerifyResult(False, count, lineno, why or "not a JSON record")
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
                bad_blob = self._bad_blob(rec)
                if bad_blob:
                    return VerifyResult(False, count, lineno, bad_blob)
                prev, expected_seq, count = rec["hash"], expected_seq + 1, count + 1
        head = self._read_head()
        if head is not None and int(head.get("seq", 0)) > count:
            return VerifyResult(
                False, count, lineno + 1,
                f"the journal ends at record {count} but had reached {head['seq']}: "
                "records were removed from its end",
            )  # fmt: skip
        return VerifyResult(True, count)

    def _read_head(self) -> dict[str, Any] | None:
        try:
            head = json.loads(self.head_path.read_text())
        except (OSError, ValueError):
            return None
        return head if isinstance(head, dict) else None

    def _bad_blob(self, rec: dict[str, Any]) -> str | None:
        for key, value in rec.items():
            if isinstance(value, dict) and set(value) == {"_blob"}:
                side = self.blob_path(str(value["_blob"]))
                try:
                    data = side.read_bytes()
                except OSError:
                    return f"{key}: its blob {side.name} is missing"
                if hashlib.sha256(data).hexdigest() != value["_blob"]:
                    return f"{key}: its blob {side.name} was changed"
        return None


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
        rec = json.loads(lines[-1])
    except json.JSONDecodeError:
        rec = None
    if not isinstance(rec, dict) or not isinstance(rec.get("seq"), int) or "hash" not in rec:
        raise JournalError(
            "the journal's last line is not an irctl record",
            "run `irctl log verify`; move the damaged line aside to go on",
        )
    return rec
