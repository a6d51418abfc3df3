"""The CI performance gate: SLO thresholds, the statistical regression check and baselines.

Three jobs, one module, because `entload gate`, `entload compare` and `entload run --abort-on-fail` share them:

* **Thresholds** (k6-like) on endpoint globs, personas (journeys) or the whole run, read from a YAML file that is
  validated with file:line messages. `evaluate_thresholds` works on a finished `summary.json` and, through
  `live_check`, on the partial one a run rewrites every few seconds.
* **Regression against a baseline**, per endpoint, on a latency quantile of the recorded samples.
  Why this design (docs/ci.md has the long form):
  - uncertainty of each sample quantile from its *exact* bootstrap (drawn from the binomial law of order
    statistics, so no resampling loop);
  - on a shared machine a whole run is often faster or slower than another for reasons that are not the build
    (CPU contention adds queueing delay to every endpoint). That machine-wide change is fitted as a robust line
    run = a + b x baseline through all endpoints (Theil-Sen), and an endpoint's effect is its quantile over what
    that line predicts for it: a regression of a few endpoints lies off the line, a busier machine does not;
  - two runs of the same build still differ endpoint by endpoint: that noise floor is *measured* among the
    baseline's own runs (leave-one-out A/A comparisons, 90 % upper confidence bound), or assumed
    (`noise_floor`) for a one-run baseline, and enters every bootstrap replicate;
  - an endpoint is flagged only when its effect is significant after Holm-Bonferroni across endpoints *and* at
    least `min_effect`; each effect is reported with its 95 % confidence interval. The machine-wide change is
    reported, and gated by its own wider limit (`max_common_shift`) when the baseline can measure its noise.
* **Baselines**: a small folder (baseline.json + one subsampled samples file per run, up to 5 runs) made from
  runs, tied to their workload digest and load shape; comparing across workloads is refused unless forced.
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

from entload.errors import InputError

SLO_SCHEMA_KEYS = {"thresholds", "regression"}
LATENCY_METRICS = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
ENDPOINT_METRICS = {"p50", "p90", "p95", "p99", "max", "mean", "error_ratio", "requests_per_s", "requests",
                    "failures"}
PERSONA_METRICS = {"visit_duration_p50", "visit_duration_p95", "visit_duration_mean", "visit_failure_ratio",
                   "visits"}
RUN_METRICS = {"dropped_arrivals", "dropped_ratio", "late_arrivals", "late_ratio", "requests_per_s",
               "error_ratio", "achieved_ratio"}
ALL_METRICS = ENDPOINT_METRICS | PERSONA_METRICS | RUN_METRICS
THRESHOLD_KEYS = {"endpoint", "persona", "journey", "metric", "max", "min", "aggregate", "min_requests", "name",
                  "abort_on_fail"}
REGRESSION_KEYS = {"metric", "min_effect", "alpha", "common_mode", "max_common_shift", "min_samples",
                   "latency", "bootstrap", "seed", "noise_floor", "common_noise"}
UNITS = {"p50": "s", "p90": "s", "p95": "s", "p99": "s", "max": "s", "mean": "s", "requests_per_s": "req/s",
         "visit_duration_p50": "s", "visit_duration_p95": "s", "visit_duration_mean": "s"}


# --------------------------------------------------------------------------------------------- SLO file

@dataclass
class Threshold:
    """One k6-like rule: a metric over a selection must stay within [min, max]."""

    metric: str
    max: float | None = None
    min: float | None = None
    endpoint: str | None = None
    persona: str | None = None
    aggregate: str = "each"  # each: every matching endpoint/persona must pass; all: the pooled value must
    min_requests: int = 1
    name: str = ""
    abort_on_fail: bool = True
    line: int | None = None

    @property
    def scope(self) -> str:
        if self.endpoint is not None:
            return f"endpoint {self.endpoint}"
        if self.persona is not None:
            return f"persona {self.persona}"
        return "run"

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        bounds = []
        if self.min is not None:
            bounds.append(f">= {self.min:g}")
        if self.max is not None:
            bounds.append(f"<= {self.max:g}")
        agg = " (pooled)" if self.aggregate == "all" else ""
        return f"{self.metric} {' and '.join(bounds)} on {self.scope}{agg}"


@dataclass
class RegressionConfig:
    """How the run is compared with a baseline (the `regression:` block)."""

    metric: str = "p95"
    min_effect: float = 0.10
    alpha: float = 0.05
    common_mode: bool = True
    max_common_shift: float | None = 0.50
    noise_floor: float = 0.05  # run-to-run change of one endpoint's quantile, used when the baseline has 1 run
    common_noise: float = 0.25  # run-to-run change of the common shift, likewise
    min_samples: int | None = None  # default: enough for 5 samples beyond the quantile, at least 20
    latency: str = "latency_s"  # or intended_latency_s (from the intended start: no coordinated omission)
    bootstrap: int = 4000
    seed: int = 0

    @property
    def quantile(self) -> float:
        return LATENCY_METRICS[self.metric]

    @property
    def needed_samples(self) -> int:
        if self.min_samples is not None:
            return self.min_samples
        return max(20, math.ceil(5 / (1 - self.quantile)))


@dataclass
class Slo:
    thresholds: list[Threshold] = field(default_factory=list)
    regression: RegressionConfig = field(default_factory=RegressionConfig)
    path: str = ""


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key, for file:line error messages."""

    def construct_mapping(self, node, deep=False):
        mapping = super().construct_mapping(node, deep=deep)
        mapping["__lines__"] = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
        mapping["__line__"] = node.start_mark.line + 1
        return mapping


def _where(path: str, line: int | None) -> str:
    return f"{path}:{line}" if line else path


