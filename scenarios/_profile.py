"""Access-log aggregates -> workload file, per-second byte series, details and report.

Why this shape: the workload schema (scenarios/_workload.py) is what `entload run --workload` replays, so the
profile writes exactly that schema (validated with the same loader before it is written), starting from a
template workload (the default one) for what logs cannot tell (journeys' step order, upload sizes, the
route map), and replacing what they do tell: visits per day and persona, arrival profiles by day type,
think times scaled to the observed visit durations. What the schema has no place for (route weights,
payload-size fits, unknown visits, damaged lines) goes to `profile.json` and the report beside it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from scenarios import _logparse
from scenarios._workload import DEFAULT_WORKLOAD, PERSONAS, load_workload, parse_workload

UNKNOWN = "unknown"
MAX_SPAN_DAYS = 45  # a month and a half of seconds is 3.9 million rows of bytes_per_second.csv
DAY_TYPES = ("school_day", "wednesday", "weekend", "school_holiday")

#: Default persona rules, in priority order: (persona, METHOD, path pattern with * for one segment).
#: A visit takes the persona of the first rule any of its requests matches; none -> `unknown`.
#: Evidence comes from what only that persona does in an ODE ENT: parents read and sign the carnet de
#: liaison, teachers collect the casier and use the teacher carnet view, students deposit in the casier.
DEFAULT_RULES: list[tuple[str, str, str]] = [
    ("enseigno_teacher", "POST", "/api/paths"),
    ("enseigno_teacher", "GET", "/api/classes/*/results"),
    ("enseigno_teacher", "POST", "/api/feedback"),
    ("enseigno_student", "POST", "/api/exercises/*/answers"),
    ("parent", "POST", "/schoolbook/relation/acknowledge/*/*"),
    ("parent", "GET", "/schoolbook/list/*/*"),
    ("parent", "GET", "/schoolbook/count/*"),
    ("teacher", "GET", "/rack/list"),
    ("teacher", "GET", "/rack/get/*"),
    ("teacher", "POST", "/schoolbook/list"),
    ("student", "POST", "/rack"),
]


class ProfileError(ValueError):
    """A profile cannot be built from these inputs (one line)."""


# ------------------------------------------------------------------------------------------- rules


def _pattern_regex(method: str, path: str) -> re.Pattern:
    parts = []
    for seg in path.split("/"):
        if seg == "*" or seg.startswith(":"):
            parts.append("[^/]+")
        else:
            parts.append(re.escape(seg))
    return re.compile("^" + re.escape(method) + " " + "/".join(parts) + "$")


def compile_rules(rules: list[tuple[str, str, str]]) -> list[tuple[str, re.Pattern]]:
    return [(persona, _pattern_regex(method, path)) for persona, method, path in rules]


def load_rules(path: str) -> list[tuple[str, str, str]]:
    """Rules file: YAML list of {persona, route: "METHOD /path/with/*"} in priority order."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read the persona rules ({exc})") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, list) or not raw:
        raise ProfileError(f"{path}: expected a list of {{persona, route}} rules")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"persona", "route"}:
            raise ProfileError(f"{path}: rule [{i}]: expected keys persona and route, got {item!r}")
        persona, route = item["persona"], item["route"]
        if persona not in PERSONAS:
            raise ProfileError(f"{path}: rule [{i}]: persona must be one of {', '.join(PERSONAS)}, got {persona!r}")
        m = re.match(r"^([A-Z]+) (/\S*)$", str(route))
        if not m:
            raise ProfileError(f'{path}: rule [{i}]: route must be "METHOD /path" (* = any segment), got {route!r}')
        out.append((persona, m.group(1), m.group(2)))
    return out


# ------------------------------------------------------------------------------------------ calendar


