"""Fault knobs, quotas and bad input of the staging ENT, on real servers on ephemeral loopback ports.

Random faults are checked against their configured ratio with a binomial tolerance of 4 standard
deviations (two-sided false-alarm probability about 6e-5 per check), never by loosening the ratio.
Delays are checked from below only: a sleep never ends early, while an upper bound would flake on a
loaded machine.
"""

from __future__ import annotations

import math
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from conftest import REPO, free_port
from test_staging import directory, login

ISSUE_EXAMPLE = """\
faults:
  - route: "/conversation/*"
    slowdown: 1.3          # every response on these routes takes 1.3x as long
    added_latency_ms: 0
    error_ratio: 0.0
    reset_ratio: 0.0
session_quota: 5000
"""


def within_4_sigma(hits: int, n: int, p: float) -> bool:
    return abs(hits - n * p) <= 4 * math.sqrt(n * p * (1 - p))


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """One server started with the issue's example config, verbatim."""
    from conftest import start_staging, stop_process

    work = tmp_path_factory.mktemp("faults")
    cfg = work / "example.yaml"
    cfg.write_text(ISSUE_EXAMPLE)
    s = start_staging(work, "--config", str(cfg))
    yield s
    stop_process(s.proc)


@pytest.fixture
def admin(faulty):
    """PUT runtime settings; the example's settings are restored after each test."""
    original = requests.get(f"{faulty.url}/__admin/faults", timeout=10).json()

    def put(body: dict) -> dict:
        r = requests.put(f"{faulty.url}/__admin/faults", json=body, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    yield put
    put(original)


def timed_get(s: requests.Session, url: str) -> float:
    t0 = time.perf_counter()
    r = s.get(url, timeout=30)
    assert r.status_code == 200
    return time.perf_counter() - t0


def test_issue_example_is_accepted_and_slowdown_1_3_is_observed(faulty):
    runtime = requests.get(f"{faulty.url}/__admin/faults", timeout=10).json()
    assert runtime["session_quota"] == 5000
    assert runtime["faults"][0]["route"] == "/conversation/*" and runtime["faults"][0]["slowdown"] == 1.3
    s = login(faulty.url, "student.11")
    # /conversation/list/* has a base service time of 40 ms (defaults.yaml), so 1.3x holds it 12 ms longer
    held = [timed_get(s, f"{faulty.url}/conversation/list/INBOX?page=0") for _ in range(10)]
    assert min(held) >= 0.012 - 0.002, held


def test_slowdown_10x_and_added_latency(faulty, admin):
    admin({"faults": [{"route": "/conversation/list/*", "slowdown": 10},
                      {"route": "/actualites/*", "added_latency_ms": 150}]})
    s = login(faulty.url, "student.12")
    slowed = [timed_get(s, f"{faulty.url}/conversation/list/INBOX?page=0") for _ in range(4)]
    assert min(slowed) >= 9 * 0.040 - 0.002, slowed  # (10 - 1) x 40 ms
    delayed = [timed_get(s, f"{faulty.url}/actualites/list?page=0&pageSize=20") for _ in range(4)]
    assert min(delayed) >= 0.150 - 0.002, delayed


def test_error_ratio(faulty, admin):
    p, n = 0.25, 400
    admin({"faults": [{"route": "/conversation/count/*", "error_ratio": p}]})
    s = login(faulty.url, "student.13")
    statuses = [s.get(f"{faulty.url}/conversation/count/INBOX?unread=true", timeout=10) for _ in range(n)]
    errors = [r for r in statuses if r.status_code == 500]
    assert all(r.json() == {"error": "injected"} for r in errors)
    assert all(r.status_code in (200, 500) for r in statuses)
    assert within_4_sigma(len(errors), n, p), f"{len(errors)} errors in {n} at ratio {p}"
    # other routes are untouched
    assert all(s.get(f"{faulty.url}/conversation/list/INBOX", timeout=10).status_code == 200 for _ in range(20))


def test_reset_ratio(faulty, admin):
    p, n = 0.2, 300
    admin({"faults": [{"route": "/timeline/*", "reset_ratio": p}]})
    s = login(faulty.url, "student.14")
    cookies = s.cookies.get_dict()
    resets = 0
    for _ in range(n):
        try:
            r = requests.get(f"{faulty.url}/timeline/lastNotifications?page=0", cookies=cookies, timeout=10)
            assert r.status_code == 200
        except requests.ConnectionError:
            resets += 1
    assert within_4_sigma(resets, n, p), f"{resets} resets in {n} at ratio {p}"
    assert requests.get(f"{faulty.url}/healthz", timeout=10).status_code == 200


def test_news_feed_switch(faulty, admin):
    s = login(faulty.url, "student.15")
    assert s.get(f"{faulty.url}/timeline/lastNotifications", timeout=10).json()["results"]
    admin({"news_feed_enabled": False})
    assert s.get(f"{faulty.url}/timeline/lastNotifications", timeout=10).json()["results"] == []
    welcome = requests.get(f"{faulty.url}/auth/configure/welcome", timeout=10).json()
    assert welcome == {"welcomeMessage": "", "enabled": False}
    assert 'class="news"' not in requests.get(f"{faulty.url}/auth/login", timeout=10).text
    admin({"news_feed_enabled": True})
    assert len(s.get(f"{faulty.url}/timeline/lastNotifications", timeout=10).json()["results"]) == 25


def test_admin_refuses_bad_settings(faulty):
    for body, key in (({"faults": [{"route": "/x", "error_ratio": 2}]}, "faults[0].error_ratio"),
                      ({"faults": [{"route": "/x", "delay": 1}]}, "faults[0].delay"),
                      ({"sizes": {}}, "sizes"),
                      ({"session_quota": "many"}, "session_quota")):
        r = requests.put(f"{faulty.url}/__admin/faults", json=body, timeout=10)
        assert r.status_code == 400 and key in r.json()["detail"], r.text
    stats = requests.get(f"{faulty.url}/__admin/stats", timeout=10).json()
    assert stats["requests"] > 0 and stats["session_quota"] == 5000


def test_session_quota_and_upload_quota(staging_factory, tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text("session_quota: 2\nupload_quota_mib: 1\nupload_quota_window_s: null\nlimits:\n  drafts: 20\n")
    st = staging_factory("--config", str(cfg))
    a = login(st.url, "student.1")
    login(st.url, "student.2")
    page = requests.get(f"{st.url}/auth/login", timeout=10)
    assert page.status_code == 200 and "too many users" in page.text
    d = directory()
    third = requests.post(f"{st.url}/auth/login", data={"email": "student.3", "password": d.password("student.3")},
                          allow_redirects=False, timeout=10)
    assert third.status_code == 200 and "too many users" in third.text and "oneSessionId" not in third.cookies
    tok = requests.post(f"{st.url}/auth/oauth2/token", data={
        "grant_type": "password", "username": "student.3", "password": d.password("student.3")}, timeout=10)
    assert tok.status_code == 509 and tok.json() == {"error": "quota_overflow"}
    # uploads: 1 MiB a user, counted across routes
    chunk = 600 * 1024
    ok = a.post(f"{st.url}/workspace/document", files={"file": ("a.bin", b"x" * chunk)}, timeout=10)
    assert ok.status_code == 200
    over = a.post(f"{st.url}/conversation/message/m-1/attachment", files={"file": ("b.bin", b"x" * chunk)}, timeout=10)
    assert over.status_code == 413 and over.json() == {"error": "quota"}
    big = a.post(f"{st.url}/workspace/document", files={"file": ("c.bin", b"x" * (3 << 20))}, timeout=10)
    assert big.status_code == 413 and big.json() == {"error": "quota"}
    assert a.get(f"{st.url}/auth/oauth2/userinfo", timeout=10).status_code == 200  # the connection survives
    # casier: the deposit counts against each recipient; one over quota is a failure, not an error
    r = a.post(f"{st.url}/rack", files={"file": ("d.bin", b"x" * chunk)}, data={"users": "s-1,t-0"}, timeout=10)
    assert r.json() == {"success": 1, "failure": 1}
    # the draft store is bounded: past `limits.drafts` the oldest draft is forgotten (memory stays flat)
    first = a.post(f"{st.url}/conversation/draft", json={"subject": "kept?"}, timeout=10).json()["id"]
    assert a.get(f"{st.url}/conversation/message/{first}", timeout=10).json()["subject"] == "kept?"
    for _ in range(20):
        a.post(f"{st.url}/conversation/draft", json={"subject": "newer"}, timeout=10).raise_for_status()
    assert a.get(f"{st.url}/conversation/message/{first}", timeout=10).json()["subject"] != "kept?"
    # logout frees a live session; the quota can also change at run time
    a.get(f"{st.url}/auth/logout", timeout=10)
    assert "too many users" not in requests.get(f"{st.url}/auth/login", timeout=10).text
    login(st.url, "student.3")
    requests.put(f"{st.url}/__admin/faults", json={"session_quota": None}, timeout=10).raise_for_status()
    login(st.url, "student.4")


def test_upload_quota_window_starts_again(staging_factory, tmp_path):
    cfg = tmp_path / "window.yaml"
    cfg.write_text("upload_quota_mib: 1\nupload_quota_window_s: 1\n")
    st = staging_factory("--config", str(cfg))
    s = login(st.url, "teacher.2")

    def upload():
        return s.post(f"{st.url}/workspace/document", files={"file": ("a.bin", b"x" * (700 * 1024))}, timeout=10)

    time.sleep(1 - time.time() % 1)  # start at the beginning of a window
    assert upload().status_code == 200
    assert upload().status_code == 413
    time.sleep(1.05 - time.time() % 1)  # the next window
    assert upload().status_code == 200


BAD_CONFIGS = [
    ("sesion_quota: 5\n", "unknown key 'sesion_quota'"),
    ("session_quota: many\n", "key 'session_quota'"),
    ('faults:\n  - route: "/conversation/*"\n    eror_ratio: 0.1\n', "unknown key 'faults[0].eror_ratio'"),
    ('faults:\n  - route: "/x"\n    error_ratio: 1.5\n', "key 'faults[0].error_ratio'"),
    ('faults:\n  - route: "/x"\n    slowdown: fast\n', "key 'faults[0].slowdown'"),
    ("sizes:\n  login_pag: 3\n", "unknown key 'sizes.login_pag'"),
    ("news_feed_enabled: 3\n", "key 'news_feed_enabled'"),
    ("upload_quota_window_s: -1\n", "key 'upload_quota_window_s'"),
    ("faults: [\n", "not valid YAML"),
    ("- 1\n- 2\n", "expected a mapping"),
]


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "entload", "staging", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


@pytest.mark.parametrize("text,expected", BAD_CONFIGS)
def test_bad_yaml_is_one_line_exit_2(tmp_path, text, expected):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    proc = run_cli("--port", str(free_port()), "--config", str(cfg))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(cfg) in lines[0] and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_command_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = run_cli("--port", str(port), "--enseigno-port", str(free_port()))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"--port {port}" in proc.stderr and "already in use" in proc.stderr
    proc = run_cli("--host", "192.0.2.10", "--port", str(free_port()))
    assert proc.returncode == 2 and "--allow-non-loopback" in proc.stderr
    proc = run_cli("--students", "80000", "--export-accounts", str(tmp_path / "x.csv"))
    assert proc.returncode == 2 and "--students" in proc.stderr
    proc = run_cli("--config", str(tmp_path / "missing.yaml"), "--port", str(free_port()))
    assert proc.returncode == 2 and "missing.yaml" in proc.stderr


def test_sigterm_stops_cleanly(staging_factory):
    s = staging_factory("--workers", "2")
    out_file = s.workdir / f"staging-{s.url.rsplit(':', 1)[1]}.out"
    deadline = time.monotonic() + 15
    while "ready" not in out_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(15) == 0
    out = out_file.read_text()
    assert "ready" in out and "stopped" in out and "Traceback" not in out
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{s.url}/healthz", timeout=2)
