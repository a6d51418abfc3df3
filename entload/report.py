"""Plots (`plots/*.png`) and a self-contained `report.html` for a run folder.

Built only from the folder's files (timeseries.csv, summary.json, manifest.json), so it works the same on
a finished run, an interrupted one, or a folder copied from another machine.
"""

from __future__ import annotations

import base64
import csv
import html
import math
from pathlib import Path

from entload.runstore import PLOTS, RunFolder

BUCKET_SIM_S = 600  # the fidelity unit: simulated 10-minute buckets


def read_timeseries(path: Path | str) -> dict[str, list[float]]:
    cols: dict[str, list[float]] = {}
    path = Path(path)
    if not path.exists():
        return cols
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for name in reader.fieldnames or []:
            cols[name] = []
        for row in reader:
            for name in cols:
                v = row.get(name, "")
                cols[name].append(float(v) if v not in ("", None) else math.nan)
    return cols


def _clock_label(sim_s: float, _pos=None) -> str:
    sim_s = max(0.0, sim_s)
    return f"{int(sim_s // 3600) % 25:02d}:{int(sim_s % 3600 // 60):02d}"


def sim_buckets(ts: dict[str, list[float]], width_s: float) -> list[dict]:
    """Sum per-second rows into simulated-time buckets of `width_s` simulated seconds."""
    out: dict[int, dict] = {}
    for i, clock in enumerate(ts.get("sim_clock_s", [])):
        if math.isnan(clock):
            continue
        b = out.setdefault(int(clock // width_s), {"start": (clock // width_s) * width_s, "target": 0.0,
                                                  "arrivals": 0.0, "dropped": 0.0, "late": 0.0})  # fmt: skip
        b["target"] += _nz(ts["arrivals_target"][i])
        b["arrivals"] += _nz(ts["arrivals"][i])
        b["dropped"] += _nz(ts["dropped"][i])
        b["late"] += _nz(ts["late"][i])
    return [out[k] for k in sorted(out)]


