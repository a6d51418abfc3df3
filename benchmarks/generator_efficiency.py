"""Generator efficiency: requests/s per core of entload's machinery vs plain Locust vs wrk, and /metrics scrape time.

Why: a load generator that burns its CPU on bookkeeping under-loads the ENT. Every variant fires at the same
static loopback endpoint (a tiny keep-alive HTTP server of this file, so the server is the same for all) and is
measured over the same steady window, in the same run, interleaved round by round so that machine noise hits all
variants alike. Efficiency = requests completed / CPU seconds of the generator process (user + system): on a
shared 2-core machine that is steadier than wall-clock req/s, and it is what "per core" means.

Variants
  wrk             the C reference (1 thread, keep-alive), CPU from the child's rusage
  locust          a plain Locust FastHttpUser locustfile: one task, no wait, nothing of entload imported
  locust+metrics  the same user with exporters/metrics.py installed (/metrics served and scraped every second)
  entload-no-recorder  as below without the recorder (to separate the exporters' share from the recorder's)
  entload         the scenarios' way of sending: route-template names, request context (persona, request
                  bytes, lateness), visit events every 10 requests, metrics served and scraped, and the
                  run recorder (exporters/recorder.py) writing timeseries.csv/summary.json when present
Goals (issues 3 and 4): entload >= 90 % of plain Locust; exporters cost <= 5 % (locust+metrics >= 95 %);
a /metrics scrape with every route of scenarios/workload.yaml populated takes a few milliseconds at most.

Usage: python benchmarks/generator_efficiency.py [--duration 6] [--rounds 3] [--users 10]
Prints a Markdown table. Load goes to 127.0.0.1 only, bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BODY = b"x" * 512

# ---------------------------------------------------------------------------------------------------------
# The static endpoint: asyncio, HTTP/1.1 keep-alive, one fixed 200 answer (runs in its own process).


def serve_static(port: int) -> None:
    import asyncio

    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(BODY)
    ) + BODY

    class Static(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buf = transport, b""

        def data_received(self, data):
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head, self.buf = self.buf[:end], self.buf[end + 4 :]
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if m:  # skip a request body (none in this benchmark, but be correct)
                    self.buf = self.buf[int(m.group(1)) :]
                self.transport.write(response)

    async def main():
        try:
            import uvloop  # noqa: F401  (faster when present; the server is not what is measured)
        except ImportError:
            pass
        server = await asyncio.get_running_loop().create_server(Static, "127.0.0.1", port, backlog=512)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------------------
# Locust variants, each run in a fresh process by `--driver VARIANT`.


def drive_locust(variant: str, url: str, users: int, warmup: float, duration: float, workdir: str,
                 metrics_port: int) -> dict:  # fmt: skip
    import gevent  # noqa: F401  (locust's import below monkey-patches first)
    from locust import FastHttpUser, constant, events, task
    from locust.env import Environment

    class PlainUser(FastHttpUser):
        """What a plain Locust locustfile looks like: one task, no wait."""

        host = url
        wait_time = constant(0)

        @task
        def static(self):
            self.client.get("/static")

    args = ["--headless", "-H", url]
    user_class = PlainUser
    if variant != "locust":
        import exporters.metrics  # noqa: F401  (registers options and the init listener)

        args += ["--metrics-port", str(metrics_port), "--link-capacity", "1Gbit"]
    if variant == "entload":
        try:
            import exporters.recorder  # noqa: F401

            args += ["--results-dir", workdir, "--run-id", "bench"]
        except ImportError:
            pass

    if variant.startswith("entload"):
        from exporters import events as ev

        NAMES = ("/conversation/message/[id]", "/conversation/count/INBOX", "/timeline/lastNotifications")

        class EntloadUser(FastHttpUser):
            """The scenarios' request path: template names, context, visit events around 10-request journeys."""

            host = url
            wait_time = constant(0)

            def on_start(self):
                self._n = 0
                self._visit_start = time.time()

            @task
            def step(self):
                if self._n % 10 == 0:
                    self._visit_start = time.time()
                    ev.visit_started.fire(persona="student", intended_at=self._visit_start,
                                          started_at=self._visit_start, late=False)  # fmt: skip
                self.client.get("/static", name=NAMES[self._n % 3],
                                context={"persona": "student", "request_bytes": 180, "lateness_s": 0.0})  # fmt: skip
                self._n += 1
                if self._n % 10 == 0:
                    ev.visit_completed.fire(persona="student", outcome="ok",
                                            duration_s=time.time() - self._visit_start)  # fmt: skip

        user_class = EntloadUser

    from locust.argument_parser import parse_options

    options = parse_options(args)
    env = Environment(user_classes=[user_class], events=events, host=url, parsed_options=options)
    captured: dict = {}
    events.request.add_listener(lambda **kw: captured.update(kw))  # a real request event, for the cost below
    runner = env.create_local_runner()
    events.init.fire(environment=env, runner=runner, web_ui=None)
    runner.start(users, spawn_rate=users)
    gevent.sleep(warmup)
    cpu0, n0, t0 = time.process_time(), env.stats.total.num_requests, time.perf_counter()
    gevent.sleep(duration)
    cpu1, n1, t1 = time.process_time(), env.stats.total.num_requests, time.perf_counter()
    runner.stop()
    exposition_requests = None
    installed = getattr(env, "entload_metrics", None)
    if installed is not None:
        exposition_requests = sum(
            s.value for f in installed.metrics.registry.collect() if f.name == "entload_requests" for s in f.samples
        )
    listener_us = None
    if installed is not None and captured:
        # the exporters' own CPU per request, measured on a real request event of this run (low noise: no
        # HTTP, no other process involved), to read next to Locust's CPU per request
        on_request, n = installed.metrics.on_request, 20_000
        c0 = time.process_time()
        for _ in range(n):
            on_request(**captured)
        listener_us = (time.process_time() - c0) / n * 1e6
    events.quitting.fire(environment=env, reverse=True)
    runner.quit()
    return {
        "listener_us": listener_us,
        "variant": variant,
        "requests": n1 - n0,
        "cpu_s": cpu1 - cpu0,
        "wall_s": t1 - t0,
        "failures": env.stats.total.num_failures,
        "locust_total": env.stats.total.num_requests,
        "metrics_total": exposition_requests,
    }


