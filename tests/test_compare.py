"""`entload compare A B`: side-by-side tables (terminal, Markdown) and overlay plots, on contract-shaped runs."""

from __future__ import annotations

import json

import numpy as np
from test_gate import CONVERSATION, write_run

from entload import compare, gate
from entload.cli import main as cli_main


def test_compare_tables_and_plots(tmp_path, capsys):
    rng = np.random.default_rng(1)
    a = write_run(tmp_path / "a", rng)
    b = write_run(tmp_path / "b", rng, slow={k: 1.5 for k in CONVERSATION}, failures={"POST /rack": 12})
    md = tmp_path / "cmp.md"
    assert cli_main(["compare", str(a), str(b), "--markdown", str(md), "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    rack_b = next(e for e in sb["endpoints"] if e["name"] == "/rack")
    line = next(x for x in out.splitlines() if x.startswith("POST /rack "))
    assert f"{12 / rack_b['requests']:.2%}" in line  # error ratio of B, computed from its counts
    conv = next(x for x in out.splitlines() if x.startswith("GET /conversation/message/[id]"))
    change = float(conv.split("%")[-3].split()[-1]) / 100  # the Δp95 column
    assert 0.3 < change < 0.75, conv  # a 1.5x slowdown (with 3 % per-run jitter)
    text = md.read_text()
    assert text.startswith("### entload compare: A = `a`, B = `b`")
    assert "| `GET /conversation/message/[id]` |" in text
    for name in ("latency_quantiles.png", "arrivals.png", "bandwidth.png"):
        p = tmp_path / "plots" / name
        assert p.exists() and p.read_bytes()[:4] == b"\x89PNG"


def test_compare_accepts_a_baseline_folder(tmp_path, capsys):
    rng = np.random.default_rng(2)
    a = write_run(tmp_path / "a", rng)
    gate.write_baseline(gate.load_run(a), tmp_path / "bl")
    b = write_run(tmp_path / "b", rng)
    assert cli_main(["compare", str(tmp_path / "bl"), str(b), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["run", "a", "b"]
    rows = compare.endpoint_rows(compare.open_folder(str(tmp_path / "bl")), compare.open_folder(str(b)))
    assert all(r.change is not None for r in rows if r.a and r.a["requests"] >= 100)