def _nz(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def _bucket_width(ts: dict[str, list[float]]) -> float:
    """10 simulated minutes, unless the run is so short that fewer than 12 buckets would be drawn."""
    clock = [c for c in ts.get("sim_clock_s", []) if not math.isnan(c)]
    if len(clock) < 2:
        return BUCKET_SIM_S
    span = clock[-1] - clock[0]
    width = BUCKET_SIM_S
    while width > 60 and span / width < 12:
        width /= 2
    return width


def make_plots(folder: RunFolder) -> list[Path]:
    """Draw the four plots of the contract; return their paths (missing data gives an empty, labelled plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    ts = read_timeseries(folder.path / "timeseries.csv")
    plots_dir = folder.path / "plots"
    plots_dir.mkdir(exist_ok=True)
    clock = ts.get("sim_clock_s", [])
    paths = []

    span = (max(clock) - min(clock)) if clock else 0
    tick = next((t for t in (300, 600, 1200, 1800, 3600, 7200) if span / t <= 12), 10800)

    def finish(fig, ax, name, ylabel):
        ax.set_xlabel("simulated time of day")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MultipleLocator(tick))
        ax.xaxis.set_major_formatter(FuncFormatter(_clock_label))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        p = plots_dir / name
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)

    # arrivals: target vs achieved per simulated bucket
    width = _bucket_width(ts)
    try:
        recorded = summary_buckets(folder.summary()) if width == BUCKET_SIM_S else []
    except Exception:
        recorded = []
    buckets = recorded or sim_buckets(ts, width)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    if buckets:
        xs = [b["start"] for b in buckets]
        ax.bar(xs, [b["arrivals"] for b in buckets], width=width * 0.9, align="edge", alpha=0.6,
               label="achieved (visits started)")  # fmt: skip
        ax.step(xs + [xs[-1] + width], [b["target"] for b in buckets] + [buckets[-1]["target"]], where="post",
                color="black", label="target")  # fmt: skip
        if any(b["dropped"] for b in buckets):
            ax.bar(xs, [b["dropped"] for b in buckets], width=width * 0.9, align="edge", color="red",
                   label="dropped")  # fmt: skip
    ax.set_title(f"Arrivals per {width / 60:g} simulated minutes: target vs achieved")
    finish(fig, ax, "arrivals.png", "visits")

    # latency quantiles over the simulated day
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for col, label in (("p50_s", "p50"), ("p95_s", "p95"), ("p99_s", "p99")):
        if col in ts:
            ax.plot(clock, [v * 1000 for v in ts[col]], lw=0.8, label=label)
    ax.set_yscale("log")
    ax.set_title("Request latency per wall second (quantiles)")
    finish(fig, ax, "latency.png", "latency (ms)")

    # bandwidth up and down as measured during the run
    fig, ax = plt.subplots(figsize=(9, 3.6))
    if "bytes_down" in ts:
        ax.plot(clock, [v * 8 / 1e6 for v in ts["bytes_down"]], lw=0.8, label="down (server → clients)")
        ax.plot(clock, [v * 8 / 1e6 for v in ts["bytes_up"]], lw=0.8, label="up (clients → server)")
    try:
        m = folder.manifest()
        factor = 1.0 / (float(m.get("compression") or 1) * float(m.get("scale") or 1))
    except Exception:
        factor = None
    if factor:
        # with compression k and scale s, the run moves k·s times the real day's bytes per second
        sec = ax.secondary_yaxis("right", functions=(lambda y, f=factor: y * f, lambda y, f=factor: y / f))
        sec.set_ylabel("real day, scale 1 (Mbit/s)")
    ax.set_title("Bandwidth during the run (Mbit/s per wall second)")
    finish(fig, ax, "bandwidth.png", "Mbit/s")

    # active visits (and virtual users)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    if "active_visits" in ts:
        ax.plot(clock, ts["active_visits"], lw=0.8, label="active visits")
        ax.plot(clock, ts["users"], lw=0.8, ls="--", label="virtual users (pool)")
    ax.set_title("Concurrency: visits in progress")
    finish(fig, ax, "active_visits.png", "visits")
    assert [p.name for p in paths] == list(PLOTS)
    return paths


def _fmt_s(x) -> str:
    return "–" if x is None else f"{x * 1000:.1f} ms"


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(folder: RunFolder) -> Path:
    """`report.html`: the summary tables and the plots, inlined (one file to mail or archive)."""
    try:
        manifest = folder.manifest()
    except Exception:
        manifest = {}
    try:
        summary = folder.summary()
    except Exception:
        summary = {}
    arr = summary.get("arrivals", {})
    status = "complete" if summary.get("complete") and manifest.get("complete", True) else "INCOMPLETE (interrupted)"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>entload run {html.escape(str(manifest.get('run_id', '')))}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th{background:#eee}td:first-child{text-align:left}.bad{color:#b00}</style></head><body>",
        f"<h1>entload run {html.escape(str(manifest.get('run_id', '')))}</h1>",
        f"<p class='{'bad' if 'INCOMPLETE' in status else ''}'>Status: <b>{status}</b>"
        f" ({html.escape(str(manifest.get('end_reason', summary.get('end_reason', ''))))})</p>",
        _table(["", ""], [
            ["host", manifest.get("host", "")],
            ["embedded staging", manifest.get("embedded_staging", "")],
            ["started / ended (UTC)", f"{manifest.get('started_at', '')} / {manifest.get('ended_at', '')}"],
            ["compression (simulated s per wall s)", manifest.get("compression", summary.get("compression", ""))],
            ["window", manifest.get("window", "")],
            ["scale", manifest.get("scale", "")],
            ["workers", manifest.get("workers", "")],
            ["git revision", manifest.get("git_revision", "")],
            ["workload digest", manifest.get("workload_digest", "")],
        ]),  # fmt: skip
        "<h2>Arrivals</h2>",
        _table(["target", "achieved", "dropped", "late"],
               [[arr.get("target", ""), arr.get("achieved", ""), arr.get("dropped", ""), arr.get("late", "")]]),
        _table(["requests", "failures", "requests/s", "p50", "p95", "p99", "bytes down", "bytes up"], [[
            summary.get("requests", ""), summary.get("failures", ""), f"{summary.get('requests_per_s', 0):.1f}",
            _fmt_s(summary.get("latency_s", {}).get("p50")), _fmt_s(summary.get("latency_s", {}).get("p95")),
            _fmt_s(summary.get("latency_s", {}).get("p99")), summary.get("bytes", {}).get("down", ""),
            summary.get("bytes", {}).get("up", ""),
        ]]),  # fmt: skip
        "<h2>Personas</h2>",
        _table(["persona", "visits started", "completed", "failed", "quota", "bytes/visit down", "bytes/visit up"],
               [[name, p.get("visits_started"), p.get("visits_completed"), p.get("visits_failed"),
                 p.get("visits_quota"),
                 f"{(summary.get('per_visit_bytes', {}).get(name, {}).get('down') or 0):.0f}",
                 f"{(summary.get('per_visit_bytes', {}).get(name, {}).get('up') or 0):.0f}"]
                for name, p in summary.get("personas", {}).items()]),  # fmt: skip
        "<h2>Plots</h2>",
    ]
    for name in PLOTS:
        p = folder.path / "plots" / name
        if p.exists():
            data = base64.b64encode(p.read_bytes()).decode()
            parts.append(f"<p><img alt='{name}' src='data:image/png;base64,{data}' style='max-width:100%'></p>")
    parts += [
        "<h2>Endpoints</h2>",
        _table(["method", "name", "requests", "failures", "p50", "p95", "p99", "max", "bytes down", "bytes up"],
               [[e["method"], e["name"], e["requests"], e["failures"], _fmt_s(e.get("p50_s")), _fmt_s(e.get("p95_s")),
                 _fmt_s(e.get("p99_s")), _fmt_s(e.get("max_s")), e.get("bytes_down"), e.get("bytes_up")]
                for e in summary.get("endpoints", [])]),  # fmt: skip
        "<p>Locust's own report: <a href='locust_report.html'>locust_report.html</a>; raw data: summary.json, "
        "timeseries.csv, samples.csv.gz, locust_stats*.csv.</p></body></html>",
    ]
    out = folder.path / "report.html"
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def summary_buckets(summary: dict) -> list[dict]:
    """The recorder's arrivals per simulated 10 minutes (by intended arrival time), in `sim_buckets` form."""
    return [{"start": b["from_s"], "target": b["target"], "arrivals": b["achieved"], "dropped": b["dropped"],
             "late": b["late"]} for b in summary.get("arrivals_by_sim_bucket", [])]  # fmt: skip


def fidelity(ts: dict[str, list[float]] | None = None, min_target: float = 400.0, summary: dict | None = None) -> dict:
    """The issue's fidelity figures: per simulated 10-minute bucket with a target of at least `min_target`
    arrivals, the worst relative error; and the total relative error. From the summary's buckets (arrivals
    by intended time: exact) when given, else from the per-second time series (quantised to k-second rows)."""
    buckets = summary_buckets(summary) if summary and summary.get("arrivals_by_sim_bucket") else (
        sim_buckets(ts or {}, BUCKET_SIM_S))
    big = [b for b in buckets if b["target"] >= min_target]
    worst = max((abs(b["arrivals"] - b["target"]) / b["target"] for b in big), default=None)
    target = sum(b["target"] for b in buckets)
    achieved = sum(b["arrivals"] for b in buckets)
    return {
        "buckets_checked": len(big),
        "worst_bucket_error": worst,
        "total_target": target,
        "total_achieved": achieved,
        "total_error": (achieved - target) / target if target else None,
        "dropped": sum(b["dropped"] for b in buckets),
        "late": sum(b["late"] for b in buckets),
    }