def day_type_of(date: dt.date) -> str:
    """school_day / wednesday / weekend / school_holiday (zone C school holidays and public holidays)."""
    if date.weekday() >= 5:
        return "weekend"
    try:
        import holidays

        if date in holidays.country_holidays("FR", years=date.year):
            return "school_holiday"
    except Exception:  # noqa: BLE001 - calendar data missing for that year: fall back to the weekday
        pass
    try:
        from vacances_scolaires_france import SchoolHolidayDates

        if SchoolHolidayDates().is_holiday_for_zone(date, "C"):
            return "school_holiday"
    except Exception:  # noqa: BLE001 - outside the library's years (e.g. 1995): weekday rule only
        pass
    return "wednesday" if date.weekday() == 2 else "school_day"


class LocalClock:
    """Epoch seconds -> local (date, hour) in a zone, cached per quarter hour (offsets are whole quarters)."""

    def __init__(self, tz: ZoneInfo):
        self.tz = tz
        self._cache: dict[int, tuple[str, int]] = {}

    def bucket(self, t: int) -> tuple[str, int]:
        q = t // 900
        hit = self._cache.get(q)
        if hit is None:
            local = dt.datetime.fromtimestamp(q * 900, self.tz)
            hit = self._cache[q] = (local.date().isoformat(), local.hour)
        return hit

    def offset_s(self, t: int) -> int:
        return int(dt.datetime.fromtimestamp(t, self.tz).utcoffset().total_seconds())


# -------------------------------------------------------------------------------------------- fits


def fit_sizes(samples: list[int]) -> dict:
    """Lognormal fit (scipy.stats, location 0) of the non-zero sizes, with its Kolmogorov-Smirnov quality."""
    import numpy as np
    from scipy import stats

    arr = np.asarray(samples, dtype=float)
    out: dict = {"n": int(arr.size)}
    if arr.size == 0:
        return out
    pos = arr[arr > 0]
    out["zero_share"] = round(float(1 - pos.size / arr.size), 4)
    out["median_bytes"] = float(np.median(arr))
    out["p95_bytes"] = float(np.quantile(arr, 0.95))
    if pos.size < 20 or np.unique(pos).size < 5:
        out["fit"] = None
        out["fit_note"] = "too few distinct non-zero sizes to fit"
        return out
    shape, _loc, scale = stats.lognorm.fit(pos, floc=0)
    ks = stats.kstest(pos, "lognorm", args=(shape, 0, scale))
    out["fit"] = {
        "distribution": "lognorm",
        "scipy_args": {"s": round(float(shape), 5), "loc": 0, "scale": round(float(scale), 3)},
        "median_bytes": round(float(scale), 1),
        "sigma_log": round(float(shape), 5),
        "ks_statistic": round(float(ks.statistic), 5),
        "ks_pvalue": float(f"{ks.pvalue:.4g}"),
        "quality": "good" if ks.statistic < 0.05 else ("fair" if ks.statistic < 0.1 else "poor"),
    }
    return out


# ----------------------------------------------------------------------------------------- profile


def route_matcher(workload) -> Callable[[str], str | None]:
    """Observed route template (`GET /conversation/message/:id`) -> workload route name, or None."""
    table = [(name, _pattern_regex(r.method, r.path)) for name, r in workload.routes.items()]
    # literal routes first, so /rack/list never reads as /rack/:id
    table.sort(key=lambda item: item[1].pattern.count("[^/]+"))
    cache: dict[str, str | None] = {}

    def match(route: str) -> str | None:
        if route not in cache:
            cache[route] = next((name for name, rx in table if rx.match(route)), None)
        return cache[route]

    return match


def _quantiles(values: list[float], qs=(0.5, 0.9, 0.95)) -> dict:
    if not values:
        return {}
    import numpy as np

    arr = np.asarray(values, dtype=float)
    out = {f"p{int(q * 100)}": round(float(np.quantile(arr, q)), 2) for q in qs}
    out["mean"] = round(float(arr.mean()), 2)
    return out


