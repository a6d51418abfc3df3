"""exporters/metrics.py and pushgateway.py: labels stay bounded, the exposition is right, distributed sums add up.

The label and exposition checks call the module directly (pure functions, no Locust); the cardinality and the
distributed checks run real Locust processes against the real staging ENT.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import REPO, free_port, require_binary, stop_process

from exporters.metrics import (
    OTHER,
    BoundedLabel,
    RunMetrics,
    endpoint_label,
    metrics_port_for,
    metrics_targets,
    parse_bits_per_second,
    scrape_config,
)
from exporters.pushgateway import check_url, grouping_key


def sample_lines(text: bytes) -> list[str]:
    return [ln for ln in text.decode().splitlines() if ln and not ln.startswith("#")]


def value_sum(text: bytes, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text.decode(), re.M))


# -- labels ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("/conversation/message/[id]", "/conversation/message/[id]"),  # a template stays as it is
        ("/conversation/message/123456", "/conversation/message/[id]"),
        ("/conversation/message/5f1c2a9be4b0c81d9a3e7f20", "/conversation/message/[id]"),  # ObjectId
        ("/rack/get/0b7e1f4c-3d2a-4f5e-9c8b-7a6d5e4f3c2b", "/rack/get/[id]"),  # UUID
        ("http://127.0.0.1:8080/conversation/list/INBOX?page=3&unread=true", "/conversation/list/INBOX"),
        ("/schoolbook/list/0/4012", "/schoolbook/list/[id]/[id]"),
        ("/users/eleve.dupont@ent.example/avatar", "/users/[id]/avatar"),
        ("/conversation/message/m-I6-0-17", "/conversation/message/[id]"),  # the staging ENT's ids
        ("/api/exercises/ex-44-3/answers", "/api/exercises/[id]/answers"),
        ("/api/v2/paths", "/api/v2/paths"),  # a version segment is part of the route
        ("/auth/oauth2/userinfo", "/auth/oauth2/userinfo"),
        ("/timeline/lastNotifications", "/timeline/lastNotifications"),
        ("login", "login"),  # a non-path name (custom Locust request) is kept
    ],
)
def test_endpoint_label_is_a_route_template(name, label):
    assert endpoint_label(name) == label


def test_bounded_label_sends_newcomers_past_the_cap_to_other():
    guard = BoundedLabel("endpoint", cap=3, normalise=endpoint_label)
    assert [guard(f"/route{i}/x") for i in range(5)] == ["/route0/x", "/route1/x", "/route2/x", OTHER, OTHER]
    assert guard("/route1/x") == "/route1/x"  # known values keep their own label
    assert guard.overflowed == 2


def test_response_bytes_of_geventhttpclient_headers_match_their_lines():
    """The fast path over geventhttpclient's Headers storage counts what iterating its lines counts, body from
    Content-Length (a repeated one, or a plain mapping, takes the line-by-line way)."""
    from geventhttpclient.header import Headers

    from exporters.metrics import response_wire_bytes

    class Plain:  # a Mapping that is not a dict: the generic path
        def __init__(self, lines):
            self.lines = lines

        def items(self):
            return iter(self.lines)

        def __bool__(self):
            return bool(self.lines)

    def resp(headers):
        return type("R", (), {"headers": headers})()

    for lines, length in (
        ([("Content-Type", "text/html"), ("Content-Length", "512")], 9),
        ([("Set-Cookie", "a=1"), ("set-cookie", "b=22"), ("X-Y", "")], 40),  # no Content-Length: what was read
        ([("Content-Length", "x"), ("Date", "now")], 3),  # unparsable: what was read
        ([("Content-Length", "7"), ("content-length", "8")], 3),  # repeated: the first line
    ):
        fast = response_wire_bytes(resp(Headers(lines)), length)
        assert fast == response_wire_bytes(resp(Plain(lines)), length), lines
    assert response_wire_bytes(resp(Headers([("Content-Length", "512")])), 9) == 17 + 14 + 3 + 4 + 2 + 512
    assert response_wire_bytes(None, 9) == 9
    assert response_wire_bytes(resp(Headers()), 9) == 9  # no header lines: what was read


def test_link_capacity_parsing():
    assert parse_bits_per_second("1Gbit") == 1e9
    assert parse_bits_per_second("500 Mbit/s") == 5e8
    assert parse_bits_per_second("125MB/s") == 1e9  # bytes, x8
    assert parse_bits_per_second("2.5e9") == 2.5e9
    assert parse_bits_per_second("") is None
    with pytest.raises(ValueError, match="--link-capacity: expected a rate"):
        parse_bits_per_second("fast")


def test_pushgateway_url_and_grouping_key():
    assert check_url("http://127.0.0.1:9091/") == "http://127.0.0.1:9091"
    with pytest.raises(ValueError, match="--pushgateway: expected a URL"):
        check_url("127.0.0.1:9091")
    assert grouping_key("run-1", "worker-0") == {"run_id": "run-1", "instance": "worker-0"}
    with pytest.raises(ValueError, match="--run-id"):
        grouping_key("", "local")


# -- exposition --------------------------------------------------------------------------------------------------


class FakeResponse:
    """Shaped like geventhttpclient's response as Locust's FastHttpUser hands it to the request event."""

    def __init__(self, status=200, headers=None, sent="GET /x HTTP/1.1\r\nHost: h\r\n\r\n", payload=b""):
        self.status_code = status
        self.headers = headers if headers is not None else {"Content-Type": "text/html", "Content-Length": "1000"}
        self._sent_request = sent
        self.request = type("Req", (), {"payload": payload})()


def populated() -> RunMetrics:
    m = RunMetrics(role="local", link_capacity_bps=1e9, user_count=lambda: 7)
    for i in range(300):
        m.on_request("GET", f"/conversation/message/{i}", 3.0 + i, 1000, response=FakeResponse(),
                     context={"persona": "student", "lateness_s": 0.5})  # fmt: skip
    m.on_request("POST", "/rack", 40.0, 20, response=FakeResponse(413), context={"request_bytes": 3_000_000},
                 exception=RuntimeError("413"))  # fmt: skip
    m.on_request("POST", "/auth/login", 9.0, 20, response=FakeResponse(200), exception=RuntimeError("too many users"))
    m.on_request("GET", "/timeline/lastNotifications", 30_000.0, 0, response=None, exception=ConnectionError("reset"))
    m.on_visit_started("student", late=True)
    m.on_visit_started("teacher")
    m.on_visit_completed("student", "ok", 42.0)
    m.on_arrival_dropped("parent")
    m.on_arrival_target(3.5, 0.35)
    return m


def test_fast_exposition_equals_prometheus_client_on_the_same_data():
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    m = populated()

    def parsed(text: bytes):
        return sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                      for f in text_string_to_metric_families(text.decode()) for s in f.samples
                      if not s.name.startswith("process_"))  # fmt: skip

    assert parsed(m.render()) == parsed(generate_latest(m.registry))


def test_exposition_values_and_promtool_lint():
    m = populated()
    text = m.render()
    out = subprocess.run([require_binary("promtool"), "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), (out.stdout + out.stderr).decode()
    lines = "\n".join(sample_lines(text))
    assert 'entload_requests_total{endpoint="/conversation/message/[id]",method="GET",outcome="ok"} 300' in lines
    assert 'entload_requests_total{endpoint="/rack",method="POST",outcome="http_4xx"} 1' in lines
    assert 'entload_requests_total{endpoint="/auth/login",method="POST",outcome="quota"} 1' in lines
    assert 'entload_requests_total{endpoint="/timeline/lastNotifications",method="GET",outcome="error"} 1' in lines
    # wire bytes: status line + headers + Content-Length body; request head as sent + given request_bytes
    head = 17 + len("Content-Type") + len("text/html") + 4 + len("Content-Length") + len("1000") + 4 + 2
    assert value_sum(text, "entload_response_bytes_total") == 302 * (head + 1000) + 0  # the reset had no answer
    sent = len("GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert value_sum(text, "entload_request_bytes_total") == 300 * sent + 3_000_000 + sent  # login: the head only
    # intended-start latency adds the visit's lateness; 30 s lands below the 60 s bucket, not in +Inf
    assert 'entload_request_intended_duration_seconds_bucket{endpoint="/conversation/message/[id]",method="GET",le="0.5"} 0' in lines
    assert 'entload_request_duration_seconds_bucket{endpoint="/timeline/lastNotifications",method="GET",le="30"} 1' in lines
    assert "entload_link_capacity_bytes_per_second 125000000" in lines.replace(".0\n", "\n") + "\n" or \
        "entload_link_capacity_bytes_per_second 1.25e+08" in lines  # fmt: skip
    assert 'entload_active_visits{persona="student"} 0' in lines
    assert 'entload_active_visits{persona="teacher"} 1' in lines
    assert 'entload_arrivals_dropped_total{persona="parent"} 1' in lines
    assert 'entload_arrivals_dropped_total{persona="student"} 0' in lines  # known personas start at 0, not absent
    assert "entload_virtual_users 7" in lines


def test_scrape_config_is_valid_for_prometheus(tmp_path):
    targets = metrics_targets("127.0.0.1", 9646, workers=2)
    assert targets == ["127.0.0.1:9646", "127.0.0.1:9647", "127.0.0.1:9648"]
    assert [metrics_port_for("worker", 9646, i) for i in range(2)] == [9647, 9648]
    assert metrics_port_for("master", 9646) == 9646 and metrics_port_for("worker", 0, 3) == 0
    rules = REPO / "exporters" / "rules" / "entload.rules.yml"
    text = scrape_config('run "1"', targets, rule_files=[str(rules)], node_exporter="127.0.0.1:9100")
    parsed = yaml.safe_load(text)
    assert parsed["scrape_configs"][0]["static_configs"][0] == {"targets": targets, "labels": {"run_id": 'run "1"'}}
    (tmp_path / "prometheus.yml").write_text(text)
    out = subprocess.run([require_binary("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, timeout=30)  # fmt: skip
    assert out.returncode == 0, (out.stdout + out.stderr).decode()


def test_rules_pass_promtool_check_and_their_unit_tests():
    promtool = require_binary("promtool")
    rules_dir = REPO / "exporters" / "rules"
    check = subprocess.run([promtool, "check", "rules", *map(str, sorted(rules_dir.glob("*.yml")))],
                           capture_output=True, timeout=30)  # fmt: skip
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    tests = sorted((rules_dir / "tests").glob("*.yml"))
    assert tests
    run = subprocess.run([promtool, "test", "rules", *map(str, tests)], capture_output=True, timeout=60)
    assert run.returncode == 0, run.stdout.decode() + run.stderr.decode()
    # every recording rule and alert is exercised by a unit test
    names = {r.get("record") or r["alert"] for g in yaml.safe_load((rules_dir / "entload.rules.yml").read_text())["groups"]
             for r in g["rules"]}  # fmt: skip
    tested = set()
    for t in tests:
        for case in yaml.safe_load(t.read_text())["tests"]:
            tested |= {c["expr"].split("{")[0].strip() for c in case.get("promql_expr_test", [])}
            tested |= {c["alertname"] for c in case.get("alert_rule_test", []) if c.get("exp_alerts")}
    assert names <= tested, f"rules without a unit test: {sorted(names - tested)}"


# -- real Locust runs --------------------------------------------------------------------------------------------

IDS_LOCUSTFILE = """
import itertools, os, uuid
import gevent
from locust import FastHttpUser, constant, events, task
from locust.exception import StopUser
import exporters.metrics  # noqa: F401

