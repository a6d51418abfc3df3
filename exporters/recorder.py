"""The run recorder: Locust events -> `summary.json`, `timeseries.csv`, `samples.csv.gz` (docs/contracts.md).

Why a recorder of our own next to Locust's CSV: Locust has no notion of visits, arrivals, bytes up, or the
simulated clock, and its per-second history is not mergeable across workers. This module aggregates per
wall second and per endpoint in mergeable form (counts and log-bucketed latency histograms), so the same
code serves a single process and Locust's distributed mode:

- a `Collector` runs wherever users run (the local process or each worker): it listens to Locust's
  `request` event and to the visit hooks of `exporters.events`, and hands its increments over on `drain()`;
- an `Aggregator` runs in the local process or the master: it merges drains (directly in local mode, via
  `report_to_master` / `worker_report` in distributed mode), writes one `timeseries.csv` row per wall second
  a few seconds behind real time (so every worker's report for that second has arrived), rewrites
  `summary.json` every few seconds and at the end, and keeps a bounded uniform reservoir of latency
  samples per endpoint.

It also keeps Locust's own per-second state bounded (`stats.history` is decimated, per-second request
counters are trimmed) so that a long soak does not grow the load generator's memory.

Options (registered here, so `locust -f scenarios` and `entload run` agree): `--results-dir DIR` turns the
recorder on; `--run-id ID` names the run. The scenarios' locustfile imports this module.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import math
import os
import random
import time
from array import array
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from exporters import events as entload_events
from exporters._headers import head_bytes

SCHEMA_VERSION = 1
RESERVOIR_SIZE = 20_000
SUMMARY_EVERY_S = 5.0
SAMPLES_EVERY_S = 120.0
LOCAL_LAG_S = 2  # rows are written this many seconds behind the wall clock
DISTRIBUTED_LAG_S = 6  # workers report every 3 s (Locust's WORKER_REPORT_INTERVAL)
GENERATOR_SATURATED_PERCENT = 90.0  # Locust's own CPU warning threshold
HISTORY_MAX = 720  # Locust's stats.history entries kept for its HTML report (decimated beyond)
PER_SEC_KEEP_S = 30  # Locust's per-second counters older than this are dropped (it reads the last 12 s)
REPORT_KEY = "entload_recorder"
SIM_BUCKET_S = 600  # fidelity unit of the issue: arrivals per simulated 10 minutes
INTENDED_PER_S = 4  # resolution of the intended-arrival tally (keys per wall second)
TARGET_TICK_S = 1.0  # the scenarios' scheduler reports the target once per 1 s tick, at the tick's start
#: benchmarks/soak_memory.py's reference variant only: leave Locust's per-run state unbounded
UNBOUNDED = os.environ.get("ENTLOAD_RECORDER_UNBOUNDED_LOCUST_STATS") == "1"

TIMESERIES_COLUMNS = [
    "t_s", "sim_clock_s", "arrivals_target", "arrivals", "late", "dropped", "active_visits", "users",
    "requests", "failures", "bytes_down", "bytes_up", "p50_s", "p95_s", "p99_s",
]  # fmt: skip
SAMPLES_COLUMNS = ["method", "name", "latency_s", "intended_latency_s", "ok"]

# ---------------------------------------------------------------------------------------------------------
# Latency histograms: log buckets 2 % wide from 10 µs, mergeable by adding counts (dict index -> count).
_H_BASE = 1e-5
_H_LOG_GROWTH = math.log(1.02)
_log, _time = math.log, time.time


def hist_index(seconds: float) -> int:
    if seconds <= _H_BASE:
        return 0
    return int(math.log(seconds / _H_BASE) / _H_LOG_GROWTH) + 1


def hist_value(index: int) -> float:
    """Representative value of a bucket (geometric middle); index 0 holds everything below 10 µs."""
    if index <= 0:
        return _H_BASE
    return _H_BASE * math.exp((index - 0.5) * _H_LOG_GROWTH)


def hist_merge(into: dict, other: dict) -> None:
    for k, v in other.items():
        k = int(k)
        into[k] = into.get(k, 0) + v


def hist_quantiles(hist: dict, qs: tuple[float, ...]) -> list[float | None]:
    """Quantiles (nearest rank) of a bucket histogram; None when empty."""
    total = sum(hist.values())
    if not total:
        return [None for _ in qs]
    items = sorted((int(k), v) for k, v in hist.items())
    out: list[float | None] = []
    for q in qs:
        rank = max(1, math.ceil(q * total))
        acc = 0
        for k, v in items:
            acc += v
            if acc >= rank:
                out.append(hist_value(k))
                break
    return out


# ---------------------------------------------------------------------------------------------------------
def _new_second() -> dict:
    # n requests, f failures, bd/bu bytes, a arrivals (visits started), l late, d dropped, tg target (the arrivals
    # the scheduler drew), ex expected (the profile's rate integrated; tg - ex is Poisson noise)
    # (expected arrivals), h latency histogram, av active visits and u users (snapshots, per process)
    return {"n": 0, "f": 0, "bd": 0, "bu": 0, "a": 0, "l": 0, "d": 0, "tg": 0.0, "ex": 0.0, "h": {}}


def _new_endpoint() -> dict:
    return {"n": 0, "f": 0, "bd": 0, "bu": 0, "sum": 0.0, "max": 0.0, "h": {}}


def _new_persona() -> dict:
    return {"started": 0, "ok": 0, "failed": 0, "quota": 0, "bd": 0, "bu": 0, "dsum": 0.0, "dh": {}}


class Reservoir:
    """Uniform reservoir of (latency, intended latency, ok), stored compactly (9 bytes a slot).

    The arrays are allocated full size at creation, so memory does not creep up during a soak as the
    reservoir fills. Once full, replacements follow Li's Algorithm L: the number of requests to skip before the
    next replacement is drawn directly, so a long run draws a few random numbers per replacement (about
    R·ln(n/R) over a run) instead of one per request, and each request past the fill costs a comparison.
    `changed` lists the slots written since the last `take_changes()` (when `track` is on), so a worker ships
    only its replacements and the master mirrors its reservoir; a local run's aggregator reads the collector's
    reservoirs directly and turns tracking off.
    """

    __slots__ = ("lat", "intended", "ok", "seen", "changed", "track", "_rng", "_w", "_next")

    def __init__(self, rng: random.Random, track: bool = True):
        self.lat = array("f", [0.0]) * RESERVOIR_SIZE
        self.intended = array("f", [0.0]) * RESERVOIR_SIZE
        self.ok = bytearray(RESERVOIR_SIZE)
        self.seen = 0
        self.changed: set[int] = set()
        self.track = track
        self._rng = rng
        self._w = 1.0
        self._next = RESERVOIR_SIZE  # index (0-based) of the next request that is written to a slot

    @property
    def filled(self) -> int:
        return min(self.seen, RESERVOIR_SIZE)

    def add(self, lat: float, intended: float, ok: bool) -> None:
        i = self.seen
        self.seen = i + 1
        if i < RESERVOIR_SIZE:
            slot = i
        elif i < self._next:
            return
        else:
            slot = self._rng.randrange(RESERVOIR_SIZE)
        if i + 1 >= RESERVOIR_SIZE:  # the reservoir is full from now on: draw the next replacement
            self._skip()
        self.lat[slot], self.intended[slot], self.ok[slot] = lat, intended, 1 if ok else 0
        if self.track:
            self.changed.add(slot)

    def _skip(self) -> None:
        """Algorithm L (Li 1994): W shrinks as exp(log(u)/R); the gap to the next replacement is geometric."""
        rnd = self._rng.random
        self._w *= math.exp(math.log(1.0 - rnd()) / RESERVOIR_SIZE)
        w = self._w
        gap = math.floor(math.log(1.0 - rnd()) / math.log1p(-w)) if 0.0 < w < 1.0 else 0
        self._next = self.seen + gap

    def take_changes(self) -> list:
        rows = [[s, self.lat[s], self.intended[s], self.ok[s]] for s in sorted(self.changed)]
        self.changed.clear()
        return rows

    def apply_changes(self, seen: int, rows: list) -> None:
        """Mirror side: replay a worker's slot writes."""
        self.seen = seen
        for slot, lat, intended, ok in rows:
            self.lat[slot], self.intended[slot], self.ok[slot] = lat, intended, ok


