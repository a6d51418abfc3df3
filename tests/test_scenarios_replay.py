"""Real replays: Locust (headless, `-f scenarios --config locust.conf`) against the real staging ENT.

Each run adds a small probe locustfile (written to tmp) that listens to the same events the exporters
listen to and writes, per process, what it saw: visit starts (intended and actual times), drops, requests
(name, context, status) and the scheduler's own counts. Runs are short and bounded (--run-time is a hard
stop on top of the shape's own end).

Target = the arrivals the scheduler drew from the seeded realisation (`scheduled`); the expected count (the
rate integrated) is checked against it statistically. Achieved = visits begun, bucketed by the simulated
time at which they actually began.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import REPO, free_port, stop_process

from scenarios import BUCKET_S, load_workload, plan_from_options
from scenarios._workload import DEFAULT_WORKLOAD

LOCUST = [sys.executable, "-m", "locust"]

PROBE = r'''
"""Test probe: records what the scenarios fire, one JSON file per process at quit."""
import json, os, time
from locust import events
from exporters import events as ev
import scenarios

OUT = os.environ["ENTLOAD_PROBE_DIR"]
S = {"started": [], "completed": [], "dropped": [], "requests": {}, "bad_context": [], "statuses": {},
     "upload_bytes": [], "failures": []}

@ev.visit_started.add_listener
def _started(persona, intended_at, started_at, late, **_):
    S["started"].append([persona, intended_at, started_at, late])

@ev.visit_completed.add_listener
def _completed(persona, outcome, duration_s, **_):
    S["completed"].append([persona, outcome, duration_s, time.time()])

@ev.arrival_dropped.add_listener
def _dropped(persona, intended_at, **_):
    S["dropped"].append([persona, intended_at])

@events.request.add_listener
def _request(request_type, name, response_time, response_length, exception=None, context=None, response=None, **_):
    key = request_type + " " + name
    S["requests"][key] = S["requests"].get(key, 0) + 1
    status = getattr(response, "status_code", 0)
    S["statuses"][key + " " + str(status)] = S["statuses"].get(key + " " + str(status), 0) + 1
    ctx = context or {}
    if not (ctx.get("persona") and ctx.get("request_bytes", 0) > 0 and ctx.get("lateness_s", -1) >= 0):
        S["bad_context"].append([key, {k: ctx.get(k) for k in ("persona", "request_bytes", "lateness_s")}])
    if request_type == "POST" and name in ("/rack", "/conversation/message/[id]/attachment"):
        S["upload_bytes"].append([name, ctx.get("request_bytes", 0)])
    if exception is not None:
        S["failures"].append([key, str(exception)])

@events.quitting.add_listener
def _quit(environment, **_):
    S["counts"] = scenarios.arrival_counts()
    with open(os.path.join(OUT, f"probe-{os.getpid()}.json"), "w") as fh:
        json.dump(S, fh)
'''


def light_workload(tmp_path: Path, flat: bool = False, think_s: float = 60.0) -> Path:
    """The default workload with one-request journeys on public routes, so a compressed run of thousands
    of visits stays light on 2 shared cores. Same personas, day types and profiles."""
    raw = yaml.safe_load(DEFAULT_WORKLOAD.read_text())
    ent = [{"do": "unread_count", "think_s": think_s}]
    raw["journeys"] = {"student": ent, "parent": ent, "teacher": ent,
                       "enseigno_student": [{"do": "enseigno_logout", "think_s": think_s}],
                       "enseigno_teacher": [{"do": "enseigno_logout", "think_s": think_s}]}
    # public, cheap routes: the daily news of the login page (ENT) and Enseigno's health check
    raw["routes"]["unread_count"] = "GET /auth/configure/welcome"
    raw["routes"]["enseigno_logout"] = "GET /healthz"
    if flat:
        raw["profiles"]["flat"] = [1] * 24
        for spec in raw["day_types"]["closure_school_day"]["personas"].values():
            spec["profile"] = "flat"
    path = tmp_path / "light-workload.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def export_accounts(tmp_path: Path) -> Path:
    path = tmp_path / "accounts.csv"
    subprocess.run([sys.executable, "-m", "entload", "staging", "--export-accounts", str(path)], cwd=REPO,
                   check=True, capture_output=True, timeout=60)
    return path


def write_probe(tmp_path: Path) -> Path:
    path = tmp_path / "probe_locustfile.py"
    path.write_text(PROBE)
    return path


def replay_args(staging, accounts: Path, probe: Path, **opts) -> list[str]:
    args = ["-f", f"{REPO / 'scenarios'},{probe}", "--config", str(REPO / "locust.conf"),
            "--host", staging.url, "--enseigno-host", staging.enseigno_url, "--accounts", str(accounts)]
    for key, value in opts.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def run_locust(args: list[str], probe_dir: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {"ENTLOAD_PROBE_DIR": str(probe_dir), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    return subprocess.run([*LOCUST, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def read_probes(probe_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(probe_dir.glob("probe-*.json"))]


def options(**kw) -> SimpleNamespace:
    base = dict(workload="", day_in="", from_time="00:00", to_time="24:00", scale="1", seed="1", day_type="",
                arrivals="poisson")
    base.update(kw)
    return SimpleNamespace(**base)


def achieved_buckets(probes: list[dict]) -> dict[int, int]:
    """Visits begun per simulated 10-minute bucket, by the simulated time they actually began."""
    out: dict[int, int] = {}
    for pr in probes:
        c = pr["counts"]
        for _persona, _intended, started, _late in pr["started"]:
            sim = c["from_s"] + (started - c["t0"]) * c["compression"]
            out[int(sim // BUCKET_S)] = out.get(int(sim // BUCKET_S), 0) + 1
    return out


@pytest.fixture(scope="module")
def accounts(tmp_path_factory) -> Path:
    return export_accounts(tmp_path_factory.mktemp("accounts"))


FIDELITY = dict(from_="08:30", to="09:00", day_in="12s", scale="0.12", seed="5")


def _fidelity_opts() -> dict:
    return {"from": FIDELITY["from_"], "to": FIDELITY["to"], "day_in": FIDELITY["day_in"],
            "scale": FIDELITY["scale"], "seed": FIDELITY["seed"]}


@pytest.fixture(scope="module")
def single_run(staging, accounts, tmp_path_factory):
    """One single-process compressed replay of 08:30-09:00 (k=150), shared by the fidelity and the
    distributed test."""
    tmp = tmp_path_factory.mktemp("single")
    workload = light_workload(tmp)
    probe_dir = tmp / "probe"
    probe_dir.mkdir()
    args = replay_args(staging, accounts, write_probe(tmp), workload=workload, run_time="60s", **_fidelity_opts())
    started = time.monotonic()
    proc = run_locust(args, probe_dir, timeout=90)
    wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    probes = read_probes(probe_dir)
    assert len(probes) == 1, proc.stderr[-3000:]
    return SimpleNamespace(probes=probes, workload=workload, stderr=proc.stderr, wall=wall)


def test_fidelity_of_a_compressed_replay(single_run):
    """Achieved per simulated 10-min bucket within 5 % of target where target >= 400, total within 2 %,
    persona mix within 2 points, zero dropped (healthy staging ENT), Locust-native via locust.conf."""
    (probe,) = single_run.probes
    counts = probe["counts"]
    plan = plan_from_options(options(workload=str(single_run.workload), from_time=FIDELITY["from_"],
                                     to_time=FIDELITY["to"], day_in=FIDELITY["day_in"], scale=FIDELITY["scale"],
                                     seed=FIDELITY["seed"]))
    # the target is the seeded realisation: the same in the run and in this process
    realisation = list(plan.stream())
    assert counts["scheduled"] == len(realisation)
    # ...and a faithful Poisson draw of the plan (4 sigma)
    assert abs(len(realisation) - plan.expected_total()) <= 4 * math.sqrt(plan.expected_total())
    assert counts["expected"] == pytest.approx(plan.expected_total(), rel=1e-6)

    assert counts["dropped"] == 0 and not probe["dropped"], single_run.stderr[-2000:]
    target = {int(b): v[0] for b, v in counts["buckets"].items()}
    achieved = achieved_buckets(single_run.probes)
    big = [b for b, t in target.items() if t >= 400]
    assert len(big) >= 2, target
    for b in big:
        assert abs(achieved.get(b, 0) - target[b]) <= 0.05 * target[b], (b, achieved, target)
    total = len(probe["started"])
    assert abs(total - counts["scheduled"]) <= 0.02 * counts["scheduled"]
    # persona mix: achieved shares vs target shares, in points
    for persona, n_target in counts["scheduled_by_persona"].items():
        n = sum(1 for s in probe["started"] if s[0] == persona)
        assert abs(100 * n / total - 100 * n_target / counts["scheduled"]) <= 2.0, persona
    assert set(counts["scheduled_by_persona"]) == {"student", "parent", "teacher", "enseigno_student",
                                                   "enseigno_teacher"}
    # the visits went through (healthy target): every one completed ok
    outcomes = {o for _p, o, _d, _t in probe["completed"]}
    assert outcomes == {"ok"}, probe["failures"][:5]
    assert len(probe["completed"]) >= 0.98 * total
    assert single_run.wall < 60


def test_distributed_workers_share_the_same_day(staging, accounts, single_run, tmp_path):
    """Master + 2 workers (Locust's own distributed mode): each worker takes its share of the same seeded
    realisation; totals equal the single-process run's within 2 %."""
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    probe = write_probe(tmp_path)
    port = free_port()
    base = replay_args(staging, accounts, probe, workload=single_run.workload, **_fidelity_opts())
    env = {"ENTLOAD_PROBE_DIR": str(probe_dir), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    master_log = open(tmp_path / "master.log", "w")
    master = subprocess.Popen([*LOCUST, *base, "--master", "--master-bind-host", "127.0.0.1",
                               "--master-bind-port", str(port), "--expect-workers", "2",
                               "--expect-workers-max-wait", "30", "--run-time", "60s"],
                              cwd=REPO, env=env, stdout=master_log, stderr=subprocess.STDOUT)
    workers = [subprocess.Popen([*LOCUST, "-f", f"{REPO / 'scenarios'},{probe}", "--worker",
                                 "--master-host", "127.0.0.1", "--master-port", str(port)],
                                cwd=REPO, env=env, stdout=open(tmp_path / f"worker{i}.log", "w"),
                                stderr=subprocess.STDOUT) for i in range(2)]
    try:
        master.wait(timeout=90)
        for w in workers:
            w.wait(timeout=20)
    finally:
        for p in (master, *workers):
            stop_process(p, timeout=5)
    log = (tmp_path / "master.log").read_text()
    assert master.returncode == 0, log[-3000:]
    probes = [p for p in read_probes(probe_dir) if p.get("counts")]
    assert len(probes) == 2, log[-3000:]
    shares = sorted(tuple(p["counts"]["share"]) for p in probes)
    assert shares == [(0, 2), (1, 2)]
    scheduled = [p["counts"]["scheduled"] for p in probes]
    assert abs(scheduled[0] - scheduled[1]) <= 1
    single = single_run.probes[0]
    assert sum(scheduled) == single["counts"]["scheduled"]  # the same realisation, split in two
    started = sum(len(p["started"]) for p in probes)
    assert abs(started - len(single["started"])) <= 0.02 * len(single["started"])
    assert sum(p["counts"]["dropped"] for p in probes) == 0
    for persona, n_single in single["counts"]["scheduled_by_persona"].items():
        n = sum(1 for p in probes for s in p["started"] if s[0] == persona)
        assert abs(n - n_single) <= max(2, 0.02 * n_single), persona


def test_full_journeys_against_staging(staging, accounts, tmp_path):
    """Every persona's journey of the default workload runs clean: route-template names only, the request
    context of exporters/events.py on every request, casier uploads of 0.5-4 MB, ETag revalidations, and
    no credential anywhere in the output."""
    raw = yaml.safe_load(DEFAULT_WORKLOAD.read_text())
    raw["profiles"]["flat"] = [1] * 24
    raw["day_types"]["test_flat"] = {"personas": {p: {"visits": 900, "profile": "flat"} for p in raw["personas"]}}
    raw["payloads"]["attachment_probability"] = {"student": 0.5, "parent": 0.5, "teacher": 1.0}
    for steps in raw["journeys"].values():
        for st in steps:
            st.pop("p", None)  # every step happens, so every route is exercised
            st["think_s"] = st.get("think_s", 0) * 0.3  # shorter visits: a shorter drain
    workload = tmp_path / "journeys.yaml"
    workload.write_text(yaml.safe_dump(raw, sort_keys=False))
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    args = replay_args(staging, accounts, write_probe(tmp_path), workload=workload, day_type="test_flat",
                       **{"from": "08:00", "to": "08:30", "day_in": "6s", "scale": "1", "seed": "2",
                          "run_time": "60s"})
    proc = run_locust(args, probe_dir, timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (probe,) = read_probes(probe_dir)
    assert not probe["failures"], probe["failures"][:10]
    assert not probe["bad_context"], probe["bad_context"][:5]
    by_persona: dict[str, set] = {}
    for persona, outcome, _d, _t in probe["completed"]:
        by_persona.setdefault(persona, set()).add(outcome)
    assert by_persona == {p: {"ok"} for p in raw["personas"]}, by_persona
    routes = load_workload(workload).routes.values()
    templates = {f"{r.method} {r.template}" for r in routes}
    assert set(probe["requests"]) <= templates, set(probe["requests"]) - templates
    # every action's routes were exercised
    assert len(set(probe["requests"])) >= len(templates) - 1, templates - set(probe["requests"])
    racks = [b for name, b in probe["upload_bytes"] if name == "/rack"]
    assert racks and all(500_000 <= b <= 4_000_000 + 2_000 for b in racks), racks[:5]
    assert any(k.endswith(" 304") and "/assets/" in k for k in probe["statuses"]), probe["statuses"]
    with open(accounts, newline="") as fh:
        passwords = {row["password"] for row in csv.DictReader(fh)}
    output = proc.stdout + proc.stderr + json.dumps(probe["requests"]) + json.dumps(probe["failures"])
    assert not any(pw in output for pw in passwords)
    assert "student." not in output and "teacher." not in output  # logins neither




def test_too_many_users_is_its_own_outcome(staging_factory, accounts, tmp_path):
    """With the session quota full, visits end with outcome "quota" and requests fail with a distinct
    message, not as generic errors."""
    cfg = tmp_path / "quota.yaml"
    cfg.write_text("session_quota: 3\nsession_idle_s: 600\n")
    small = staging_factory("--config", str(cfg))
    raw = yaml.safe_load(DEFAULT_WORKLOAD.read_text())
    for name in ("enseigno_student", "enseigno_teacher"):  # Enseigno has no session quota
        raw["personas"].pop(name)
        raw["journeys"].pop(name)
        for day in raw["day_types"].values():
            day["personas"].pop(name)
    for steps in raw["journeys"].values():
        for st in steps:
            st["think_s"] = st.get("think_s", 0) * 0.2  # the 3 visits that get in end soon
    workload = tmp_path / "ent-only.yaml"
    workload.write_text(yaml.safe_dump(raw, sort_keys=False))
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    args = replay_args(small, accounts, write_probe(tmp_path), workload=workload, **{
        "from": "08:30", "to": "08:40", "day_in": "4s", "scale": "0.02", "seed": "3", "run_time": "40s"})
    proc = run_locust(args, probe_dir, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    (probe,) = read_probes(probe_dir)
    outcomes = [o for _p, o, _d, _t in probe["completed"]]
    assert outcomes.count("quota") >= len(outcomes) / 2, outcomes
    quota_failures = [f for f in probe["failures"] if "quota: the ENT answered too many users" in f[1]]
    assert quota_failures and all(k.startswith(("GET /auth/login", "POST /auth/login", "POST /login",
                                                "GET /"))
                                  for k, _m in quota_failures)


def test_bad_input_in_locust_native_use_is_one_line(staging, accounts, tmp_path):
    probe = write_probe(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nname: x\nbogus: 1\n")
    for extra, expected in (
        (["--workload", str(bad)], "bad.yaml"),
        (["--accounts", ""], "--accounts: an accounts CSV"),
    ):
        args = replay_args(staging, accounts, probe, run_time="20s") + extra
        proc = run_locust(args, tmp_path, timeout=60)
        assert proc.returncode == 2, proc.stderr[-2000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("locust: error:")]
        assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
    args = replay_args(staging, accounts, probe, run_time="20s")
    args[args.index("--host") + 1] = "http://192.0.2.10:8080"
    proc = run_locust(args, tmp_path, timeout=60)
    assert proc.returncode == 2 and "refusing to send load to '192.0.2.10'" in proc.stderr


CLOSE_SCRIPT = r"""
import os, sys
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment
from scenarios._journeys import close_connections

def tcp_fds():
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:  # the listing's own descriptor
            pass
    return n

env = Environment()
session = FastHttpSession(sys.argv[1], env.events.request, user=None)
base = tcp_fds()
assert session.get("/healthz").status_code == 200
held = tcp_fds() - base
close_connections(session)
after = tcp_fds() - base
assert session.get("/healthz").status_code == 200  # the next visit opens a fresh connection
print(held, after)
"""


@pytest.mark.timeout(60)
def test_a_visit_leaves_no_connection_behind(staging):
    """Idle pooled users must not hold sockets (CLOSE_WAIT pins ephemeral ports: the full day ran out of them)."""
    out = subprocess.run([sys.executable, "-c", CLOSE_SCRIPT, staging.url], cwd=REPO, capture_output=True,
                         text=True, timeout=45)
    assert out.returncode == 0, out.stderr[-2000:]
    held, after = map(int, out.stdout.split())
    assert held == 1 and after == 0
