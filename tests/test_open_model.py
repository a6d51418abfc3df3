"""The open model, shown: when the ENT slows down 10x, arrivals keep coming and visits in progress pile up,
whereas a closed-loop user (Locust's default: the next visit starts when the last one ends) slows down with
the ENT and under-states the load.

One real staging ENT serves two Locust runs at once: the school-day shape (open model, deterministic
arrivals at a constant rate) and plain closed-loop users of the same journey. Halfway, the test turns on the
staging ENT's `slowdown` fault (x10 on every ENT route) through its admin route, and compares the phase
before with the phase after.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.request

import yaml
from conftest import REPO, stop_process
from test_scenarios_replay import DEFAULT_WORKLOAD, LOCUST, PROBE, export_accounts, read_probes

CLOSED_LOCUSTFILE = '''
"""Closed loop: a fixed number of users, each starting its next visit when its last one ends."""
import scenarios._shape  # noqa: F401  (the scenarios' options; no shape class here, so no open model)
import scenarios._journeys as journeys


class ClosedLoopStudent(journeys.StudentUser):
    pass
'''

K = 75.0  # compression: 08:00-08:20 in 16 s
RATE = 25.0  # arrivals per wall second (open model)
SWITCH_AFTER_S = 7.5  # the slowdown starts this long after the open model's clock started
_CLOCK_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\].*open-model arrivals: .* window starts in "
                         r"(-?[\d.]+)s")


def _wait_clock(log_path, proc, timeout: float = 30.0) -> float:
    """Epoch at which the open model's clock starts, from its log line (local-time timestamp + delay)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log_path.read_text().splitlines():
            m = _CLOCK_LINE.match(line)
            if m:
                stamp = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
                return stamp + float(m.group(3))
        time.sleep(0.1)
    raise AssertionError("the open-model run did not start its clock: " + log_path.read_text()[-2000:])


def _workload(tmp_path):
    """Students only, a flat profile, a visit = 3 requests to the login page's daily news, 0.6 s of think."""
    raw = yaml.safe_load(DEFAULT_WORKLOAD.read_text())
    raw["personas"] = {"student": raw["personas"]["student"]}
    raw["journeys"] = {"student": [{"do": "unread_count", "repeat": 3, "think_s": 15.0}]}
    raw["routes"]["unread_count"] = "GET /auth/configure/welcome"
    raw["profiles"] = {"flat": [1] * 24}
    visits = RATE / K * 86400
    raw["day_types"] = {"flat": {"personas": {"student": {"visits": visits, "profile": "flat"}}}}
    raw["default_day_type"] = "flat"
    path = tmp_path / "open-model.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _visits(probe: dict) -> list[tuple[float, float]]:
    """(start, end) wall times of completed visits."""
    return [(end - duration, end) for _p, _o, duration, end in probe["completed"]]


def _phase(visits, a: float, b: float) -> tuple[float, float]:
    """Visits begun per second, and mean visits in progress (sampled every 50 ms), over [a, b)."""
    started = sum(1 for s, _e in visits if a <= s < b)
    samples = [a + i * 0.05 for i in range(int((b - a) / 0.05))]
    in_progress = [sum(1 for s, e in visits if s <= t < e) for t in samples]
    return started / (b - a), sum(in_progress) / len(in_progress)


def test_slow_ent_open_model_holds_the_rate_closed_loop_does_not(staging_factory, tmp_path):
    staging = staging_factory()
    accounts = export_accounts(tmp_path)
    workload = _workload(tmp_path)
    common = ["--host", staging.url, "--accounts", str(accounts), "--workload", str(workload),
              "--from", "08:00", "--to", "08:20", "--day-in", f"{20 * 60 / K}s", "--scale", "1", "--headless",
              "--only-summary"]
    dirs = {name: tmp_path / name for name in ("open", "closed")}
    for d in dirs.values():
        d.mkdir()
    probe = tmp_path / "probe_locustfile.py"
    probe.write_text(PROBE)
    closed = tmp_path / "closed_locustfile.py"
    closed.write_text(CLOSED_LOCUSTFILE)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}"}
    procs = {
        "open": subprocess.Popen([*LOCUST, "-f", f"{REPO / 'scenarios'},{probe}", *common, "--arrivals",
                                  "deterministic", "--run-time", "40s"], cwd=REPO,
                                 env={**env, "ENTLOAD_PROBE_DIR": str(dirs["open"])},
                                 stdout=open(tmp_path / "open.log", "w"), stderr=subprocess.STDOUT),
    }
    try:
        t0 = _wait_clock(tmp_path / "open.log", procs["open"])
        # the closed loop runs alongside, over the same two phases
        closed_for = max(5.0, t0 + 15.5 - time.time())
        procs["closed"] = subprocess.Popen([*LOCUST, "-f", f"{closed},{probe}", *common, "-u", "15", "-r", "100",
                                            "--run-time", f"{math.ceil(closed_for)}s"], cwd=REPO,
                                           env={**env, "ENTLOAD_PROBE_DIR": str(dirs["closed"])},
                                           stdout=open(tmp_path / "closed.log", "w"), stderr=subprocess.STDOUT)
        time.sleep(max(0.0, t0 + SWITCH_AFTER_S - time.time()))
        body = json.dumps({"faults": [{"route": "/*", "app": "ent", "slowdown": 10}]}).encode()
        req = urllib.request.Request(staging.url + "/__admin/faults", data=body, method="PUT",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        switch = time.time()
        for p in procs.values():
            p.wait(timeout=60)
    finally:
        for p in procs.values():
            stop_process(p, timeout=5)
    for name, p in procs.items():
        assert p.returncode == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    (open_probe,) = read_probes(dirs["open"])
    (closed_probe,) = read_probes(dirs["closed"])
    assert switch - t0 < SWITCH_AFTER_S + 1.0, "the switch came late"
    before, after = (t0 + 1.5, switch - 0.5), (switch + 2.0, t0 + 15.0)

    open_rate_a, open_conc_a = _phase(_visits(open_probe), *before)
    open_rate_b, open_conc_b = _phase(_visits(open_probe), *after)
    closed_rate_a, _ = _phase(_visits(closed_probe), *before)
    closed_rate_b, _ = _phase(_visits(closed_probe), *after)
    figures = dict(open_rate=(open_rate_a, open_rate_b), open_concurrency=(open_conc_a, open_conc_b),
                   closed_rate=(closed_rate_a, closed_rate_b))
    print("open model vs closed loop, before/after the 10x slowdown:", figures)

    # open model: the offered load holds (deterministic arrivals: no Poisson noise), concurrency rises
    assert 0.9 <= open_rate_b / open_rate_a <= 1.1, figures
    assert abs(open_rate_a - RATE) <= 0.1 * RATE, figures
    assert open_conc_b >= 1.5 * open_conc_a, figures
    assert open_probe["counts"]["dropped"] == 0, figures  # the pool grew with the visits in progress
    # closed loop: the same users simply visit less often
    assert closed_rate_b <= 0.7 * closed_rate_a, figures
    # the slowdown really reached the ENT: the open model's visits got longer
    durations = [(e - s) for s, e in _visits(open_probe)]
    assert max(durations) > 0.8
