"""The workload model, the replay plan and the arrival realisation (no Locust started: pure and fast).

Statistical checks use bounds derived from the Poisson model at a stated significance (4 standard
deviations, or a chi-square tail probability of 1e-4), never loosened to make a test pass.
"""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml
from scipy import stats

from scenarios import (
    BUCKET_S,
    ReplayPlan,
    ScenarioError,
    WorkloadError,
    load_workload,
    plan_from_options,
    workload_digest,
)
from scenarios._workload import DEFAULT_WORKLOAD, parse_workload


def _raw() -> dict:
    return yaml.safe_load(DEFAULT_WORKLOAD.read_text())


def _write(tmp_path, raw, name="w.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _opts(**kw):
    base = dict(workload="", day_in="", from_time="00:00", to_time="24:00", scale="1", seed="1", day_type="",
                arrivals="poisson", accounts="", enseigno_host="", allow_host=[])
    base.update(kw)
    return SimpleNamespace(**base)


# -------------------------------------------------------------------------------- the default workload


def test_default_workload_states_the_facts():
    w = load_workload()
    closure = w.day("closure_school_day")
    assert w.default_day_type == "closure_school_day"
    assert closure.ent_visits == 180_000
    assert closure.personas["student"].visits == 130_000
    assert closure.personas["parent"].visits + closure.personas["teacher"].visits == 50_000
    assert closure.personas["enseigno_student"].visits == 20_000
    assert closure.personas["enseigno_teacher"].visits == 2_000
    assert w.day("school_day").ent_visits == 150_000
    assert set(w.day_types) == {"closure_school_day", "school_day", "wednesday", "weekend", "school_holiday"}
    # average ENT visit about 12 minutes (weighted by the closure mix)
    ent = ("student", "parent", "teacher")
    mean = sum(closure.personas[p].visits * w.mean_think_s(p) for p in ent) / 180_000
    assert 11 * 60 <= mean <= 13 * 60
    # casier deposits 0.5-4 MB; a static asset cache-hit ratio; a route map with templates
    assert w.payloads["casier_bytes"] == (500_000, 4_000_000)
    assert 0 < w.cache_hit_ratio < 1
    assert w.routes["message"].template == "/conversation/message/[id]"
    assert w.routes["message"].url(id="abc") == "/conversation/message/abc"


def test_profiles_peak_where_design_says():
    """Closure students peak at 08:30-09:00; parents at 18:00-19:00 with a second peak at 20:30-21:00."""
    w = load_workload()
    student = w.profiles["closure_student"]
    assert len(student) == 48 and max(range(48), key=student.__getitem__) == 17  # 08:30 slot
    fam = w.profiles["family_evening"]
    top = sorted(range(48), key=fam.__getitem__, reverse=True)[:3]
    assert set(top) == {36, 37, 41}  # 18:00, 18:30, 20:30
    assert fam[41] > fam[40] and fam[41] > fam[42]  # 20:30-21:00 is a local peak


def test_digest_ignores_layout_and_sees_content(tmp_path):
    w = load_workload()
    raw = _raw()
    assert workload_digest(w) == workload_digest(raw)
    relaid = tmp_path / "same.yaml"
    relaid.write_text("# a comment\n" + yaml.safe_dump(raw, sort_keys=True, default_flow_style=False))
    assert load_workload(relaid).digest() == w.digest()
    raw["static_assets"]["cache_hit_ratio"] = 0.5
    assert workload_digest(raw) != w.digest()
    assert w.digest().startswith("sha256:") and len(w.digest()) == 7 + 64


# ------------------------------------------------------------------------------------- validation errors


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r["arrivals"].update(headroomm=2), "arrivals.headroomm: unknown key"),
        (lambda r: r["day_types"]["weekend"]["personas"]["student"].update(visits="many"),
         "day_types.weekend.personas.student.visits: expected a number >= 0, got 'many'"),
        (lambda r: r["journeys"]["student"][1].update(do="teleport"),
         "journeys.student[1].do: unknown action 'teleport'"),
        (lambda r: r["journeys"]["parent"][0].update(p=1.5), "journeys.parent[0].p: expected a number between 0 and 1"),
        (lambda r: r["routes"].update(inbox="FETCH /conversation"), 'routes.inbox: expected "METHOD /path"'),
        (lambda r: r["routes"].pop("message"), "routes: missing route 'message' (used by action 'read_message')"),
        (lambda r: r["profiles"].update(flat=[1, 2, 3]), "profiles.flat: expected a list of 24, 48, 96 slot weights"),
        (lambda r: r["day_types"]["weekend"].update(ent_visits=1), "day_types.weekend.ent_visits: expected the sum"),
        (lambda r: r["personas"]["parent"].update(app="enseigno"), "personas.parent.app: the parent journeys talk to ent"),
        (lambda r: r.update(schema_version=2), "schema_version: expected 1, got 2"),
        (lambda r: r["payloads"].update(casier_bytes=[4, 1]), "payloads.casier_bytes: expected [min, max] with min <= max"),
    ],
)
def test_bad_workload_is_one_line_naming_file_line_and_key(tmp_path, mutate, expected):
    raw = _raw()
    mutate(raw)
    path = _write(tmp_path, raw)
    with pytest.raises(WorkloadError) as info:
        load_workload(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path)) and expected in msg, msg
    assert isinstance(info.value, ValueError)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nname: [unclosed\n")
    with pytest.raises(WorkloadError, match=r"bad\.yaml:\d+: not valid YAML"):
        load_workload(bad)
    with pytest.raises(WorkloadError, match="no such workload file"):
        load_workload(tmp_path / "nope.yaml")


def test_line_numbers_point_at_the_key(tmp_path):
    text = DEFAULT_WORKLOAD.read_text().replace("  cache_hit_ratio: 0.8", "  cache_hit_ratio: lots")
    path = tmp_path / "w.yaml"
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "cache_hit_ratio: lots" in t)
    with pytest.raises(WorkloadError, match=rf"w\.yaml:{line}: static_assets\.cache_hit_ratio: expected a number"):
        load_workload(path)


