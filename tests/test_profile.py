"""`entload profile`: outputs other commands accept as they are, no personal data in any output, and the
round trip (an `entload run`'s own staging access log gives back the run's hourly shape and persona mix)."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, shared_file

from scenarios._profile import DEFAULT_RULES, ProfileError, evidence_rates
from scenarios._workload import load_workload

IPV4 = re.compile(rb"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
STRICT_CLF = re.compile(r'^(\S+) \S+ \S+ \[[^\]]+\] "[^"]*" \d{3} (\d+|-)$')


def _profile(capsys, *args) -> str:
    """The real CLI entry point, in process (saves re-importing scipy and matplotlib per call)."""
    from entload.cli import main

    capsys.readouterr()
    rc = main(["profile", "--quiet", *args])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def _output_files(folder: Path) -> list[Path]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"workload.yaml", "bytes_per_second.csv", "profile.json", "report.md",
                                       "arrivals_by_hour.png", "visit_durations.png", "top_routes_bytes.png"}
    return files


def _scan(files: list[Path], needles: set[str], patterns: list[re.Pattern] = ()) -> list[str]:
    """Every output file, text or image, byte for byte: which needle or pattern occurs where."""
    found = []
    for path in files:
        data = path.read_bytes()
        low = data.lower()
        for needle in needles:
            if needle.lower().encode() in low:
                found.append(f"{path.name}: {needle}")
        for pat in patterns:
            m = pat.search(data)
            if m:
                found.append(f"{path.name}: {m.group(0)!r}")
    return found


def test_nasa_profile_outputs_are_accepted_and_anonymous(tmp_path, capsys):
    log = shared_file("data", "nasa-http-aug95-first-hour.log")
    out = tmp_path / "nasa" / "workload.yaml"
    stdout = _profile(capsys, str(log), "--out", str(out))
    assert "malformed: 89" in stdout
    # the workload: the scenarios' own loader (what `entload run --workload` uses) accepts it as is
    workload = load_workload(out)
    day = workload.day()
    assert sum(p.visits for p in day.personas.values()) > 0
    # the series: contiguous seconds, totals exact over the well-formed lines, readable by the capacity room
    good_bytes = sum(0 if m.group(2) == "-" else int(m.group(2)) for line in open(log, encoding="latin-1")
                     if (m := STRICT_CLF.match(line.rstrip("\n"))))
    with open(out.parent / "bytes_per_second.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["time", "requests", "bytes_down"]
    assert sum(int(r["bytes_down"]) for r in rows) == good_bytes
    assert rows[0]["time"].startswith("1995-08-01T06:00:01+02:00")  # 00:00:01 -0400 in Europe/Paris
    from capacity.series import load_series

    series = load_series(out.parent / "bytes_per_second.csv")
    assert series.step_s == 1.0 and float(series.directions["bytes_down"].sum()) == good_bytes
    details = json.loads((out.parent / "profile.json").read_text())
    assert details["malformed"] == 89 and len(details["malformed_examples"]) == 5
    assert any(r["sizes"].get("fit") for r in details["routes"]) or all(
        r["sizes"].get("fit_note") for r in details["routes"] if r["sizes"]["n"] >= 20)
    # privacy: no client host name (from intact lines, or the first piece of a broken one), no IPv4 address
    hosts = set()
    for line in open(log, encoding="latin-1"):
        first, _, rest = line.rstrip("\n").partition(" ")
        if len(first) >= 6 and (not rest or rest.startswith("- ")):  # a host field, whole or cut short
            hosts.add(first)
    assert len(hosts) > 100
    leaks = _scan(_output_files(out.parent), hosts, [IPV4])
    assert not leaks, leaks[:10]




def test_round_trip_of_an_entload_run(tmp_path, capsys):
    """Replay 07:30-09:00 of the closure day (compressed 600x), profile the staging ENT's own access logs,
    and get the run's hourly arrivals and persona mix back within Poisson (binomial) noise."""
    run = subprocess.run(
        [sys.executable, "-m", "entload", "run", "--day-in", "9s", "--from", "07:30", "--to", "09:00",
         "--scale", "0.014", "--seed", "3", "--out", str(tmp_path), "--run-id", "rt", "--no-progress"],
        capture_output=True, text=True, cwd=REPO, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    folder = tmp_path / "rt"
    logs = [folder / "staging-access.log", folder / "staging-access-enseigno.log"]
    clients = {line.split(" ", 1)[0] for line in open(logs[0])}
    assert len(clients) > 100, "visits do not name their own client (X-Forwarded-For)"
    out = tmp_path / "profile" / "workload.yaml"
    _profile(capsys, *map(str, logs), "--run", str(folder), "--out", str(out))
    details = json.loads((out.parent / "profile.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())

    # hourly shape: visits started per simulated hour vs the arrivals the run recorded, at the resolution the
    # log has (a log stamp is a wall second, i.e. k simulated seconds, read at its middle). Tolerance: 4 sigma
    # of Poisson noise plus 2, and a visit whose first request is logged one wall second after the second its
    # arrival was counted in (a busy machine) may cross into the next hour: at most the arrivals of the last
    # row of the hour before.
    with open(folder / "timeseries.csv", newline="") as fh:
        rows = [(int(r["t_s"]), float(r["sim_clock_s"]), int(r["arrivals"]), float(r["arrivals_target"]))
                for r in csv.DictReader(fh)]
    k = json.loads((folder / "manifest.json").read_text())["compression"]
    origin = min(s - k * t for t, s, _, _ in rows)  # sim clock at t_s = 0 (rows before the start are clamped)
    achieved, last_row = [0] * 24, [0] * 24
    for t, _s, n, _target in rows:
        hour = int((origin + k * (t + 0.5)) // 3600) % 24
        achieved[hour] += n
        last_row[hour] = n
    (day_type,) = details["hourly_visits"]
    observed = [sum(v[h] for v in details["hourly_visits"][day_type].values()) for h in range(24)]
    for hour in range(24):
        e, o = achieved[hour], observed[hour]
        noise = 4 * math.sqrt(max(e, 1)) + 2
        assert e - last_row[hour] - noise <= o <= e + last_row[hour - 1] + noise, (hour, o, e, observed, achieved)
    # and the day's total against the workload's target (Poisson)
    target = sum(r[3] for r in rows)
    assert abs(sum(observed) - target) <= 4 * math.sqrt(target) + 3, (sum(observed), target)

    # persona mix: identified / P(evidence) estimates each persona's visits; binomial noise of that estimate
    started = {p: v["visits_started"] for p, v in summary["personas"].items()}
    rates = evidence_rates(load_workload(), DEFAULT_RULES)
    estimated = details["personas_estimated"]
    for persona, n in started.items():
        e = rates[persona]
        sigma = math.sqrt(n * (1 - e) / e) if e < 1 else 0.0
        assert abs(estimated.get(persona, 0) - n) <= 4 * sigma + 3, (persona, estimated, started, rates)
    load_workload(out)  # and the replayable workload is accepted as is

    # privacy: no account login, user id, display name, client address or loopback address in any output
    accounts = tmp_path / "accounts.csv"
    subprocess.run([sys.executable, "-m", "entload", "staging", "--export-accounts", str(accounts), "--seed", "3"],
                   check=True, capture_output=True, cwd=REPO, timeout=60)
    with open(accounts, newline="") as fh:
        rows = list(csv.DictReader(fh))
    needles = {r["login"] for r in rows} | {r["display_name"] for r in rows} | {r["password"] for r in rows}
    needles |= {c for c in clients if c != "127.0.0.1"} | {"127.0.0.1"}
    id_patterns = [re.compile(rb"(?<![\w-])" + re.escape(r["user_id"].encode()) + rb"(?![\w-])") for r in rows]
    leaks = _scan(_output_files(out.parent), needles, [IPV4, *id_patterns[:400]])
    assert not leaks, leaks[:10]
    # and no route keeps an id of the ENT's content (messages, casier files, exercises): every segment with a
    # digit is a template, except the route map's own words (`oauth2`)
    words = {seg for r in load_workload().routes.values() for seg in r.path.split("/")}
    for route in details["routes"]:
        for seg in route["route"].split(" ", 1)[-1].split("/"):
            assert seg in words or not re.search(r"\d", seg), route["route"]
    assert len(details["routes"]) < 80, [r["route"] for r in details["routes"]]


def test_persona_rules_default_and_configurable(tmp_path):
    from scenarios import _logparse
    from scenarios._profile import compile_rules, load_rules

    ua = "Mozilla/5.0"
    log = tmp_path / "ent.log"
    lines = []
    for i, (ip, path, method) in enumerate([
        ("192.0.2.1", "/schoolbook/relation/acknowledge/w-1/s-4", "POST"),  # carnet signed: parent
        ("192.0.2.2", "/rack/list", "GET"),  # casier collected: teacher
        ("192.0.2.3", "/rack", "POST"),  # casier deposit: student
        ("192.0.2.4", "/timeline/lastNotifications", "GET"),  # no evidence: unknown
    ]):
        for j, p in enumerate(["/auth/login", path, "/auth/logout"]):
            m = method if j == 1 else "GET"
            lines.append(f'{ip} - - [12/Mar/2020:08:3{i}:0{j} +0100] "{m} {p} HTTP/1.1" 200 100 "-" "{ua}"')
    log.write_text("\n".join(lines) + "\n")
    state = _logparse.ingest([str(log)], persona_rules=compile_rules(DEFAULT_RULES), key=b"k")
    assert state.visit_summary.persona_counts == {"parent": 1, "teacher": 1, "student": 1, "unknown": 1}
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {persona: parent, route: GET /timeline/*}\n")
    state = _logparse.ingest([str(log)], persona_rules=compile_rules(load_rules(str(rules))), key=b"k")
    assert state.visit_summary.persona_counts == {"parent": 1, "unknown": 3}
    rules.write_text("- {persona: pupil, route: GET /x}\n")
    with pytest.raises(ProfileError, match="persona must be one of"):
        load_rules(str(rules))


def test_payload_fits_recover_a_known_lognormal(tmp_path):
    """The synthetic ENT day of the benchmark draws response sizes as median x lognormal(0, 0.6): the fit
    per route must give sigma back, and call it a good fit."""
    import importlib.util

    from scenarios import _logparse
    from scenarios._profile import fit_sizes

    spec = importlib.util.spec_from_file_location("logparse_speed", REPO / "benchmarks" / "logparse_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    log = tmp_path / "day.log"
    bench.generate(str(log), 15_000, seed=11)
    state = _logparse.ingest([str(log)], key=b"k")
    rid = state.route_ids["GET /conversation/message/:id"]
    fit = fit_sizes(state.route_samples[rid])["fit"]
    assert abs(fit["sigma_log"] - 0.6) < 0.06, fit
    assert fit["quality"] == "good" and 3500 < fit["median_bytes"] < 7000, fit
    # a route answered 304 with no body has no size distribution to fit, and says so
    rid = state.route_ids["GET /assets/js/ent.bundle.js"]
    assert fit_sizes(state.route_samples[rid]).get("fit") is None
