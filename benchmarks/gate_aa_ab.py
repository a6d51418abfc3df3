"""A/A and A/B repeat experiments of the CI gate (issue 6), on real short runs against the embedded staging ENT.

    .venv/bin/python benchmarks/gate_aa_ab.py [--repeats 20] [--baseline-runs 3] [--out DIR] [--analyse-only]

Builds: A = the staging ENT holding every response for its modelled service time (fault knob `slowdown: 2.0` on
`/*`, i.e. service time x 1 added: the stock staging answers in microseconds, so without it a "1.3x" knob has
nothing to multiply), with service times 4x the defaults (SERVICE_TIMES); B = the same with the
`/conversation/*` group 30 % slower (`slowdown: 2.3`, service time x 1.3). Runs: 3 A runs to seed the baseline, then per repeat one A run and one B run (interleaved, so machine
load drifts hit both alike). Repeat i compares A and B each with a rolling baseline of the previous
`--baseline-runs` A runs (what a CI job comparing with the last runs of main does), and also with a one-run
baseline (the previous A run, assumed noise floor) for contrast.

A/A passes when the gate does not fail; A/B is caught when the gate fails and names only conversation endpoints.
Run folders are kept under --out/runs (resumable: finished runs are reused), so --analyse-only re-scores them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from entload import gate  # noqa: E402

# Modelled service times 4x the staging defaults (a production ENT page that hits its database: 160 ms for
# messaging, 480 ms for a login), so that machine contention on this shared 2-core box does not dwarf them.
SERVICE_TIMES = """service_time_ms:
  "/auth/login": 480
  "/auth/oauth2/token": 480
  "/timeline/*": 320
  "/conversation/count/*": 60
  "/conversation/*": 160
  "/rack*": 320
  "/workspace/*": 320
  "/schoolbook/*": 160
  "/assets/*": 8
  "/api/*": 160
  "/media/*": 40
  default: 120
"""
CONFIG_A = SERVICE_TIMES + """faults:
  - route: "/*"
    slowdown: 2.0
"""
CONFIG_B = SERVICE_TIMES + """faults:
  - route: "{group}"
    slowdown: {slow}
  - route: "/*"
    slowdown: 2.0
