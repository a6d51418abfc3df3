"""The full 180,000-visit school day compressed into one hour on this machine: fidelity, drops, CPU.

Runs `entload run --day-in 1h --scale 1` (the issue's benchmark) against the embedded staging ENT, samples
every process of the run with `ps` (CPU time and resident memory, split into load generator = Locust,
staging ENT, and the `entload run` orchestrator), then reads the run folder and prints:

- fidelity: achieved vs target arrivals per simulated 10-minute bucket (where the target has >= 400
  arrivals), total, persona mix vs the plan; dropped and late arrivals;
- CPU seconds and mean cores of the generator and of the staging ENT, requests per generator CPU second.

    .venv/bin/python -m benchmarks.day_replay [--day-in 1h] [--from HH:MM] [--to HH:MM] [--scale 1] [--workers 0] [--staging-workers 1]

Shorter settings (e.g. --day-in 10m --scale 0.05, the `make run` default) measure the same figures quickly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace


def process_table() -> dict[int, tuple[int, float, float, str]]:
    """pid -> (ppid, cpu seconds, rss MB, command) for every process, from `ps`."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,times=,rss=,args="], capture_output=True, text=True).stdout
    table = {}
    for line in out.splitlines():
        parts = line.split(None, 4)
        if len(parts) == 5:
            pid, ppid, cpu, rss, args = parts
            table[int(pid)] = (int(ppid), float(cpu), int(rss) / 1024, args)
    return table


def classify(args: str) -> str:
    if " locust " in f" {args} " or "-m locust" in args:
        return "generator (Locust)"
    if "staging" in args and "entload" in args:
        return "staging ENT"
    if "multiprocessing" in args or "uvicorn" in args:
        return "staging ENT"
    return "entload run"


def descendants(root: int, table: dict) -> set[int]:
    found, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for pid, (ppid, *_rest) in table.items():
            if ppid == p and pid not in found:
                found.add(pid)
                frontier.append(pid)
    return found


def persona_targets(manifest: dict) -> dict[str, float]:
    from scenarios._options import plan_from_options

    w = manifest["window"]
    ns = SimpleNamespace(workload=manifest.get("workload_file") or "", day_in=f"{manifest['day_in_s']}s",
                         from_time=f"{int(w['from_s'] // 3600):02d}:{int(w['from_s'] % 3600 // 60):02d}",
                         to_time=f"{int(w['to_s'] // 3600):02d}:{int(w['to_s'] % 3600 // 60):02d}",
                         scale=manifest["scale"], seed=manifest.get("seed") or 1,
                         day_type=manifest.get("day_type") or "", arrivals="poisson")  # fmt: skip
    plan = plan_from_options(ns)
    return {p: plan.expected(w["from_s"], w["to_s"], p) for p in plan.personas}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--day-in", default="1h")
    ap.add_argument("--scale", default="1")
    ap.add_argument("--from", dest="from_time", default="00:00", help="start of the simulated window")
    ap.add_argument("--to", dest="to_time", default="24:00", help="end of the simulated window")
    ap.add_argument("--workers", default="0")
    ap.add_argument("--staging-workers", default="1")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--out", default="results", help="where the run folder goes (default results/)")
    ap.add_argument("--sample-every", type=float, default=5.0)
    args = ap.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    run_id = time.strftime("bench-day-%Y%m%d-%H%M%S", time.gmtime())
    cmd = [sys.executable, "-m", "entload", "run", "--day-in", args.day_in, "--from", args.from_time, "--to",
           args.to_time, "--scale", args.scale, "--seed",
           args.seed, "--workers", args.workers, "--staging-workers", args.staging_workers, "--out", args.out,
           "--run-id", run_id]  # fmt: skip
    print("$ entload " + " ".join(cmd[3:]), flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=repo)
    cpu: dict[int, tuple[str, float]] = {}
    peak_rss: dict[str, float] = {}
    loadavg = []
    while proc.poll() is None:
        table = process_table()
        rss_now: dict[str, float] = {}
        for pid in descendants(proc.pid, table):
            if pid in table:
                _ppid, c, rss, cmdline = table[pid]
                # a process keeps its first kind: an exiting one shows as `[python] <defunct>`
                kind = cpu[pid][0] if pid in cpu else classify(cmdline)
                cpu[pid] = (kind, c)
                rss_now[kind] = rss_now.get(kind, 0) + rss
        for kind, r in rss_now.items():
            peak_rss[kind] = max(peak_rss.get(kind, 0), r)
        loadavg.append(float(Path("/proc/loadavg").read_text().split()[0]))
        time.sleep(args.sample_every)
    wall = time.monotonic() - t0
    per_kind: dict[str, float] = {}
    for kind, c in cpu.values():
        per_kind[kind] = per_kind.get(kind, 0) + c

    run = Path(args.out) if Path(args.out).is_absolute() else repo / args.out
    run = run / run_id
    sys.path.insert(0, str(repo))
    from entload.report import fidelity, read_timeseries

    summary = json.loads((run / "summary.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    fid = fidelity(read_timeseries(run / "timeseries.csv"), summary=summary)
    a = summary["arrivals"]
    targets = persona_targets(manifest)
    total_t = sum(targets.values())
    started = {p: v["visits_started"] for p, v in summary["personas"].items()}
    total_s = sum(started.values()) or 1
    mix_gap = max(abs(started.get(p, 0) / total_s - t / total_t) * 100 for p, t in targets.items())

    print()
    print(f"run folder: {run}  (exit {proc.returncode}, complete {summary['complete']})")
    print(f"machine: {_cores()} cores, mean load average during the run {sum(loadavg) / max(1, len(loadavg)):.1f}")
    print()
    print("| figure | value | goal |")
    print("| --- | ---: | --- |")
    print(f"| wall time | {wall / 60:.1f} min | {args.day_in} + warm-up and drain |")
    print(f"| arrivals target / achieved | {a['target']:,.0f} / {a['achieved']:,} | |")
    print(f"| total arrivals error | {fid['total_error'] * 100:+.2f} % | within ±2 % |")
    worst = fid["worst_bucket_error"]
    print(f"| worst 10-min bucket error (target >= 400; {fid['buckets_checked']} buckets) | "
          f"{'n/a' if worst is None else f'{worst * 100:.1f} %'} | within ±5 % |")  # fmt: skip
    print(f"| persona mix, largest gap | {mix_gap:.2f} points | within ±2 points |")
    print(f"| dropped arrivals | {a['dropped']:,} | 0 |")
    print(f"| late arrivals | {a['late']:,} | |")
    print(f"| requests (failures) | {summary['requests']:,} ({summary['failures']:,}) | |")
    print(f"| latency p50 / p95 / p99 | {_ms(summary['latency_s']['p50'])} / {_ms(summary['latency_s']['p95'])} / "
          f"{_ms(summary['latency_s']['p99'])} | |")  # fmt: skip
    for kind in sorted(per_kind):
        print(f"| CPU {kind} | {per_kind[kind]:,.0f} s = {per_kind[kind] / wall:.2f} cores, peak RSS "
              f"{peak_rss.get(kind, 0):.0f} MB | |")  # fmt: skip
    gen = per_kind.get("generator (Locust)", 0)
    if gen:
        print(f"| requests per generator CPU second | {summary['requests'] / gen:,.0f} | |")
    return 0 if proc.returncode == 0 else 1


def _ms(x) -> str:
    return "–" if x is None else f"{x * 1000:.0f} ms"


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    raise SystemExit(main())
