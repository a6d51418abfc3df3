"""Memory of the load generator in a long soak: flat with entload's recorder, growing in plain Locust.

Locust keeps per-run state that grows with run length (`stats.history`, one entry per 5 s for its HTML
charts; per-endpoint per-second request counters). The recorder bounds both. This benchmark runs, side
by side in one run against one embedded staging ENT, three Locust processes with the same steady load:

- `entload`            : the recorder on (results folder written), Locust's state bounded;
- `entload-unbounded`  : the recorder on, bounding switched off (ENTLOAD_RECORDER_UNBOUNDED_LOCUST_STATS=1);
- `plain-locust`       : no recorder (no --results-dir): Locust as shipped.

It samples each process's resident memory with `ps` every few seconds and prints, per variant, RSS after
warm-up and at the end, and the growth rate over the second half (MB per hour of run), plus ratios.

    .venv/bin/python -m benchmarks.soak_memory [--minutes 15] [--users 1] [--endpoints 40]

This file is also the soak's locustfile (Locust imports it with `-f`).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOAK_ENDPOINTS = int(os.environ.get("SOAK_ENDPOINTS", "40"))

if os.environ.get("ENTLOAD_SOAK_LOCUSTFILE") == "1":  # imported by Locust as the locustfile
    from locust import FastHttpUser, constant, task

    import exporters.recorder  # noqa: F401  (registers --results-dir / --run-id)
    from exporters import events as ev

    class SoakUser(FastHttpUser):
        """A steady stream of cheap requests spread over many endpoint names (as a day's ~60 routes)."""

        wait_time = constant(0.1)
        i = 0

        @task
        def visit(self):
            now = time.time()
            ev.visit_started.fire(persona="student", intended_at=now, started_at=now, late=False)
            for _ in range(10):
                SoakUser.i += 1
                self.client.get("/healthz", name=f"/soak/{SoakUser.i % SOAK_ENDPOINTS}",
                                context={"persona": "student", "request_bytes": 150, "lateness_s": 0.0})  # fmt: skip
            ev.visit_completed.fire(persona="student", outcome="ok", duration_s=time.time() - now)


def rss_mb(pid: int) -> float | None:
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return int(out) / 1024 if out else None


def cpu_s(pid: int) -> float | None:
    out = subprocess.run(["ps", "-o", "times=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return float(out) if out else None


def slope_mb_per_h(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS against time, in MB per hour."""
    n = len(points)
    if n < 2:
        return float("nan")
    mt = sum(t for t, _ in points) / n
    mr = sum(r for _, r in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (r - mr) for t, r in points) / den * 3600 if den else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=15.0, help="soak length (default 15)")
    ap.add_argument("--users", type=int, default=1, help="users per variant (default 1: ~90 req/s)")
    ap.add_argument("--endpoints", type=int, default=SOAK_ENDPOINTS, help="distinct request names (default 40)")
    ap.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    args = ap.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo))
    from entload.run import free_port

    tmp = Path(tempfile.mkdtemp(prefix="entload-soak-"))
    port, eport = free_port(), free_port()
    staging = subprocess.Popen([sys.executable, "-m", "entload", "staging", "--port", str(port), "--enseigno-port",
                                str(eport), "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=repo)  # fmt: skip
    host = f"http://127.0.0.1:{port}"
    from entload.run import _http_ok

    for _ in range(200):
        if _http_ok(host + "/healthz"):
            break
        time.sleep(0.1)
    run_time = int(args.minutes * 60)
    variants = {
        "entload": ({}, ["--results-dir", str(tmp / "a")]),
        "entload-unbounded": ({"ENTLOAD_RECORDER_UNBOUNDED_LOCUST_STATS": "1"}, ["--results-dir", str(tmp / "b")]),
        "plain-locust": ({}, []),
    }
    procs: dict[str, subprocess.Popen] = {}
    for name, (extra_env, extra_args) in variants.items():
        env = {**os.environ, "ENTLOAD_SOAK_LOCUSTFILE": "1", "SOAK_ENDPOINTS": str(args.endpoints), **extra_env}
        cmd = [sys.executable, "-m", "locust", "-f", str(Path(__file__).resolve()), "--headless", "--host", host,
               "-u", str(args.users), "-r", str(args.users), "--run-time", f"{run_time}s", "--only-summary",
               "--exit-code-on-error", "0", *extra_args]  # fmt: skip
        procs[name] = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=open(tmp / f"{name}.log", "wb"),
                                       stderr=subprocess.STDOUT)  # fmt: skip
    samples: dict[str, list[tuple[float, float]]] = {n: [] for n in procs}
    cpu: dict[str, float] = {}
    t0 = time.monotonic()
    print(f"soak: {args.minutes:g} min, {len(procs)} Locust processes x {args.users} users, {args.endpoints} "
          f"endpoint names, against {host}; samples in {tmp}", flush=True)  # fmt: skip
    try:
        while any(p.poll() is None for p in procs.values()):
            t = time.monotonic() - t0
            for name, p in procs.items():
                if p.poll() is None:
                    r = rss_mb(p.pid)
                    c = cpu_s(p.pid)
                    if r is not None:
                        samples[name].append((t, r))
                    if c is not None:
                        cpu[name] = c
            time.sleep(args.sample_every)
    except KeyboardInterrupt:
        for p in procs.values():
            p.send_signal(signal.SIGINT)
    finally:
        for p in procs.values():
            p.wait(60)
        staging.send_signal(signal.SIGINT)
        staging.wait(15)

    warm = 60.0
    rows = []
    for name, pts in samples.items():
        after = [r for t, r in pts if t >= warm]
        second_half = [(t, r) for t, r in pts if t >= max(warm, run_time / 2)]
        reqs = _requests(tmp / f"{name}.log")
        rows.append((name, after[0] if after else float("nan"), pts[-1][1] if pts else float("nan"),
                     slope_mb_per_h(second_half), cpu.get(name, float("nan")), reqs))  # fmt: skip
    print()
    print(f"| variant | RSS at {warm:.0f} s (MB) | RSS at end (MB) | growth, 2nd half (MB/h) | CPU (s) | requests |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r0, r1, slope, c, reqs in rows:
        print(f"| {name} | {r0:.1f} | {r1:.1f} | {slope:+.1f} | {c:.0f} | {reqs} |")
    base = {name: slope for name, _, _, slope, _, _ in rows}
    print()
    print(f"growth ratio entload / plain-locust: {base['entload'] / base['plain-locust']:.2f}" if base["plain-locust"]
          else "plain-locust did not grow")  # fmt: skip
    return 0


def _requests(log: Path) -> str:
    try:
        for line in reversed(log.read_text(errors="replace").splitlines()):
            if line.strip().startswith("Aggregated") and "%)" in line:
                return line.split()[1]
    except OSError:
        pass
    return "?"


if __name__ == "__main__":
    raise SystemExit(main())
