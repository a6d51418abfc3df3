"""`entload run` end to end: real Locust subprocesses, a real HTTP server (or the embedded staging ENT) on
loopback, the run folder checked against the contract and against Locust's own CSV."""

from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, free_port
from test_recorder import LOCUSTFILE, http_target, locust_csv_totals  # noqa: F401  (fixture)

from entload.cli import main as cli_main
from entload.runstore import PLOTS, RUN_FILES

SUMMARY_KEYS = {"schema_version", "complete", "arrivals", "personas", "endpoints", "bytes", "per_visit_bytes",
                "visit_duration_s", "duration_s", "requests_per_s"}  # fmt: skip
ENDPOINT_KEYS = {"name", "method", "requests", "failures", "p50_s", "p90_s", "p95_s", "p99_s", "max_s", "mean_s",
                 "bytes_down", "bytes_up"}  # fmt: skip
MANIFEST_KEYS = {"schema_version", "run_id", "entload_version", "locust_version", "python_version", "git_revision",
                 "command_line", "workload_file", "workload_digest", "host", "enseigno_host", "embedded_staging",
                 "started_at", "ended_at", "compression", "day_in_s", "window", "scale", "day_type", "seed",
                 "workers", "complete", "end_reason"}  # fmt: skip
TS_COLUMNS = ["t_s", "sim_clock_s", "arrivals_target", "arrivals", "late", "dropped", "active_visits", "users", "requests", "failures", "bytes_down", "bytes_up", "p50_s", "p95_s", "p99_s"]  # fmt: skip


def entload_run(tmp_path: Path, *args: str, seconds: float = 4, users: int = 3, wait: bool = True,
                **popen) -> subprocess.Popen | subprocess.CompletedProcess:  # fmt: skip
    accounts = tmp_path / "accounts.csv"
    accounts.write_text("login,password,persona\nstudent.1,secret-not-logged,student\n")
    env = {**os.environ, "RECORDER_TEST_SECONDS": str(seconds), "RECORDER_TEST_USERS": str(users)}
    cmd = [sys.executable, "-m", "entload", "run", "--locustfile", str(LOCUSTFILE), "--accounts", str(accounts),
           "--out", str(tmp_path / "results"), "--no-progress", *args]  # fmt: skip
    if wait:
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=90)
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)  # fmt: skip