def _think_quantiles(hist: dict[int, int]) -> dict:
    total = sum(hist.values())
    if not total:
        return {}
    out, acc = {}, 0
    targets = [(0.5, "p50"), (0.9, "p90"), (0.95, "p95")]
    for gap in sorted(hist):
        acc += hist[gap]
        while targets and acc >= targets[0][0] * total:
            out[targets.pop(0)[1]] = gap
    out["mean"] = round(sum(g * c for g, c in hist.items()) / total, 2)
    out["gaps"] = total
    return out


def summarise(state: _logparse.Ingest, clock: LocalClock, *, day_type: str | None, workload) -> dict:
    """Everything the outputs need, as plain data (no IP, login, id: only templates, counts, times)."""
    vs = state.visit_summary
    dates = sorted({d for d, _h in vs.by_start})
    date_type = {d: (day_type or day_type_of(dt.date.fromisoformat(d))) for d in dates}
    personas_seen = sorted(vs.persona_counts, key=lambda p: -vs.persona_counts[p])
    # hourly visit starts per day type and persona, summed over the dates of that type
    hourly: dict[str, dict[str, list[int]]] = {}
    for (d, h), cell in vs.by_start.items():
        per = hourly.setdefault(date_type[d], {})
        for persona, n in cell.items():
            per.setdefault(persona, [0] * 24)[h] += n
    ndates = {t: sum(1 for d in dates if date_type[d] == t) for t in set(date_type.values())}
    match = route_matcher(workload)
    total_req = state.requests or 1
    routes = []
    for rid, name in enumerate(state.route_names):
        routes.append({
            "route": name,
            "workload_route": match(name),
            "requests": state.route_count[rid],
            "share": round(state.route_count[rid] / total_req, 6),
            "bytes_down": state.route_bytes[rid],
            "errors": state.route_errors[rid],
            "query_shapes": sorted(state.route_queries[rid]),
            "sizes": fit_sizes(state.route_samples[rid]),
        })
    routes.sort(key=lambda r: -r["requests"])
    durations: dict[str, list[float]] = {}
    nreqs: dict[str, list[float]] = {}
    vbytes: dict[str, list[float]] = {}
    for persona, dur, n, b in vs.durations:
        for key in (persona, "all"):
            durations.setdefault(key, []).append(dur)
            nreqs.setdefault(key, []).append(n)
            vbytes.setdefault(key, []).append(b)
    # route weights per persona: requests per visit, from the visit-level sample is not kept per route, so
    # weights are global shares; per-persona visit shapes come from the visit reservoir
    first, last = state.t_min, state.t_max
    return {
        "schema": "entload-profile/1",
        "inputs": [{"file": os.path.basename(f.path), "format": f.format, "lines": f.lines, "parsed": f.parsed,
                    "malformed": f.malformed, "truncated": f.truncated} for f in state.files],
        "lines": state.lines,
        "parsed": state.parsed,
        "malformed": state.malformed,
        "malformed_examples": state.malformed_examples,
        "requests": state.requests,
        "bytes_down": state.bytes_down,
        "bytes_up": None,
        "timezone": str(clock.tz),
        "first": dt.datetime.fromtimestamp(first, clock.tz).isoformat() if first is not None else None,
        "last": dt.datetime.fromtimestamp(last, clock.tz).isoformat() if last is not None else None,
        "dates": {d: date_type[d] for d in dates},
        "dates_per_day_type": ndates,
        "visit_timeout_s": state.timeout_s,
        "visits": vs.count,
        "personas": {p: vs.persona_counts[p] for p in personas_seen},
        "hourly_visits": hourly,
        "visit_duration_s": {k: _quantiles(v) for k, v in durations.items()},
        "requests_per_visit": {k: _quantiles(v) for k, v in nreqs.items()},
        "bytes_per_visit": {k: _quantiles(v) for k, v in vbytes.items()},
        "think_time_s": _think_quantiles(vs.think_hist),
        "same_second_requests": vs.bursty_gaps,
        "routes": routes,
        "_durations_sample": durations.get("all", []),
    }


