"""`entload validate-link`: check the capacity model against a real tbf-shaped link (root only)."""

from __future__ import annotations

HELP = "prove the capacity model on a real tc-shaped link in a network namespace (root only)"
DESCRIPTION = (
    "Create a network namespace of our own (loopback at MTU 1500, shaped by tc tbf, per-flow fair or FIFO), run the staging ENT and an "
    "open-loop (Poisson) load generator inside it, step the offered load through the utilisations, and compare "
    "the measured mean/p95 transfer times of a page, a message with attachment and a 3 MB casier deposit with the "
    "processor-sharing model, and the overflow of short windows with the Gaussian model. Writes validation.json, "
    "validation.md and validation.png. The namespace and its qdisc are removed on every exit path."
)


def add_arguments(parser):
    parser.add_argument("--rate", default="20Mbit", help="tbf rate of the emulated link (default 20Mbit)")
    parser.add_argument("--utilisations", default="0.3,0.5,0.7,0.9", metavar="LIST",
                        help="offered loads as fractions of the link, comma-separated; >= 1 is reported as "
                             "saturation (default 0.3,0.5,0.7,0.9)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default results/validate-link-<UTC time>)")
    parser.add_argument("--duration-per-step", default="60s", metavar="DUR",
                        help="measured time per utilisation, after a warm-up (default 60s)")
    parser.add_argument("--warmup", default=None, metavar="DUR",
                        help="load before measuring each step (default 10 %% of the step, at least 2s, "
                             "stretched up to one step towards the queue's relaxation time at high loads)")
    parser.add_argument("--drain-limit", default=None, metavar="DUR",
                        help="longest wait for measured transfers to finish, load still on (default: one step)")
    parser.add_argument("--latency", default="50ms", metavar="DUR",
                        help="tbf queue size expressed as its delay at the link rate (default 50ms)")
    parser.add_argument("--congestion-control", default=None, metavar="NAME",
                        help="TCP congestion control inside the namespace, e.g. cubic or bbr (default: the "
                             "kernel's default, inherited by the namespace)")
    parser.add_argument("--queue", default="fair", metavar="fair|fifo",
                        help="link discipline under the tbf: fair = per-flow deficit round robin (HTB + u32 "
                             "hashing), the fair sharing processor sharing assumes; fifo = the tbf's own drop-tail "
                             "queue (default fair)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of arrivals and payloads (default 1)")
    parser.add_argument("--staging-config", default=None, metavar="FILE",
                        help="YAML config passed to the staging ENT (entload staging --config)")


def _utilisations(text: str) -> tuple[float, ...]:
    from entload.errors import UsageError

    values = []
    for part in str(text).split(","):
        try:
            v = float(part)
        except ValueError:
            raise UsageError(f"--utilisations: expected numbers such as 0.3,0.5,0.7, got {part.strip()!r}") from None
        if not 0 < v <= 2:
            raise UsageError(f"--utilisations: each value must be in (0, 2], got {v:g}")
        values.append(v)
    return tuple(values)


def run(args) -> int:
    import os
    import shutil
    import sys
    import time
    from pathlib import Path

    from entload.errors import InputError, UsageError
    from entload.units import format_rate, parse_duration, parse_rate

    rate = parse_rate(args.rate, "--rate")
    if not 1e5 <= rate <= 1e9:
        raise UsageError(f"--rate: expected a rate between 100kbit and 1Gbit, got {args.rate!r}")
    rhos = _utilisations(args.utilisations)
    duration = parse_duration(args.duration_per_step, "--duration-per-step")
    warmup = parse_duration(args.warmup, "--warmup") if args.warmup else None
    drain = parse_duration(args.drain_limit, "--drain-limit") if args.drain_limit else None
    latency = parse_duration(args.latency, "--latency")
    if duration > 3600 or (drain or 0) > 3600:
        raise UsageError("--duration-per-step/--drain-limit: at most 1h per step (the run must stay bounded)")
    config = Path(args.staging_config) if args.staging_config else None
    if config is not None and not config.is_file():
        raise InputError(f"--staging-config: {config}: no such file")
    if args.queue not in ("fair", "fifo"):
        raise UsageError(f"--queue: expected fair or fifo, got {args.queue!r}")
    cc = args.congestion_control
    if cc is not None:
        try:
            # a namespace other than the host's may only pick the "allowed" ones (others: EPERM)
            allowed = open("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read().split()
        except OSError:
            allowed = [cc]
        if cc not in allowed:
            raise UsageError(f"--congestion-control: {cc!r} is not allowed in a namespace here "
                             f"(net.ipv4.tcp_allowed_congestion_control: {' '.join(allowed)})")
    if os.geteuid() != 0:
        raise UsageError("needs root: it creates a network namespace and a tc qdisc (run it with sudo)")
    for tool in ("ip", "tc"):
        if not (shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}") or os.path.exists(f"/sbin/{tool}")):
            raise UsageError(f"needs the `{tool}` command (Debian package iproute2)")
    out = Path(args.out) if args.out else Path("results") / time.strftime("validate-link-%Y%m%dT%H%M%SZ",
                                                                            time.gmtime())
    from entload import validate_link as vl

    opts = vl.Options(rate_bps=rate, utilisations=rhos, out=out, duration_s=duration, warmup_s=warmup,
                      drain_limit_s=drain, latency_s=latency, seed=args.seed, staging_config=config,
                      congestion_control=cc, queue=args.queue)
    print(f"validate-link: {format_rate(rate)}, {args.queue} queue, utilisations {', '.join(f'{r:g}' for r in rhos)}, "
          f"{duration:.0f}s measured per step after a warm-up (+ drain up to {opts.resolved_drain():.0f}s) "
          f"-> {out}", flush=True)
    try:
        res, paths = vl.validate(opts)
    except RuntimeError as exc:
        print(f"entload validate-link: error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(paths["markdown"].read_text())
    for key in ("json", "markdown", "plot"):
        print(f"wrote {paths[key]}")
    return 0