N = 10_000
counter = itertools.count()
OUT = os.environ["EXPOSITION_DIR"]


def dump(environment, name):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(environment.entload_metrics.metrics.render())


class Reader(FastHttpUser):
    wait_time = constant(0)

    @task
    def read_message(self):
        i = next(counter)
        if i == 100:
            dump(self.environment, "after-100.txt")
        if i >= N:
            if i == N:  # quit from a greenlet of its own: runner.quit() kills every user, this one included
                gevent.spawn(self.environment.runner.quit)
            raise StopUser()
        kind = i % 4  # ids as ENTs make them: numbers, ObjectIds, UUIDs, the staging ENT's own (m-I6-0-17)
        mid = (str(10_000_000 + i) if kind == 0 else f"{i:024x}" if kind == 1 else str(uuid.UUID(int=i))
               if kind == 2 else f"m-I{i % 97}-{i // 97}-{i % 13}")
        if i % 2:  # as the scenarios do: the route template as the name
            self.client.get(f"/conversation/message/{mid}", name="/conversation/message/[id]")
        else:  # a locustfile that forgot name=: raw URLs must not become labels either
            self.client.get(f"/conversation/message/{mid}?unread=true")


@events.quitting.add_listener
def _end(environment, **_kw):
    dump(environment, "end.txt")
