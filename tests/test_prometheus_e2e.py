"""The exporters against real Prometheus servers (Debian packages) on loopback, with a real school-day replay.

One module-scoped stack: the staging ENT, node_exporter (lo only), a Pushgateway, and a Prometheus started with the
scrape config `exporters.metrics.scrape_config` generates (1 s scrape and rule interval, the repo's rules loaded).
A short replay of the real scenarios (`scenarios/locustfile.py` + `exporters.metrics`) runs against it; then
Prometheus must agree with Locust exactly on counts and within a histogram bucket on p95, every PromQL expression
of the rules and the dashboard must return data, and the Pushgateway must hold the run under its own run id.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, free_port, require_binary, stop_process, wait_http

from exporters.metrics import DURATION_BUCKETS, metrics_targets, scrape_config

RULES = REPO / "exporters" / "rules" / "entload.rules.yml"
DASHBOARD = REPO / "exporters" / "grafana" / "entload.json"
RUN_ID = "e2e-replay"
LINK = "1Gbit"

# the real scenarios, plus the exporters (until scenarios/locustfile.py imports exporters.metrics itself)
SCENARIO_LOCUSTFILE = """
from scenarios.locustfile import *  # noqa: F401,F403
import exporters.metrics  # noqa: F401
"""
# a second, tiny run for the Pushgateway: two runs, two ids, two groups
PLAIN_LOCUSTFILE = """
from locust import FastHttpUser, constant, task
import exporters.metrics  # noqa: F401


class Probe(FastHttpUser):
    wait_time = constant(0.01)

    @task
    def health(self):
        self.client.get("/healthz")
"""


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def promql(base: str, expr: str, at: float | None = None) -> list[dict]:
    q = {"query": expr}
    if at is not None:
        q["time"] = f"{at:.3f}"
    body = json.loads(http_get(f"{base}/api/v1/query?{urllib.parse.urlencode(q)}"))
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def scalar(base: str, expr: str, at: float | None = None) -> float:
    result = promql(base, expr, at)
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def promtool_check_metrics(text: bytes) -> str:
    """promtool's linter on an exposition; returns its complaints ('' when clean)."""
    proc = subprocess.run([require_binary("promtool"), "check", "metrics"], input=text, capture_output=True,
                          timeout=30)  # fmt: skip
    complaints = (proc.stdout + proc.stderr).decode().strip()
    return complaints if proc.returncode != 0 or complaints else ""


def samples(text: bytes, name: str) -> dict[tuple, float]:
    """{sorted label pairs: value} of one sample name in an exposition."""
    out = {}
    pattern = re.compile(r"^" + re.escape(name) + r"(?:\{(.*)\})? (\S+)$")
    for line in text.decode().splitlines():
        m = pattern.match(line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or "")))
            out[labels] = float(m.group(2))
    return out


def locust_stats(prefix: Path) -> dict[str, dict]:
    """Locust's own final figures (`--json-file`, written after the last request; its CSV may miss the last second):
    {"METHOD name" or "Aggregated": {"requests", "failures", "response_times" {ms: count}}}."""
    entries = json.loads(Path(f"{prefix}.json").read_text())
    out: dict[str, dict] = {}
    total = {"requests": 0, "failures": 0, "response_times": {}}
    for e in entries:
        times = {float(k): int(v) for k, v in e["response_times"].items()}
        out[f"{e['method']} {e['name']}"] = {"requests": e["num_requests"], "failures": e["num_failures"],
                                              "response_times": times}  # fmt: skip
        total["requests"] += e["num_requests"]
        total["failures"] += e["num_failures"]
        for k, v in times.items():
            total["response_times"][k] = total["response_times"].get(k, 0) + v
    out["Aggregated"] = total
    return out


def locust_percentile(entry: dict, percent: float) -> float:
    """Locust's own percentile algorithm (locust.stats.calculate_response_time_percentile), in milliseconds."""
    n = entry["requests"]
    allowed = int(n * percent)
    seen = 0
    for ms in sorted(entry["response_times"], reverse=True):
        seen += entry["response_times"][ms]
        if n - seen <= allowed:
            return ms
    return 0.0


