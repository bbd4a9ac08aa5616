"""Durations as operators write them: 30m, 10s, 1h30m, 500ms, or plain seconds."""

from __future__ import annotations

import re

from irctl.errors import InputError

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`; raises InputError with the accepted forms when malformed."""
    if isinstance(value, bool):
        raise InputError(f"bad duration {value!r}", "write it like 30s, 10m, 1h30m or 500ms")
    if isinstance(value, int | float):
        if value < 0:
            raise InputError(f"bad duration {value!r}: negative", "durations are >= 0")
        return float(value)
    text = str(value).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise InputError(f"bad duration {value!r}", "write it like 30s, 10m, 1h30m or 500ms")
    return total


def parse_duration_with_unit(value: str | int | float, what: str) -> float:
    """Like parse_duration, but a bare number is refused: for a TTL, "30" read as 30 seconds
    when 30 minutes was meant silently undoes a block 59 times too early."""
    if isinstance(value, int | float) or re.fullmatch(r"\s*\d+(\.\d+)?\s*", str(value)):
        raise InputError(f"{what} {value!r} has no unit", f"say {value}s or {value}m")
    return parse_duration(value)


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"
