"""`entload capacity`: the link plan from measured traffic (a run folder or any byte series), a history of
daily visits and the current link. Prints the answer in one sentence first, then writes capacity.json,
report.md/html and plots into --out."""

from __future__ import annotations

import argparse
import sys

HELP = "link plan: required busy-hour capacity, the date the link runs out, the tier to order"
DESCRIPTION = (
    "Size the ENT's access link. Measured traffic (--run DIR or --series FILE) gives the busy-hour mean, the "
    "variance-time curve and H; C(T, eps) = mu + sqrt(-2 ln eps) sqrt(v(T))/T is the capacity that keeps "
    "overflow below eps. With --history (date,visits) the daily visits are forecast with the French school "
    "calendar, and the requirement is followed until it crosses --link. Rates need a unit: 1Gbit, 500Mbit, "
    "125MB/s. Example: entload capacity --run results/<id> --history visits.csv --link 1Gbit --out plan/"
)

DEFAULT_TIERS = "100Mbit,200Mbit,500Mbit,1Gbit,2Gbit,5Gbit,10Gbit,20Gbit,40Gbit,100Gbit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("measured traffic (one of)")
    src.add_argument("--run", metavar="DIR", help="a run folder (manifest.json, timeseries.csv, summary.json)")
    src.add_argument("--series", metavar="FILE",
                     help="a CSV of times and byte counts per step (>= 1 s), e.g. a profile's bytes_per_second.csv")
    src.add_argument("--time-col", metavar="NAME", help="time column of --series (default: time/timestamp/t_s)")
    src.add_argument("--bytes-col", metavar="NAME[,NAME]",
                     help="byte column(s) of --series, one per direction (default: bytes_down,bytes_up or bytes/size)")
    src.add_argument("--busy-days", type=int, default=10, metavar="D",
                     help="pool v(T) over the busy hours of the D busiest days (default 10)")
    src.add_argument("--busy-hour", metavar="HH:MM", help="fix the busy hour's start instead of the busiest window")
    src.add_argument("--hurst", type=float, metavar="H", help="use this Hurst parameter instead of the fit")

    hist = parser.add_argument_group("growth")
    hist.add_argument("--history", metavar="CSV", help="daily visits: columns date (YYYY-MM-DD), visits")
    hist.add_argument("--date-col", default="date", metavar="NAME", help="date column of --history (default date)")
    hist.add_argument("--visits-col", default="visits", metavar="NAME",
                      help="visits column of --history (default visits)")
    hist.add_argument("--zone", default="C", choices=["A", "B", "C"],
                      help="school holiday zone (default C: Hauts-de-Seine)")
    hist.add_argument("--horizon", default="156w", metavar="DUR", help="forecast horizon (default 156w = 3 years)")
    hist.add_argument("--reference-visits", type=float, metavar="N",
                      help="daily visits the measured traffic stands for (default: from the run)")
    hist.add_argument("--busy-hour-share", type=float, metavar="F",
                      help="share of daily visits in the busiest hour for the per-visit model (default: from a "
                           "whole-day run, else 0.12)")
    hist.add_argument("--what-if", metavar="X[,X]", default="",
                      help="visit multipliers to test, e.g. 3 for a closure surge (comma-separated)")
    hist.add_argument("--visits", metavar="N", help="inverse question: which link for N visits a day")

    plan = parser.add_argument_group("plan")
    plan.add_argument("--link", metavar="RATE", help="current link, with a unit: 1Gbit, 500Mbit/s, 125MB/s")
    plan.add_argument("--epsilon", default="0.01", metavar="P",
                      help="tolerated probability that a window overflows (default 0.01; 1%% also accepted)")
    plan.add_argument("--timescale", default="1s", metavar="DUR", help="window T of the overflow (default 1s)")
    plan.add_argument("--form", choices=["chernoff", "quantile"], default="chernoff",
                      help="C(T, eps) with sqrt(-2 ln eps) (papers, default) or the exact Gaussian quantile")
    plan.add_argument("--plan-at", default="50%", metavar="PCT",
                      help="plan trigger: 95th pct of 5-min averages reaches this share of the link (default 50%%)")
    plan.add_argument("--upgrade-at", default="70%", metavar="PCT",
                      help="upgrade trigger (default 70%%): the new link must be in place before this")
    plan.add_argument("--lead-time", default="13w", metavar="DUR", help="procurement lead time (default 13w)")
    plan.add_argument("--tiers", default=DEFAULT_TIERS, metavar="LIST", help=f"link tiers (default {DEFAULT_TIERS})")

    parser.add_argument("--out", metavar="DIR", help="write capacity.json, report.md/html and plots here")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--quiet", action="store_true", help="print the answer only, no progress")


def _fraction(text: str, option: str, lo: float = 0.0, hi: float = 1.0) -> float:
    from entload.errors import UsageError

    s = str(text).strip()
    try:
        v = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise UsageError(f"{option}: expected a fraction such as 0.01 or a percentage such as 1%, got {text!r}") from None
    if not lo < v < hi:
        raise UsageError(f"{option}: expected a value strictly between {lo:g} and {hi:g}, got {text!r}")
    return v