def _scrape_every_second(port: int, stop: threading.Event) -> None:
    """Prometheus's part, outside the measured process: one scrape a second (a 1 s scrape interval)."""
    while not stop.wait(1.0):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
        except OSError:
            pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_driver(variant: str, url: str, users: int, warmup: float, duration: float) -> dict:
    port = _free_port()
    stop = threading.Event()
    scraper = threading.Thread(target=_scrape_every_second, args=(port, stop), daemon=True)
    if variant != "locust":
        scraper.start()
    # cwd: a fresh directory, so a locust.conf of the repository does not leak into the plain variant
    with tempfile.TemporaryDirectory(prefix="entload-bench-") as workdir:
        try:
            out = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--driver", variant, "--url", url,
                 "--users", str(users), "--warmup", str(warmup), "--duration", str(duration),
                 "--workdir", workdir, "--metrics-port", str(port)],
                capture_output=True, text=True, timeout=warmup + duration + 60, cwd=workdir,
            )  # fmt: skip
        finally:
            stop.set()
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{variant} driver failed ({out.returncode}): {out.stderr[-1500:]}")
    return json.loads(lines[-1])


def run_wrk(url: str, connections: int, duration: float) -> dict:
    wrk = shutil.which("wrk")
    if not wrk:
        return {"variant": "wrk", "requests": 0, "cpu_s": 0.0, "wall_s": duration, "missing": True}
    proc = subprocess.Popen(
        [wrk, "-t1", f"-c{connections}", f"-d{int(round(duration))}s", url + "/static"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    t0 = time.perf_counter()
    _pid, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = proc.stdout.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    m = re.search(r"(\d+) requests in", out)
    return {"variant": "wrk", "requests": int(m.group(1)) if m else 0, "cpu_s": ru.ru_utime + ru.ru_stime,
            "wall_s": wall}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# /metrics scrape time with every endpoint of the workload's route map populated.


def route_names() -> list[tuple[str, str]]:
    """(method, route template) for every route of scenarios/workload.yaml (`:id` -> `[id]`)."""
    import yaml

    routes = yaml.safe_load((REPO / "scenarios" / "workload.yaml").read_text()).get("routes") or {}
    out = []
    for spec in routes.values():
        method, path = str(spec).split(None, 1)
        out.append((method.upper(), re.sub(r":(\w+)", r"[\1]", path.strip())))
    return out


def drive_scrape(samples: int) -> dict:
    import gevent  # noqa: F401
    from locust import events  # noqa: F401  (gevent monkey-patching, as in a Locust process)

    from exporters.metrics import MetricsServer, RunMetrics

    metrics = RunMetrics(role="local", link_capacity_bps=1e9, user_count=lambda: 100)
    routes = route_names()
    personas = ["student", "parent", "teacher", "enseigno_student", "enseigno_teacher"]

    class Resp:
        status_code = 503
        headers = {"Content-Type": "application/json", "Content-Length": "2048"}

    for i, (method, name) in enumerate(routes):  # every route, ok and failed, latencies across all buckets
        for j in range(200):
            metrics.on_request(method, name, response_time=(j % 50 + 1) * 13.7 * (1 + i % 4), response_length=2048,
                               context={"persona": personas[j % 5], "request_bytes": 300, "lateness_s": 0.01 * j})  # fmt: skip
        metrics.on_request(method, name, 40.0, 100, response=Resp(), context={}, exception=RuntimeError("503"))
    for j, p in enumerate(personas * 40):
        metrics.on_visit_started(p, late=j % 7 == 0)
        metrics.on_visit_completed(p, "ok", duration_s=30 + j)
        metrics.on_arrival_dropped(p)
    metrics.on_arrival_target(12.5, 12.5)

    from prometheus_client import generate_latest

    t_gen, t_ref = [], []
    for _ in range(samples):
        t0 = time.perf_counter()
        text = metrics.render()
        t_gen.append(time.perf_counter() - t0)
    for _ in range(max(5, samples // 10)):  # the reference: prometheus_client's generic exposition, same data
        t0 = time.perf_counter()
        generate_latest(metrics.registry)
        t_ref.append(time.perf_counter() - t0)
    server = MetricsServer(metrics.render, "127.0.0.1", _free_port())
    server.start()
    t_http = []
    for _ in range(samples):
        t0 = time.perf_counter()
        body = urllib.request.urlopen(server.url, timeout=5).read()
        t_http.append(time.perf_counter() - t0)
    server.stop()
    lines = [ln for ln in text.decode().splitlines() if ln and not ln.startswith("#")]
    return {
        "routes": len(routes),
        "series": len(lines),
        "bytes": len(body),
        "render_median_ms": 1000 * statistics.median(t_gen),
        "generate_latest_median_ms": 1000 * statistics.median(t_ref),
        "http_median_ms": 1000 * statistics.median(t_http),
        "http_p95_ms": 1000 * sorted(t_http)[int(0.95 * (len(t_http) - 1))],
        "http_max_ms": 1000 * max(t_http),
    }


# ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=6.0, help="measured seconds per variant and round")
    ap.add_argument("--warmup", type=float, default=1.5, help="seconds before measuring")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the median is reported)")
    ap.add_argument("--users", type=int, default=10, help="Locust users (and wrk connections)")
    ap.add_argument("--scrapes", type=int, default=200, help="/metrics scrapes timed")
    ap.add_argument("--json", metavar="FILE", help="also write the raw figures as JSON")
    ap.add_argument("--driver", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--metrics-port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.serve:
        serve_static(args.serve)
        return 0
    if args.driver == "scrape":
        print(json.dumps(drive_scrape(args.scrapes)))
        return 0
    if args.driver:
        print(json.dumps(drive_locust(args.driver, args.url, args.users, args.warmup, args.duration, args.workdir,
                                      args.metrics_port)))  # fmt: skip
        return 0

    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("static server did not start") from None
                time.sleep(0.05)
        variants = ["locust", "locust+metrics", "entload-no-recorder", "entload", "wrk"]
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for r in range(args.rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]  # rotate: no fixed position
            for v in order:
                res = run_wrk(url, args.users, args.duration) if v == "wrk" else run_driver(
                    v, url, args.users, args.warmup, args.duration)  # fmt: skip
                runs[v].append(res)
                eff = res["requests"] / res["cpu_s"] if res["cpu_s"] else 0.0
                print(f"  round {r + 1} {v:15s} {res['requests']:8d} req  {res['cpu_s']:6.2f} CPU s  "
                      f"{eff:9.0f} req/CPU-s", file=sys.stderr, flush=True)  # fmt: skip
        scrape = json.loads(subprocess.run(
            [sys.executable, __file__, "--driver", "scrape", "--scrapes", str(args.scrapes)],
            capture_output=True, text=True, timeout=300, cwd=REPO, check=True).stdout.splitlines()[-1])  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)

    def eff(res):
        return res["requests"] / res["cpu_s"] if res["cpu_s"] else 0.0

    med = {v: statistics.median(eff(x) for x in runs[v]) for v in variants}
    # per-round ratios to the plain Locust run of the same round: background load drifts between rounds
    paired = {v: statistics.median(eff(a) / eff(b) for a, b in zip(runs[v], runs["locust"], strict=True))
              for v in variants}  # fmt: skip
    rps = {v: statistics.median(x["requests"] / x["wall_s"] for x in runs[v]) for v in variants}
    print(f"\nGenerator efficiency: {args.rounds} interleaved rounds x {args.duration:g} s, {args.users} users/"
          f"connections, static 512-byte endpoint on 127.0.0.1, {os.cpu_count()} cores shared with the server\n")  # fmt: skip
    print("| generator | req/s (wall) | req per CPU-second (median) | range over rounds | vs plain Locust "
          "(median of per-round ratios) |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: |")
    for v in variants:
        effs = [eff(x) for x in runs[v]]
        print(f"| {v} | {rps[v]:,.0f} | {med[v]:,.0f} | {min(effs):,.0f} - {max(effs):,.0f} | {paired[v]:.2f} |")
    cost = 1 - paired["locust+metrics"]
    print(f"\nExporters cost: {100 * cost:.1f} % of plain Locust's requests per CPU-second (goal <= 5 %); "
          f"entload machinery at {100 * paired['entload']:.0f} % of plain Locust (goal >= 90 %).")  # fmt: skip
    us = [x["listener_us"] for x in runs["locust+metrics"] if x.get("listener_us")]
    if us:
        per_req = 1e6 / med["locust"]
        print(f"Exporters' listener: {statistics.median(us):.1f} us CPU per request (median over rounds) against "
              f"{per_req:.0f} us of plain Locust per request = {100 * statistics.median(us) / per_req:.1f} % "
              "(the low-noise reading of the same cost).")  # fmt: skip
    for v in ("locust+metrics", "entload-no-recorder", "entload"):
        last = runs[v][-1]
        if last.get("metrics_total") is not None:
            print(f"{v}: entload_requests_total {last['metrics_total']:.0f} = Locust's total {last['locust_total']}")
    print(f"\n/metrics with every route populated ({scrape['routes']} routes of scenarios/workload.yaml x 2 outcomes, "
          f"5 personas): {scrape['series']} samples, {scrape['bytes'] / 1024:.0f} KiB")  # fmt: skip
    print("| scrape | median | p95 | max |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| HTTP GET /metrics (loopback) | {scrape['http_median_ms']:.1f} ms | {scrape['http_p95_ms']:.1f} ms | "
          f"{scrape['http_max_ms']:.1f} ms |")  # fmt: skip
    print(f"| RunMetrics.render() in process | {scrape['render_median_ms']:.1f} ms | | |")
    print(f"| reference: prometheus_client generate_latest(), same data | {scrape['generate_latest_median_ms']:.1f} ms"
          " | | |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "median_eff": med, "scrape": scrape}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