def evidence_rates(template, rules: list[tuple[str, str, str]]) -> dict[str, float]:
    """P(a visit of persona p shows evidence for p), from the template's journeys and the rules.

    A step whose action uses a route that one of p's rules matches shows evidence with probability p_step
    (times the chance its repeat count is not 0); steps are independent, as the journeys draw them.
    """
    from scenarios._workload import ACTIONS

    compiled = compile_rules(rules)
    out: dict[str, float] = {}
    for persona, steps in template.journeys.items():
        mine = [rx for who, rx in compiled if who == persona]
        miss = 1.0
        for st in steps:
            routes = ACTIONS.get(st.do, ("", ()))[1]
            hit = any(rx.match(f"{template.routes[r].method} {template.routes[r].path}")
                      for r in routes if r in template.routes for rx in mine)
            if hit:
                lo, hi = st.repeat
                p_some = st.p * (1.0 - (1.0 / (hi - lo + 1) if lo == 0 else 0.0))
                miss *= 1.0 - p_some
        out[persona] = 1.0 - miss
    return out


def estimate_personas(identified: dict[str, float], rates: dict[str, float]) -> dict[str, float]:
    """Visits per persona, inverse-probability weighted: identified / P(identified). Personas that can never
    show evidence (rate 0) cannot be estimated and keep their identified count (0)."""
    return {p: (n / rates[p] if rates.get(p, 0) > 0 else n) for p, n in identified.items()}


def _spread_unknown(hourly: dict[str, list[int]], unknown_as: str, rates: dict[str, float]) -> tuple[dict, str]:
    """Give unknown visits to personas. `spread`: each identified persona p gets the unknown visits it is
    expected to have left unidentified, identified_p (1 - e_p) / e_p (e_p = evidence rate, see
    evidence_rates), in proportion; or all to one persona; or none (`drop`). Float hourly counts + a note."""
    out = {p: [float(x) for x in v] for p, v in hourly.items() if p != UNKNOWN}
    unknown = hourly.get(UNKNOWN)
    if not unknown or not sum(unknown):
        return out, "no unknown visits"
    if unknown_as == "drop":
        return out, f"{sum(unknown)} unknown visits dropped (--unknown-as drop)"
    if unknown_as == "spread":
        weights = {}
        for p, hours in out.items():
            e = rates.get(p, 0.0)
            if sum(hours) > 0 and 0 < e < 1:
                weights[p] = sum(hours) * (1 - e) / e
        total = sum(weights.values())
        if total > 0:
            for p, w in weights.items():
                out[p] = [a + (w / total) * u for a, u in zip(out[p], unknown, strict=True)]
            return out, (f"{sum(unknown)} unknown visits shared by the visits each persona is expected to leave "
                         "without evidence: " + ", ".join(f"{p} {w / total:.0%}" for p, w in weights.items()))
    target = unknown_as if unknown_as in PERSONAS else "student"
    out[target] = [a + u for a, u in zip(out.get(target, [0.0] * 24), unknown, strict=True)]
    why = "" if unknown_as in PERSONAS else " (no identified persona leaves visits unidentified, nothing to share)"
    return out, f"{sum(unknown)} unknown visits given to {target}{why}"


