"""Parsing of the units people type: durations (`90s`, `10m`, `1h30m`, `2w`), rates (`1Gbit`, `500 Mbit/s`),
clock times (`08:30`). Bits and bytes are never confused: a rate must say `bit` or `B` (bytes)."""

from __future__ import annotations

import re

from entload.errors import UsageError

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d|w)")


def parse_duration(text: str, option: str = "duration") -> float:
    """`1h`, `90s`, `1h30m`, `2.5m`, `6w` -> seconds. A bare number is refused (unit-less)."""
    s = str(text).strip().lower()
    pos, total, parts = 0, 0.0, 0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos and s[pos : m.start()].strip():
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos, parts = m.end(), parts + 1
    if parts == 0 or s[pos:].strip():
        raise UsageError(f"{option}: expected a duration such as 90s, 10m, 1h or 1h30m, got {text!r}")
    if total <= 0:
        raise UsageError(f"{option}: the duration must be positive, got {text!r}")
    return total


_PREFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps|b)(?:/s|ps)?\s*$", re.IGNORECASE)


def parse_rate(text: str, option: str = "rate") -> float:
    """`1Gbit`, `1 Gbit/s`, `500Mbps`, `20Mbit` -> bits per second; `100MB/s` (bytes) -> x8.

    A bare number is refused: a link rate without a unit is the classic bits/bytes mix-up.
    """
    m = _RATE.match(str(text))
    if not m:
        raise UsageError(
            f"{option}: expected a rate with a unit such as 100Mbit, 1Gbit or 125MB/s, got {text!r}"
        )
    value, prefix, unit = float(m.group(1)), m.group(2).lower(), m.group(3)
    if unit == "b" and m.group(3) == "B":
        factor = 8.0  # bytes
    elif unit.lower() == "b":
        raise UsageError(f"{option}: {text!r} is ambiguous; write bit (e.g. 100Mbit) or B for bytes (e.g. 12MB/s)")
    else:
        factor = 1.0
    bps = value * _PREFIX[prefix] * factor
    if bps <= 0:
        raise UsageError(f"{option}: the rate must be positive, got {text!r}")
    return bps


def format_rate(bps: float) -> str:
    """Bits per second in the largest unit that keeps a number >= 1: `1.5 Gbit/s`."""
    for unit, scale in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if abs(bps) >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} bit/s"


def parse_clock(text: str, option: str = "time") -> float:
    """`08:30` or `8:30:15` -> seconds since midnight; `24:00` allowed as the end of the day."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*", str(text))
    if not m:
        raise UsageError(f"{option}: expected a time of day HH:MM, got {text!r}")
    h, mi, se = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    secs = h * 3600 + mi * 60 + se
    if mi > 59 or se > 59 or secs > 86400:
        raise UsageError(f"{option}: expected a time of day between 00:00 and 24:00, got {text!r}")
    return float(secs)