def test_bad_options_are_one_line():
    cases = [
        (dict(day_in="fast"), "--day-in: expected a positive duration"),
        (dict(from_time="25:00"), "--from: expected a time of day"),
        (dict(from_time="10:00", to_time="08:00"), "--from/--to: the window must end after it starts"),
        (dict(scale="-1"), "--scale: expected a positive number"),
        (dict(seed="x"), "--seed: expected an integer"),
        (dict(day_type="sunday"), "--day-type: expected one of"),
        (dict(arrivals="bursty"), "--arrivals: expected one of poisson, deterministic"),
    ]
    for kw, expected in cases:
        with pytest.raises(ScenarioError) as info:
            plan_from_options(_opts(**kw))
        assert expected in str(info.value) and "\n" not in str(info.value)


def test_scenarios_api_imports_without_locust():
    """The workload API must not monkey-patch the caller (entload's CLI, the log profiler)."""
    code = "import sys, scenarios; scenarios.load_workload(); print('locust' in sys.modules, 'gevent' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------------------ time, window and scale


def _expected_from_yaml(raw: dict, day: str, from_s: float, to_s: float, scale: float) -> float:
    """Independent computation of the expected arrivals from the YAML weights (whole slots only)."""
    total = 0.0
    for spec in raw["day_types"][day]["personas"].values():
        weights = raw["profiles"][spec["profile"]]
        slot = 86400 / len(weights)
        inside = sum(w for i, w in enumerate(weights) if from_s <= i * slot and (i + 1) * slot <= to_s)
        total += spec["visits"] * scale * inside / sum(weights)
    return total


def test_window_and_scale_give_the_expected_targets():
    raw = _raw()
    full = plan_from_options(_opts(day_in="1h"))
    assert full.k == 24 and full.wall_duration_s == 3600
    assert full.expected_total() == pytest.approx(202_000)
    assert full.expected_by_persona()["student"] == pytest.approx(130_000)

    win = plan_from_options(_opts(from_time="08:00", to_time="10:00", scale="0.1", day_in="10m"))
    assert win.k == pytest.approx(7200 / 600)  # k = window / day-in
    assert win.expected_total() == pytest.approx(_expected_from_yaml(raw, "closure_school_day", 8 * 3600, 10 * 3600, 0.1))
    tripled = plan_from_options(_opts(from_time="08:00", to_time="10:00", scale="3"))
    assert tripled.k == 1.0
    assert tripled.expected_total() == pytest.approx(30 * win.expected_total())
    weekend = plan_from_options(_opts(day_type="weekend", scale="0.5"))
    assert weekend.expected_total() == pytest.approx(0.5 * (60_000 + 3_150))
    # a window inside a slot: the rate is constant within the slot
    quarter = plan_from_options(_opts(from_time="08:30", to_time="08:45"))
    half = plan_from_options(_opts(from_time="08:30", to_time="09:00"))
    assert quarter.expected_total() == pytest.approx(half.expected_total() / 2)