def locust_rounding(ms: float) -> float:
    """Locust stores response times rounded: to 1 ms below 100 ms, 10 ms below 1 s, 100 ms above (seconds)."""
    return 0.0005 if ms < 100 else 0.005 if ms < 1000 else 0.05


def bucket_bounds(seconds: float) -> tuple[float, float]:
    """The histogram bucket (lower, upper] holding a value."""
    lower = 0.0
    for upper in (*DURATION_BUCKETS, math.inf):
        if seconds <= upper:
            return lower, upper
        lower = upper
    raise AssertionError("unreachable")


class Stack:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], ready_url: str) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        self.procs.append(proc)
        try:
            wait_http(ready_url, 20, proc)
        except Exception:
            raise RuntimeError((self.workdir / f"{name}.log").read_text(errors="replace")[-2000:]) from None
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc, timeout=5)


def locust_cmd(locustfile: Path, host: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", host,
            "--only-summary", "--exit-code-on-error", "0", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory, staging):
    """Prometheus + node_exporter + Pushgateway on free loopback ports, and one finished replay scraped by them."""
    work = tmp_path_factory.mktemp("prom")
    s = Stack(work)
    prom_port, node_port, pgw_port, metrics_port = free_port(), free_port(), free_port(), free_port()
    s.node = f"127.0.0.1:{node_port}"
    s.pushgateway = f"http://127.0.0.1:{pgw_port}"
    s.prometheus = f"http://127.0.0.1:{prom_port}"
    s.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        s.start("node_exporter", [require_binary("prometheus-node-exporter"), f"--web.listen-address={s.node}",
                                  "--collector.disable-defaults", "--collector.netdev",
                                  "--collector.netdev.device-include=^lo$", "--collector.netdev.device-exclude="],
                f"http://{s.node}/metrics")  # fmt: skip
        s.start("pushgateway", [require_binary("prometheus-pushgateway"),
                                f"--web.listen-address=127.0.0.1:{pgw_port}"], s.pushgateway + "/-/ready")  # fmt: skip
        config = scrape_config(RUN_ID, metrics_targets("127.0.0.1", metrics_port), scrape_interval="1s",
                               rule_files=[str(RULES)], node_exporter=s.node)  # fmt: skip
        (work / "prometheus.yml").write_text(config)
        s.start("prometheus", [require_binary("prometheus"), f"--config.file={work / 'prometheus.yml'}",
                               f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                               "--storage.tsdb.retention.time=1h"], s.prometheus + "/-/ready")  # fmt: skip

        accounts = work / "accounts.stats_prefix"
        subprocess.run([sys.executable, "-m", "entload", "staging", "--export-accounts", str(accounts)], cwd=REPO,
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        locustfile = work / "replay_locustfile.py"
        locustfile.write_text(SCENARIO_LOCUSTFILE)
        s.stats_prefix = work / "replay"
        cmd = locust_cmd(locustfile, staging.url, "--enseigno-host", staging.enseigno_url, "--accounts", str(accounts),
                         "--day-type", "closure_school_day", "--from", "08:30", "--to", "09:00", "--day-in", "6s",
                         "--scale", "0.01", "--seed", "7", "--run-id", RUN_ID, "--metrics-port", str(metrics_port),
                         "--metrics-linger", "5", "--link-capacity", LINK, "--pushgateway", s.pushgateway,
                         "--pushgateway-interval", "2", "--json-file", str(s.stats_prefix))  # fmt: skip
        s.start_time = time.time()
        log = open(work / "replay.log", "wb")
        replay = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work)
        s.procs.append(replay)
        s.mid_run, s.mid_time, s.end_of_run = watch_exposition(s.metrics_url, replay, deadline_s=90)
        replay.wait(30)
        s.end_time = time.time()
        assert replay.returncode == 0, (work / "replay.log").read_text(errors="replace")[-3000:]
        s.log = (work / "replay.log").read_text(errors="replace")
        time.sleep(2.5)  # two rule evaluations after the final scrape
        yield s
    finally:
        s.stop()