"""


def run_once(out: Path, run_id: str, config: Path, seed: int, args) -> Path:
    folder = out / run_id
    if (folder / "manifest.json").exists():
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("complete"):
            return folder
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    cmd = [str(REPO / ".venv/bin/entload"), "run", "--from", args.window[0], "--to", args.window[1],
           "--day-in", args.day_in, "--scale", str(args.scale), "--seed", str(seed), "--out", str(out),
           "--run-id", run_id, "--staging-config", str(config), "--no-progress"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"{run_id}: entload run failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    print(f"  {run_id}: {time.monotonic() - t0:.0f} s", flush=True)
    return folder


def done(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "manifest.json").read_text()).get("complete"))
    except (OSError, ValueError):
        return False


def in_group(endpoint: str, group: str) -> bool:
    name = endpoint.split(" ", 1)[-1]
    return fnmatch.fnmatchcase(name, group)


def analyse(out: Path, repeats: int, k: int, group: str, cfg: gate.RegressionConfig) -> str:
    runs = out / "runs"
    samples: dict[str, gate.Samples] = {}

    def s(p: Path) -> gate.Samples:
        if p.name not in samples:
            samples[p.name] = gate.load_run(p, need_samples=True).samples
        return samples[p.name]

    lines = []
    totals = {"aa": [0, 0], "ab": [0, 0], "aa1": [0, 0], "ab1": [0, 0], "aan": [0, 0], "abn": [0, 0]}
    # the reference: the same bootstrap test and Holm correction, without the machine-wide fit or a noise floor
    naive = gate.RegressionConfig(common_mode=False, noise_floor=0.0, max_common_shift=None)
    header = (f"| repeat | machine-wide change (A/A) | A/A, {k}-run baseline | A/B, {k}-run baseline: endpoints named "
              f"| A/A, 1-run baseline | A/B, 1-run baseline: endpoints named |")
    lines += [header, "| --- | --- | --- | --- | --- | --- |"]
    for i in range(repeats):
        a_new = runs / f"A{i + k:02d}"
        b_new = runs / f"B{i:02d}"
        if not (done(a_new) and done(b_new)):
            break
        base_k = [s(runs / f"A{j:02d}") for j in range(i, i + k)]
        base_1 = [s(runs / f"A{i + k - 1:02d}")]
        row = [str(i + 1)]
        aa = gate.compare_samples(base_1, s(a_new), naive)
        ab = gate.compare_samples(base_1, s(b_new), naive)
        totals["aan"][0] += not aa.failed
        totals["abn"][0] += ab.failed and all(in_group(e.endpoint, group) for e in ab.regressed)
        totals["aan"][1] += 1
        for tag, base in (("", base_k), ("1", base_1)):
            aa = gate.compare_samples(base, s(a_new), cfg)
            ab = gate.compare_samples(base, s(b_new), cfg)
            aa_ok = not aa.failed
            ab_named = [e.endpoint for e in ab.regressed]
            ab_ok = ab.failed and bool(ab_named) and all(in_group(e, group) for e in ab_named)
            totals["aa" + tag][0] += aa_ok
            totals["aa" + tag][1] += 1
            totals["ab" + tag][0] += ab_ok
            totals["ab" + tag][1] += 1
            if tag == "":
                row.append(f"{aa.common_shift:+.0%}")
            aa_txt = "pass" if aa_ok else "FAIL: " + ", ".join(e.endpoint for e in aa.regressed) + (
                " (machine-wide)" if aa.common_status == "fail" else "")
            group_rows = [e for e in ab.endpoints if in_group(e.endpoint, group) and e.status != "skip"]
            named_in = [e for e in ab.regressed if in_group(e.endpoint, group)]
            named_out = [e.endpoint for e in ab.regressed if not in_group(e.endpoint, group)]
            effects = sorted(e.effect for e in named_in)
            span = f" ({effects[0]:+.0%}..{effects[-1]:+.0%})" if effects else ""
            ab_txt = (("caught" if ab_ok else "MISSED") + f": {len(named_in)}/{len(group_rows)} of the group"
                      + span + (f"; also {', '.join(named_out)}" if named_out else ""))
            row += [aa_txt, ab_txt]
        lines.append("| " + " | ".join(row) + " |")
    n = totals["aa"][1]
    summary = [
        "",
        f"| baseline | A/A passed | A/B caught, only {group} named |",
        "| --- | --- | --- |",
        f"| last {k} A runs (noise measured) | {totals['aa'][0]}/{n} | {totals['ab'][0]}/{n} |",
        f"| last A run (noise floor assumed {cfg.noise_floor:.0%}) | {totals['aa1'][0]}/{n} | {totals['ab1'][0]}/{n} |",
        f"| reference: last A run, raw ratio, no noise model | {totals['aan'][0]}/{n} | {totals['abn'][0]}/{n} |",
    ]
    return "\n".join(lines + summary)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--baseline-runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench-gate-aa-ab")
    ap.add_argument("--window", nargs=2, default=["08:00", "08:30"], metavar=("FROM", "TO"))
    ap.add_argument("--day-in", default="30s")
    ap.add_argument("--scale", type=float, default=0.06)
    ap.add_argument("--group", default="/conversation/*")
    ap.add_argument("--slowdown", type=float, default=1.3, help="factor on the group's service time in B")
    ap.add_argument("--analyse-only", action="store_true")
    args = ap.parse_args()
    out: Path = args.out
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    cfg_a, cfg_b = out / "staging-A.yaml", out / "staging-B.yaml"
    cfg_a.write_text(CONFIG_A)
    cfg_b.write_text(CONFIG_B.format(group=args.group, slow=1.0 + args.slowdown))
    k = args.baseline_runs
    if not args.analyse_only:
        t0 = time.monotonic()
        print(f"seeding the baseline: {k} A runs", flush=True)
        for j in range(k):
            run_once(runs, f"A{j:02d}", cfg_a, 1000 + j, args)
        for i in range(args.repeats):
            print(f"repeat {i + 1}/{args.repeats} ({time.monotonic() - t0:.0f} s elapsed)", flush=True)
            run_once(runs, f"A{i + k:02d}", cfg_a, 1000 + i + k, args)
            run_once(runs, f"B{i:02d}", cfg_b, 5000 + i, args)
    table = analyse(out, args.repeats, k, args.group, gate.RegressionConfig())
    print(table)
    (out / "report.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