def _number(value, path, line, key, *, integer=False, positive=False, low=None, high=None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if integer else "a number"
        raise InputError(f"{_where(path, line)}: {key}: expected {kind}, got {value!r}")
    if integer and int(value) != value:
        raise InputError(f"{_where(path, line)}: {key}: expected an integer, got {value!r}")
    if not math.isfinite(value) or (positive and value <= 0):
        raise InputError(f"{_where(path, line)}: {key}: expected a positive number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InputError(f"{_where(path, line)}: {key}: expected a number between {low} and {high}, got {value!r}")
    return int(value) if integer else float(value)


def parse_slo(text: str, path: str = "<slo>") -> Slo:
    """Validate an SLO YAML text; every mistake is one `InputError` naming file, line and key."""
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(f"{_where(path, line)}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if doc is None:
        raise InputError(f"{path}: the file is empty; expected a mapping with 'thresholds' and/or 'regression'")
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a mapping with 'thresholds' and/or 'regression', got {type(doc).__name__}")
    lines = doc.pop("__lines__", {})
    doc.pop("__line__", None)
    for key in doc:
        if key not in SLO_SCHEMA_KEYS:
            raise InputError(f"{_where(path, lines.get(key))}: {key}: unknown key; expected one of "
                             f"{', '.join(sorted(SLO_SCHEMA_KEYS))}")
    slo = Slo(path=path)
    raw = doc.get("thresholds") or []
    if not isinstance(raw, list):
        raise InputError(f"{_where(path, lines.get('thresholds'))}: thresholds: expected a list of rules")
    for i, item in enumerate(raw):
        slo.thresholds.append(_parse_threshold(item, path, f"thresholds[{i}]", lines.get("thresholds")))
    if "regression" in doc and doc["regression"] is not None:
        slo.regression = _parse_regression(doc["regression"], path, lines.get("regression"))
    return slo


def _open_mapping(item, path: str, where: str, parent_line: int | None, allowed, example: str):
    """Check that a YAML item is a mapping with only `allowed` keys; return (key -> line, its own line)."""
    if not isinstance(item, dict):
        raise InputError(f"{_where(path, parent_line)}: {where}: expected a mapping such as {example}")
    lines = item.pop("__lines__", {})
    line = item.pop("__line__", parent_line)
    for key in item:
        if key not in allowed:
            raise InputError(f"{_where(path, lines.get(key, line))}: {where}.{key}: unknown key; expected one of "
                             f"{', '.join(sorted(allowed))}")
    return lines, line


def _parse_threshold(item, path: str, where: str, parent_line: int | None) -> Threshold:
    lines, line = _open_mapping(item, path, where, parent_line, THRESHOLD_KEYS,
                                "{endpoint: '*', metric: p95, max: 0.8}")
    metric = item.get("metric")
    if metric not in ALL_METRICS:
        raise InputError(f"{_where(path, lines.get('metric', line))}: {where}.metric: expected one of "
                         f"{', '.join(sorted(ALL_METRICS))}, got {metric!r}")
    persona = item.get("persona", item.get("journey"))
    endpoint = item.get("endpoint")
    if endpoint is not None and persona is not None:
        raise InputError(f"{_where(path, line)}: {where}: give either endpoint or persona/journey, not both")
    for key, value in (("endpoint", endpoint), ("persona", persona)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InputError(f"{_where(path, lines.get(key, line))}: {where}.{key}: expected a glob string such "
                             f"as '*' or 'GET /conversation/*', got {value!r}")
    if endpoint is not None and metric not in ENDPOINT_METRICS:
        raise InputError(f"{_where(path, lines.get('metric', line))}: {where}.metric: {metric} is not an endpoint "
                         f"metric; expected one of {', '.join(sorted(ENDPOINT_METRICS))}")
    if persona is not None and metric not in PERSONA_METRICS:
        raise InputError(f"{_where(path, lines.get('metric', line))}: {where}.metric: {metric} is not a persona "
                         f"metric; expected one of {', '.join(sorted(PERSONA_METRICS))}")
    if endpoint is None and persona is None and metric not in RUN_METRICS:
        raise InputError(f"{_where(path, lines.get('metric', line))}: {where}.metric: {metric} needs an endpoint "
                         "glob (endpoint: '*') or a persona; run-wide metrics are "
                         f"{', '.join(sorted(RUN_METRICS))}")
    bounds = {}
    for key in ("max", "min"):
        if item.get(key) is not None:
            bounds[key] = _number(item[key], path, lines.get(key, line), f"{where}.{key}", low=0)
    if not bounds:
        raise InputError(f"{_where(path, line)}: {where}: needs max and/or min (seconds for latencies, a ratio "
                         "for error_ratio)")
    if "max" in bounds and "min" in bounds and bounds["min"] > bounds["max"]:
        raise InputError(f"{_where(path, lines.get('min', line))}: {where}.min: {bounds['min']} is above max "
                         f"{bounds['max']}")
    aggregate = item.get("aggregate", "each")
    if aggregate not in ("each", "all"):
        raise InputError(f"{_where(path, lines.get('aggregate', line))}: {where}.aggregate: expected 'each' "
                         f"(every match must pass) or 'all' (pooled), got {aggregate!r}")
    min_requests = 1
    if "min_requests" in item:
        min_requests = int(_number(item["min_requests"], path, lines.get("min_requests", line),
                                   f"{where}.min_requests", integer=True, low=0))
    name = item.get("name", "")
    if not isinstance(name, str):
        raise InputError(f"{_where(path, lines.get('name', line))}: {where}.name: expected a string")
    abort = item.get("abort_on_fail", True)
    if not isinstance(abort, bool):
        raise InputError(f"{_where(path, lines.get('abort_on_fail', line))}: {where}.abort_on_fail: expected "
                         "true or false")
    return Threshold(metric=metric, max=bounds.get("max"), min=bounds.get("min"), endpoint=endpoint,
                     persona=persona, aggregate=aggregate, min_requests=min_requests, name=name,
                     abort_on_fail=abort, line=line)


def _parse_regression(item, path: str, parent_line: int | None) -> RegressionConfig:
    lines, line = _open_mapping(item, path, "regression", parent_line, REGRESSION_KEYS,
                                "{metric: p95, min_effect: 0.10, alpha: 0.05}")
    cfg = RegressionConfig()
    if "metric" in item:
        if item["metric"] not in LATENCY_METRICS:
            raise InputError(f"{_where(path, lines.get('metric', line))}: regression.metric: expected one of "
                             f"{', '.join(LATENCY_METRICS)}, got {item['metric']!r}")
        cfg.metric = item["metric"]
    if "min_effect" in item:
        cfg.min_effect = _number(item["min_effect"], path, lines.get("min_effect", line), "regression.min_effect",
                                 low=0, high=10)
    if "alpha" in item:
        cfg.alpha = _number(item["alpha"], path, lines.get("alpha", line), "regression.alpha", low=1e-6, high=0.5)
    if "common_mode" in item:
        if not isinstance(item["common_mode"], bool):
            raise InputError(f"{_where(path, lines.get('common_mode', line))}: regression.common_mode: expected "
                             "true or false")
        cfg.common_mode = item["common_mode"]
    if "max_common_shift" in item:
        value = item["max_common_shift"]
        cfg.max_common_shift = None if value is None else _number(
            value, path, lines.get("max_common_shift", line), "regression.max_common_shift", low=0, high=100)
    for key in ("noise_floor", "common_noise"):
        if key in item:
            setattr(cfg, key, _number(item[key], path, lines.get(key, line), f"regression.{key}", low=0, high=10))
    if "min_samples" in item:
        cfg.min_samples = int(_number(item["min_samples"], path, lines.get("min_samples", line),
                                      "regression.min_samples", integer=True, low=2))
    if "latency" in item:
        if item["latency"] not in ("latency_s", "intended_latency_s"):
            raise InputError(f"{_where(path, lines.get('latency', line))}: regression.latency: expected latency_s "
                             f"or intended_latency_s, got {item['latency']!r}")
        cfg.latency = item["latency"]
    if "bootstrap" in item:
        cfg.bootstrap = int(_number(item["bootstrap"], path, lines.get("bootstrap", line), "regression.bootstrap",
                                    integer=True, low=200, high=1_000_000))
    if "seed" in item:
        cfg.seed = int(_number(item["seed"], path, lines.get("seed", line), "regression.seed", integer=True))
    return cfg


def load_slo(path: str | os.PathLike) -> Slo:
    """Read and validate an SLO file (missing file, bad YAML, bad key: one-line InputError)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: SLO file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the SLO file ({exc.__class__.__name__})") from None
    return parse_slo(text, str(p))


# --------------------------------------------------------------------------------------------- run folders

@dataclass
class Samples:
    """Latency samples per endpoint key `METHOD name`: arrays of latency, intended latency and ok flags."""

    by_endpoint: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def latencies(self, key: str, column: str = "latency_s", ok_only: bool = True) -> np.ndarray:
        d = self.by_endpoint.get(key)
        if d is None:
            return np.empty(0)
        values = d[column]
        if ok_only:
            values = values[d["ok"]]
        return values[np.isfinite(values)]

    def endpoints(self) -> list[str]:
        return sorted(self.by_endpoint)


@dataclass
class Run:
    """What the gate reads from a run folder (or a baseline folder, which has the same shape)."""

    path: Path
    manifest: dict
    summary: dict
    samples_path: Path | None
    _samples: Samples | None = None

    @property
    def samples(self) -> Samples:
        if self._samples is None:
            self._samples = read_samples(self.samples_path) if self.samples_path else Samples()
        return self._samples

    @property
    def name(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name)

    @property
    def workload_digest(self) -> str | None:
        return self.manifest.get("workload_digest")


def endpoint_key(method: str, name: str) -> str:
    return f"{method} {name}" if method else str(name)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: missing; {what}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); the run folder is partial or "
                         "damaged") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def load_run(path: str | os.PathLike, *, allow_partial: bool = False, need_samples: bool = False) -> Run:
    """Open a run folder per docs/contracts.md; a missing, partial or malformed one is an InputError."""
    folder = Path(path)
    if not folder.exists():
        raise InputError(f"{folder}: run folder not found")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; expected a run folder such as results/<run-id>")
    manifest = _read_json(folder / "manifest.json", "expected a run folder written by `entload run`")
    summary = _read_json(folder / "summary.json", "the run wrote no summary (interrupted before its first "
                                                  "snapshot?)")
    if not isinstance(summary.get("endpoints"), list):
        raise InputError(f"{folder / 'summary.json'}: endpoints: expected a list of per-endpoint statistics")
    for i, ep in enumerate(summary["endpoints"]):
        if not isinstance(ep, dict) or "name" not in ep or "requests" not in ep:
            raise InputError(f"{folder / 'summary.json'}: endpoints[{i}]: expected an object with name, method, "
                             "requests, failures and latency quantiles")
    complete = bool(manifest.get("complete", False)) and bool(summary.get("complete", True))
    if not complete and not allow_partial:
        reason = manifest.get("end_reason") or "still running or interrupted"
        raise InputError(f"{folder}: partial run (complete: false, {reason}); gate a complete run, or pass "
                         "--allow-partial")
    samples_path = folder / "samples.csv.gz"
    if not samples_path.exists():
        if need_samples:
            raise InputError(f"{samples_path}: missing; the regression check needs the latency samples")
        samples_path = None
    return Run(folder, manifest, summary, samples_path)


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "ok")


def read_samples(path: str | os.PathLike) -> Samples:
    """Read `samples.csv.gz` (method,name,latency_s,intended_latency_s,ok) into per-endpoint numpy arrays."""
    p = Path(path)
    cols: dict[str, tuple[list, list, list]] = {}
    try:
        with gzip.open(p, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            need = ["method", "name", "latency_s", "intended_latency_s", "ok"]
            if header is None or any(c not in header for c in need):
                raise InputError(f"{p}:1: expected the header {','.join(need)}, got {','.join(header or [])!r}")
            im, iname, ilat, iint, iok = (header.index(c) for c in need)
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                try:
                    lat = float(row[ilat])
                    intended = float(row[iint]) if row[iint] != "" else lat
                    ok = _flag(row[iok])
                    key = endpoint_key(row[im], row[iname])
                except (ValueError, IndexError):
                    raise InputError(f"{p}:{lineno}: expected method,name,latency_s,intended_latency_s,ok; got "
                                     f"{','.join(row)[:80]!r}") from None
                bucket = cols.get(key)
                if bucket is None:
                    bucket = cols[key] = ([], [], [])
                bucket[0].append(lat)
                bucket[1].append(intended)
                bucket[2].append(ok)
    except FileNotFoundError:
        raise InputError(f"{p}: missing") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{p}: cannot read the gzip samples ({exc.__class__.__name__}: {exc}); the file is "
                         "partial or damaged") from None
    except UnicodeDecodeError:
        raise InputError(f"{p}: not UTF-8 CSV text") from None
    out = Samples()
    for key, (lat, intended, ok) in cols.items():
        out.by_endpoint[key] = {"latency_s": np.asarray(lat, dtype=float),
                                "intended_latency_s": np.asarray(intended, dtype=float),
                                "ok": np.asarray(ok, dtype=bool)}
    return out


def write_samples(path: str | os.PathLike, samples: Samples) -> None:
    """Write samples in the contract's format (latencies rounded to 10 microseconds, which compresses well)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "name", "latency_s", "intended_latency_s", "ok"])
    for key in samples.endpoints():
        method, _, name = key.partition(" ") if " " in key else ("", "", key)
        d = samples.by_endpoint[key]
        for lat, intended, ok in zip(d["latency_s"], d["intended_latency_s"], d["ok"], strict=True):
            w.writerow([method, name, f"{lat:.5f}", f"{intended:.5f}", 1 if ok else 0])
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as fh:
        fh.write(buf.getvalue())


# --------------------------------------------------------------------------------------------- thresholds

@dataclass
class ThresholdResult:
    """The outcome of one threshold: pass/fail/skip, with each offending (subject, value) pair."""

    threshold: Threshold
    status: str  # pass | fail | skip
    measured: list[tuple[str, float]] = field(default_factory=list)  # (subject, value) for every match
    failures: list[tuple[str, float, str, float]] = field(default_factory=list)  # subject, value, bound, limit
    note: str = ""

    def messages(self) -> list[str]:
        t = self.threshold
        unit = UNITS.get(t.metric, "")
        return [f"{t.metric} of {subject} = {_fmt(value, unit)}, limit {bound} {_fmt(limit, unit)}"
                for subject, value, bound, limit in self.failures]


def _fmt(value: float, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "s":
        return f"{value:.3f} s" if value < 100 else f"{value:.0f} s"
    if unit:
        return f"{value:.4g} {unit}"
    return f"{value:.4g}"


def _match_endpoint(glob: str, method: str, name: str) -> bool:
    return fnmatch.fnmatchcase(endpoint_key(method, name), glob) or fnmatch.fnmatchcase(str(name), glob)


def _duration(summary: dict) -> float | None:
    d = summary.get("duration_s")
    if isinstance(d, (int, float)) and d > 0:
        return float(d)
    return None


def _weighted_quantile(samples: Samples, keys: list[str], counts: dict[str, float], q: float) -> float:
    """Quantile of the pooled distribution: each endpoint's reservoir weighted by its request count."""
    values, weights = [], []
    for key in keys:
        lat = samples.latencies(key, ok_only=False)
        if lat.size:
            values.append(lat)
            weights.append(np.full(lat.size, counts.get(key, lat.size) / lat.size))
    if not values:
        return float("nan")
    v, w = np.concatenate(values), np.concatenate(weights)
    order = np.argsort(v)
    cw = np.cumsum(w[order])
    return float(v[order][min(np.searchsorted(cw, q * cw[-1]), v.size - 1)])


def _endpoint_value(metric: str, ep: dict, duration: float | None, samples: Samples | None) -> float | None:
    requests = float(ep.get("requests") or 0)
    failures = float(ep.get("failures") or 0)
    if metric == "requests":
        return requests
    if metric == "failures":
        return failures
    if metric == "error_ratio":
        return failures / requests if requests else None
    if metric == "requests_per_s":
        return requests / duration if duration else None
    value = ep.get(f"{metric}_s")
    if value is None and metric in LATENCY_METRICS and samples is not None:
        lat = samples.latencies(endpoint_key(ep.get("method", ""), ep["name"]), ok_only=False)
        if lat.size:
            value = float(np.quantile(lat, LATENCY_METRICS[metric]))
    return None if value is None else float(value)


def _check(t: Threshold, subject: str, value: float | None, result: ThresholdResult) -> None:
    if value is None:
        return
    result.measured.append((subject, value))
    if t.max is not None and value > t.max:
        result.failures.append((subject, value, "<=", t.max))
    if t.min is not None and value < t.min:
        result.failures.append((subject, value, ">=", t.min))


def evaluate_thresholds(slo: Slo, summary: dict, *, samples: Samples | None = None,
                        partial: bool = False) -> list[ThresholdResult]:
    """Check every threshold against a summary.json (finished, or partial when `partial`).

    On a partial summary only upper bounds are checked (a run in progress can still reach a `min`), and only
    on endpoints with at least `min_requests` requests.
    """
    results = []
    duration = _duration(summary)
    endpoints = [ep for ep in summary.get("endpoints") or [] if isinstance(ep, dict) and "name" in ep]
    for t in slo.thresholds:
        r = ThresholdResult(t, "pass")
        check = t if not partial else Threshold(**{**t.__dict__, "min": None})
        if partial and check.max is None:
            r.status, r.note = "skip", "lower bounds are checked at the end of the run"
            results.append(r)
            continue
        if t.endpoint is not None:
            matched = [ep for ep in endpoints if _match_endpoint(t.endpoint, ep.get("method", ""), ep["name"])
                       and float(ep.get("requests") or 0) >= max(t.min_requests, 1)]
            if not matched:
                r.status, r.note = "skip", f"no endpoint matches {t.endpoint!r} with >= {t.min_requests} requests"
                results.append(r)
                continue
            if t.aggregate == "each":
                for ep in matched:
                    subject = endpoint_key(ep.get("method", ""), ep["name"])
                    _check(check, subject, _endpoint_value(t.metric, ep, duration, samples), r)
            else:
                _check(check, f"{t.endpoint} (pooled)", _pooled_value(t.metric, matched, duration, samples), r)
        elif t.persona is not None:
            vd = summary.get("visit_duration_s") or {}
            personas = summary.get("personas") or {}
            names = sorted(set(vd) | set(personas))
            matched = [n for n in names if fnmatch.fnmatchcase(n, t.persona)]
            if not matched:
                r.status, r.note = "skip", f"no persona matches {t.persona!r}"
                results.append(r)
                continue
            for n in matched:
                _check(check, f"persona {n}", _persona_value(t.metric, vd.get(n) or {}, personas.get(n) or {}), r)
        else:
            _check(check, "run", _run_value(t.metric, summary, endpoints, duration), r)
        if r.failures:
            r.status = "fail"
        elif not r.measured:
            r.status, r.note = "skip", "no value measured yet"
        results.append(r)
    return results


def _pooled_value(metric: str, eps: list[dict], duration: float | None, samples: Samples | None) -> float | None:
    requests = sum(float(ep.get("requests") or 0) for ep in eps)
    failures = sum(float(ep.get("failures") or 0) for ep in eps)
    if metric == "requests":
        return requests
    if metric == "failures":
        return failures
    if metric == "error_ratio":
        return failures / requests if requests else None
    if metric == "requests_per_s":
        return requests / duration if duration else None
    if metric == "max":
        values = [float(ep["max_s"]) for ep in eps if ep.get("max_s") is not None]
        return max(values) if values else None
    if metric == "mean":
        pairs = [(float(ep["mean_s"]), float(ep.get("requests") or 0)) for ep in eps if ep.get("mean_s") is not None]
        total = sum(w for _, w in pairs)
        return sum(v * w for v, w in pairs) / total if total else None
    if samples is None or not samples.by_endpoint:
        raise InputError(f"a pooled {metric} needs the run's samples.csv.gz (per-endpoint quantiles cannot be "
                         "merged)")
    keys = [endpoint_key(ep.get("method", ""), ep["name"]) for ep in eps]
    counts = {k: float(ep.get("requests") or 0) for k, ep in zip(keys, eps, strict=True)}
    return _weighted_quantile(samples, keys, counts, LATENCY_METRICS[metric])


def _persona_value(metric: str, vd: dict, persona: dict) -> float | None:
    if metric.startswith("visit_duration_"):
        value = vd.get(metric.removeprefix("visit_duration_"))
        return None if value is None else float(value)
    started = float(persona.get("visits_started") or 0)
    if metric == "visits":
        return started
    if metric == "visit_failure_ratio":
        return float(persona.get("visits_failed") or 0) / started if started else None
    return None


def _run_value(metric: str, summary: dict, endpoints: list[dict], duration: float | None) -> float | None:
    arrivals = summary.get("arrivals") or {}
    target = float(arrivals.get("target") or 0)
    if metric == "dropped_arrivals":
        return float(arrivals.get("dropped") or 0)
    if metric == "late_arrivals":
        return float(arrivals.get("late") or 0)
    if metric == "dropped_ratio":
        return float(arrivals.get("dropped") or 0) / target if target else None
    if metric == "late_ratio":
        return float(arrivals.get("late") or 0) / target if target else None
    if metric == "achieved_ratio":
        return float(arrivals.get("achieved") or 0) / target if target else None
    if metric == "requests_per_s":
        if summary.get("requests_per_s") is not None:
            return float(summary["requests_per_s"])
        total = sum(float(ep.get("requests") or 0) for ep in endpoints)
        return total / duration if duration else None
    if metric == "error_ratio":
        total = sum(float(ep.get("requests") or 0) for ep in endpoints)
        fails = sum(float(ep.get("failures") or 0) for ep in endpoints)
        return fails / total if total else None
    return None


def live_check(slo: Slo, summary: dict, elapsed_s: float, grace_s: float = 30.0) -> list[str]:
    """For `entload run --slo FILE --abort-on-fail`: failures on a partial summary.json, once past the grace.

    Returns one message per broken upper bound of a threshold with `abort_on_fail` (default true); an empty list
    while in the grace period or when all is well. Lower bounds wait for the end of the run.
    """
    if elapsed_s < grace_s:
        return []
    aborting = Slo(thresholds=[t for t in slo.thresholds if t.abort_on_fail], path=slo.path)
    out = []
    for r in evaluate_thresholds(aborting, summary, partial=True):
        out.extend(r.messages())
    return out


class LiveGate:
    """`entload run --slo FILE --abort-on-fail`: poll the run's partial summary.json and say when to abort.

    Usage in the run loop (elapsed = wall seconds since Locust started):
        live = LiveGate(slo_path, grace_s=30)       # raises InputError (exit 2) on a malformed SLO file
        ...
        failures = live.check(run_dir / "summary.json", elapsed)
        if failures: print them, end_reason = "aborted: SLO threshold failed", stop Locust, exit code 1
    It reads the file at most every `every_s` seconds and ignores a summary caught mid-write.
    """

    def __init__(self, slo: Slo | str | os.PathLike, grace_s: float = 30.0, every_s: float = 5.0):
        self.slo = slo if isinstance(slo, Slo) else load_slo(slo)
        self.grace_s, self.every_s = grace_s, every_s
        self._last = -math.inf

    def check(self, summary_path: str | os.PathLike, elapsed_s: float) -> list[str]:
        if elapsed_s < self.grace_s or elapsed_s - self._last < self.every_s:
            return []
        self._last = elapsed_s
        try:
            summary = json.loads(Path(summary_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []  # not written yet, or caught mid-write: next time
        if not isinstance(summary, dict):
            return []
        return live_check(self.slo, summary, elapsed_s, self.grace_s)


# --------------------------------------------------------------------------------------------- regression

@dataclass
class EndpointComparison:
    """The regression verdict for one endpoint; effects are relative changes (0.3 = 30 % slower)."""

    endpoint: str
    n_base: int
    n_run: int
    q_base: float = float("nan")
    q_run: float = float("nan")
    raw_effect: float = float("nan")  # q_run / q_base - 1
    effect: float = float("nan")  # relative to the common shift (when common_mode), else = raw_effect
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    p_value: float = float("nan")
    p_adjusted: float = float("nan")
    status: str = "skip"  # regressed | improved | unchanged | skip
    note: str = ""

    def message(self, cfg: RegressionConfig) -> str:
        rel = " beyond the machine-wide change" if cfg.common_mode and self.effect != self.raw_effect else ""
        return (f"{cfg.metric} of {self.endpoint}: {self.q_run:.4f} s vs baseline {self.q_base:.4f} s, "
                f"effect {self.effect:+.1%}{rel} (95% CI {self.ci_low:+.1%} .. {self.ci_high:+.1%}, Holm p="
                f"{self.p_adjusted:.2g}), limit {cfg.min_effect:.0%} at alpha {cfg.alpha:g}")


@dataclass
class RegressionReport:
    config: RegressionConfig
    endpoints: list[EndpointComparison]
    common_shift: float = 0.0
    common_ci: tuple[float, float] = (0.0, 0.0)
    common_status: str = "skip"  # pass | fail | info (not gated: 1-run baseline) | skip
    common_delay_s: float = 0.0  # the machine-wide change as run = delay + factor x baseline
    common_factor: float = 1.0
    noise_floor: float = 0.0  # relative run-to-run noise of one endpoint's run-vs-baseline ratio
    noise_source: str = ""
    baseline_runs: int = 1
    note: str = ""
    baseline_name: str = ""

    @property
    def regressed(self) -> list[EndpointComparison]:
        return [e for e in self.endpoints if e.status == "regressed"]

    @property
    def failed(self) -> bool:
        return bool(self.regressed) or self.common_status == "fail"

    def common_message(self) -> str:
        c = self.config
        gated = (f"limit {(c.max_common_shift or 0):.0%}" if self.common_status in ("pass", "fail") else
                 "not gated: one baseline run cannot tell a slower machine from a slower build")
        return (f"{c.metric} of all endpoints (machine-wide change, run = {self.common_delay_s * 1000:+.1f} ms + "
                f"{self.common_factor:.2f} x baseline): {self.common_shift:+.1%} at the median endpoint (95% CI "
                f"{self.common_ci[0]:+.1%} .. {self.common_ci[1]:+.1%}), {gated}")


def quantile_bootstrap(x: np.ndarray, q: float, draws: int, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """The sample quantile X_(k), k = ceil(q n), and `draws` exact bootstrap replicates of it.

    A resample's k-th order statistic is <= X_(j) exactly when at least k of its n draws fall at or below
    X_(j): P = P(Binomial(n, j/n) >= k). So replicates are drawn by inverting that CDF over j, which is the
    bootstrap distribution without resampling the data (cost O(n log n + draws log n)).
    """
    from scipy.stats import binom

    xs = np.sort(x)
    n = xs.size
    k = max(1, math.ceil(q * n))
    cdf = binom.sf(k - 1, n, np.arange(1, n + 1) / n)
    idx = np.searchsorted(cdf, rng.random(draws), side="left")
    return float(xs[k - 1]), xs[np.minimum(idx, n - 1)]


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone), controlling the family-wise error rate."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass
class _Measured:
    """Per-endpoint quantiles of a baseline and a run with their exact bootstrap replicates."""

    keys: list[str]
    qb: np.ndarray  # (E,)
    qr: np.ndarray
    bb: np.ndarray  # (E, draws)
    br: np.ndarray


def _measure(base: Samples, run: Samples, cfg: RegressionConfig, rng: np.random.Generator,
             rows: list[EndpointComparison] | None = None) -> _Measured:
    keys, qb, qr, bb, br = [], [], [], [], []
    for key in sorted(set(base.endpoints()) | set(run.endpoints())):
        xb, xr = base.latencies(key, cfg.latency), run.latencies(key, cfg.latency)
        row = EndpointComparison(key, int(xb.size), int(xr.size))
        if rows is not None:
            rows.append(row)
        if xb.size == 0 or xr.size == 0:
            row.note = "only in the baseline" if xr.size == 0 else "new endpoint (not in the baseline)"
            continue
        if min(xb.size, xr.size) < cfg.needed_samples:
            row.note = f"too few samples (need {cfg.needed_samples} on each side for {cfg.metric})"
            continue
        q1, b1 = quantile_bootstrap(np.maximum(xb, 1e-6), cfg.quantile, cfg.bootstrap, rng)  # 0 s: log -inf
        q2, b2 = quantile_bootstrap(np.maximum(xr, 1e-6), cfg.quantile, cfg.bootstrap, rng)
        row.q_base, row.q_run, row.raw_effect = q1, q2, q2 / q1 - 1
        keys.append(key)
        qb.append(q1)
        qr.append(q2)
        bb.append(b1)
        br.append(b2)
    if not keys:
        return _Measured([], np.empty(0), np.empty(0), np.empty((0, cfg.bootstrap)), np.empty((0, cfg.bootstrap)))
    return _Measured(keys, np.array(qb), np.array(qr), np.vstack(bb), np.vstack(br))


def theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust line y = a + b x through the endpoints (median of pairwise slopes); x, y: (E,) or (E, draws).

    Resists up to ~29 % of endpoints off the line, e.g. a group of regressed endpoints.
    """
    i, j = np.triu_indices(x.shape[0], k=1)
    dx, dy = x[j] - x[i], y[j] - y[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = np.where(np.abs(dx) > 1e-9, dy / dx, np.nan)
    b = np.nanmedian(slopes, axis=0)
    b = np.clip(np.nan_to_num(b, nan=1.0), 0.1, 10.0)
    a = np.median(y - b * x, axis=0)
    return a, b


def _effects(m: _Measured, common_mode: bool, tau: float = 0.0, rng: np.random.Generator | None = None):
    """Log effect of each endpoint against what the machine-wide change predicts for it, with replicates.

    The machine-wide change (CPU contention, a slower runner) is fitted as run = a + b x baseline across
    endpoints: `a` an added delay common to all, `b` a common factor; a build change on a few endpoints lies
    off that line. Without common_mode the prediction is the baseline itself (a = 0, b = 1).
    With `tau`, each replicate also draws the run-to-run noise of every endpoint (a parametric bootstrap of the
    random effect), so the replicates carry that noise both in the endpoint and in the refitted line.
    """
    br = m.br
    if tau > 0 and rng is not None:
        br = m.br * np.exp(tau * rng.standard_normal(m.br.shape))
    if common_mode:
        a, b = theil_sen(m.qb, m.qr)
        ab, bbeta = theil_sen(m.bb, br)
    else:
        a, b = np.float64(0.0), np.float64(1.0)
        ab, bbeta = np.zeros(m.bb.shape[1]), np.ones(m.bb.shape[1])
    pred = np.maximum(a + b * m.qb, 0.05 * m.qb)
    pred_b = np.maximum(ab + bbeta * m.bb, 0.05 * m.bb)
    x0 = float(np.median(m.qb))
    common = math.log(max(float(a + b * x0), 0.05 * x0) / x0)
    common_b = np.log(np.maximum(ab + bbeta * x0, 0.05 * x0) / x0)
    return np.log(m.qr / pred), np.log(br / pred_b), float(a), float(b), common, common_b


def baseline_noise(members: list[Samples], cfg: RegressionConfig, rng: np.random.Generator
                   ) -> tuple[float, float, int]:
    """Run-to-run noise of one endpoint's effect (tau) and of the common change, from the baseline's runs.

    The baseline runs are runs of the same build, so the gate runs its own comparison among them: each run
    against the others pooled (leave one out). What those A/A effects spread beyond the bootstrap sampling
    variance is the noise a comparison meets on this machine; it is taken at its 90 % upper confidence bound
    (chi-square) so that a lucky small estimate cannot turn into false alarms. Returns (tau_run, common_run,
    degrees of freedom), noise of a single run; (nan, nan, 0) with fewer than 2 runs or 3 endpoints.
    """
    from scipy.stats import chi2

    k = len(members)
    if k < 2:
        return float("nan"), float("nan"), 0
    ss = ss_c = sampling = sampling_c = 0.0
    n_eff = 0
    for i in range(k):
        others = pool_samples([m for j, m in enumerate(members) if j != i])
        m = _measure(others, members[i], cfg, rng)
        if len(m.keys) < 3:
            return float("nan"), float("nan"), 0
        eff, eff_b, _, _, common, common_b = _effects(m, cfg.common_mode and len(m.keys) >= 5)
        ss += float(np.sum(eff**2))
        sampling += float(np.sum(np.var(eff_b, axis=1)))
        n_eff += len(m.keys)
        ss_c += common**2
        sampling_c += float(np.var(common_b))
    fitted = 2 if cfg.common_mode else 0
    df = max(1, round((k - 1) / k * (n_eff - k * fitted)))  # leave-one-out comparisons share information
    inflate = 1 + 1 / (k - 1)  # a single run against k-1 pooled runs
    tau2 = max(0.0, ss / n_eff * df / chi2.ppf(0.10, df) - sampling / n_eff) / inflate
    df_c = max(1, k - 1)
    common2 = max(0.0, ss_c / k * df_c / chi2.ppf(0.10, df_c) - sampling_c / k) / inflate
    return math.sqrt(tau2), math.sqrt(common2), df


def compare_samples(base: Samples | list[Samples], run: Samples, cfg: RegressionConfig) -> RegressionReport:
    """Per-endpoint regression test of `run` against a baseline of one or several runs (`base`).

    Effect of an endpoint = its run quantile over the quantile the machine-wide change predicts for it (a robust
    line run = a + b x baseline through all endpoints), on the log scale. Its variance = exact-bootstrap sampling
    variance (the line refitted per replicate) + the run-to-run noise tau^2 (1 + 1/K), tau measured among the K
    baseline runs (or `noise_floor` when K = 1). Normal p-values, Holm-adjusted across endpoints; an endpoint is
    flagged when significant and at least `min_effect`.
    """
    from scipy.stats import norm

    members = base if isinstance(base, list) else [base]
    k = len(members)
    rng = np.random.default_rng(cfg.seed)
    rows: list[EndpointComparison] = []
    m = _measure(pool_samples(members), run, cfg, rng, rows)
    report = RegressionReport(cfg, rows, baseline_runs=k)
    tau_run, common_run, df = baseline_noise(members, cfg, rng)
    if df:
        report.noise_source = f"measured among the {k} baseline runs ({df} degrees of freedom)"
    else:
        tau_run = math.log1p(cfg.noise_floor) / math.sqrt(2)
        common_run = float("nan")
        report.noise_source = ("regression.noise_floor, assumed: the baseline has one run; add runs with "
                               "--update-baseline to measure it")
    tau_d = tau_run * math.sqrt(1 + 1 / k)
    report.noise_floor = math.expm1(tau_d)
    if not m.keys:
        report.note = "no endpoint has enough samples on both sides"
        return report
    use_common = cfg.common_mode and len(m.keys) >= 5
    if cfg.common_mode and not use_common:
        report.note = (f"{len(m.keys)} endpoint(s) compared: too few (< 5) to fit the machine-wide change, so "
                       "effects are raw run/baseline ratios")
    eff, eff_b, a, b, common, common_b = _effects(m, use_common, tau_d, rng)
    if use_common:
        report.common_shift = math.expm1(common)
        report.common_delay_s, report.common_factor = a, b
        se_c = float(np.std(common_b))  # includes the endpoints' run-to-run noise through the refits
        report.common_ci = (math.expm1(common - 1.96 * se_c), math.expm1(common + 1.96 * se_c))
        if cfg.max_common_shift is not None and math.isfinite(common_run):
            sd = math.sqrt(se_c**2 + common_run**2 * (1 + 1 / k))
            significant = 2 * norm.sf(abs(common) / sd) < cfg.alpha
            report.common_status = "fail" if significant and common >= math.log1p(cfg.max_common_shift) else "pass"
        elif cfg.max_common_shift is not None:
            report.common_status = "info"
    sd = np.sqrt(np.var(eff_b, axis=1))  # sampling + run-to-run noise, line refitted per replicate
    pvals = [float(p) for p in 2 * norm.sf(np.abs(eff) / sd)]
    threshold = math.log1p(cfg.min_effect)
    by_key = {r.endpoint: r for r in rows}
    for i, (key, p, adj) in enumerate(zip(m.keys, pvals, holm(pvals), strict=True)):
        row = by_key[key]
        row.effect = math.expm1(eff[i])
        row.ci_low, row.ci_high = math.expm1(eff[i] - 1.96 * sd[i]), math.expm1(eff[i] + 1.96 * sd[i])
        row.p_value, row.p_adjusted = p, adj
        significant = adj < cfg.alpha
        if significant and eff[i] >= threshold:
            row.status = "regressed"
        elif significant and eff[i] <= -threshold:
            row.status = "improved"
        else:
            row.status = "unchanged"
    return report


def pool_samples(members: list[Samples]) -> Samples:
    """The baseline runs' samples as one set per endpoint."""
    if len(members) == 1:
        return members[0]
    out = Samples()
    for key in sorted({k for m in members for k in m.endpoints()}):
        parts = [m.by_endpoint[key] for m in members if key in m.by_endpoint]
        out.by_endpoint[key] = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
    return out


# --------------------------------------------------------------------------------------------- baselines

BASELINE_FILE = "baseline.json"
SHAPE_KEYS = ("compression", "day_in_s", "window", "scale", "day_type", "workers")
MANIFEST_KEYS = ("run_id", "entload_version", "git_revision", "workload_file", "workload_digest", "host",
                 "embedded_staging", "started_at", "ended_at", "seed", *SHAPE_KEYS)


@dataclass
class Baseline:
    """A baseline folder: one or several runs of the same build and workload (most recent last)."""

    path: Path
    doc: dict
    members: list[Run]

    @property
    def name(self) -> str:
        runs = [m.name for m in self.members]
        return runs[-1] if len(runs) == 1 else f"{len(runs)} runs, latest {runs[-1]}"

    @property
    def manifest(self) -> dict:
        return {**self.members[-1].manifest, "workload_digest": self.doc.get("workload_digest")}

    @property
    def workload_digest(self) -> str | None:
        return self.doc.get("workload_digest")

    @property
    def samples(self) -> list[Samples]:
        return [m.samples for m in self.members]

    def as_run(self) -> Run:
        """The latest member's summary with every member's samples pooled (for `entload compare`)."""
        return Run(self.path, self.manifest, self.members[-1].summary, self.members[-1].samples_path,
                   pool_samples(self.samples))


def load_baseline(path: str | os.PathLike) -> Baseline:
    """Open a baseline folder written by `write_baseline` (baseline.json + one samples file per run)."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"{folder}: baseline folder not found (make one with entload gate RUN "
                         f"--update-baseline {folder})")
    doc = _read_json(folder / BASELINE_FILE, "not a baseline folder (make one with --update-baseline)")
    runs = doc.get("runs")
    if doc.get("kind") != "entload-baseline" or not isinstance(runs, list) or not runs:
        raise InputError(f"{folder / BASELINE_FILE}: not an entload baseline (kind/runs missing)")
    members = []
    for i, entry in enumerate(runs):
        if not isinstance(entry, dict) or not isinstance(entry.get("summary"), dict) or not entry.get("samples"):
            raise InputError(f"{folder / BASELINE_FILE}: runs[{i}]: expected summary, manifest and samples")
        samples_path = folder / str(entry["samples"])
        if not samples_path.exists():
            raise InputError(f"{samples_path}: missing; the baseline is incomplete")
        members.append(Run(folder, dict(entry.get("manifest") or {}), entry["summary"], samples_path))
    return Baseline(folder, doc, members)


def check_same_workload(run: Run, base: Baseline | Run, *, force: bool = False) -> list[str]:
    """Refuse (InputError) a baseline of another workload or load shape; with force, return warnings instead."""
    problems = []
    if run.workload_digest != base.workload_digest:
        problems.append(f"workload digest {str(run.workload_digest)[:12]} differs from the baseline's "
                        f"{str(base.workload_digest)[:12]}")
    for key in SHAPE_KEYS:
        a, b = run.manifest.get(key), base.manifest.get(key)
        if a is not None and b is not None and a != b:
            problems.append(f"{key} {a!r} differs from the baseline's {b!r}")
    if problems and not force:
        raise InputError(f"{base.path}: baseline of another workload ({'; '.join(problems)}); make a new "
                         "baseline with --update-baseline or pass --force")
    return problems


def subsample(samples: Samples, per_endpoint: int, seed: int = 0) -> Samples:
    """A uniform random subsample of at most `per_endpoint` requests per endpoint (the reservoir stays uniform)."""
    rng = np.random.default_rng(seed)
    out = Samples()
    for key in samples.endpoints():
        d = samples.by_endpoint[key]
        n = d["latency_s"].size
        if n > per_endpoint:
            idx = np.sort(rng.choice(n, per_endpoint, replace=False))
            d = {k: v[idx] for k, v in d.items()}
        out.by_endpoint[key] = d
    return out


def write_baseline(run: Run, folder: str | os.PathLike, *, per_endpoint: int = 2000, max_runs: int = 5,
                   force: bool = False, seed: int = 0) -> Baseline:
    """Add `run` to the baseline in `folder` (keeping the last `max_runs` runs), or start one.

    Several runs of the same build let the gate measure the run-to-run noise instead of assuming it. A folder
    holding another workload's baseline is refused unless forced (then it starts afresh).
    """
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if run.samples_path is None:
        raise InputError(f"{run.path / 'samples.csv.gz'}: missing; a baseline needs the run's latency samples")
    entries: list[dict] = []
    if (out / BASELINE_FILE).exists():
        previous = load_baseline(out)
        if check_same_workload(run, previous, force=force):
            previous = None  # forced onto another workload: start afresh
        if previous is not None:
            entries = [e for e in previous.doc["runs"] if e.get("run_id") != run.name]
    out.mkdir(parents=True, exist_ok=True)
    name = f"samples-{safe_name(run.name)}.csv.gz"
    write_samples(out / (name + ".tmp"), subsample(run.samples, per_endpoint, seed))
    os.replace(out / (name + ".tmp"), out / name)
    entries.append({
        "run_id": run.name,
        "added_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "samples": name,
        "manifest": {k: run.manifest.get(k) for k in MANIFEST_KEYS if k in run.manifest},
        "summary": run.summary,
    })
    entries = entries[-max(1, max_runs):]
    doc = {"kind": "entload-baseline", "schema_version": 1, "workload_digest": run.workload_digest,
           "samples_per_endpoint": per_endpoint, "max_runs": max_runs, "runs": entries}
    tmp = out / (BASELINE_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out / BASELINE_FILE)
    keep = {e["samples"] for e in entries}
    for stale in out.glob("samples-*.csv.gz"):
        if stale.name not in keep:
            stale.unlink()
    return load_baseline(out)


# --------------------------------------------------------------------------------------------- reports

def _xml(text: str) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


def junit_xml(run: Run, thresholds: list[ThresholdResult], regression: RegressionReport | None) -> str:
    """JUnit XML: one testcase per threshold and one per compared endpoint (plus the common shift)."""
    cases = []
    for r in thresholds:
        body = ""
        if r.status == "fail":
            msgs = r.messages()
            body = f'<failure message="{_xml(msgs[0])}" type="threshold">{_xml(chr(10).join(msgs))}</failure>'
        elif r.status == "skip":
            body = f'<skipped message="{_xml(r.note)}"/>'
        cases.append(("thresholds", r.threshold.label, body))
    if regression is not None:
        cfg = regression.config
        for e in regression.endpoints:
            body = ""
            if e.status == "regressed":
                body = f'<failure message="{_xml(e.message(cfg))}" type="regression"/>'
            elif e.status == "skip":
                body = f'<skipped message="{_xml(e.note)}"/>'
            else:
                body = f"<system-out>{_xml(e.message(cfg))}</system-out>"
            cases.append(("regression", f"{cfg.metric} {e.endpoint}", body))
        if regression.common_status != "skip":
            body = (f'<failure message="{_xml(regression.common_message())}" type="regression"/>'
                    if regression.common_status == "fail" else
                    f"<system-out>{_xml(regression.common_message())}</system-out>")
            cases.append(("regression", f"{cfg.metric} common shift (all endpoints)", body))
    failures = sum(1 for *_, b in cases if b.startswith("<failure"))
    skipped = sum(1 for *_, b in cases if b.startswith("<skipped"))
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuites name="entload gate" tests="{len(cases)}" failures="{failures}">',
             f'<testsuite name="entload gate {_xml(run.name)}" tests="{len(cases)}" failures="{failures}" '
             f'skipped="{skipped}" errors="0">']
    for classname, name, body in cases:
        lines.append(f'<testcase classname="entload.gate.{classname}" name="{_xml(name)}">{body}</testcase>')
    lines += ["</testsuite>", "</testsuites>", ""]
    return "\n".join(lines)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def markdown_report(run: Run, thresholds: list[ThresholdResult], regression: RegressionReport | None,
                    passed: bool) -> str:
    """A Markdown summary fit for a pull-request comment: verdict, thresholds table, regression table."""
    out = [f"### entload gate: {'✅ pass' if passed else '❌ fail'} — run `{run.name}`", ""]
    if thresholds:
        out += ["| threshold | status | measured (worst) | limit |", "| --- | --- | --- | --- |"]
        for r in thresholds:
            t = r.threshold
            unit = UNITS.get(t.metric, "")
            if r.failures:
                subject, value, bound, limit = max(r.failures, key=lambda f: abs(f[1] - f[3]))
                measured = f"{subject}: {_fmt(value, unit)}"
                if len(r.failures) > 1:
                    measured += f" (+{len(r.failures) - 1} more)"
                lim = f"{bound} {_fmt(limit, unit)}"
            elif r.measured:
                worst = max(r.measured, key=lambda m: m[1]) if t.max is not None else min(r.measured,
                                                                                           key=lambda m: m[1])
                measured = f"{worst[0]}: {_fmt(worst[1], unit)}"
                lim = " and ".join(x for x in (f">= {_fmt(t.min, unit)}" if t.min is not None else "",
                                               f"<= {_fmt(t.max, unit)}" if t.max is not None else "") if x)
            else:
                measured, lim = r.note, ""
            icon = {"pass": "✅", "fail": "❌", "skip": "⏭️"}[r.status]
            out.append(f"| {_md(t.label)} | {icon} {r.status} | {_md(measured)} | {_md(lim)} |")
        out.append("")
    if regression is not None:
        c = regression.config
        out += [f"Regression vs baseline `{regression.baseline_name}` on {c.metric}: flag an endpoint when the "
                f"change is >= {c.min_effect:.0%} and significant at alpha {c.alpha:g} (Holm across endpoints).",
                ""]
        if regression.common_status != "skip":
            icon = "❌" if regression.common_status == "fail" else "ℹ️"
            out += [f"{icon} {regression.common_message()}; per-endpoint effects below are relative to it.", ""]
        out += [f"Run-to-run noise floor per endpoint: {regression.noise_floor:.1%}, {regression.noise_source}.",
                ""]
        if regression.note:
            out += [f"Note: {regression.note}", ""]
        out += [f"| endpoint | n base / run | {c.metric} base | {c.metric} run | effect | 95% CI | Holm p | status |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        order = {"regressed": 0, "improved": 1, "unchanged": 2, "skip": 3}
        for e in sorted(regression.endpoints, key=lambda e: (order[e.status], -_nan0(e.effect))):
            icon = {"regressed": "❌", "improved": "🟢", "unchanged": "✅", "skip": "⏭️"}[e.status]
            if e.status == "skip":
                out.append(f"| `{_md(e.endpoint)}` | {e.n_base} / {e.n_run} | | | | | | {icon} {_md(e.note)} |")
                continue
            out.append(f"| `{_md(e.endpoint)}` | {e.n_base} / {e.n_run} | {e.q_base:.4f} s | {e.q_run:.4f} s | "
                       f"{e.effect:+.1%} | {e.ci_low:+.1%} .. {e.ci_high:+.1%} | {e.p_adjusted:.2g} | "
                       f"{icon} {e.status} |")
        out.append("")
    return "\n".join(out)


def _nan0(x: float) -> float:
    return 0.0 if x is None or math.isnan(x) else x


def terminal_report(run: Run, thresholds: list[ThresholdResult], regression: RegressionReport | None,
                    passed: bool) -> str:
    """Plain text for the CI log: every failure as its own line, then compact tables."""
    lines = []
    for r in thresholds:
        mark = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[r.status]
        lines.append(f"{mark}  threshold  {r.threshold.label}" + (f"  ({r.note})" if r.note else ""))
        for msg in r.messages():
            lines.append(f"      {msg}")
    if regression is not None:
        c = regression.config
        lines.append(f"regression vs baseline {regression.baseline_name}: {c.metric}, min effect "
                     f"{c.min_effect:.0%}, alpha {c.alpha:g} (Holm over {sum(e.status != 'skip' for e in regression.endpoints)}"
                     " endpoints)")
        if regression.common_status != "skip":
            mark = "FAIL" if regression.common_status == "fail" else "INFO"
            lines.append(f"{mark}  {regression.common_message()}")
        lines.append(f"INFO  run-to-run noise floor per endpoint {regression.noise_floor:.1%}, "
                     f"{regression.noise_source}")
        if regression.note:
            lines.append(f"NOTE  {regression.note}")
        width = max([len(e.endpoint) for e in regression.endpoints] + [8])
        lines.append(f"      {'endpoint':<{width}}  {'n base':>6} {'n run':>6}  {'base':>8} {'run':>8}  "
                     f"{'effect':>7}  {'95% CI':>17}  {'Holm p':>7}  status")
        for e in regression.endpoints:
            mark = {"regressed": "FAIL", "improved": "PASS", "unchanged": "PASS", "skip": "SKIP"}[e.status]
            if e.status == "skip":
                lines.append(f"{mark}  {e.endpoint:<{width}}  {e.n_base:>6} {e.n_run:>6}  {e.note}")
                continue
            ci = f"{e.ci_low:+.1%}..{e.ci_high:+.1%}"
            lines.append(f"{mark}  {e.endpoint:<{width}}  {e.n_base:>6} {e.n_run:>6}  {e.q_base:>8.4f} "
                         f"{e.q_run:>8.4f}  {e.effect:>+7.1%}  {ci:>17}  {e.p_adjusted:>7.2g}  {e.status}")
    failures = [m for r in thresholds for m in r.messages()]
    if regression is not None:
        failures += [e.message(regression.config) for e in regression.regressed]
        if regression.common_status == "fail":
            failures.append(regression.common_message())
    lines.append(f"gate: {'PASS' if passed else 'FAIL'} ({len(failures)} failure(s))")
    return "\n".join(lines)


def failure_lines(thresholds: list[ThresholdResult], regression: RegressionReport | None) -> list[str]:
    out = [m for r in thresholds for m in r.messages()]
    if regression is not None:
        out += [e.message(regression.config) for e in regression.regressed]
        if regression.common_status == "fail":
            out.append(regression.common_message())
    return out


_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    return _SAFE.sub("_", text).strip("_") or "endpoint"