def watch_exposition(url: str, proc: subprocess.Popen, deadline_s: float) -> tuple[bytes, float, bytes]:
    """Scrape /metrics during the replay: one exposition mid-run (and when), the last one after the users stopped."""
    mid = end = b""
    mid_time = 0.0
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            text = http_get(url, timeout=2)
        except OSError:
            time.sleep(0.1)
            continue
        requests = sum(samples(text, "entload_requests_total").values())
        users = samples(text, "entload_virtual_users").get((), 0)
        if not mid and requests >= 200 and users > 0:
            mid, mid_time = text, time.time()
        if mid and users == 0:
            end = text  # the shape stopped every user: the totals are final (the process lingers for a scrape)
        time.sleep(0.2)
    return mid, mid_time, end


def test_exposition_passes_promtool_mid_run_and_at_the_end(stack):
    assert stack.mid_run, "no exposition caught mid-run"
    assert stack.end_of_run, "no exposition caught after the users stopped (is --metrics-linger honoured?)"
    assert promtool_check_metrics(stack.mid_run) == ""
    assert promtool_check_metrics(stack.end_of_run) == ""
    # and the end exposition holds the whole run: Locust's own total
    total = locust_stats(stack.stats_prefix)["Aggregated"]["requests"]
    assert sum(samples(stack.end_of_run, "entload_requests_total").values()) == total


def test_prometheus_counts_exactly_what_locust_counted(stack):
    stats = locust_stats(stack.stats_prefix)
    total = stats["Aggregated"]["requests"]
    failures = stats["Aggregated"]["failures"]
    assert total > 1000, "the replay was too small to say anything"
    at = time.time()
    sel = f'run_id="{RUN_ID}"'
    # counters only grow: the last value each series reached is its max over the run
    got = scalar(stack.prometheus, f"sum(max_over_time(entload_requests_total{{{sel}}}[5m]))", at)
    print(f"requests: Prometheus {got:.0f}, Locust {total} ({failures} failed)")
    assert got == total
    got_failed = promql(stack.prometheus, f'sum(max_over_time(entload_requests_total{{{sel},outcome!="ok"}}[5m]))', at)
    assert (float(got_failed[0]["value"][1]) if got_failed else 0.0) == failures
    # per endpoint too: Locust's "GET /conversation/message/[id]" is our endpoint label, never a raw id
    per_endpoint = promql(stack.prometheus, f"sum by (method, endpoint) (max_over_time(entload_requests_total{{{sel}}}[5m]))",
                          at)  # fmt: skip
    ours = {f'{r["metric"]["method"]} {r["metric"]["endpoint"]}': float(r["value"][1]) for r in per_endpoint}
    theirs = {k: float(v["requests"]) for k, v in stats.items() if k != "Aggregated"}
    assert ours == theirs
    assert not any(re.search(r"/\d{3,}", name) for name in ours)


def test_histogram_p95_agrees_with_locust_within_a_bucket(stack):
    stats = locust_stats(stack.stats_prefix)
    at = time.time()
    sel = f'run_id="{RUN_ID}"'
    checked = 0
    for key, row in stats.items():
        if row["requests"] < 100:
            continue  # a p95 of a handful of requests is one request: no bucket says much about it
        if key == "Aggregated":
            expr = f"histogram_quantile(0.95, sum by (le) (max_over_time(entload_request_duration_seconds_bucket{{{sel}}}[5m])))"
        else:
            method, endpoint = key.split(" ", 1)
            expr = (f"histogram_quantile(0.95, sum by (le) (max_over_time(entload_request_duration_seconds_bucket"
                    f'{{{sel},method="{method}",endpoint="{endpoint}"}}[5m])))')  # fmt: skip
        prom_p95 = scalar(stack.prometheus, expr, at)
        locust_ms = locust_percentile(row, 0.95)
        locust_p95 = locust_ms / 1000.0
        lower, upper = bucket_bounds(prom_p95)
        slack = locust_rounding(locust_ms)
        print(f"p95 {key}: Prometheus {prom_p95 * 1000:.1f} ms in bucket ({lower * 1000:g}, {upper * 1000:g}] ms, "
              f"Locust {locust_ms:g} ms ({row['requests']} requests)")
        assert lower - slack <= locust_p95 <= upper + slack, (key, prom_p95, locust_p95, (lower, upper))
        checked += 1
    assert checked >= 3


