"""`entload profile LOG...`: access logs -> an anonymised workload that `entload run --workload` replays,
a per-second byte series for `entload capacity`, and a short report with plots."""

from __future__ import annotations

HELP = "access logs (common/combined, plain or gzip) -> anonymised workload, byte series, report"
DESCRIPTION = (
    "Read access logs in common or combined log format (plain or gzip, several files) and write: a workload "
    "file that `entload run --workload FILE` replays (visits per day and persona, hourly arrival profiles by "
    "day type, think times), bytes_per_second.csv beside it (columns time,requests,bytes_down; for "
    "`entload capacity --series`), profile.json (route weights, payload-size fits, damaged lines) and "
    "report.md with plots. Client addresses, logins and user agents are keyed-hashed at ingestion and "
    "dropped; paths become route templates; no output holds an address, login or id."
)


def add_arguments(parser):
    parser.add_argument("logs", nargs="+", metavar="LOG", help="access log files (plain or .gz, detected by content)")
    parser.add_argument("--format", default="auto", choices=["auto", "common", "combined"],
                        help="log format (default: auto, detected per file from its first lines)")
    parser.add_argument("--tz", default="Europe/Paris",
                        help="time zone of the hours in the profile and the series (default: Europe/Paris)")
    parser.add_argument("--out", default="profile/workload.yaml", metavar="FILE",
                        help="workload file to write; the other outputs go beside it (default: profile/workload.yaml)")
    parser.add_argument("--timeout", default="30m", metavar="DUR",
                        help="visit inactivity timeout (default: 30m)")
    parser.add_argument("--rules", metavar="FILE",
                        help="persona rules, YAML list of {persona, route: 'METHOD /path/*'} in priority order "
                             "(default: carnet -> parent, casier collection -> teacher, casier deposit -> student)")
    parser.add_argument("--template", metavar="FILE",
                        help="workload whose journeys, route map and payloads are kept (default: the built-in one)")
    parser.add_argument("--day-type", metavar="NAME",
                        help="treat every date as this day type (default: from the French calendar, zone C)")
    parser.add_argument("--unknown-as", default="spread", metavar="PERSONA",
                        help="visits with no persona evidence, in the workload: spread (default: each identified "
                             "persona takes the share its journeys are expected to leave without evidence), drop, "
                             "or a persona name; profile.json and the report keep them as unknown")
    parser.add_argument("--key", metavar="SECRET",
                        help="key of the client hash (default: random per run; it is never written)")
    parser.add_argument("--run", metavar="DIR",
                        help="the log comes from this (compressed) entload run: map its wall clock back to the "
                             "simulated day with manifest.json and timeseries.csv")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _time_map_from_run(run_dir: str, tz):
    """(wall epoch -> simulated epoch, inverse, day type, k) from a run folder's manifest and time series.

    The simulated clock (seconds since midnight, `sim_clock_s`) is read as local time of --tz on the run's
    date, so the profile's hours are the replayed day's hours. The wall origin of `t_s` is the recorder's
    start (summary.json `started_at`, whole seconds), else the manifest's."""
    import csv
    import datetime as dt
    import json
    from pathlib import Path

    from entload.errors import InputError

    folder = Path(run_dir)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        started = dt.datetime.fromisoformat(manifest["started_at"].replace("Z", "+00:00")).timestamp()
        k = float(manifest.get("compression") or 1.0)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--run {run_dir}: cannot read manifest.json started_at/compression ({exc})") from None
    try:
        summary = json.loads((folder / "summary.json").read_text())
        started = float(int(dt.datetime.fromisoformat(summary["started_at"].replace("Z", "+00:00")).timestamp()))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no recorder summary: the manifest's start is the best origin we have
    sim0 = float((manifest.get("window") or {}).get("from_s") or 0.0)
    ts = folder / "timeseries.csv"
    if ts.exists():
        try:
            with open(ts, newline="") as fh:
                rows = [(float(r["t_s"]), float(r["sim_clock_s"])) for r in csv.DictReader(fh)]
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"--run {run_dir}: cannot read timeseries.csv t_s/sim_clock_s ({exc})") from None
        if rows:
            sim0 = min(s - k * t for t, s in rows)  # sim clock at t_s = 0, from the recorder's own rows
    day = dt.datetime.fromtimestamp(started, tz).date()
    base = dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()

    def to_sim(t: int) -> int:
        # a log stamp is the wall second a request fell in: map its middle, not its start (k/2 less bias)
        return int(round(base + sim0 + (t + 0.5 - started) * k))

    def to_wall(s: int) -> int:
        return int(round(started + (s - base - sim0) / k - 0.5))

    return to_sim, to_wall, manifest.get("day_type"), k