def test_poisson_realisation_counts_match_the_plan():
    """Scheduled counts of a seeded realisation against the expected: per-bucket chi-square and totals."""
    plan = plan_from_options(_opts(from_time="06:00", to_time="22:00", scale="0.2", seed="7"))
    arrivals = list(plan.stream())
    expected = plan.expected_buckets()
    counts = dict.fromkeys(expected, 0)
    for a in arrivals:
        counts[int(a.sim_t // BUCKET_S)] += 1
    assert all(plan.from_s <= a.sim_t < plan.to_s for a in arrivals)
    assert [a.sim_t for a in arrivals] == sorted(a.sim_t for a in arrivals)
    total_e = plan.expected_total()
    assert abs(len(arrivals) - total_e) <= 4 * math.sqrt(total_e)
    chi2 = sum((counts[b] - e) ** 2 / e for b, e in expected.items())
    assert stats.chi2.sf(chi2, df=len(expected)) > 1e-4, chi2
    # persona mix of the realisation against the plan's mix (Poisson counts per persona)
    for persona, e in plan.expected_by_persona().items():
        n = sum(1 for a in arrivals if a.persona == persona)
        assert abs(n - e) <= 4 * math.sqrt(e) + 1, (persona, n, e)


def test_deterministic_arrivals_follow_the_expected_counts_exactly():
    plan = plan_from_options(_opts(from_time="07:00", to_time="12:00", scale="0.1", arrivals="deterministic"))
    counts: dict[int, int] = {}
    for a in plan.stream():
        counts[int(a.sim_t // BUCKET_S)] = counts.get(int(a.sim_t // BUCKET_S), 0) + 1
    for b, e in plan.expected_buckets().items():
        # each persona stream is off by less than one arrival at any instant
        assert abs(counts.get(b, 0) - e) <= 2 * len(plan.personas), (b, counts.get(b), e)
        if e >= 400:
            assert abs(counts[b] - e) <= 0.05 * e


def test_seed_repeats_and_changes_the_realisation():
    a = [x.sim_t for x in plan_from_options(_opts(from_time="08:00", to_time="08:30", seed="3")).stream()]
    b = [x.sim_t for x in plan_from_options(_opts(from_time="08:00", to_time="08:30", seed="3")).stream()]
    c = [x.sim_t for x in plan_from_options(_opts(from_time="08:00", to_time="08:30", seed="4")).stream()]
    assert a == b and a != c


def test_worker_shares_partition_the_single_process_realisation():
    """Distributed mode: N workers take arrivals i mod N of the same seeded stream, so together they replay
    exactly what one process would."""
    plan = plan_from_options(_opts(from_time="08:00", to_time="09:00", scale="0.05", seed="11"))
    single = list(plan.stream())
    for n in (2, 3):
        shares = [list(plan.stream(i, n)) for i in range(n)]
        merged = sorted((x for s in shares for x in s), key=lambda x: x.index)
        assert merged == single
        assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1


def test_pool_follows_littles_law_with_headroom():
    """Compression keeps concurrency: the pool needed at 1h and at real time differ only by the request
    allowance (response times are not compressed)."""
    w = load_workload()
    real = ReplayPlan(w, "closure_school_day", 8 * 3600, 10 * 3600, None, 0.1)
    fast = ReplayPlan(w, "closure_school_day", 8 * 3600, 10 * 3600, 600, 0.1)
    for p in real.personas:
        lam = real.max_rate(8 * 3600, 9 * 3600, p)  # visits begun up to one visit before 08:30 count
        concurrency = lam * w.mean_think_s(p)
        assert real.concurrency(p, 8.5 * 3600, 9 * 3600) >= concurrency
        assert fast.concurrency(p, 8.5 * 3600, 9 * 3600) == pytest.approx(
            concurrency + lam * fast.k * fast.mean_requests(p) * w.arrivals["assumed_response_s"], rel=1e-6)
        need = real.pool_need(p, 8.5 * 3600, 9 * 3600)
        assert need >= concurrency + 4 * math.sqrt(concurrency)
    # an observed longer visit duration raises the need (the open model under a slow ENT)
    assert fast.pool_need("student", 8.5 * 3600, 9 * 3600, duration_s=10 * fast.mean_visit_wall_s("student")) > \
        5 * fast.pool_need("student", 8.5 * 3600, 9 * 3600)


def test_parse_workload_accepts_a_profile_written_by_a_tool():
    """A minimal workload (one persona, hourly profile), as `entload profile` may write one."""
    raw = _raw()
    raw["personas"] = {"student": raw["personas"]["student"]}
    raw["journeys"] = {"student": [{"do": "login"}, {"do": "timeline", "think_s": 30}, {"do": "logout"}]}
    raw["profiles"] = {"hourly": [1] * 24}
    raw["day_types"] = {"measured": {"personas": {"student": {"visits": 1000, "profile": "hourly"}}}}
    raw["default_day_type"] = "measured"
    w = parse_workload(raw, "profile.yaml")
    plan = ReplayPlan(w, "measured", 0, 86400, 60, 1.0)
    assert plan.expected_total() == pytest.approx(1000)
    assert plan.k == 1440


def test_ip_literal_targets_resolve_inline_and_host_names_keep_the_threaded_resolver():
    """Only IP literals skip gevent's resolver thread: a real name must not block the process on DNS."""
    from conftest import REPO

    code = (
        "import gevent; from scenarios._runtime import resolve_literals_inline as r;"
        "from gevent.resolver.blocking import Resolver as B;"
        "assert not r('http://ent.example.org:80', 'http://127.0.0.1:1');"
        "assert not isinstance(gevent.get_hub().resolver, B);"
        "assert r('http://127.0.0.1:8080', 'http://[::1]:8081');"
        "assert isinstance(gevent.get_hub().resolver, B);"
        "import gevent.socket as s; print(s.getaddrinfo('127.0.0.1', 80)[0][4][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "127.0.0.1"
