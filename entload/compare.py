"""Side-by-side comparison of two runs (or baselines): tables for the terminal and Markdown, overlay plots.

The numbers come from each folder's summary.json and samples.csv.gz; the change of the p95 per endpoint carries
the same bootstrap confidence interval as the gate (here without the common-shift correction: compare shows
what was measured, the gate decides).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from entload import gate
from entload.errors import InputError


@dataclass
class EndpointRow:
    endpoint: str
    a: dict | None
    b: dict | None
    change: gate.EndpointComparison | None


def open_folder(path: str) -> gate.Run:
    """A run folder, or a baseline folder (which holds baseline.json instead of manifest.json)."""
    p = Path(path)
    if (p / gate.BASELINE_FILE).exists() and not (p / "manifest.json").exists():
        return gate.load_baseline(p).as_run()
    return gate.load_run(p, allow_partial=True)


def endpoint_rows(a: gate.Run, b: gate.Run, metric: str = "p95") -> list[EndpointRow]:
    eps_a = {gate.endpoint_key(e.get("method", ""), e["name"]): e for e in a.summary.get("endpoints") or []}
    eps_b = {gate.endpoint_key(e.get("method", ""), e["name"]): e for e in b.summary.get("endpoints") or []}
    changes: dict[str, gate.EndpointComparison] = {}
    if a.samples_path and b.samples_path:
        cfg = gate.RegressionConfig(metric=metric, common_mode=False, max_common_shift=None)
        report = gate.compare_samples(a.samples, b.samples, cfg)
        changes = {e.endpoint: e for e in report.endpoints if e.status != "skip"}
    keys = sorted(set(eps_a) | set(eps_b), key=lambda k: -float((eps_b.get(k) or eps_a.get(k) or {})
                                                               .get("requests") or 0))
    return [EndpointRow(k, eps_a.get(k), eps_b.get(k), changes.get(k)) for k in keys]


def _q(ep: dict | None, key: str) -> str:
    if not ep or ep.get(key) is None:
        return "-"
    return f"{float(ep[key]) * 1000:.1f}"


def _err(ep: dict | None) -> str:
    if not ep or not ep.get("requests"):
        return "-"
    return f"{float(ep.get('failures') or 0) / float(ep['requests']):.2%}"


def _n(ep: dict | None) -> str:
    return "-" if not ep else f"{int(ep.get('requests') or 0)}"


def _change(row: EndpointRow, metric: str) -> tuple[str, str]:
    c = row.change
    if c is None:
        a, b = (row.a or {}).get(f"{metric}_s"), (row.b or {}).get(f"{metric}_s")
        if a and b:
            return f"{float(b) / float(a) - 1:+.1%}", "(no samples)"
        return "-", ""
    return f"{c.raw_effect:+.1%}", f"{c.ci_low:+.1%} .. {c.ci_high:+.1%}"


def run_rows(a: gate.Run, b: gate.Run) -> list[tuple[str, str, str]]:
    """Run-wide figures side by side."""

    def get(run: gate.Run, *path):
        cur = run.summary
        for p in path:
            cur = (cur or {}).get(p) if isinstance(cur, dict) else None
        return cur

    def fmt(v, spec="{:,.0f}"):
        return "-" if v is None else spec.format(v)

    rows = [("run", a.name, b.name)]
    for label, path, spec in (("arrivals target", ("arrivals", "target"), "{:,.0f}"),
                              ("arrivals achieved", ("arrivals", "achieved"), "{:,.0f}"),
                              ("arrivals dropped", ("arrivals", "dropped"), "{:,.0f}"),
                              ("arrivals late", ("arrivals", "late"), "{:,.0f}"),
                              ("requests/s", ("requests_per_s",), "{:,.1f}"),
                              ("duration (s)", ("duration_s",), "{:,.0f}")):
        rows.append((label, fmt(get(a, *path), spec), fmt(get(b, *path), spec)))
    for label, key in (("bytes down (MB)", "down"), ("bytes up (MB)", "up")):
        va, vb = get(a, "bytes", key), get(b, "bytes", key)
        rows.append((label, fmt(None if va is None else va / 1e6, "{:,.1f}"),
                     fmt(None if vb is None else vb / 1e6, "{:,.1f}")))
    for label, run_key in (("workload digest", "workload_digest"),):
        rows.append((label, str(a.manifest.get(run_key) or "-")[:12], str(b.manifest.get(run_key) or "-")[:12]))
    return rows


def terminal_table(a: gate.Run, b: gate.Run, rows: list[EndpointRow], metric: str = "p95") -> str:
    out = []
    rr = run_rows(a, b)
    w0 = max(len(r[0]) for r in rr)
    w1 = max(len(r[1]) for r in rr)
    for label, va, vb in rr:
        out.append(f"{label:<{w0}}  {va:>{w1}}  {vb}")
    out.append("")
    width = max([len(r.endpoint) for r in rows] + [8])
    out.append(f"{'endpoint':<{width}}  {'requests A/B':>15}  {'errors A/B':>15}  {'p50 ms A/B':>15}  "
               f"{'p95 ms A/B':>15}  {'p99 ms A/B':>15}  {'Δ' + metric:>7}  95% CI")
    for r in rows:
        change, ci = _change(r, metric)
        out.append(f"{r.endpoint:<{width}}  {_n(r.a) + ' / ' + _n(r.b):>15}  {_err(r.a) + ' / ' + _err(r.b):>15}  "
                   f"{_q(r.a, 'p50_s') + ' / ' + _q(r.b, 'p50_s'):>15}  "
                   f"{_q(r.a, 'p95_s') + ' / ' + _q(r.b, 'p95_s'):>15}  "
                   f"{_q(r.a, 'p99_s') + ' / ' + _q(r.b, 'p99_s'):>15}  {change:>7}  {ci}")
    return "\n".join(out)


def markdown_table(a: gate.Run, b: gate.Run, rows: list[EndpointRow], metric: str = "p95") -> str:
    out = [f"### entload compare: A = `{a.name}`, B = `{b.name}`", "", "| | A | B |", "| --- | --- | --- |"]
    out += [f"| {label} | {va} | {vb} |" for label, va, vb in run_rows(a, b)[1:]]
    out += ["", f"| endpoint | requests A / B | errors A / B | p50 ms A / B | p95 ms A / B | p99 ms A / B | "
                f"Δ{metric} B vs A | 95% CI |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        change, ci = _change(r, metric)
        out.append(f"| `{r.endpoint}` | {_n(r.a)} / {_n(r.b)} | {_err(r.a)} / {_err(r.b)} | {_q(r.a, 'p50_s')} / "
                   f"{_q(r.b, 'p50_s')} | {_q(r.a, 'p95_s')} / {_q(r.b, 'p95_s')} | {_q(r.a, 'p99_s')} / "
                   f"{_q(r.b, 'p99_s')} | {change} | {ci} |")
    return "\n".join(out) + "\n"


def read_timeseries(run: gate.Run) -> dict[str, np.ndarray] | None:
    """timeseries.csv as columns of floats, or None when the folder has none (e.g. a baseline)."""
    path = run.path / "timeseries.csv"
    if not path.exists():
        return None
    cols: dict[str, list[float]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            for lineno, row in enumerate(reader, start=2):
                for k, v in row.items():
                    if k is None:
                        continue
                    try:
                        cols.setdefault(k, []).append(float(v) if v not in ("", None) else math.nan)
                    except ValueError:
                        raise InputError(f"{path}:{lineno}: {k}: expected a number, got {v!r}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    return {k: np.asarray(v) for k, v in cols.items()}


def _smooth(y: np.ndarray, width: int) -> np.ndarray:
    if y.size < width or width <= 1:
        return y
    kernel = np.ones(width) / width
    return np.convolve(np.nan_to_num(y), kernel, mode="same")


def plot(a: gate.Run, b: gate.Run, rows: list[EndpointRow], out_dir: Path) -> list[Path]:
    """Overlay plots: latency quantiles per endpoint, arrivals and bandwidth over the simulated day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    shown = [r for r in rows if r.a and r.b][:40]
    if shown:
        fig, ax = plt.subplots(figsize=(9, 0.32 * len(shown) + 1.6))
        y = np.arange(len(shown))
        for offset, run_key, color, label in ((-0.18, "a", "tab:blue", f"A {a.name}"),
                                              (0.18, "b", "tab:orange", f"B {b.name}")):
            eps = [getattr(r, run_key) for r in shown]
            for q, marker in (("p50_s", "o"), ("p95_s", "s"), ("p99_s", "^")):
                vals = [float(e.get(q) or np.nan) * 1000 for e in eps]
                ax.scatter(vals, y + offset, marker=marker, color=color, s=18,
                           label=f"{label} {q[:-2]}")
        ax.set_yticks(y, [r.endpoint for r in shown], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_title("Latency quantiles per endpoint: A vs B")
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize=6, ncol=2, loc="lower right")
        fig.tight_layout()
        path = out_dir / "latency_quantiles.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    ts = {"A": read_timeseries(a), "B": read_timeseries(b)}
    if all(v is not None and v.get("t_s") is not None and v["t_s"].size for v in ts.values()):
        def xaxis(t):
            clock = t.get("sim_clock_s")
            if clock is not None and np.isfinite(clock).all():
                return clock / 3600, "simulated time of day (h)"
            return t["t_s"], "run time (s)"

        fig, ax = plt.subplots(figsize=(9, 4))
        for (label, t), color in zip(ts.items(), ("tab:blue", "tab:orange"), strict=True):
            x, xlabel = xaxis(t)
            width = max(1, min(30, t["t_s"].size // 30))
            if "arrivals" in t:
                ax.plot(x, _smooth(t["arrivals"], width), color=color, label=f"{label} achieved")
            if "arrivals_target" in t:
                ax.plot(x, _smooth(t["arrivals_target"], width), color=color, ls="--", alpha=0.7,
                        label=f"{label} target")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"arrivals per wall second (moving mean over {width} s)")
        ax.set_title("Arrivals: A vs B")
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        path = out_dir / "arrivals.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        fig, ax = plt.subplots(figsize=(9, 4))
        for (label, t), color in zip(ts.items(), ("tab:blue", "tab:orange"), strict=True):
            x, xlabel = xaxis(t)
            width = max(1, min(30, t["t_s"].size // 30))
            for col, ls in (("bytes_down", "-"), ("bytes_up", ":")):
                if col in t:
                    ax.plot(x, _smooth(t[col] * 8 / 1e6, width), color=color, ls=ls,
                            label=f"{label} {col.split('_')[1]}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Mbit/s (wall clock)")
        ax.set_title("Bandwidth: A vs B")
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        path = out_dir / "bandwidth.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