def build_workload(summary: dict, template, *, name: str, unknown_as: str,
                   rates: dict[str, float]) -> tuple[dict, list[str]]:
    """The workload mapping (schema of scenarios/_workload.py) and notes on the choices made."""
    raw = json.loads(json.dumps(template.raw))  # deep copy of plain data
    notes: list[str] = []
    day_types: dict = {}
    profiles: dict = {}
    for dtype, per in sorted(summary["hourly_visits"].items()):
        ndays = summary["dates_per_day_type"].get(dtype, 1) or 1
        counts, note = _spread_unknown(per, unknown_as, rates)
        notes.append(f"{dtype}: {note}")
        personas = {}
        for persona, hours in sorted(counts.items()):
            total = sum(hours)
            if total <= 0 or persona not in template.personas:
                continue
            pname = f"{dtype}_{persona}"
            profiles[pname] = [round(h / ndays, 3) for h in hours]
            personas[persona] = {"visits": int(round(total / ndays)), "profile": pname}
        personas = {p: v for p, v in personas.items() if v["visits"] > 0}
        if not personas:
            continue
        ent = sum(v["visits"] for p, v in personas.items() if PERSONAS[p] == "ent")
        day_types[dtype] = {"ent_visits": ent, "personas": personas}
    if not day_types:
        raise ProfileError("no visit could be turned into a workload (every persona had zero visits)")
    default_day = max(day_types, key=lambda d: (summary["dates_per_day_type"].get(d, 0),
                                                sum(v["visits"] for v in day_types[d]["personas"].values())))
    # think times: scale each observed persona's journey so its mean duration matches what the logs show
    durations = summary["visit_duration_s"]
    for persona, steps in raw["journeys"].items():
        observed = durations.get(persona, {}).get("mean")
        modelled = template.mean_think_s(persona)
        resolution = summary.get("time_resolution_s", 1.0)
        if observed and resolution > 0.05 * observed:
            notes.append(f"{persona}: think times kept: the log's time resolution ({resolution:g} s of the day per "
                         f"stamp) is too coarse for a {observed:.0f} s visit")
            continue
        if observed and modelled and summary["personas"].get(persona, 0) >= 20:
            factor = max(observed, 1.0) / modelled
            for st in steps:
                if "think_s" in st:
                    st["think_s"] = round(st["think_s"] * factor, 2)
            notes.append(f"{persona}: think times x{factor:.2f} to match the observed mean visit of {observed:.0f} s")
    raw["name"] = name
    raw["description"] = (
        f"Profiled by entload profile from {summary['parsed']:,} log lines ({summary['first']} to "
        f"{summary['last']}); route weights, payload fits and unknown visits are in profile.json beside this file."
    )
    raw["default_day_type"] = default_day
    raw["day_types"] = day_types
    raw["profiles"] = profiles
    return raw, notes


# ---------------------------------------------------------------------------------------- writing


def write_bytes_per_second(state: _logparse.Ingest, clock: LocalClock, path: Path,
                           to_wall: Callable[[int], int] | None = None) -> int:
    """One row per second from the first to the last request, zeros included (they matter to the variance).

    Columns: time (ISO 8601, local time of --tz with its offset), requests, bytes_down. There is no
    bytes_up column: common/combined logs do not record request sizes.
    """
    if state.t_min is None:
        return 0
    per = state.per_second
    if to_wall is not None:  # a compressed run: the series is the link's own (wall-clock) seconds
        per = {}
        for t, (n, b) in state.per_second.items():
            w = to_wall(t)
            cell = per.setdefault(w, [0, 0])
            cell[0] += n
            cell[1] += b
    lo, hi = min(per), max(per)
    rows = 0
    with open(path, "w", newline="", encoding="ascii") as fh:
        fh.write("time,requests,bytes_down\n")
        offset_hour, offset = None, 0
        for t in range(lo, hi + 1):
            if t // 900 != offset_hour:
                offset_hour, offset = t // 900, clock.offset_s(t)
            g = dt.datetime.fromtimestamp(t + offset, dt.UTC)
            sign = "+" if offset >= 0 else "-"
            tz = f"{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
            cell = per.get(t)
            n, b = (cell[0], cell[1]) if cell else (0, 0)
            fh.write(f"{g:%Y-%m-%dT%H:%M:%S}{tz},{n},{b}\n")
            rows += 1
    return rows


