"""Reading the inputs of the capacity model: byte series (a run folder, a profile's bytes_per_second.csv,
any CSV of timestamps and byte counts) and daily visit histories. Every problem becomes a
`CapacityInputError` naming the file, the line or the column, and what was expected, so the command can
print it as one line.

Time compression of a run (manifest `compression` = k real seconds per wall second): one row of
timeseries.csv holds the bytes of k real seconds. The replay keeps the real day's arrival process and
concurrency, only faster, so the bits A_wall(T) moved in T wall seconds are the bits A_real(kT) of kT real
seconds: the real mean rate is the wall mean / k, and v_real(kT) = v_wall(T). We therefore put each row at
its simulated clock time and give the series a step of k real seconds; the variance-time analysis then
runs in real time, and timescales below k seconds are *not observed* (they are extrapolated by T^(2H)).
Transfers themselves are not compressed (the network moves them at its own speed), so the within-row
structure is not the real day's: another reason not to read anything below k seconds from a run.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class CapacityInputError(ValueError):
    """An input file or value the capacity model cannot use; the message is one line for the user."""


@dataclass
class ByteSeries:
    """Bytes per step for each direction, at regular times in *real* seconds.

    `t_s` is seconds since the Unix epoch when the file had calendar timestamps (`absolute`), otherwise
    seconds since midnight of the series' first day; either way `t_s % 86400` is the time of day."""

    source: str
    t_s: np.ndarray
    step_s: float
    directions: dict[str, np.ndarray]
    absolute: bool = False
    compression: float = 1.0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.t_s)

    def label_time(self, t: float) -> str:
        if self.absolute:
            return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")
        day, sod = divmod(int(round(t)), 86400)
        hhmm = f"{sod // 3600:02d}:{sod % 3600 // 60:02d}"
        return hhmm if day == 0 else f"day {day + 1} {hhmm}"


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise CapacityInputError(f"{path}: no such file")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CapacityInputError(f"{path}: cannot read as CSV ({exc})") from None
    if not rows or not any(c.strip() for c in rows[0]):
        raise CapacityInputError(f"{path}: empty file (expected a header line and data rows)")
    header = [c.strip() for c in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    return header, body


def _column(path: Path, header: list[str], name: str, what: str) -> int:
    lower = [h.lower() for h in header]
    if name.lower() in lower:
        return lower.index(name.lower())
    raise CapacityInputError(
        f"{path}: no column {name!r} for {what} (columns are: {', '.join(header)})"
    )


def _numbers(path: Path, rows: list[list[str]], idx: int, name: str, line0: int = 2,
             nonnegative: bool = True) -> np.ndarray:
    """A numeric column; a bad cell is reported with its line number (the header is line 1)."""
    cells = [r[idx].strip() if idx < len(r) else "" for r in rows]
    try:
        values = np.array(cells, dtype=float)
    except ValueError:
        values = None
    if values is None or not np.all(np.isfinite(values)):
        for i, c in enumerate(cells):
            try:
                ok = math.isfinite(float(c))
            except ValueError:
                ok = False
            if not ok:
                raise CapacityInputError(
                    f"{path}:{line0 + i}: column {name!r}: expected a number, got {c!r}"
                ) from None
    if nonnegative and np.any(values < 0):
        i = int(np.argmax(values < 0))
        raise CapacityInputError(
            f"{path}:{line0 + i}: column {name!r}: byte counts cannot be negative, got {cells[i]}"
        )
    return values


def _times(path: Path, rows: list[list[str]], idx: int, name: str) -> tuple[np.ndarray, bool]:
    """Seconds (numbers, `HH:MM[:SS]`) or ISO timestamps (-> epoch seconds, absolute=True)."""
    cells = [r[idx].strip() if idx < len(r) else "" for r in rows]
    try:
        return np.array(cells, dtype=float), False
    except ValueError:
        pass
    if cells and ":" in cells[0] and "-" not in cells[0]:
        out = np.empty(len(cells))
        for i, c in enumerate(cells):
            parts = c.split(":")
            try:
                h, m, s = (int(p) for p in (parts + ["0"])[:3])
            except ValueError:
                raise CapacityInputError(
                    f"{path}:{i + 2}: column {name!r}: expected a time HH:MM[:SS], got {c!r}"
                ) from None
            out[i] = h * 3600 + m * 60 + s
        return out, False
    if cells and re.search(r"(Z|[+-]\d\d:?\d\d)$", cells[0]):
        return _times_with_offset(path, cells, name), True
    try:
        stamps = np.array(cells, dtype="datetime64[s]")
    except ValueError:
        for i, c in enumerate(cells):
            try:
                np.datetime64(c, "s")
            except ValueError:
                raise CapacityInputError(
                    f"{path}:{i + 2}: column {name!r}: expected seconds or an ISO timestamp, got {c!r}"
                ) from None
        raise
    if np.any(np.isnat(stamps)):
        i = int(np.argmax(np.isnat(stamps)))
        raise CapacityInputError(f"{path}:{i + 2}: column {name!r}: missing timestamp")
    return stamps.astype("int64").astype(float), True


def _times_with_offset(path: Path, cells: list[str], name: str) -> np.ndarray:
    """ISO timestamps with a UTC offset: ordered in UTC (no DST duplicates), shown in the first row's
    offset, so the busy hour is read in the series' local time."""
    out = np.empty(len(cells))
    offset = None
    for i, c in enumerate(cells):
        try:
            d = dt.datetime.fromisoformat(c.replace("Z", "+00:00"))
        except ValueError:
            raise CapacityInputError(
                f"{path}:{i + 2}: column {name!r}: expected an ISO timestamp, got {c!r}"
            ) from None
        if d.tzinfo is None:
            raise CapacityInputError(f"{path}:{i + 2}: column {name!r}: timestamp without the offset of the others")
        if offset is None:
            offset = d.utcoffset().total_seconds()
        out[i] = d.timestamp() + offset
    return out


def _regularise(path: Path, t: np.ndarray, cols: dict[str, np.ndarray], name: str,
                min_step: float = 1.0, scale: float = 1.0):
    """Check order and step; fill whole missing steps with NaN (noted) so windows stay aligned."""
    if len(t) == 0:
        raise CapacityInputError(f"{path}: the series is empty (a header but no data rows)")
    if len(t) < 2:
        raise CapacityInputError(f"{path}: the series has one row; at least two are needed")
    d = np.diff(t)
    if np.any(d <= 0):
        i = int(np.argmax(d <= 0))
        kind = "duplicate" if d[i] == 0 else "out-of-order"
        raise CapacityInputError(
            f"{path}:{i + 3}: column {name!r}: {kind} time (rows must be in increasing time order)"
        )
    step = float(np.median(d))
    if step * 1.0001 < min_step * scale:
        raise CapacityInputError(
            f"{path}: time step is {step / scale:g} s; expected a step of {min_step:g} s or more"
        )
    ratio = d / step
    bad = np.abs(ratio - np.round(ratio)) > 1e-6
    if np.any(bad):
        i = int(np.argmax(bad))
        raise CapacityInputError(
            f"{path}:{i + 3}: column {name!r}: irregular time step ({d[i] / scale:g} s where the series "
            f"steps by {step / scale:g} s)"
        )
    notes = []
    if np.any(ratio > 1.5):
        idx = np.concatenate([[0], np.cumsum(np.round(ratio).astype(int))])
        full_t = t[0] + step * np.arange(idx[-1] + 1)
        full = {}
        for k, v in cols.items():
            f = np.full(idx[-1] + 1, np.nan)
            f[idx] = v
            full[k] = f
        missing = idx[-1] + 1 - len(t)
        notes.append(f"{missing} missing steps in {path.name} left out of every estimate")
        return full_t, step, full, notes
    return t, step, cols, notes


def load_series(path, time_col: str | None = None, bytes_cols: list[str] | None = None) -> ByteSeries:
    """Any CSV of times and byte counts per step (step >= 1 s), one or more direction columns.

    Defaults: time column `time`, `timestamp`, `t_s` or `date` (first present); byte columns
    `bytes_down`/`bytes_up` if present, else `bytes`, `size`."""
    path = Path(path)
    header, rows = _read_csv(path)
    lower = [h.lower() for h in header]
    if time_col is None:
        time_col = next((c for c in ("time", "timestamp", "t_s", "date", "datetime") if c in lower), None)
        if time_col is None:
            raise CapacityInputError(
                f"{path}: no time column found; name it with --time-col (columns are: {', '.join(header)})"
            )
    if not bytes_cols:
        bytes_cols = [c for c in ("bytes_down", "bytes_up") if c in lower] or [
            c for c in ("bytes", "size") if c in lower
        ][:1]
        if not bytes_cols:
            raise CapacityInputError(
                f"{path}: no byte column found; name it with --bytes-col (columns are: {', '.join(header)})"
            )
    ti = _column(path, header, time_col, "--time-col")
    idx = {c: _column(path, header, c, "--bytes-col") for c in bytes_cols}
    if not rows:
        raise CapacityInputError(f"{path}: the series is empty (a header but no data rows)")
    t, absolute = _times(path, rows, ti, time_col)
    cols = {c: _numbers(path, rows, i, c) for c, i in idx.items()}
    t, step, cols, notes = _regularise(path, t, cols, time_col)
    if not absolute and t[0] >= 86400:
        notes.append("numeric times read as seconds; time of day taken as t mod 86400")
    return ByteSeries(str(path), t, step, cols, absolute=absolute, notes=notes)


def load_run(run_dir) -> tuple[ByteSeries, dict, dict | None]:
    """A run folder: timeseries.csv at real (simulated-clock) times, step = compression k seconds.

    Returns the series, the manifest and the summary (None when missing)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise CapacityInputError(f"{run}: no such run folder")
    mpath = run / "manifest.json"
    manifest = _json(mpath)
    k = manifest.get("compression", 1)
    if not isinstance(k, (int, float)) or isinstance(k, bool) or k <= 0:
        raise CapacityInputError(f"{mpath}: key 'compression': expected a positive number, got {k!r}")
    k = float(k)
    spath = run / "summary.json"
    summary = _json(spath) if spath.exists() else None
    tpath = run / "timeseries.csv"
    header, rows = _read_csv(tpath)
    for c in ("bytes_down", "bytes_up"):
        _column(tpath, header, c, "the run's byte counts")
    if not rows:
        raise CapacityInputError(f"{tpath}: the series is empty (a header but no data rows)")
    cols = {c: _numbers(tpath, rows, _column(tpath, header, c, c), c) for c in ("bytes_down", "bytes_up")}
    lower = [h.lower() for h in header]
    window = manifest.get("window") or {}
    from_s = float(window.get("from_s", 0) or 0)
    # Rows are wall seconds (t_s); the simulated clock only says where the replay started: rows before
    # it (start-up, clock not running) carry no replayed traffic and are left out.
    wall = _numbers(tpath, rows, _column(tpath, header, "t_s", "the run's wall seconds"), "t_s")
    notes = []
    start = 0
    if "sim_clock_s" in lower:
        clock = _numbers(tpath, rows, lower.index("sim_clock_s"), "sim_clock_s")
        not_started = np.flatnonzero(clock <= from_s + 1e-9)
        if not_started.size and not_started[-1] < len(clock) - 1:
            start = int(not_started[-1])
    if "arrivals" in lower:
        cols_extra = {"arrivals": _numbers(tpath, rows, lower.index("arrivals"), "arrivals")[start:]}
    else:
        cols_extra = {}
    if start:
        notes.append(f"{start} start-up rows of {tpath.name} before the simulated clock ran are left out")
        wall = wall[start:]
        cols = {c: v[start:] for c, v in cols.items()}
    t = from_s + k * (wall - wall[0])
    t, step, cols, more = _regularise(tpath, t, cols, "t_s", min_step=1.0, scale=k)
    notes += more
    notes.insert(0, f"time compression k = {k:g}: each row holds {k:g} real seconds of traffic; "
                    f"timescales below {k:g} s are extrapolated, not observed")
    if manifest.get("complete") is False:
        notes.append("the run is marked incomplete (complete: false); estimates use what it recorded")
    series = ByteSeries(str(tpath), t, step, cols, absolute=False, compression=k, notes=notes,
                        extra=cols_extra if len(t) == len(wall) else {})
    return series, manifest, summary


def _json(path: Path) -> dict:
    if not path.is_file():
        raise CapacityInputError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CapacityInputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CapacityInputError(f"{path}: expected a JSON object")
    return data


def per_visit_bytes(summary: dict, source: str = "summary.json") -> dict:
    """Mean bytes per visit, E[b^2] and the persona mix from summary.json, per direction.

    Returns {"mix": {persona: share}, "down": b, "up": b, "down_sq": E[b^2], "up_sq": ...}; the mix is
    the share of visits started by persona (equal shares when the counts are missing)."""
    pvb = summary.get("per_visit_bytes")
    if not isinstance(pvb, dict) or not pvb:
        raise CapacityInputError(f"{source}: key 'per_visit_bytes': expected {{persona: {{down, up}}}}")
    personas = summary.get("personas") or {}
    counts = {}
    for p in pvb:
        c = (personas.get(p) or {}).get("visits_started")
        counts[p] = float(c) if isinstance(c, (int, float)) and c > 0 else 0.0
    total = sum(counts.values())
    mix = {p: (counts[p] / total if total > 0 else 1.0 / len(pvb)) for p in pvb}
    out: dict = {"mix": mix}
    for d in ("down", "up"):
        vals = {}
        for p, rec in pvb.items():
            v = rec.get(d) if isinstance(rec, dict) else None
            if not isinstance(v, (int, float)) or v < 0:
                raise CapacityInputError(
                    f"{source}: per_visit_bytes.{p}.{d}: expected a byte count >= 0, got {v!r}"
                )
            vals[p] = float(v)
        out[d] = sum(mix[p] * vals[p] for p in pvb)
        out[d + "_sq"] = sum(mix[p] * vals[p] ** 2 for p in pvb)
        out[d + "_by_persona"] = vals
    return out


@dataclass
class History:
    source: str
    dates: np.ndarray  # datetime64[D]
    visits: np.ndarray
    notes: list[str] = field(default_factory=list)


def load_history(path, date_col: str = "date", visits_col: str = "visits") -> History:
    """Daily visits: ISO dates in increasing order, no duplicates, counts >= 0 (zero days are
    dropped from the fit as outages, with a note)."""
    path = Path(path)
    header, rows = _read_csv(path)
    di = _column(path, header, date_col, "the history's dates")
    vi = _column(path, header, visits_col, "the history's daily visits")
    if not rows:
        raise CapacityInputError(f"{path}: the history is empty (a header but no data rows)")
    dates = np.empty(len(rows), dtype="datetime64[D]")
    for i, r in enumerate(rows):
        cell = r[di].strip() if di < len(r) else ""
        try:
            dates[i] = dt.date.fromisoformat(cell)
        except ValueError:
            raise CapacityInputError(
                f"{path}:{i + 2}: column {date_col!r}: expected a date YYYY-MM-DD, got {cell!r}"
            ) from None
    visits = _numbers(path, rows, vi, visits_col)
    d = np.diff(dates).astype(int)
    if np.any(d <= 0):
        i = int(np.argmax(d <= 0))
        kind = "duplicate" if d[i] == 0 else "out-of-order"
        raise CapacityInputError(
            f"{path}:{i + 3}: column {date_col!r}: {kind} date {dates[i + 1]} "
            f"(dates must increase, one row per day)"
        )
    notes = []
    zero = visits == 0
    if np.any(zero):
        notes.append(f"{int(zero.sum())} days with 0 visits in {path.name} treated as outages and left out")
        dates, visits = dates[~zero], visits[~zero]
    if len(dates) < 30:
        raise CapacityInputError(
            f"{path}: {len(dates)} days of history; the forecast needs at least 30 (better: a school year)"
        )
    return History(str(path), dates, visits, notes)