def test_every_rule_and_dashboard_expression_returns_data(stack):
    """Each PromQL expression of exporters/rules and of the Grafana dashboard, run against the replay's data."""
    import yaml

    exprs: list[tuple[str, str]] = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            expr = rule["expr"]
            if "alert" in rule:  # an alert returns data only while firing: ask the comparison as 0/1 instead
                expr = re.sub(r"\s*>\s*([0-9.]+)\s*$", r" > bool \1", expr.strip())
                assert " bool " in expr, rule["alert"]
            exprs.append((rule.get("record") or rule["alert"], expr))
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append((panel["title"], target["expr"]))
    assert len(exprs) >= 30
    # mid-run: gauges are live (after the run they go stale), rates have a window. On a starved machine a rule
    # evaluation can be late, so each expression is asked at a few instants of the run, from mid-run on.
    instants = [t for t in (stack.mid_time + d for d in (3.0, 5.0, 8.0, 12.0)) if t < stack.end_time] or [
        stack.mid_time + 3.0]
    missing = []
    for where, expr in exprs:
        query = (expr.replace("$__rate_interval", "1m").replace("$__interval", "5s")
                 .replace("$run", ".*").replace("$instance", ".*").replace("$endpoint", ".*"))  # fmt: skip
        if not any(promql(stack.prometheus, query, at) for at in instants):
            missing.append(f"{where}: {query}")
    assert not missing, "expressions without data:\n" + "\n".join(missing)
    # the variable queries of the dashboard find this run
    runs = json.loads(http_get(f"{stack.prometheus}/api/v1/label/run_id/values?match[]=entload_build_info"))["data"]
    assert RUN_ID in runs


def test_lo_bits_per_second_from_node_exporter_and_the_recording_rule(stack):
    """The link rules on a real node_exporter: lo's bits/s recorded, and utilisation against the declared link."""
    sel = 'device="lo"'
    at = stack.end_time
    bits = promql(stack.prometheus, f"max_over_time(instance_device:node_network_transmit_bits:rate1m{{{sel}}}[1m])",
                  at)  # fmt: skip
    assert bits and float(bits[0]["value"][1]) > 0
    raw = scalar(stack.prometheus, f"8 * max_over_time(rate(node_network_transmit_bytes_total{{{sel}}}[1m])[1m:1s])",
                 at)  # fmt: skip
    assert float(bits[0]["value"][1]) == pytest.approx(raw, rel=0.35)  # same data, different evaluation instants
    capacity = scalar(stack.prometheus, f'max_over_time(entload_link_capacity_bits_per_second{{run_id="{RUN_ID}"}}[5m])',
                      at)  # fmt: skip
    assert capacity == 1e9
    util = promql(stack.prometheus, f"max_over_time(instance_device:link_utilisation:ratio_rate1m{{{sel}}}[1m])", at)
    assert util and 0 < float(util[0]["value"][1]) == pytest.approx(float(bits[0]["value"][1]) / 1e9, rel=0.5)


def test_pushgateway_keeps_two_runs_apart(stack, staging, tmp_path):
    locustfile = tmp_path / "probe.py"
    locustfile.write_text(PLAIN_LOCUSTFILE)
    csv_prefix = tmp_path / "probe"
    probe = subprocess.run(locust_cmd(locustfile, staging.url, "-u", "2", "-r", "2", "-t", "2s", "--run-id", "e2e-second",
                                      "--pushgateway", stack.pushgateway, "--json-file", str(csv_prefix)),
                           cwd=tmp_path, capture_output=True, timeout=60)  # fmt: skip
    log = probe.stderr.decode(errors="replace")[-2000:]
    assert probe.returncode == 0, log
    groups = json.loads(http_get(stack.pushgateway + "/api/v1/metrics"))["data"]
    by_run = {}
    for g in groups:
        labels = g["labels"]
        assert labels["job"] == "entload"
        reqs = g.get("entload_requests_total", {}).get("metrics", [])
        by_run[labels["run_id"]] = sum(float(m["value"]) for m in reqs)
    assert set(by_run) >= {RUN_ID, "e2e-second"}, (by_run, log)
    assert by_run[RUN_ID] == locust_stats(stack.stats_prefix)["Aggregated"]["requests"]
    assert by_run["e2e-second"] == locust_stats(csv_prefix)["Aggregated"]["requests"] > 0, log
