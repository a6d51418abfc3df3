"""Benchmark: `entload capacity` end to end on 3 years of daily history plus a 24-hour per-second series
(86,400 rows, two directions), side by side with a reference in the same run: a bare numpy load of the
same two files in a fresh interpreter (what any tool must at least pay to read them).

Run: .venv/bin/python benchmarks/capacity_end_to_end.py [--repeat 3]
Prints a Markdown table: wall time (median of the repeats), peak RSS of the child, ratio to the reference.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_inputs(folder: Path) -> tuple[Path, Path]:
    """A school-day-shaped per-second series and a 3-year history with weekly and holiday dips."""
    rng = np.random.default_rng(42)
    t = np.arange(86400)
    shape = 0.05 + np.exp(-(((t - 8.75 * 3600) / 2400) ** 2)) + 0.7 * np.exp(-(((t - 18.5 * 3600) / 4000) ** 2))
    down = rng.poisson(shape * 40) * rng.lognormal(11.5, 1.0, 86400)
    up = rng.poisson(shape * 10) * rng.lognormal(12.0, 1.2, 86400)
    series = folder / "bytes_per_second.csv"
    np.savetxt(series, np.column_stack([t, down.round(), up.round()]), fmt="%d", delimiter=",",
               header="time,bytes_down,bytes_up", comments="")
    dates = np.datetime64("2023-09-01") + np.arange(3 * 365).astype("timedelta64[D]")
    dow = (dates.astype(int) + 3) % 7  # 0 = Monday
    years = np.arange(len(dates)) / 365.2425
    month = dates.astype("datetime64[M]").astype(int) % 12 + 1
    level = 120_000 * np.exp(0.2 * years) * np.where(dow >= 5, 0.4, 1.0) * np.where(np.isin(month, (7, 8)), 0.15, 1.0)
    visits = level * np.exp(rng.normal(0, 0.05, len(dates)))
    history = folder / "visits.csv"
    with history.open("w") as fh:
        fh.write("date,visits\n")
        fh.writelines(f"{d},{int(v)}\n" for d, v in zip(dates, visits, strict=True))
    return series, history


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(rss, before) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        series, history = make_inputs(folder)
        base = [py, "-m", "entload", "capacity", "--series", str(series), "--history", str(history),
                "--reference-visits", "150000", "--link", "1Gbit", "--what-if", "3", "--quiet"]
        cases = {
            "numpy load of both files (reference)": [
                py, "-c", f"import numpy as np; np.loadtxt({str(series)!r}, delimiter=',', skiprows=1); "
                          f"np.loadtxt({str(history)!r}, delimiter=',', skiprows=1, dtype=str)"],
            "entload capacity, no plots": base + ["--no-plots", "--out", str(folder / "a")],
            "entload capacity, with 5 plots + report": base + ["--out", str(folder / "b")],
        }
        rows = []
        for name, cmd in cases.items():
            walls = []
            for _ in range(args.repeat):
                wall, _ = timed(cmd)
                walls.append(wall)
            rows.append((name, statistics.median(walls), min(walls)))
        # Peak RSS measured separately per case (RUSAGE_CHILDREN is a high-water mark over all children).
        rss = {}
        for name, cmd in cases.items():
            out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], cwd=REPO, capture_output=True, text=True)
            last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""
            rss[name] = int(last) / 1024 if last.isdigit() else float("nan")
    ref = rows[0][1]
    print(f"inputs: 86,400-row per-second series (2 directions) + {3 * 365}-day history; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; median of {args.repeat}")
    print()
    print("| case | wall (median) | wall (best) | peak RSS | × reference |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, med, best in rows:
        print(f"| {name} | {med:.2f} s | {best:.2f} s | {rss[name]:.0f} MB | {med / ref:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