"""


def test_ten_thousand_message_ids_add_no_series(tmp_path, staging):
    (tmp_path / "ids.py").write_text(IDS_LOCUSTFILE)
    run = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(tmp_path / "ids.py"), "--headless", "--host", staging.url,
         "-u", "8", "-r", "8", "-t", "40s", "--only-summary", "--exit-code-on-error", "0",
         "--json-file", str(tmp_path / "locust")],
        cwd=tmp_path, capture_output=True, timeout=120, env={**os.environ, "EXPOSITION_DIR": str(tmp_path)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    early, end = (tmp_path / "after-100.txt").read_bytes(), (tmp_path / "end.txt").read_bytes()
    locust_entries = json.loads((tmp_path / "locust.json").read_text())
    requests = sum(e["num_requests"] for e in locust_entries)
    assert requests >= 10_000
    assert len(locust_entries) > 3000  # Locust's own stats did grow with the raw URLs: the ids were distinct
    assert value_sum(end, "entload_requests_total") == requests
    assert len(sample_lines(end)) == len(sample_lines(early))  # no new series after 100 requests
    endpoints = set(re.findall(r'endpoint="([^"]*)"', end.decode()))
    assert endpoints == {"/conversation/message/[id]"}


PROBE_LOCUSTFILE = """
from locust import FastHttpUser, constant, task
import exporters.metrics  # noqa: F401