def write_plots(summary: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    # arrivals by hour, one panel line per day type, stacked by persona
    fig, ax = plt.subplots(figsize=(9, 4))
    hours = np.arange(24)
    for dtype, per in sorted(summary["hourly_visits"].items()):
        ndays = summary["dates_per_day_type"].get(dtype, 1) or 1
        bottom = np.zeros(24)
        for persona, counts in sorted(per.items()):
            vals = np.asarray(counts, dtype=float) / ndays
            ax.bar(hours, vals, bottom=bottom, label=f"{dtype}: {persona}", alpha=0.85)
            bottom += vals
    ax.set_xlabel("hour of day (local time)")
    ax.set_ylabel("visits started per day")
    ax.set_title("Arrivals by hour")
    ax.set_xticks(range(0, 24, 2))
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(folder / "arrivals_by_hour.png", dpi=110)
    plt.close(fig)
    written.append("arrivals_by_hour.png")
    # visit durations
    fig, ax = plt.subplots(figsize=(7, 4))
    durs = np.asarray(summary.get("_durations_sample") or [0.0], dtype=float)
    ax.hist(np.maximum(durs, 1) / 60, bins=np.logspace(-2, 3, 50))
    ax.set_xscale("log")
    ax.set_xlabel("visit duration (minutes, log scale; single-request visits at 1 s)")
    ax.set_ylabel("visits (sample)")
    ax.set_title("Visit durations")
    fig.tight_layout()
    fig.savefig(folder / "visit_durations.png", dpi=110)
    plt.close(fig)
    written.append("visit_durations.png")
    # top routes by bytes
    top = sorted(summary["routes"], key=lambda r: -r["bytes_down"])[:15][::-1]
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.barh([r["route"][:60] for r in top], [r["bytes_down"] / 1e6 for r in top])
    ax.set_xlabel("MB sent to clients")
    ax.set_title("Top routes by bytes")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(folder / "top_routes_bytes.png", dpi=110)
    plt.close(fig)
    written.append("top_routes_bytes.png")
    return written


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def write_report(summary: dict, notes: list[str], outputs: dict[str, str], folder: Path) -> Path:
    lines = ["# Access-log profile", ""]
    lines += [
        f"- inputs: {', '.join(i['file'] + ' (' + i['format'] + ')' for i in summary['inputs'])}",
        f"- time span: {summary['first']} to {summary['last']} ({summary['timezone']})",
        f"- lines: {summary['lines']:,}; parsed: {summary['parsed']:,}; malformed: {summary['malformed']:,}",
        f"- requests: {summary['requests']:,}; bytes to clients: {_fmt_bytes(summary['bytes_down'])} "
        "(request sizes are not in common/combined logs)",
        f"- visits (inactivity timeout {summary['visit_timeout_s'] / 60:g} min): {summary['visits']:,}",
        f"- dates: {', '.join(f'{d} ({t})' for d, t in summary['dates'].items())}",
        "",
        "Client addresses, logins and user agents were keyed-hashed at ingestion (a key that was never written)"
        " and dropped; paths are route templates (`:id`); query strings are not kept.",
        "",
    ]
    if summary["malformed_examples"]:
        lines += ["## Damaged lines (masked)", "", "```"] + summary["malformed_examples"] + ["```", ""]
    lines += ["## Personas", "",
              "A visit's persona is the first rule its routes match; `unknown` visits showed no evidence. "
              "The estimate divides identified visits by the share of that persona's visits the template's "
              "journeys expect to show evidence.", "",
              "| persona | visits | share | evidence rate | estimated visits | median duration (s) | median requests |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    total = summary["visits"] or 1
    rates, est = summary.get("evidence_rates", {}), summary.get("personas_estimated", {})
    for p, n in summary["personas"].items():
        d = summary["visit_duration_s"].get(p, {})
        r = summary["requests_per_visit"].get(p, {})
        rate = f"{rates[p]:.0%}" if p in rates else ""
        e = f"{est[p]:,.0f}" if p in est else ""
        lines.append(f"| {p} | {n:,} | {n / total:.1%} | {rate} | {e} | {d.get('p50', '')} | {r.get('p50', '')} |")
    th = summary["think_time_s"]
    if th:
        lines += ["", f"Think time between requests of a visit (gaps >= 1 s): median {th['p50']} s, "
                      f"p90 {th['p90']} s, mean {th['mean']} s."]
    lines += ["", "## Workload choices", ""] + [f"- {n}" for n in notes]
    lines += ["", "## Top routes", "",
              "| route | workload route | requests | share | bytes | median size | lognormal fit (KS D, quality) |",
              "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in summary["routes"][:20]:
        s = r["sizes"]
        fit = s.get("fit")
        fit_text = f"sigma {fit['sigma_log']:.2f}, D {fit['ks_statistic']:.3f}, {fit['quality']}" if fit else \
            s.get("fit_note", "")
        lines.append(f"| `{r['route']}` | {r['workload_route'] or ''} | {r['requests']:,} | {r['share']:.1%} | "
                     f"{_fmt_bytes(r['bytes_down'])} | {_fmt_bytes(s.get('median_bytes', 0))} | {fit_text} |")
    lines += ["", "## Plots", ""]
    for png in outputs.get("plots", []):
        lines.append(f"![{png}](plots/{png})")
    lines += ["", "## Files", ""] + [f"- `{k}`: {v}" for k, v in outputs.items() if k != "plots"]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_outputs(state: _logparse.Ingest, *, out: Path, tz: ZoneInfo, day_type: str | None,
                  template_path: str | None, unknown_as: str, to_wall=None, clock: LocalClock | None = None,
                  rules: list[tuple[str, str, str]] | None = None, resolution_s: float = 1.0) -> dict:
    """Write workload, bytes_per_second.csv, profile.json, report.md and plots; returns their paths."""
    import yaml

    if state.t_min is not None and state.t_max - state.t_min > MAX_SPAN_DAYS * 86400:
        first, last = (dt.datetime.fromtimestamp(t, tz).isoformat() for t in (state.t_min, state.t_max))
        raise ProfileError(
            f"the logs span {(state.t_max - state.t_min) / 86400:.0f} days ({first} to {last}); profile at most "
            f"{MAX_SPAN_DAYS} days at a time (bytes_per_second.csv holds one row per second)")
    template = load_workload(template_path or DEFAULT_WORKLOAD)
    clock = clock or LocalClock(tz)
    summary = summarise(state, clock, day_type=day_type, workload=template)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", out.stem) or "profile"
    summary["time_resolution_s"] = resolution_s
    rates = evidence_rates(template, rules or DEFAULT_RULES)
    summary["evidence_rates"] = {p: round(r, 4) for p, r in rates.items()}
    identified = {p: n for p, n in summary["personas"].items() if p != UNKNOWN}
    summary["personas_estimated"] = {p: round(v, 1) for p, v in estimate_personas(identified, rates).items()}
    raw, notes = build_workload(summary, template, name=f"profile-{name}", unknown_as=unknown_as, rates=rates)
    parse_workload(raw, out)  # the same validation `entload run --workload` applies: refuse to write otherwise
    folder = out.parent
    folder.mkdir(parents=True, exist_ok=True)
    header = (
        "# Workload profiled from access logs by `entload profile` (anonymised: no address, login or id).\n"
        "# Replay it with: entload run --workload " + out.name + "\n"
        "# Route weights, payload-size fits and unknown visits: profile.json; charts: report.md\n"
    )
    out.write_text(header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=110), encoding="utf-8")
    series = folder / "bytes_per_second.csv"
    rows = write_bytes_per_second(state, clock, series, to_wall)
    outputs: dict = {"workload": str(out), "bytes_per_second": f"{series} ({rows:,} rows)"}
    outputs["plots"] = write_plots(summary, folder / "plots")
    details = {k: v for k, v in summary.items() if not k.startswith("_")}
    details["workload_notes"] = notes
    (folder / "profile.json").write_text(json.dumps(details, indent=1, default=str), encoding="utf-8")
    outputs["details"] = str(folder / "profile.json")
    outputs["report"] = str(write_report(summary, notes, outputs, folder))
    outputs["summary"] = summary
    outputs["notes"] = notes
    return outputs