def _positive(text, option: str, integer: bool = False) -> float:
    from entload.errors import UsageError

    try:
        v = float(str(text).replace("_", "").replace(",", "")) if text is not None else None
    except ValueError:
        v = None
    if v is None or not v > 0 or (integer and v != int(v)):
        raise UsageError(f"{option}: expected a positive {'whole ' if integer else ''}number, got {text!r}")
    return v


def run(args) -> int:
    from capacity.pipeline import CapacityRequest, analyse
    from capacity.plan import PlanSettings
    from capacity.series import CapacityInputError
    from entload.errors import InputError, UsageError
    from entload.units import format_rate, parse_duration, parse_rate

    if not args.run and not args.series:
        raise UsageError("give the measured traffic: --run DIR or --series FILE")
    if args.run and args.series:
        raise UsageError("--run and --series: give one of them")
    epsilon = _fraction(args.epsilon, "--epsilon")
    plan_at = _fraction(args.plan_at, "--plan-at")
    upgrade_at = _fraction(args.upgrade_at, "--upgrade-at")
    if plan_at >= upgrade_at:
        raise UsageError(f"--plan-at ({plan_at:.0%}) must be below --upgrade-at ({upgrade_at:.0%})")
    tiers = []
    for part in (p for p in args.tiers.split(",") if p.strip()):
        tiers.append(parse_rate(part, "--tiers"))
    if not tiers:
        raise UsageError("--tiers: expected a comma-separated list of rates such as 1Gbit,2Gbit,5Gbit")
    what_if = tuple(_positive(p, "--what-if") for p in args.what_if.split(",") if p.strip())
    if args.hurst is not None and not 0 < args.hurst < 1:
        raise UsageError(f"--hurst: expected a value strictly between 0 and 1, got {args.hurst:g}")
    if args.busy_days < 1:
        raise UsageError(f"--busy-days: expected a whole number >= 1, got {args.busy_days}")
    busy_start = None
    if args.busy_hour:
        from entload.units import parse_clock

        busy_start = parse_clock(args.busy_hour, "--busy-hour")
    share = None
    if args.busy_hour_share is not None:
        share = _fraction(str(args.busy_hour_share), "--busy-hour-share")
    settings = PlanSettings(
        epsilon=epsilon,
        timescale_s=parse_duration(args.timescale, "--timescale"),
        form=args.form,
        link_bps=parse_rate(args.link, "--link") if args.link else None,
        tiers_bps=tuple(sorted(tiers)),
        lead_time_days=parse_duration(args.lead_time, "--lead-time") / 86400,
        plan_at=plan_at,
        upgrade_at=upgrade_at,
        what_if=what_if,
        visits_query=_positive(args.visits, "--visits") if args.visits else None,
        hurst_override=args.hurst,
    )
    horizon_days = int(round(parse_duration(args.horizon, "--horizon") / 86400))
    if horizon_days < 30:
        raise UsageError(f"--horizon: expected at least 30 days, got {args.horizon!r}")
    req = CapacityRequest(
        run_dir=args.run, series_path=args.series, time_col=args.time_col,
        bytes_cols=[c.strip() for c in args.bytes_col.split(",") if c.strip()] if args.bytes_col else None,
        history_path=args.history, history_date_col=args.date_col, history_visits_col=args.visits_col,
        zone=args.zone,
        reference_visits=_positive(args.reference_visits, "--reference-visits") if args.reference_visits else None,
        busy_hour_share=share, busy_days=args.busy_days, busy_hour_start_s=busy_start, horizon_days=horizon_days,
        settings=settings, out_dir=args.out, plots=not args.no_plots,
    )

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"capacity: {msg}", file=sys.stderr, flush=True)

    try:
        result = analyse(req, progress)
    except CapacityInputError as exc:
        raise InputError(str(exc)) from None
    print(result["answer"])
    if not args.quiet:
        main = result["directions"][result["required_direction"]]
        h = main["hurst"]
        fit = (f"H = {h['estimate']:.2f} ± {h['stderr']:.2f} (R² {h['r2']:.3f}, {h['n_points']} timescales)"
               if h["estimate"] is not None else f"H not estimable, {h['used']} assumed")
        print(f"  busy hour {main['busy_hour_start']} ({result['required_direction']}): "
              f"mean {format_rate(result['measured_busy_hour']['mean_bps'])}, "
              f"required {format_rate(result['measured_busy_hour']['required_bps'])}; {fit}")
        by_h = main["required_bps_by_hurst"]
        print("  C(T, eps) by H: " + ", ".join(f"{k}: {format_rate(v)}" for k, v in by_h.items()))
        for w in result["what_if"]:
            print(f"  what if visits x{w['multiplier']:g}: {format_rate(w['required_bps'])} needed, "
                  f"tier {format_rate(w['tier_bps']) if w['tier_bps'] else 'none in the list'}")
        if args.out:
            print(f"  written: {args.out}/capacity.json, report.md, report.html"
                  + (f", {len(result.get('plots', {}))} plots" if result.get("plots") else ""))
    return 0
