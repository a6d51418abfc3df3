"""The recorder's own arithmetic (histograms, reservoir merge, Locust memory bound) and one Locust-native
run (`locust -f ... --results-dir`) against a real HTTP server on loopback."""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, stop_process, wait_http

from exporters import recorder
from exporters._headers import header_lines_bytes

LOCUSTFILE = Path(__file__).with_name("recorder_locustfile.py")


def test_histogram_quantiles_are_within_bucket_precision():
    """Log buckets 2 % wide: any quantile is within 2 % of the exact order statistic."""
    rng = random.Random(7)
    values = [rng.lognormvariate(-4, 1.2) for _ in range(20_000)]
    hist: dict[int, int] = {}
    for v in values:
        i = recorder.hist_index(v)
        hist[i] = hist.get(i, 0) + 1
    values.sort()
    for q, got in zip((0.5, 0.9, 0.95, 0.99), recorder.hist_quantiles(hist, (0.5, 0.9, 0.95, 0.99)), strict=True):
        exact = values[math.ceil(q * len(values)) - 1]
        assert abs(got - exact) / exact < 0.02, (q, got, exact)
    assert recorder.hist_quantiles({}, (0.5,)) == [None]


def test_merged_reservoir_is_uniform_over_sources(tmp_path):
    """Two workers saw 30,000 and 10,000 requests: a uniform merged sample takes 3/4 from the first.
    The count from the first is hypergeometric; we allow 5 standard deviations."""
    agg = recorder.Aggregator(tmp_path, "r", lag_s=0, seed=1)
    rng = random.Random(3)
    for source, n, value in (("w1", 30_000, 1.0), ("w2", 10_000, 2.0)):
        c = recorder.Collector(seed=rng.randrange(10**6))
        for _ in range(n):
            c.reservoirs.setdefault("GET /x", recorder.Reservoir(c.rng)).add(value, value, True)
        # shipped in several reports, as a worker does every 3 s
        agg.merge(source, {"samples": {"GET /x": [c.reservoirs["GET /x"].seen, c.reservoirs["GET /x"].take_changes()]}})
    rows = agg.merged_reservoirs()["GET /x"]
    assert len(rows) == recorder.RESERVOIR_SIZE
    from_w1 = sum(1 for lat, _, _ in rows if lat == 1.0)
    n, big_n, k = recorder.RESERVOIR_SIZE, 40_000, 30_000
    mean = n * k / big_n
    sd = math.sqrt(n * (k / big_n) * (1 - k / big_n) * (big_n - n) / (big_n - 1))
    assert abs(from_w1 - mean) < 5 * sd, (from_w1, mean, sd)