def _response_wire_bytes(response_length: int, response: Any) -> int:
    """Body plus status line and headers, as the bytes that crossed the link (approximately)."""
    size = response_length or 0
    headers = getattr(response, "headers", None)
    if headers is not None:
        try:
            lines = head_bytes(headers)[0]
        except Exception:  # a header object we do not know: count the body only
            lines = 0
        if lines:
            size += 19 + lines
    return size


class Collector:
    """Per-process increments (where the users run). Cheap on the request path: dict adds only."""

    KEYS_MAX = 10_000  # endpoint keys memoised ("GET /x" strings); raw request names may be unbounded

    def __init__(self, seed: int | None = None):
        self.rng = random.Random(seed)
        self.ship_samples = True  # off when the aggregator reads `reservoirs` in this process
        self._keys: dict[Any, dict[str, str]] = {}
        self._n_keys = 0
        self.reset()
        self.active = 0
        self.users = 0

    def reset(self) -> None:
        self.seconds: dict[int, dict] = {}
        # arrivals by *intended* time (quarter-second keys): [achieved, dropped, late]; target per tick
        self.intended: dict[int, list[int]] = {}
        self.targets: list[list[float]] = []
        self.endpoints: dict[str, dict] = {}
        self.personas: dict[str, dict] = {}
        self.reservoirs: dict[str, Reservoir] = getattr(self, "reservoirs", {})
        self._cur_sec, self._cur = -1, None  # the current second's bucket, for the request path

    def _second(self, now: float) -> dict:
        sec = int(now)
        b = self.seconds.get(sec)
        if b is None:
            b = self.seconds[sec] = _new_second()
        return b

    def _persona(self, name: str) -> dict:
        p = self.personas.get(name)
        if p is None:
            p = self.personas[name] = _new_persona()
        return p

    def _key(self, request_type, name) -> str:
        key = f"{request_type} {name}"
        if self._n_keys < self.KEYS_MAX:
            self._keys.setdefault(request_type, {})[name] = key
            self._n_keys += 1
        return key

    # -- listeners --------------------------------------------------------------------------------------
    def on_request(self, request_type, name, response_time, response_length, response=None, context=None,
                   exception=None, start_time=None, url=None, **_kw):  # fmt: skip
        # (start_time and url are named although unused: Locust passes them, and a keyword caught by **_kw
        # costs a dict per call)
        lat = (response_time or 0) / 1000.0
        if context:
            late = context.get("lateness_s")
            intended = lat + float(late) if late else lat
            up = context.get("request_bytes")
            up = int(up) if up else 0
            persona = context.get("persona")
        else:
            intended, up, persona = lat, 0, None
        down = _response_wire_bytes(response_length, response)
        failed = exception is not None
        idx = int(_log(lat / _H_BASE) / _H_LOG_GROWTH) + 1 if lat > _H_BASE else 0  # hist_index(lat), inlined
        sec = int(_time())
        if sec == self._cur_sec:
            b = self._cur
        else:
            b = self._cur = self._second(sec)
            self._cur_sec = sec
        b["n"] += 1
        b["bd"] += down
        b["bu"] += up
        h = b["h"]
        h[idx] = h.get(idx, 0) + 1
        names = self._keys.get(request_type)
        key = names.get(name) if names is not None else None
        if key is None:
            key = self._key(request_type, name)
        e = self.endpoints.get(key)
        if e is None:
            e = self.endpoints[key] = _new_endpoint()
        e["n"] += 1
        e["bd"] += down
        e["bu"] += up
        e["sum"] += lat
        if lat > e["max"]:
            e["max"] = lat
        eh = e["h"]
        eh[idx] = eh.get(idx, 0) + 1
        if failed:
            b["f"] += 1
            e["f"] += 1
        if persona:
            p = self.personas.get(persona)
            if p is None:
                p = self._persona(persona)
            p["bd"] += down
            p["bu"] += up
        r = self.reservoirs.get(key)
        if r is None:
            r = self.reservoirs[key] = Reservoir(self.rng, track=self.ship_samples)
        r.add(lat, intended, not failed)

    def share_samples(self) -> dict[str, Reservoir]:
        """The aggregator of this same process reads the reservoirs directly: stop tracking and shipping slot
        writes (a copy of every sample during the fill, and a sorted list of them every second)."""
        self.ship_samples = False
        for r in self.reservoirs.values():
            r.track = False
            r.changed.clear()
        return self.reservoirs

    def _intended(self, intended_at) -> list[int]:
        q = int(float(intended_at if intended_at is not None else time.time()) * INTENDED_PER_S)
        row = self.intended.get(q)
        if row is None:
            row = self.intended[q] = [0, 0, 0]
        return row

    def on_visit_started(self, persona, intended_at=None, started_at=None, late=False, **_kw):
        row = self._intended(intended_at)
        row[0] += 1
        if late:
            row[2] += 1
        b = self._second(time.time())
        b["a"] += 1
        if late:
            b["l"] += 1
        self._persona(persona)["started"] += 1
        self.active += 1

    def on_visit_completed(self, persona, outcome="ok", duration_s=0.0, **_kw):
        p = self._persona(persona)
        p[outcome if outcome in ("ok", "failed", "quota") else "failed"] += 1
        p["dsum"] += float(duration_s or 0)
        i = hist_index(float(duration_s or 0))
        p["dh"][i] = p["dh"].get(i, 0) + 1
        self.active = max(0, self.active - 1)

    def on_arrival_dropped(self, persona=None, intended_at=None, **_kw):
        self._intended(intended_at)[1] += 1
        self._second(time.time())["d"] += 1

    def on_arrival_target(self, rate_per_s=0.0, expected_in_tick=0.0, scheduled_in_tick=None, **_kw):
        """The target is what the scheduler drew (docs/contracts.md "Arrivals"); the expected count rides along."""
        now = time.time()
        expected = float(expected_in_tick or 0)
        target = expected if scheduled_in_tick is None else float(scheduled_in_tick)
        b = self._second(now)
        b["tg"] += target
        b["ex"] = b.get("ex", 0.0) + expected
        self.targets.append([now, target])

    def snapshot(self, users: int) -> None:
        """Once a wall second: the active visits and users gauges of this process."""
        b = self._second(time.time())
        b["av"] = self.active
        b["u"] = users
        self.users = users

    def drain(self) -> dict:
        """Everything since the last drain, in a msgpack-able dict (the report a worker sends)."""
        now = time.time()
        cur = self._second(now)
        cur.setdefault("av", self.active)
        cur.setdefault("u", self.users)
        data = {
            "seconds": self.seconds,
            "intended": self.intended,
            "targets": self.targets,
            "endpoints": self.endpoints,
            "personas": self.personas,
        }
        if self.ship_samples:
            data["samples"] = {k: [r.seen, r.take_changes()] for k, r in self.reservoirs.items() if r.changed}
        self.reset()
        return data

    def attach(self, ev) -> None:
        ev.request.add_listener(self.on_request)
        entload_events.visit_started.add_listener(self.on_visit_started)
        entload_events.visit_completed.add_listener(self.on_visit_completed)
        entload_events.arrival_dropped.add_listener(self.on_arrival_dropped)
        entload_events.arrival_target.add_listener(self.on_arrival_target)

    def detach(self, ev) -> None:
        for hook, fn in (
            (ev.request, self.on_request),
            (entload_events.visit_started, self.on_visit_started),
            (entload_events.visit_completed, self.on_visit_completed),
            (entload_events.arrival_dropped, self.on_arrival_dropped),
            (entload_events.arrival_target, self.on_arrival_target),
        ):
            with contextlib.suppress(ValueError):
                hook.remove_listener(fn)


