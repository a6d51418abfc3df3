"""The gate on a real run: the real `entload run` (embedded staging ENT under uvicorn, headless Locust), a
slowdown injected with the staging ENT's fault knob on the messaging routes, and the committed baseline.

One short run (08:00-09:00 in 20 s at scale 0.01, the CI shape of docs/ci.md) keeps this under a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from entload import gate
from entload.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "results" / "baselines" / "main"
CI_SHAPE = ["--from", "08:00", "--to", "09:00", "--day-in", "20s", "--scale", "0.01"]


def entload(*argv, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "entload", *map(str, argv)], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


@pytest.mark.slow
def test_real_slowdown_is_named_against_the_committed_baseline(tmp_path, capsys):
    assert (BASELINE / "baseline.json").exists(), "results/baselines/main is committed with the repo"
    faults = tmp_path / "slow-messaging.yaml"
    faults.write_text('faults:\n  - route: "/conversation/*"\n    added_latency_ms: 250\n')
    p = entload("run", *CI_SHAPE, "--seed", "77", "--out", tmp_path, "--run-id", "slow", "--staging-config", faults,
                "--no-progress")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    run = tmp_path / "slow"
    # An unmistakable change (+250 ms on 5-50 ms routes) judged strictly: what is named must be messaging only.
    slo = tmp_path / "gates.yaml"
    slo.write_text("thresholds:\n"
                   "  - {endpoint: '*', metric: p95, max: 5.0}\n"
                   "  - {endpoint: 'POST /rack', metric: error_ratio, max: 0.01}\n"
                   "regression: {metric: p95, min_effect: 0.5, alpha: 0.001}\n")
    junit, md = tmp_path / "junit.xml", tmp_path / "gate.md"
    g = entload("gate", run, "--slo", slo, "--baseline", BASELINE, "--junit", junit, "--markdown", md)
    assert g.returncode == 1, g.stdout + g.stderr
    cases = ET.parse(junit).getroot().findall(".//testcase")
    regressed = [c.get("name").removeprefix("p95 ") for c in cases
                 if c.get("classname") == "entload.gate.regression" and c.find("failure") is not None]
    assert len(regressed) >= 2, g.stdout
    assert all(" /conversation/" in name for name in regressed), g.stdout
    thresholds = [c for c in cases if c.get("classname") == "entload.gate.thresholds"]
    assert len(thresholds) == 2 and all(c.find("failure") is None for c in thresholds), g.stdout
    assert "❌ regressed" in md.read_text()
    # the same run as its own baseline: a real folder round-trips, and nothing changed
    assert cli_main(["gate", str(run), "--update-baseline", str(tmp_path / "bl")]) == 0
    digest = json.loads((run / "manifest.json").read_text())["workload_digest"]
    assert gate.load_baseline(tmp_path / "bl").workload_digest == digest
    assert cli_main(["gate", str(run), "--baseline", str(tmp_path / "bl")]) == 0
    assert "regressed" not in capsys.readouterr().out