def run(args) -> int:
    import sys
    import time
    from pathlib import Path
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from entload.errors import InputError, UsageError
    from entload.units import parse_duration
    from scenarios import _logparse, _profile
    from scenarios._workload import PERSONAS, WorkloadError

    try:
        tz = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--tz: unknown time zone {args.tz!r} (expected an IANA name such as Europe/Paris)") from None
    timeout = parse_duration(args.timeout, "--timeout")
    if timeout <= 0:
        raise UsageError(f"--timeout: expected a positive duration, got {args.timeout!r}")
    if args.unknown_as not in ("spread", "drop", *PERSONAS):
        raise UsageError(f"--unknown-as: expected spread, drop or one of {', '.join(PERSONAS)}, got {args.unknown_as!r}")
    if args.day_type and args.day_type not in _profile.DAY_TYPES:
        raise UsageError(f"--day-type: expected one of {', '.join(_profile.DAY_TYPES)}, got {args.day_type!r}")
    for path in args.logs:
        if not Path(path).exists():
            raise InputError(f"{path}: no such file")
        if not Path(path).is_file():
            raise InputError(f"{path}: not a regular file (expected an access log, plain or gzip)")
    try:
        rules = _profile.load_rules(args.rules) if args.rules else _profile.DEFAULT_RULES
    except _profile.ProfileError as exc:
        raise InputError(str(exc)) from None
    template = args.template
    if template:
        from scenarios._workload import load_workload

        try:
            wl = load_workload(template)
        except WorkloadError as exc:
            raise InputError(str(exc)) from None
    else:
        from scenarios._workload import load_workload

        wl = load_workload()
    # literal route words of the route map are never mistaken for ids (`oauth2`)
    for route in wl.routes.values():
        _logparse.STATIC_SEGMENTS.update(seg for seg in route.path.split("/") if seg and not seg.startswith(":"))

    to_sim = to_wall = None
    k = 1.0
    day_type = args.day_type
    if args.run:
        to_sim, to_wall, run_day_type, k = _time_map_from_run(args.run, tz)
        day_type = day_type or run_day_type
        if not args.quiet:
            print(f"profile: mapping the run's wall clock to its simulated day ({k:g}x compression)", file=sys.stderr)

    clock = _profile.LocalClock(tz)
    last = [0.0]

    def progress(msg: str) -> None:
        now = time.monotonic()
        if not args.quiet and now - last[0] >= 2.0:
            last[0] = now
            print(f"profile: {msg}", file=sys.stderr, flush=True)

    started = time.monotonic()
    try:
        state = _logparse.ingest(
            args.logs, args.format,
            key=args.key.encode() if args.key else None,
            timeout_s=int(timeout),
            persona_rules=_profile.compile_rules(rules),
            progress=progress, local_bucket=clock.bucket, time_map=to_sim,
        )
    except _logparse.LogFormatError as exc:
        raise InputError(str(exc)) from None
    elapsed = time.monotonic() - started
    try:
        outputs = _profile.write_outputs(
            state, out=Path(args.out), tz=tz, day_type=day_type, template_path=template,
            unknown_as=args.unknown_as, to_wall=to_wall, clock=clock, rules=rules, resolution_s=k,
        )
    except (_profile.ProfileError, WorkloadError) as exc:
        raise InputError(f"cannot build a workload from {', '.join(args.logs)}: {exc}") from None
    s = outputs["summary"]
    print(f"parsed {s['parsed']:,} of {s['lines']:,} lines in {elapsed:.1f}s "
          f"({s['lines'] / max(elapsed, 1e-9):,.0f} lines/s); malformed: {s['malformed']:,}")
    for example in s["malformed_examples"][:3]:
        print(f"  damaged {example}")
    print(f"requests: {s['requests']:,}; bytes to clients: {s['bytes_down']:,}; visits: {s['visits']:,} "
          f"(timeout {timeout:g}s)")
    print("personas: " + ", ".join(f"{p} {n:,}" for p, n in s["personas"].items()))
    if s.get("personas_estimated"):
        print("  estimated from evidence rates: " + ", ".join(
            f"{p} {v:,.0f} (evidence in {s['evidence_rates'].get(p, 0):.0%} of its visits)"
            for p, v in s["personas_estimated"].items()))
    for note in outputs["notes"]:
        print(f"  {note}")
    print(f"workload: {outputs['workload']}")
    print(f"series:   {outputs['bytes_per_second']}")
    print(f"details:  {outputs['details']}")
    print(f"report:   {outputs['report']}")
    return 0