def check_folder(run: Path, complete: bool) -> dict:
    """Every file of the contract, with its schema; returns the summary."""
    missing = [n for n, required in RUN_FILES.items() if required and not (run / n).exists()]
    missing += [f"plots/{p}" for p in PLOTS if not (run / "plots" / p).exists()]
    assert not missing, missing
    manifest = json.loads((run / "manifest.json").read_text())
    assert set(manifest) >= MANIFEST_KEYS, MANIFEST_KEYS - set(manifest)
    assert manifest["complete"] is complete and manifest["ended_at"]
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS, SUMMARY_KEYS - set(summary)
    assert summary["schema_version"] == 1 and summary["complete"] is complete
    assert set(summary["arrivals"]) >= {"target", "achieved", "dropped", "late"}
    for e in summary["endpoints"]:
        assert set(e) >= ENDPOINT_KEYS, ENDPOINT_KEYS - set(e)
    for p in summary["personas"].values():
        assert {"visits_started", "visits_completed", "visits_failed", "visits_quota"} <= set(p)
    with open(run / "timeseries.csv", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == TS_COLUMNS
        rows = list(reader)
    assert [int(r[0]) for r in rows] == list(range(len(rows)))
    assert sum(int(r[8]) for r in rows) == sum(e["requests"] for e in summary["endpoints"])
    with gzip.open(run / "samples.csv.gz", "rt") as f:
        assert next(csv.reader(f)) == ["method", "name", "latency_s", "intended_latency_s", "ok"]
    assert "<img" in (run / "report.html").read_text()
    assert "secret-not-logged" not in "".join(p.read_text(errors="replace") for p in run.rglob("*") if p.is_file()
                                              and p.suffix in (".json", ".csv", ".log", ".html"))  # fmt: skip
    return summary


def test_run_writes_a_valid_folder_that_agrees_with_locust(tmp_path, http_target):  # noqa: F811
    proc = entload_run(tmp_path, "--host", http_target, "--run-id", "ok-run", "--day-in", "1h", "--seed", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "results" / "ok-run"
    summary = check_folder(run, complete=True)
    totals = locust_csv_totals(run / "locust_stats.csv")
    mine = {f"{e['method']} {e['name']}": (e["requests"], e["failures"]) for e in summary["endpoints"]}
    assert mine == {k: v for k, v in totals.items() if k != " Aggregated"}
    assert summary["requests"] == totals[" Aggregated"][0] > 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["compression"] == 24 and manifest["seed"] == 3 and manifest["host"] == http_target
    assert "secret" not in " ".join(manifest["command_line"])
    assert "results:" in proc.stdout and str(run) in proc.stdout and "arrivals" in proc.stdout
    assert "findfont" not in proc.stdout + proc.stderr  # no library chatter in a run's output


def test_workers_mode_gives_the_master_all_totals(tmp_path, http_target):  # noqa: F811
    port = free_port()
    proc = entload_run(tmp_path, "--host", http_target, "--run-id", "dist", "--workers", "2", "--metrics-port",
                       str(port), seconds=3)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "results" / "dist"
    # --metrics-port: the exporter rides along (master on P, workers P+1, P+2) and prometheus.yml says so
    prom = (run / "prometheus.yml").read_text()
    assert all(f"127.0.0.1:{p}" in prom for p in (port, port + 1, port + 2)), prom
    assert f"Prometheus metrics (master) at http://127.0.0.1:{port}/metrics" in (run / "locust.log").read_text()
    summary = check_folder(run, complete=True)
    totals = locust_csv_totals(run / "locust_stats.csv")
    assert summary["requests"] == totals[" Aggregated"][0] > 0
    assert summary["failures"] == totals[" Aggregated"][1]
    assert (run / "locust-worker-2.log").exists()


def test_ctrl_c_leaves_a_valid_partial_folder(tmp_path, http_target):  # noqa: F811
    proc = entload_run(tmp_path, "--host", http_target, "--run-id", "cut", seconds=120, wait=False)
    run = tmp_path / "results" / "cut"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait for a few recorded seconds
        ts = run / "timeseries.csv"
        if ts.exists() and len(ts.read_text().splitlines()) >= 4:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    summary = check_folder(run, complete=False)
    assert summary["requests"] > 0
    assert json.loads((run / "manifest.json").read_text())["end_reason"] == "interrupted"
    assert "INCOMPLETE" in out


def test_dead_host_is_recorded_as_failures(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = entload_run(tmp_path, "--host", dead, "--run-id", "dead", seconds=3)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = check_folder(tmp_path / "results" / "dead", complete=True)
    assert summary["requests"] > 0 and summary["failures"] == summary["requests"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, expected", [
    (["--host", "http://192.0.2.10:8080"], "--host: refusing to send load to '192.0.2.10'"),
    (["--host", "ftp://127.0.0.1"], "--host: expected an http(s) URL"),
    (["--day-in", "fast"], "--day-in: expected a duration"),
    (["--from", "25:00"], "--from: expected a time of day"),
    (["--from", "10:00", "--to", "09:00"], "--to: must be later than --from"),
    (["--scale", "zero"], "--scale: expected a positive number"),
    (["--workers", "-1"], "--workers: expected a whole number"),
    (["--seed", "x"], "--seed: expected a whole number"),
    (["--metrics-port", "70000"], "--metrics-port: expected a whole number between 0 and 65535"),
    (["--run-id", "../escape"], "--run-id: expected letters"),
    (["--workload", "/nonexistent.yaml"], "--workload: /nonexistent.yaml: no such file"),
    (["--staging-config", "/nonexistent.yaml"], "--staging-config: /nonexistent.yaml: no such file"),
    (["--abort-on-fail"], "--abort-on-fail: needs --slo FILE"),
])  # fmt: skip
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, args, expected):
    code = cli_main(["run", "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and expected in err, err
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


def test_bad_workload_is_refused_before_anything_starts(tmp_path, capsys):
    bad = tmp_path / "w.yaml"
    bad.write_text("name: x\nvisits_per_dya: 3\n")
    code = cli_main(["run", "--out", str(tmp_path / "out"), "--workload", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(bad) in err, err
    assert not (tmp_path / "out").exists()


def test_real_scenarios_against_the_embedded_staging_ent(tmp_path):
    """The real thing, short: the scenarios' school day (08:00-08:10 in 4 s) against `entload staging`
    started by `entload run` itself; the folder is complete and agrees with Locust's CSV."""
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "entload", "run", "--day-in", "4s", "--from", "08:00", "--to",
                           "08:10", "--scale", "0.02", "--seed", "4", "--out", str(out), "--run-id", "real",
                           "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=110)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = out / "real"
    summary = check_folder(run, complete=True)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["embedded_staging"] is True and manifest["compression"] == 150
    assert manifest["workload_digest"] and manifest["window"] == {"from_s": 28800.0, "to_s": 29400.0}
    totals = locust_csv_totals(run / "locust_stats.csv")
    assert summary["requests"] == totals[" Aggregated"][0] > 0
    assert {"student", "teacher", "parent"} <= set(summary["personas"])
    assert summary["arrivals"]["achieved"] > 0 and summary["arrivals"]["target"] > 0
    assert (run / "staging-access.log").stat().st_size > 0
    # the simulated clock of the rows covers the window
    with open(run / "timeseries.csv", newline="") as f:
        clocks = [float(r["sim_clock_s"]) for r in csv.DictReader(f)]
    assert clocks[0] == 28800.0 and max(clocks) >= 29400.0
    # no credential of the exported accounts reaches the folder (the export stays in a private temp dir)
    assert not list(run.rglob("accounts*"))


def test_input_error_caught_inside_locust_is_one_line_exit_2(tmp_path):
    """The scenarios refuse a malformed accounts file inside Locust: `entload run` passes it on as one line,
    exit 2, and leaves no empty run folder."""
    bad = tmp_path / "accounts.csv"
    bad.write_text("foo;bar\n")
    dead = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run([sys.executable, "-m", "entload", "run", "--host", dead, "--enseigno-host", dead,
                           "--accounts", str(bad), "--day-in", "10s", "--from", "08:00", "--to", "08:10",
                           "--out", str(tmp_path / "out"), "--run-id", "bad", "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and str(bad) in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "bad").exists()


def test_enseigno_defaults_to_the_port_after_a_loopback_host():
    """`entload staging --port P` serves Enseigno on P+1; a remote host gets no guess."""
    from entload.commands.run import _enseigno_next_to

    assert _enseigno_next_to("http://127.0.0.1:8080") == "http://127.0.0.1:8081"
    assert _enseigno_next_to("http://[::1]:8080") == "http://[::1]:8081"
    assert _enseigno_next_to("https://ent.example.org") is None


def test_abort_on_fail_stops_the_run_at_a_broken_threshold(tmp_path, http_target):  # noqa: F811
    """`--slo FILE --abort-on-fail`: an impossible p95 limit stops the run after the grace period, exit 1, and the
    folder says why; without --abort-on-fail the same SLO would not stop it (the run lasts its whole 20 s)."""
    slo = tmp_path / "slo.yaml"
    slo.write_text("thresholds:\n  - endpoint: \"*\"\n    metric: p95\n    max: 0.0000001\n")
    t0 = time.monotonic()
    proc = entload_run(tmp_path, "--host", http_target, "--run-id", "slo", "--slo", str(slo), "--abort-on-fail",
                       "--slo-grace", "2s", seconds=20)  # fmt: skip
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "threshold failed" in proc.stdout and "p95" in proc.stdout
    manifest = json.loads((tmp_path / "results" / "slo" / "manifest.json").read_text())
    assert manifest["end_reason"].startswith("aborted") and manifest["complete"] is False
    assert elapsed < 20, elapsed