class Probe(FastHttpUser):
    wait_time = constant(0.005)

    @task(3)
    def health(self):
        self.client.get("/healthz")

    @task(1)
    def css(self):
        self.client.get("/assets/css/ent.css")
"""


def fetch(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read()
    except OSError:
        return None


def free_port_run(n: int, avoid: int) -> int:
    """A port P with P..P+n-1 all free on 127.0.0.1 (the master's and the workers' /metrics ports)."""
    for _ in range(50):
        base = free_port()
        socks = []
        try:
            for p in range(base, base + n):
                if p == avoid:
                    raise OSError("taken")
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def test_distributed_workers_serve_their_own_port_and_sum_to_the_master_total(tmp_path, staging):
    (tmp_path / "probe.py").write_text(PROBE_LOCUSTFILE)
    master_port = free_port()
    base = free_port_run(3, avoid=master_port)
    common = [sys.executable, "-m", "locust", "-f", str(tmp_path / "probe.py"), "--host", staging.url,
              "--metrics-port", str(base), "--metrics-linger", "2"]  # fmt: skip
    master = subprocess.Popen(common + ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                                        str(master_port), "--headless", "--expect-workers", "2", "-u", "4", "-r", "4",
                                        "-t", "3s", "--only-summary", "--json-file", str(tmp_path / "master")],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "master.log", "wb"))  # fmt: skip
    workers = [subprocess.Popen(common + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"w{i}.log", "wb"))
               for i in range(2)]  # fmt: skip
    try:
        last: dict[int, bytes] = {}
        master_text = None
        deadline = time.monotonic() + 40
        while master.poll() is None and time.monotonic() < deadline:
            for i in range(2):
                text = fetch(f"http://127.0.0.1:{base + 1 + i}/metrics")
                if text is not None:
                    last[i] = text
            master_text = fetch(f"http://127.0.0.1:{base}/metrics") or master_text
            time.sleep(0.2)
        master.wait(30)
        assert master.returncode == 0, (tmp_path / "master.log").read_text(errors="replace")[-2000:]
        logs = "\n".join((tmp_path / f).read_text(errors="replace")[-800:] for f in ("master.log", "w0.log", "w1.log"))
        assert set(last) == {0, 1}, "each worker serves /metrics on base + 1 + its index\n" + logs
        total = sum(e["num_requests"] for e in json.loads((tmp_path / "master.json").read_text()))
        per_worker = [value_sum(last[i], "entload_requests_total") for i in range(2)]
        assert all(n > 0 for n in per_worker)
        assert sum(per_worker) == total
        # the master serves its own gauges, never request counts (sum() over a run would double them)
        assert master_text is not None and b'role="master"' in master_text
        assert b"entload_requests_total" not in master_text and b"entload_workers 2" in master_text
        assert all(b'role="worker"' in last[i] for i in range(2))
    finally:
        for p in (*workers, master):
            stop_process(p, timeout=5)


def test_bad_metrics_options_fail_with_one_line(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE_LOCUSTFILE)
    run = subprocess.run([sys.executable, "-m", "locust", "-f", str(tmp_path / "probe.py"), "--headless", "--host",
                          "http://127.0.0.1:9", "-t", "1s", "--link-capacity", "fast"],
                         cwd=tmp_path, capture_output=True, timeout=60)  # fmt: skip
    err = run.stderr.decode()
    assert run.returncode == 2
    assert "--link-capacity: expected a rate such as 1Gbit" in err
    assert "Traceback" not in err
    Path(tmp_path / "probe.py").unlink()
