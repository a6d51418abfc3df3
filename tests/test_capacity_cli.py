"""`entload capacity` end to end: the real World Cup 98 series through the real command, a run folder with
time compression, and bad input turned into one-line errors with exit code 2."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, shared_file

from entload.cli import main

REQUIRED_KEYS = {"mean_bps", "required_bps", "link_bps", "runs_out_on", "order_by", "recommended_tier_bps",
                 "hurst", "epsilon", "timescale_s", "assumptions"}


def _cli(argv, capsys):
    code = main(["capacity", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _history(path, days=3 * 365, start="2023-09-01", level=120_000, growth=0.25, seed=1):
    from capacity.forecast import calendar_features

    dates = np.datetime64(start) + np.arange(days).astype("timedelta64[D]")
    x, _ = calendar_features(dates, "C")
    t = (dates - dates[0]).astype(float) / 365.2425
    y = level * np.exp(growth * t + x @ np.log([0.35, 0.45, 0.4, 0.15, 0.5]))
    y *= np.exp(np.random.default_rng(seed).normal(0, 0.04, days))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["date", "visits"])
        w.writerows([str(d), int(v)] for d, v in zip(dates, y, strict=True))
    return path


def test_worldcup98_end_to_end_through_the_command(tmp_path):
    """The real WC98 per-minute series, a synthetic 3-year history, through the real process."""
    wc = shared_file("data", "worldcup98-per-minute.csv")
    hist = _history(tmp_path / "visits.csv")
    out = tmp_path / "plan"
    proc = subprocess.run(
        [sys.executable, "-m", "entload", "capacity", "--series", str(wc), "--time-col", "timestamp",
         "--bytes-col", "size", "--history", str(hist), "--reference-visits", "150000", "--link", "300Mbit",
         "--lead-time", "12w", "--visits", "200000", "--what-if", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("The 300 Mbit/s link ") and first.endswith(".")
    assert "capacity: characterising 50400 steps of 60 s" in proc.stderr  # progress on stderr
    r = json.loads((out / "capacity.json").read_text())
    assert r.keys() >= REQUIRED_KEYS
    # mu recomputed independently: the busiest 60 consecutive minutes of the raw file, in bit/s.
    raw = np.loadtxt(wc, delimiter=",", skiprows=1, usecols=2)
    best = np.max(np.convolve(raw, np.ones(60), "valid"))
    assert r["measured_busy_hour"]["mean_bps"] == pytest.approx(best * 8 / 3600, rel=1e-9)
    d = r["directions"]["size"]
    # v(T) from the step (60 s) to 15 min, H from its slope with a fit quality and a standard error.
    ts = [p["timescale_s"] for p in d["variance_time"]]
    assert ts[0] == 60 and ts[-1] == 900 and len(ts) >= 8
    h = d["hurst"]
    assert h["n_points"] == len(ts) and 0 < h["stderr"] < 0.2 and 0 <= h["r2"] <= 1
    assert r["hurst"] == pytest.approx(min(max(h["estimate"], 0.5), 0.99))
    # T = 1 s is below the step: extrapolated, sensitivity over H shown, H = 0.5 the largest.
    assert d["timescale_observed"] is False
    by_h = d["required_bps_by_hurst"]
    assert list(by_h) == ["0.5", "0.6", "0.7", "0.8", "0.9"] and by_h["0.5"] == max(by_h.values())
    # Both Gaussian forms, consistent with the formula from the reported mu and v.
    from capacity.dimension import grow_visits, required_capacity_chernoff

    v1 = d["variance_time"][0]["variance_bits2"] * (1 / 60) ** (2 * r["hurst"])
    assert d["required_bps_chernoff"] == pytest.approx(required_capacity_chernoff(d["mean_bps"], v1, 1.0, 0.01))
    assert d["required_bps_gaussian_quantile"] < d["required_bps_chernoff"]
    # Today's requirement is the measured one moved by the growth law to the busiest recent day.
    g = r["plan"]["visits_now"] / 150000
    assert r["required_bps"] == pytest.approx(grow_visits(d["mean_bps"], d["required_bps_chernoff"], g))
    # The plan: a run-out date in the sentence, the order-by date the lead time before the deadline.
    assert r["runs_out_on"] and r["runs_out_on"][:7] in first
    deadline = np.datetime64(r["plan"]["deadline"])
    assert (deadline - np.datetime64(r["order_by"])).astype(int) == 84
    assert {c["model"] for c in r["forecast"]["candidates"]} == {"linear", "exponential", "logistic"}
    assert r["recommended_tier_bps"] > 300e6
    assert r["visits_query"]["visits_per_day"] == 200000 and "200,000 visits a day" in first
    assert r["what_if"][0]["multiplier"] == 3 and r["what_if"][0]["required_bps"] > r["required_bps"]
    assert r["months"] and all(m["tier_bps"] is None or m["tier_bps"] >= m["required_bps"] for m in r["months"])
    for name in ("series.png", "variance_time.png", "transfer_times.png", "forecast.png", "required_by_month.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "What the data can and cannot tell" in md and "outside the measured timescales" in md
    assert "<table>" in (out / "report.html").read_text()


def _run_folder(path, k=24.0, seed=4, full_day=True):
    """A run folder in the shape of docs/contracts.md: rows per wall second, each holding k real seconds."""
    path.mkdir()
    rng = np.random.default_rng(seed)
    n = int(86400 / k)
    tod = np.arange(n) * k
    shape = 1 + 4 * np.exp(-(((tod - 9 * 3600) / 3000) ** 2))  # a morning peak at 09:00
    down = rng.poisson(2e4 * shape * k / 24) * 50
    up = rng.poisson(4e3 * shape * k / 24) * 50
    arrivals = rng.poisson(shape * 2)
    manifest = {"schema_version": 1, "compression": k, "window": {"from_s": 0.0, "to_s": 86400.0}, "complete": True}
    (path / "manifest.json").write_text(json.dumps(manifest))
    summary = {"schema_version": 1, "arrivals": {"target": 1000, "achieved": int(arrivals.sum()), "dropped": 0,
                                                 "late": 0},
               "personas": {"student": {"visits_started": 300}, "parent": {"visits_started": 100}},
               "per_visit_bytes": {"student": {"down": 4e5, "up": 3e5}, "parent": {"down": 2e5, "up": 1e4}}}
    (path / "summary.json").write_text(json.dumps(summary))
    with open(path / "timeseries.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["t_s", "sim_clock_s", "arrivals_target", "arrivals", "late", "dropped", "active_visits", "users", "requests", "failures", "bytes_down", "bytes_up", "p50_s", "p95_s", "p99_s"])
        w.writerow([0, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "", "", ""])  # start-up row, clock not running
        for i in range(n):
            w.writerow([i + 1, tod[i], 1, arrivals[i], 0, 0, 5, 5, 9, 0, down[i], up[i], 0.01, 0.02, 0.03])
    return down, up, arrivals, summary


def test_run_folder_undoes_time_compression(tmp_path, capsys):
    run = tmp_path / "run"
    down, up, arrivals, summary = _run_folder(run, k=24.0)
    out = tmp_path / "plan"
    code, stdout, err = _cli(["--run", str(run), "--link", "1Gbit", "--out", str(out), "--quiet"], capsys)
    assert code == 0, err
    r = json.loads((out / "capacity.json").read_text())
    assert r["series"]["step_s"] == 24 and r["series"]["compression"] == 24
    # Real mean rate: the busiest 150 rows (150 x 24 s = 1 h) hold one real hour of bytes.
    best = np.max(np.convolve(down, np.ones(150), "valid"))
    assert r["directions"]["bytes_down"]["mean_bps"] == pytest.approx(best * 8 / 3600, rel=1e-9)
    assert r["directions"]["bytes_down"]["variance_time"][0]["timescale_s"] == 24
    assert any("compression" in a for a in r["assumptions"])
    assert any("start-up rows" in n for n in r["notes"])
    # The run replays a whole day: the reference visits are its achieved arrivals, and the busy-hour
    # share comes from its arrivals by simulated hour.
    assert r["reference_visits"] == summary["arrivals"]["achieved"]
    pv = r["per_visit_model"]
    assert pv["persona_mix"] == {"student": 0.75, "parent": 0.25}
    assert pv["directions"]["bytes_down"]["bytes_per_visit"] == pytest.approx(0.75 * 4e5 + 0.25 * 2e5)
    hours = np.floor(np.arange(len(arrivals)) * 24 / 3600).astype(int)
    share = np.bincount(hours, weights=arrivals).max() / arrivals.sum()
    assert pv["busy_hour_share"] == pytest.approx(share)


@pytest.mark.parametrize(
    "case,expect",
    [
        ("missing_column", "no column 'bytes'"),
        ("unordered_history", "visits.csv:4: column 'date': out-of-order date"),
        ("duplicate_history", "visits.csv:3: column 'date': duplicate date"),
        ("duplicate_time", "s.csv:3: column 'time': duplicate time"),
        ("negative_bytes", "s.csv:3: column 'bytes': byte counts cannot be negative"),
        ("unitless_link", "--link: expected a rate with a unit"),
        ("negative_link", "--link: expected a rate with a unit"),
        ("ambiguous_link", "--link: '1Gb' is ambiguous"),
        ("empty_series", "s.csv: the series is empty"),
        ("text_in_bytes", "s.csv:4: column 'bytes': expected a number, got 'lots'"),
        ("bad_epsilon", "--epsilon: expected a value strictly between 0 and 1"),
        ("bad_tiers", "--tiers: expected a rate with a unit"),
        ("no_manifest", "manifest.json: no such file"),
        ("history_without_reference", "--reference-visits"),
        ("bad_lead_time", "--lead-time: expected a duration"),
    ],
)
def test_bad_input_is_one_line_exit_2(case, expect, tmp_path, capsys):
    s = tmp_path / "s.csv"
    s.write_text("time,bytes\n0,100\n1,200\n2,150\n3,120\n")
    h = tmp_path / "visits.csv"
    rows = [f"2024-01-{d:02d},{1000 + d}" for d in range(1, 32)] + [f"2024-02-{d:02d},{1000 + d}" for d in range(1, 10)]
    args = ["--series", str(s)]
    if case == "missing_column":
        args += ["--bytes-col", "bytes"]
        s.write_text("time,octets\n0,1\n1,2\n")
    elif case == "unordered_history":
        rows[1], rows[2] = rows[2], rows[1]
        h.write_text("date,visits\n" + "\n".join(rows) + "\n")
        args += ["--history", str(h), "--reference-visits", "1000"]
    elif case == "duplicate_history":
        rows[1] = rows[0]
        h.write_text("date,visits\n" + "\n".join(rows) + "\n")
        args += ["--history", str(h), "--reference-visits", "1000"]
    elif case == "duplicate_time":
        s.write_text("time,bytes\n0,1\n0,2\n1,3\n")
    elif case == "negative_bytes":
        s.write_text("time,bytes\n0,1\n1,-2\n2,3\n")
    elif case == "unitless_link":
        args += ["--link", "1000"]
    elif case == "negative_link":
        args += ["--link=-1Gbit"]
    elif case == "ambiguous_link":
        args += ["--link", "1Gb"]
    elif case == "empty_series":
        s.write_text("time,bytes\n")
    elif case == "text_in_bytes":
        s.write_text("time,bytes\n0,1\n1,2\n2,lots\n")
    elif case == "bad_epsilon":
        args += ["--epsilon", "2"]
    elif case == "bad_tiers":
        args += ["--tiers", "1Gbit,2000"]
    elif case == "no_manifest":
        (tmp_path / "run").mkdir()
        args = ["--run", str(tmp_path / "run")]
    elif case == "history_without_reference":
        h.write_text("date,visits\n" + "\n".join(rows) + "\n")
        args += ["--history", str(h)]
    elif case == "bad_lead_time":
        args += ["--lead-time", "90"]
    code, out, err = _cli(args + ["--quiet"], capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("entload capacity: error: ")
    assert expect in lines[0], lines[0]


def test_bad_input_through_the_real_process_exits_2(tmp_path):
    s = tmp_path / "s.csv"
    s.write_text("time,bytes\n0,1\n1,2\n")
    proc = subprocess.run([sys.executable, "-m", "entload", "capacity", "--series", str(s), "--bytes-col", "nope"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("capacity: ")]
    assert len(lines) == 1 and f"{s}: no column 'nope'" in lines[0]


def test_profile_series_with_utc_offsets_keeps_local_busy_hour(tmp_path, capsys):
    """entload profile writes ISO times with the offset of --tz: the busy hour is read in local time."""
    s = tmp_path / "bytes_per_second.csv"
    rng = np.random.default_rng(1)
    n = 4 * 3600
    sod = 6 * 3600 + np.arange(n)  # 06:00 to 10:00 local, +02:00
    shape = 1 + 5 * ((sod >= 8 * 3600) & (sod < 9 * 3600))  # the busiest hour is 08:00-09:00 local
    down = rng.poisson(shape * 20) * 1000
    with open(s, "w") as fh:
        fh.write("time,requests,bytes_down\n")
        for t, b in zip(sod, down, strict=True):
            fh.write(f"2025-03-11T{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}+02:00,1,{b}\n")
    out = tmp_path / "plan"
    code, stdout, err = _cli(["--series", str(s), "--out", str(out), "--no-plots", "--quiet"], capsys)
    assert code == 0, err
    r = json.loads((out / "capacity.json").read_text())
    d = r["directions"]["bytes_down"]
    assert d["busy_hour_start"] == "2025-03-11 08:00"
    assert d["mean_bps"] == pytest.approx(down[2 * 3600 : 3 * 3600].sum() * 8 / 3600)
