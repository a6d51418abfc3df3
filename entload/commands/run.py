"""`entload run`: replay a school day (or a window of it) against a staging ENT and write a results folder."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "replay a compressed ENT school day against a staging ENT (embedded by default); write results/<run-id>/"
DESCRIPTION = (
    "Replay the ENT's school day (open-model arrivals, persona journeys) with Locust, against --host or, "
    "without it, the embedded staging ENT on loopback. Writes <out>/<run-id>/: manifest.json, summary.json, "
    "timeseries.csv, samples.csv.gz, Locust's CSV/HTML, plots/ and report.html. Ctrl-C ends the run with a "
    "valid folder marked incomplete (exit 130)."
)

# Defaults come from the repository's locust.conf (so `entload run` and `locust -f scenarios --config
# locust.conf` replay the same day); these apply only when it is missing.
FALLBACK = {"day-in": "5m", "scale": "0.05", "from": "00:00", "to": "24:00"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--host", help="ENT base URL (loopback, or allow-listed with --allow-host); default: start the embedded "
      "staging ENT on free loopback ports")
    a("--enseigno-host", metavar="URL", help="Enseigno base URL when --host is given (default for a loopback "
      "--host: its port + 1, as `entload staging` serves it)")
    a("--workload", metavar="FILE", help="workload YAML (default: scenarios/workload.yaml)")
    a("--day-in", metavar="DUR", default=None,
      help="replay the window (default the whole day) in this wall time, e.g. 1h, 10m; compression "
      "k = window / DUR (default: locust.conf's, 5m)")
    a("--from", dest="from_", metavar="HH:MM", help="start of the simulated window (default 00:00)")
    a("--to", metavar="HH:MM", help="end of the simulated window (default 24:00)")
    a("--scale", metavar="F", help="fraction or multiple of the day's visits (default: locust.conf's, 0.05)")
    a("--workers", metavar="N", default="0", help="Locust distributed mode: a master and N worker processes "
      "on this machine (default 0: one process)")
    a("--run-id", metavar="ID", help="name of the run folder (default: UTC time + random suffix)")
    a("--out", metavar="DIR", default="results", help="parent folder of run folders (default results/)")
    a("--staging-config", metavar="FILE", help="config YAML for the embedded staging ENT (faults, sizes...)")
    a("--staging-workers", metavar="N", default="1", help="server processes of the embedded staging ENT "
      "(default 1)")
    a("--seed", metavar="N", help="random seed: same seed, same arrivals and journeys")
    a("--accounts", metavar="CSV", help="login,password,persona CSV for --host (default: the embedded ENT's seeded accounts, "
      "which match an `entload staging` started with the same --seed)")
    a("--day-type", metavar="NAME", help="day type of the workload's arrival profile (default: the workload's)")
    a("--arrivals", choices=["poisson", "deterministic"], help="arrival process (default poisson)")
    a("--metrics-port", metavar="P", default="0", help="serve Prometheus /metrics on P (workers on P+1...; "
      "0 = off); writes prometheus.yml in the run folder")
    a("--metrics-bind", metavar="ADDR", help="address /metrics binds to (default 127.0.0.1)")
    a("--pushgateway", metavar="URL", help="push metrics to this Pushgateway during and after the run")
    a("--allow-host", metavar="H", action="append", default=[],
      help="allow load to this non-loopback host name (repeatable)")
    a("--no-progress", action="store_true", help="no progress line (for logs)")
    a("--slo", metavar="FILE", help="SLO thresholds (YAML, as for entload gate) checked during the run")
    a("--abort-on-fail", action="store_true",
      help="with --slo: stop the run at the first broken threshold (after --slo-grace), exit 1")
    a("--slo-grace", metavar="DUR", default="30s",
      help="with --abort-on-fail: no check before this wall time (default 30s)")
    a("--locustfile", help=argparse.SUPPRESS)  # tests: a locustfile other than the scenarios


def _int(value: str, option: str, low: int, high: int | None = None) -> int:
    from entload.errors import UsageError

    try:
        n = int(str(value))
    except ValueError:
        raise UsageError(f"{option}: expected a whole number, got {value!r}") from None
    if n < low or (high is not None and n > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise UsageError(f"{option}: expected a whole number {bound}, got {value!r}")
    return n


def _enseigno_next_to(host: str) -> str | None:
    """`entload staging --port P` serves Enseigno on P+1: the default for a loopback --host with a port."""
    from urllib.parse import urlsplit

    from entload.hostsafety import is_loopback_host

    parts = urlsplit(host)
    if parts.port and parts.hostname and is_loopback_host(parts.hostname) and parts.port < 65535:
        netloc = parts.netloc.rsplit(":", 1)[0] + f":{parts.port + 1}"
        return f"{parts.scheme}://{netloc}"
    return None


def build_options(args):
    """argparse namespace -> validated RunOptions (one-line UsageError/InputError on any bad value)."""
    from entload import runstore
    from entload.errors import InputError, UsageError
    from entload.hostsafety import check_host
    from entload.run import RunOptions, conf_defaults
    from entload.units import parse_clock, parse_duration

    conf = {**FALLBACK, **conf_defaults()}
    opts = RunOptions()
    allow = [h for h in args.allow_host]
    if args.host:
        opts.host = check_host(args.host.rstrip("/"), allow, "--host")
    if args.enseigno_host:
        opts.enseigno_host = check_host(args.enseigno_host.rstrip("/"), allow, "--enseigno-host")
    elif opts.host:
        opts.enseigno_host = _enseigno_next_to(opts.host)
    opts.allow_hosts = allow
    opts.day_in = args.day_in or conf["day-in"]
    opts.day_in_s = parse_duration(opts.day_in, "--day-in")
    opts.from_, opts.to = args.from_ or conf["from"], args.to or conf["to"]
    opts.from_s = parse_clock(opts.from_, "--from")
    opts.to_s = parse_clock(opts.to, "--to")
    if opts.to_s <= opts.from_s:
        raise UsageError(f"--to: must be later than --from ({opts.from_}), got {opts.to!r}")
    scale = args.scale if args.scale is not None else conf["scale"]
    try:
        opts.scale = float(scale)
    except ValueError:
        raise UsageError(f"--scale: expected a positive number such as 0.1 or 3, got {scale!r}") from None
    if not opts.scale > 0 or opts.scale > 1000:
        raise UsageError(f"--scale: expected a positive number up to 1000, got {scale!r}")
    opts.workers = _int(args.workers, "--workers", 0, 64)
    opts.staging_workers = _int(args.staging_workers, "--staging-workers", 1, 64)
    seed = args.seed if args.seed is not None else conf.get("seed")
    opts.seed = _int(seed, "--seed", 0) if seed is not None else None
    opts.metrics_port = _int(args.metrics_port, "--metrics-port", 0, 65535)
    opts.metrics_bind = args.metrics_bind
    if args.pushgateway:
        from urllib.parse import urlsplit

        if urlsplit(args.pushgateway).scheme not in ("http", "https"):
            raise UsageError(f"--pushgateway: expected an http(s) URL, got {args.pushgateway!r}")
        opts.pushgateway = args.pushgateway
    opts.run_id = runstore.check_run_id(args.run_id) if args.run_id else runstore.new_run_id()
    opts.out = Path(args.out).resolve()
    if opts.out.exists() and not opts.out.is_dir():
        raise UsageError(f"--out: {opts.out} exists and is not a directory")
    if args.abort_on_fail and not args.slo:
        raise UsageError("--abort-on-fail: needs --slo FILE")
    if args.slo:
        from entload.gate import load_slo

        opts.slo = load_slo(args.slo)  # a malformed file: one line naming file, line and key, exit 2
        opts.abort_on_fail = bool(args.abort_on_fail)
        opts.slo_grace_s = parse_duration(args.slo_grace, "--slo-grace")
    if args.staging_config:
        if args.host:
            raise UsageError("--staging-config: only for the embedded staging ENT (drop --host, or drop this option)")
        opts.staging_config = Path(args.staging_config).resolve()
        if not opts.staging_config.is_file():
            raise InputError(f"--staging-config: {opts.staging_config}: no such file")
    if args.workload:
        opts.workload = Path(args.workload).resolve()
        if not opts.workload.is_file():
            raise InputError(f"--workload: {opts.workload}: no such file")
    if args.accounts:
        opts.accounts = Path(args.accounts).resolve()
        if not opts.accounts.is_file():
            raise InputError(f"--accounts: {opts.accounts}: no such file")
    opts.day_type = args.day_type or conf.get("day-type")
    opts.arrivals = args.arrivals or conf.get("arrivals")
    opts.locustfile = Path(args.locustfile).resolve() if args.locustfile else None
    opts.progress = not args.no_progress
    return opts


def run(args) -> int:
    from entload.run import execute

    return execute(build_options(args))