def test_reservoir_past_its_fill_is_a_uniform_sample_of_the_stream():
    """Ten times the reservoir's size in order: every tenth of the stream holds about a tenth of the sample
    (skips drawn by Algorithm L), and about R·(1 + ln(n/R)) slot writes happen in all (not one draw per request)."""
    size, n = recorder.RESERVOIR_SIZE, 10 * recorder.RESERVOIR_SIZE
    r = recorder.Reservoir(random.Random(5))
    writes = 0
    for i in range(n):
        r.add(float(i), float(i), i % 2 == 0)
        writes += len(r.changed)
        r.changed.clear()
    assert r.seen == n and r.filled == size
    kept = sorted(int(v) for v in r.lat)
    assert len(set(kept)) == size  # no request twice
    deciles = [0] * 10
    for v in kept:
        deciles[v * 10 // n] += 1
    sd = math.sqrt(size * 0.1 * 0.9)
    assert all(abs(d - size / 10) < 5 * sd for d in deciles), deciles
    assert all(r.ok[s] == (int(r.lat[s]) % 2 == 0) for s in range(size))
    expected = size * (1 + math.log(n / size))
    assert abs(writes - expected) < 0.05 * expected, (writes, expected)


def test_header_bytes_of_geventhttpclient_headers_match_their_lines():
    """The recorder reads geventhttpclient's Headers storage directly: same count as iterating its lines."""
    from geventhttpclient.header import Headers

    h = Headers([("Content-Type", "text/html"), ("Set-Cookie", "a=1"), ("set-cookie", "b=22"), ("X-Y", "")])
    lines = list(h.items())
    assert len(lines) == 4
    assert header_lines_bytes(h) == sum(len(k) + len(v) + 4 for k, v in lines)
    assert header_lines_bytes({"A": "bc"}) == 7
    resp = type("R", (), {"headers": h})()
    assert recorder._response_wire_bytes(100, resp) == 100 + 19 + header_lines_bytes(h)
    assert recorder._response_wire_bytes(100, type("R", (), {"headers": Headers()})()) == 100


def test_locust_memory_is_bounded():
    """stats.history and the per-second counters stop growing with run length."""
    from locust.stats import RequestStats

    stats = RequestStats()
    now = int(time.time())
    stats.history = [{"time": str(i)} for i in range(5000)]
    entry = stats.get("/x", "GET")
    for t in range(now - 10_000, now):
        entry.num_reqs_per_sec[t] = 1
        stats.total.num_reqs_per_sec[t] = 1
    recorder.bound_locust_memory(stats)
    assert len(stats.history) <= recorder.HISTORY_MAX
    assert stats.history[-1]["time"] == "4999" and stats.history[0]["time"] == "0"  # whole run, decimated
    assert len(entry.num_reqs_per_sec) <= recorder.PER_SEC_KEEP_S + 1
    assert len(stats.total.num_reqs_per_sec) <= recorder.PER_SEC_KEEP_S + 1


@pytest.fixture
def http_target(tmp_path):
    """A real HTTP server on loopback: `/healthz` and `/` answer 200, anything else 404."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "healthz").write_text("ok")
    (root / "index.html").write_text("<html>" + "x" * 2000 + "</html>")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", 10, proc)
    yield url
    stop_process(proc)


def locust_csv_totals(path: Path) -> dict[str, tuple[int, int]]:
    with open(path, newline="") as f:
        return {f"{r['Type']} {r['Name']}": (int(r["Request Count"]), int(r["Failure Count"]))
                for r in csv.DictReader(f)}  # fmt: skip


def test_locust_native_run_writes_recorder_files(tmp_path, http_target):
    """`locust -f <file> --results-dir DIR` alone records, and agrees with Locust's own CSV."""
    out = tmp_path / "run"
    env = {**os.environ, "RECORDER_TEST_SECONDS": "4", "RECORDER_TEST_USERS": "3"}
    subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", http_target,
                    "--results-dir", str(out), "--csv", str(out / "locust"), "--exit-code-on-error", "0"],
                   cwd=tmp_path, env=env, check=True, timeout=60, capture_output=True)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["schema_version"] == 1
    totals = locust_csv_totals(out / "locust_stats.csv")
    mine = {f"{e['method']} {e['name']}": (e["requests"], e["failures"]) for e in summary["endpoints"]}
    assert mine == {k: v for k, v in totals.items() if k != " Aggregated"}
    assert mine["GET /missing/[id]"][1] == mine["GET /missing/[id]"][0] > 0  # every 404 a failure
    with open(out / "timeseries.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["t_s"]) for r in rows] == list(range(len(rows)))
    assert sum(int(r["requests"]) for r in rows) == summary["requests"]
    with gzip.open(out / "samples.csv.gz", "rt") as f:
        samples = list(csv.DictReader(f))
    assert len(samples) == summary["requests"]  # fewer than the reservoir size: every request kept


def test_generator_saturation_is_recorded_with_its_simulated_start(tmp_path):
    """Above Locust's 90 % CPU warning the generator's own queueing is in every latency: summary.json says when."""
    origin = time.time() - 100.0
    agg = recorder.Aggregator(tmp_path, "r", lag_s=0, seed=1, from_s=8 * 3600.0, k=24.0, origin=lambda: origin)
    agg.note_generator_cpu(42.0, origin + 10.0)
    assert agg.summary()["generator"] == {"cpu_max_percent": 42.0, "saturated_s": 0, "saturated_from_sim_s": None}
    agg.note_generator_cpu(97.5, origin + 50.0)
    agg.note_generator_cpu(91.0, origin + 51.0)
    agg.note_generator_cpu(60.0, origin + 52.0)
    agg.finish(True, "completed")
    g = json.loads((tmp_path / "summary.json").read_text())["generator"]
    assert g == {"cpu_max_percent": 97.5, "saturated_s": 2, "saturated_from_sim_s": 8 * 3600.0 + 50.0 * 24.0}


def test_the_run_summary_warns_when_the_generator_was_saturated(tmp_path):
    import io

    from entload.run import print_summary
    from entload.runstore import RunFolder

    folder = RunFolder(tmp_path)
    folder.write_manifest({"run_id": "r", "complete": True, "compression": 24, "scale": 1})
    summary = {"duration_s": 60, "arrivals": {"target": 1000, "achieved": 1000, "late": 10}, "personas": {},
               "endpoints": [],
               "generator": {"cpu_max_percent": 99.0, "saturated_s": 0, "saturated_from_sim_s": None}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    out = io.StringIO()
    print_summary(folder, out)
    assert "warning" not in out.getvalue()
    summary["generator"].update(saturated_s=42, saturated_from_sim_s=9 * 3600 + 30 * 60)
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    out = io.StringIO()
    print_summary(folder, out)
    assert "above 90 % CPU" in out.getvalue() and "42 s" in out.getvalue() and "09:30" in out.getvalue()
    assert "began late" not in out.getvalue()  # 1 % late: within the tolerance of a healthy run
    summary["arrivals"]["late"] = 300
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    out = io.StringIO()
    print_summary(folder, out)
    assert "30% of the visits began late" in out.getvalue()