# ---------------------------------------------------------------------------------------------------------
def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fmt(x: float | None, digits: int = 6) -> str:
    return "" if x is None else f"{x:.{digits}g}"


def _parse_duration_s(value: Any) -> float | None:
    """`1h`, `5m`, `1h30m`, `90s` or a number of seconds (the scenarios' --day-in)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    import re

    total, units = 0.0, {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d)", str(value).lower())
    for num, unit in parts:
        total += float(num) * units[unit]
    return total or None


def _parse_clock_s(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    h, _, rest = str(value).strip().partition(":")
    m, _, s = rest.partition(":")
    try:
        return int(h) * 3600 + int(m or 0) * 60 + int(s or 0)
    except ValueError:
        return None


def sim_clock_params(environment) -> tuple[float, float]:
    """(from_s, k): simulated seconds since midnight where the replay starts, and simulated seconds per wall
    second, from the scenario options (`--from`, `--to`, `--day-in`: the window is replayed in DUR)."""
    opts = getattr(environment, "parsed_options", None)
    from_s = _parse_clock_s(getattr(opts, "from_time", None) or getattr(opts, "from", None)) or 0.0
    to_s = _parse_clock_s(getattr(opts, "to_time", None) or getattr(opts, "to", None)) or 86400.0
    day_in = _parse_duration_s(getattr(opts, "day_in", None))
    k = (to_s - from_s) / day_in if day_in and to_s > from_s else 1.0
    return float(from_s), float(k)


def clock_origin(environment) -> float | None:
    """Wall epoch at which the simulated clock reads `from_s`: the shape's `t0` when it has one (the
    scenarios' shape starts the clock after a warm-up), else None (the recorder's start)."""
    t0 = getattr(getattr(environment, "shape_class", None), "t0", None)
    return float(t0) if isinstance(t0, int | float) else None


class Aggregator:
    """Merges collector drains and writes the run folder's recorder files (local process or master)."""

    def __init__(self, results_dir: Path, run_id: str, lag_s: int, from_s: float = 0.0, k: float = 1.0,
                 seed: int | None = None, distributed: bool = False, origin=None):  # fmt: skip
        self.dir = Path(results_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self.lag_s = lag_s
        self.from_s, self.k = from_s, k
        self.distributed = distributed
        self.origin = origin or (lambda: None)  # -> wall epoch of the simulated from_s, once known
        self.rng = random.Random(seed)
        self.start = time.time()
        self.start_sec = int(self.start)
        self.end: float | None = None
        self.next_row_sec = self.start_sec
        self.pending: dict[int, dict] = {}
        self.endpoints: dict[str, dict] = {}
        self.personas: dict[str, dict] = {}
        self.totals = _new_second()
        self.mirrors: dict[str, dict[str, Reservoir]] = {}  # worker id -> endpoint -> reservoir
        self.sim_buckets: dict[int, list[float]] = {}  # simulated 10-min bucket -> [target, achieved, dropped, late]
        #: the load generator's own CPU (Locust's per-process sampling, the busiest process): above 90 % its
        #: queueing adds to every latency it measures, so the run says when that happened
        self.generator = {"cpu_max_percent": 0.0, "saturated_s": 0, "saturated_from_sim_s": None}
        self.complete = False
        self.end_reason = "running"
        self._last_summary = 0.0
        self._last_samples = time.monotonic()
        self._ts_file = open(self.dir / "timeseries.csv", "w", newline="", encoding="utf-8")
        self._ts = csv.writer(self._ts_file)
        self._ts.writerow(TIMESERIES_COLUMNS)
        self._ts_file.flush()
        self.write_summary()

    def note_generator_cpu(self, percent: float, now: float) -> None:
        """One sample a second of the busiest generator process's CPU (percent of one core)."""
        g = self.generator
        g["cpu_max_percent"] = max(g["cpu_max_percent"], round(percent, 1))
        if percent > GENERATOR_SATURATED_PERCENT:
            g["saturated_s"] += 1
            origin = self.origin()
            if g["saturated_from_sim_s"] is None and origin is not None:
                g["saturated_from_sim_s"] = round(self.from_s + max(0.0, now - origin) * self.k, 1)

    # -- merging ---------------------------------------------------------------------------------------
    def merge(self, source: str, data: dict) -> None:
        for sec, b in data.get("seconds", {}).items():
            sec = int(sec)
            if sec < self.next_row_sec:  # arrived after its row was written: counts go to the next row
                sec = self.next_row_sec
                b = {k: v for k, v in b.items() if k not in ("av", "u")}
            p = self.pending.get(sec)
            if p is None:
                p = self.pending[sec] = _new_second()
                p["av"], p["u"] = {}, {}
            for k in ("n", "f", "bd", "bu", "a", "l", "d", "tg", "ex"):
                p[k] += b.get(k, 0)
                self.totals[k] += b.get(k, 0)
            hist_merge(p["h"], b.get("h", {}))
            if "av" in b:
                p["av"][source] = b["av"]
            if "u" in b:
                p["u"][source] = b["u"]
        for key, e in data.get("endpoints", {}).items():
            mine = self.endpoints.get(key)
            if mine is None:
                mine = self.endpoints[key] = _new_endpoint()
            for k in ("n", "f", "bd", "bu", "sum"):
                mine[k] += e[k]
            mine["max"] = max(mine["max"], e["max"])
            hist_merge(mine["h"], e["h"])
        for name, pe in data.get("personas", {}).items():
            mine = self.personas.get(name)
            if mine is None:
                mine = self.personas[name] = _new_persona()
            for k in ("started", "ok", "failed", "quota", "bd", "bu", "dsum"):
                mine[k] += pe[k]
            hist_merge(mine["dh"], pe["dh"])
        self._merge_sim_buckets(data.get("intended", {}), data.get("targets", []))
        mirror = self.mirrors.setdefault(source, {})
        for key, (seen, rows) in data.get("samples", {}).items():
            r = mirror.get(key)
            if r is None:
                r = mirror[key] = Reservoir(self.rng)
            r.apply_changes(seen, rows)

    def _spread(self, t0: float, wall_a: float, wall_b: float, values: tuple[float, ...], first: int) -> None:
        """Add `values` (into columns first...) spread evenly over the simulated interval of [wall_a, wall_b)."""
        sim_a = self.from_s + (wall_a - t0) * self.k
        sim_b = self.from_s + (wall_b - t0) * self.k
        width = max(sim_b - sim_a, 1e-9)
        b = int(sim_a // SIM_BUCKET_S)
        while True:
            lo, hi = max(sim_a, b * SIM_BUCKET_S), min(sim_b, (b + 1) * SIM_BUCKET_S)
            frac = max(0.0, hi - lo) / width
            if frac > 0:
                row = self.sim_buckets.setdefault(b, [0.0, 0.0, 0.0, 0.0])
                for i, v in enumerate(values):
                    row[first + i] += v * frac
            if (b + 1) * SIM_BUCKET_S >= sim_b:
                break
            b += 1

    def _merge_sim_buckets(self, intended: dict, targets: list) -> None:
        """Arrivals per simulated 10 minutes: achieved/dropped/late by their *intended* time, the target by
        its scheduler tick, both mapped through the simulated clock (origin t0, compression k)."""
        if not intended and not targets:
            return
        t0 = self.origin() or self.start
        for q, (achieved, dropped, late) in intended.items():
            q = int(q)
            self._spread(t0, q / INTENDED_PER_S, (q + 1) / INTENDED_PER_S, (achieved, dropped, late), 1)
        for wall, target in targets:
            tick = t0 + math.floor((wall - t0) / TARGET_TICK_S + 1e-3) * TARGET_TICK_S
            self._spread(t0, tick, tick + TARGET_TICK_S, (target,), 0)

    # -- writing ---------------------------------------------------------------------------------------
    def _last_gauges(self) -> tuple[dict, dict]:
        return getattr(self, "_av_carry", {}), getattr(self, "_u_carry", {})

    def write_rows(self, upto_sec: int) -> None:
        """One row per wall second up to `upto_sec` (exclusive); gauges carry forward per source."""
        av_carry, u_carry = self._last_gauges()
        while self.next_row_sec < upto_sec:
            sec = self.next_row_sec
            b = self.pending.pop(sec, None) or {**_new_second(), "av": {}, "u": {}}
            av_carry.update(b["av"])
            u_carry.update(b["u"])
            p50, p95, p99 = hist_quantiles(b["h"], (0.5, 0.95, 0.99))
            t_s = sec - self.start_sec
            t0 = self.origin() or self.start
            sim = max(self.from_s, self.from_s + (sec - t0) * self.k)
            self._ts.writerow([
                t_s, f"{sim:.1f}", f"{b['tg']:.3f}", b["a"], b["l"], b["d"],
                sum(av_carry.values()), sum(u_carry.values()), b["n"], b["f"], b["bd"], b["bu"],
                _fmt(p50), _fmt(p95), _fmt(p99),
            ])  # fmt: skip
            self.next_row_sec += 1
        self._av_carry, self._u_carry = av_carry, u_carry
        self._ts_file.flush()

    def summary(self) -> dict:
        end = self.end or time.time()
        duration = max(end - self.start, 1e-9)
        endpoints = []
        for key in sorted(self.endpoints):
            e = self.endpoints[key]
            method, _, name = key.partition(" ")
            p50, p90, p95, p99 = hist_quantiles(e["h"], (0.5, 0.9, 0.95, 0.99))
            endpoints.append({
                "name": name, "method": method, "requests": e["n"], "failures": e["f"],
                "p50_s": p50, "p90_s": p90, "p95_s": p95, "p99_s": p99, "max_s": e["max"],
                "mean_s": e["sum"] / e["n"] if e["n"] else None,
                "bytes_down": e["bd"], "bytes_up": e["bu"],
            })  # fmt: skip
        personas, per_visit, durations = {}, {}, {}
        for name in sorted(self.personas):
            p = self.personas[name]
            done = p["ok"] + p["failed"] + p["quota"]
            personas[name] = {"visits_started": p["started"], "visits_completed": done,
                              "visits_ok": p["ok"], "visits_failed": p["failed"], "visits_quota": p["quota"]}  # fmt: skip
            visits = p["started"] or done
            per_visit[name] = {"down": p["bd"] / visits if visits else None,
                               "up": p["bu"] / visits if visits else None}  # fmt: skip
            q50, q95 = hist_quantiles(p["dh"], (0.5, 0.95))
            durations[name] = {"p50": q50, "p95": q95, "mean": p["dsum"] / done if done else None}
        t = self.totals
        all_hist: dict = {}
        for e in self.endpoints.values():
            hist_merge(all_hist, e["h"])
        q50, q95, q99 = hist_quantiles(all_hist, (0.5, 0.95, 0.99))
        return {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "complete": self.complete,
            "end_reason": self.end_reason,
            "started_at": _iso(self.start),
            "ended_at": _iso(self.end) if self.end else None,
            "duration_s": round(duration, 3),
            "compression": self.k,
            "window_from_s": self.from_s,
            "arrivals": {"target": round(t["tg"], 1), "expected": round(t.get("ex", 0.0), 1), "achieved": t["a"],
                         "dropped": t["d"], "late": t["l"]},
            "personas": personas,
            "endpoints": endpoints,
            "requests": t["n"],
            "failures": t["f"],
            "requests_per_s": t["n"] / duration,
            "latency_s": {"p50": q50, "p95": q95, "p99": q99},
            "bytes": {"down": t["bd"], "up": t["bu"]},
            "per_visit_bytes": per_visit,
            "visit_duration_s": durations,
            "generator": dict(self.generator),
            "arrivals_by_sim_bucket": [
                {"from_s": b * SIM_BUCKET_S, "target": round(v[0], 2), "achieved": round(v[1], 2),
                 "dropped": round(v[2], 2), "late": round(v[3], 2)}
                for b, v in sorted(self.sim_buckets.items())
            ],  # fmt: skip
        }

    def write_summary(self) -> None:
        _atomic_write(self.dir / "summary.json", json.dumps(self.summary(), indent=1) + "\n")
        self._last_summary = time.monotonic()

    def merged_rows(self, key: str):
        """Rows (latency, intended, ok) of a uniform sample of at most RESERVOIR_SIZE requests of one endpoint
        over all sources' reservoirs, yielded one at a time (no large transient lists: a soak's memory stays
        flat while the reservoirs fill).

        A uniform draw of R among the N = Σ n_i requests picks k_i from source i (multivariate
        hypergeometric); k_i of source i's uniform reservoir are then a uniform draw of its n_i.
        """
        parts = [m[key] for m in self.mirrors.values() if key in m and m[key].seen]
        if len(parts) == 1:  # one process: its reservoir is the sample
            r = parts[0]
            for s in range(r.filled):
                yield r.lat[s], r.intended[s], r.ok[s]
            return
        total = sum(r.seen for r in parts)
        counts = [0] * len(parts)
        bounds, acc = [], 0
        for r in parts:
            acc += r.seen
            bounds.append(acc)
        for x in self.rng.sample(range(total), min(RESERVOIR_SIZE, total)):
            i = 0
            while x >= bounds[i]:
                i += 1
            counts[i] += 1
        for r, c in zip(parts, counts, strict=True):
            for s in self.rng.sample(range(r.filled), min(c, r.filled)):
                yield r.lat[s], r.intended[s], r.ok[s]

    def sample_keys(self) -> list[str]:
        return sorted({k for m in self.mirrors.values() for k in m})

    def merged_reservoirs(self) -> dict[str, list[tuple[float, float, int]]]:
        """All endpoints' merged samples as lists (tests; the writer streams `merged_rows`)."""
        return {key: list(self.merged_rows(key)) for key in self.sample_keys()}

    def write_samples(self) -> None:
        path = self.dir / "samples.csv.gz"
        tmp = path.with_name(path.name + ".tmp")
        with gzip.open(tmp, "wt", newline="", encoding="utf-8", compresslevel=3) as f:
            f.write(",".join(SAMPLES_COLUMNS) + "\n")
            for key in self.sample_keys():
                method, _, name = key.partition(" ")
                prefix = _csv_field(method) + "," + _csv_field(name) + ","
                for lat, intended, ok in self.merged_rows(key):
                    f.write(f"{prefix}{lat:.6g},{intended:.6g},{ok}\n")
        os.replace(tmp, path)
        self._last_samples = time.monotonic()

    def tick(self, now: float | None = None) -> None:
        now = now or time.time()
        self.write_rows(int(now) - self.lag_s)
        if time.monotonic() - self._last_summary >= SUMMARY_EVERY_S:
            self.write_summary()
        if time.monotonic() - self._last_samples >= SAMPLES_EVERY_S:
            self.write_samples()

    def finish(self, complete: bool, reason: str) -> None:
        """Write everything (idempotent: called at `quitting` and again at `quit`)."""
        if self.end is None:
            self.end = time.time()
            self.complete, self.end_reason = complete, reason
        last = max([self.next_row_sec, *self.pending.keys()]) + 1
        self.write_rows(max(last, int(self.end) + 1))
        self.write_samples()
        self.write_summary()


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


# ---------------------------------------------------------------------------------------------------------
def bound_locust_memory(stats) -> None:
    """Keep Locust's growing per-run state bounded: decimate `stats.history` (its HTML charts) beyond
    HISTORY_MAX entries, and drop per-second request/failure counters older than PER_SEC_KEEP_S."""
    hist = stats.history
    if len(hist) > HISTORY_MAX:
        recent = HISTORY_MAX // 2
        older = hist[: len(hist) - recent]
        while len(older) > HISTORY_MAX - recent:
            older = older[::2]
        stats.history = older + hist[len(hist) - recent :]
    cutoff = int(time.time()) - PER_SEC_KEEP_S
    for entry in [stats.total, *stats.entries.values()]:
        for per_sec in (entry.num_reqs_per_sec, entry.num_fail_per_sec):
            if len(per_sec) > PER_SEC_KEEP_S * 2:
                for t in [t for t in per_sec if t < cutoff]:
                    del per_sec[t]


class Recorder:
    """Wires a Collector and (outside workers) an Aggregator into one Locust environment."""

    def __init__(self, environment):
        self.env = environment
        opts = environment.parsed_options
        self.results_dir = getattr(opts, "results_dir", None)
        self.run_id = getattr(opts, "run_id", None) or (Path(self.results_dir).name if self.results_dir else "")
        seed = getattr(opts, "seed", None)
        self.seed = int(seed) if isinstance(seed, int) or (isinstance(seed, str) and seed.isdigit()) else None
        self.runner = environment.runner
        self.is_worker = isinstance(self.runner, WorkerRunner)
        self.is_master = isinstance(self.runner, MasterRunner)
        self.collector: Collector | None = None
        self.aggregator: Aggregator | None = None
        self._loop = None
        self._stopped_by_shape = False
        # also on a master: the shape may fire arrival_target there
        self.collector = Collector(self.seed)
        self.collector.attach(environment.events)
        ev = environment.events
        ev.test_start.add_listener(self.on_test_start)
        ev.test_stop.add_listener(self.on_test_stop)
        ev.quitting.add_listener(self.on_quitting)
        ev.quit.add_listener(self.on_quit)
        if self.is_worker:
            ev.report_to_master.add_listener(self.on_report_to_master)
        if self.is_master:
            ev.worker_report.add_listener(self.on_worker_report)

    # -- events ----------------------------------------------------------------------------------------
    def on_test_start(self, environment, **_kw):
        if self.results_dir and not self.is_worker and self.aggregator is None:
            from_s, k = sim_clock_params(environment)
            self.aggregator = Aggregator(
                Path(self.results_dir), self.run_id,
                lag_s=DISTRIBUTED_LAG_S if self.is_master else LOCAL_LAG_S,
                from_s=from_s, k=k, seed=self.seed, distributed=self.is_master,
                origin=lambda: clock_origin(environment),
            )  # fmt: skip
            if self.collector is not None:  # same process: the aggregator reads the collector's reservoirs
                self.aggregator.mirrors["local"] = self.collector.share_samples()
        if self._loop is None:
            self._loop = gevent.spawn(self._every_second)

    def _every_second(self):
        while True:
            gevent.sleep(1.0 - (time.time() % 1.0) + 0.01)
            try:
                if self.collector is not None and not self.is_master:
                    self.collector.snapshot(self.runner.user_count if self.runner else 0)
                if self.aggregator is not None:
                    if self.collector is not None:
                        self.aggregator.merge("local", self.collector.drain())
                    self.aggregator.note_generator_cpu(self._generator_cpu(), time.time())
                    self.aggregator.tick()
                if not self.is_worker and not UNBOUNDED:
                    bound_locust_memory(self.env.stats)
            except Exception:  # recording must never take the load test down
                import logging

                logging.getLogger(__name__).exception("recorder tick failed")

    def _generator_cpu(self) -> float:
        """Locust's latest CPU sample (every 5 s) of this process, or on a master of its busiest worker."""
        runner = self.runner
        if runner is None:
            return 0.0
        cpu = float(getattr(runner, "current_cpu_usage", 0.0) or 0.0)
        if self.is_master:
            cpu = max([cpu] + [float(getattr(c, "cpu_usage", 0.0) or 0.0) for c in runner.clients.values()])
        return cpu

    def on_report_to_master(self, client_id, data, **_kw):
        if self.collector is not None:
            self.collector.snapshot(self.runner.user_count)
            data[REPORT_KEY] = self.collector.drain()

    def on_worker_report(self, client_id, data, **_kw):
        if self.aggregator is not None and REPORT_KEY in data:
            self.aggregator.merge(client_id, data[REPORT_KEY])

    def on_test_stop(self, environment, **_kw):
        shape_greenlet = getattr(self.runner, "shape_greenlet", None)
        self._stopped_by_shape = shape_greenlet is not None and shape_greenlet is gevent.getcurrent()

    def _finish(self):
        if self.aggregator is None:
            return
        if self.collector is not None:
            self.aggregator.merge("local", self.collector.drain())
        if self._stopped_by_shape:
            self.aggregator.finish(True, "completed")
        else:
            self.aggregator.finish(False, "interrupted")

    def on_quitting(self, environment, **_kw):
        self._finish()

    def on_quit(self, exit_code=0, **_kw):
        self._finish()
        if self._loop is not None:
            self._loop.kill(block=False)


def _add_option_once(parser, *flags: str, **kwargs) -> None:
    """The metrics exporter may register `--run-id` too: whoever comes first wins, nobody crashes."""
    if any(f in getattr(parser, "_option_string_actions", {}) for f in flags):
        return
    parser.add_argument(*flags, **kwargs)


@events.init_command_line_parser.add_listener
def _add_options(parser):
    _add_option_once(parser, "--results-dir", default="", metavar="DIR", include_in_web_ui=False,
                     help="write summary.json, timeseries.csv and samples.csv.gz into DIR (recorder on)")  # fmt: skip
    _add_option_once(parser, "--run-id", default=None, metavar="ID",
                     help="name of this run (default: the results directory's name)")  # fmt: skip


@events.init.add_listener
def _on_init(environment, **_kw):
    opts = environment.parsed_options
    if opts is None:
        return
    if getattr(opts, "results_dir", "") or isinstance(environment.runner, WorkerRunner):
        environment.entload_recorder = Recorder(environment)
