"""From input files to the plan and its report: the one function the command (and a notebook) calls.

Reference visits (the daily visits the measured busy hour stands for) are needed to move along the
forecast; they come, in this order, from the user (`reference_visits`), from a run that replays a whole
day (summary.json `arrivals.achieved`), or from the per-visit model of a run (the daily visits whose
busy hour, at the run's bytes per visit and busy-hour share, gives the measured mu).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from capacity.dimension import per_visit_busy_hour
from capacity.forecast import fit_forecast
from capacity.plan import PlanSettings, build_reference, make_plan
from capacity.report import write_outputs
from capacity.series import CapacityInputError, load_history, load_run, load_series, per_visit_bytes
from capacity.traffic import busy_hour_share, characterise_all

DEFAULT_BUSY_HOUR_SHARE = 0.12


@dataclass
class CapacityRequest:
    run_dir: str | None = None
    series_path: str | None = None
    time_col: str | None = None
    bytes_cols: list[str] | None = None
    history_path: str | None = None
    history_date_col: str = "date"
    history_visits_col: str = "visits"
    zone: str = "C"
    reference_visits: float | None = None
    busy_hour_share: float | None = None
    busy_days: int = 10
    busy_hour_start_s: float | None = None
    horizon_days: int = 3 * 365
    settings: PlanSettings = field(default_factory=PlanSettings)
    out_dir: str | None = None
    plots: bool = True


def analyse(req: CapacityRequest, progress: Callable[[str], None] = lambda m: None) -> dict:
    """Run the whole model; write outputs when `req.out_dir` is set; return the capacity.json content."""
    t0 = time.perf_counter()
    s = req.settings
    assumptions: list[str] = []
    notes: list[str] = []
    inputs: dict = {}
    manifest = summary = None
    if req.run_dir and req.series_path:
        raise CapacityInputError("give either --run or --series, not both (one measured traffic at a time)")
    if req.run_dir:
        progress(f"reading run folder {req.run_dir}")
        series, manifest, summary = load_run(req.run_dir)
        inputs["run"] = str(req.run_dir)
    elif req.series_path:
        progress(f"reading series {req.series_path}")
        series = load_series(req.series_path, req.time_col, req.bytes_cols)
        inputs["series"] = str(req.series_path)
    else:
        raise CapacityInputError("no traffic given: use --run DIR or --series FILE (a per-second byte series)")
    notes += series.notes
    progress(f"characterising {series.n} steps of {series.step_s:g} s, directions: {', '.join(series.directions)}")
    traffic = characterise_all(series, req.busy_days, s.hurst_override, req.busy_hour_start_s)
    for tr in traffic.values():
        notes += tr.notes

    # Per-visit model and the reference visits.
    per_visit = None
    ref_visits, how = req.reference_visits, "given with --reference-visits" if req.reference_visits else ""
    if summary is not None and summary.get("per_visit_bytes"):
        spath = str(Path(req.run_dir) / "summary.json")
        pv = per_visit_bytes(summary, spath)
        share, share_how = req.busy_hour_share, "given with --busy-hour-share"
        window = (manifest or {}).get("window") or {}
        full_day = float(window.get("from_s", 0) or 0) <= 0 and float(window.get("to_s", 86400) or 86400) >= 86400
        arrivals_col = series.extra.get("arrivals")
        if share is None and full_day and arrivals_col is not None and arrivals_col.sum() > 0:
            share, share_how = busy_hour_share(series.t_s, arrivals_col), "busiest clock hour of the run's arrivals"
        if share is None:
            share, share_how = DEFAULT_BUSY_HOUR_SHARE, "default assumption"
            assumptions.append(f"busy-hour share of daily visits {share:.0%} (default; set --busy-hour-share)")
        achieved = ((summary.get("arrivals") or {}).get("achieved"))
        if ref_visits is None and full_day and isinstance(achieved, (int, float)) and achieved > 0:
            ref_visits, how = float(achieved), "the run replays a whole day: summary.json arrivals.achieved"
        per_dir = {}
        for d, key in (("bytes_down", "down"), ("bytes_up", "up")):
            if d in traffic:
                visits_from_mu = traffic[d].mean_bps * 3600 / (share * pv[key] * 8) if pv[key] > 0 else None
                per_dir[d] = {"bytes_per_visit": pv[key], "by_persona": pv[key + "_by_persona"],
                              "visits_matching_measured_mu": visits_from_mu}
        main = max(per_dir, key=lambda d: traffic[d].mean_bps) if per_dir else None
        if ref_visits is None and main and per_dir[main]["visits_matching_measured_mu"]:
            ref_visits = per_dir[main]["visits_matching_measured_mu"]
            how = (f"per-visit model: the daily visits whose busy hour ({share:.0%} of the day) at "
                   f"{per_dir[main]['bytes_per_visit'] / 1e6:.3g} MB per visit gives the measured mu")
        if ref_visits:
            for d, rec in per_dir.items():
                rec["busy_hour_mean_bps_model"] = per_visit_busy_hour(ref_visits, share, rec["bytes_per_visit"])[0]
                rec["busy_hour_mean_bps_measured"] = traffic[d].mean_bps
        per_visit = {"persona_mix": pv["mix"], "busy_hour_share": share, "busy_hour_share_how": share_how,
                     "directions": per_dir,
                     "variance": "independent visits: v(T) scales with the visits (growth law)"}
    if (req.history_path or s.visits_query) and not ref_visits:
        raise CapacityInputError(
            "--history/--visits need the daily visits the measured traffic stands for: "
            "give --reference-visits N (or a run folder with summary.json)"
        )
    ref = build_reference(traffic, s, ref_visits, how)

    forecast = None
    if req.history_path:
        progress(f"reading history {req.history_path}")
        hist = load_history(req.history_path, req.history_date_col, req.history_visits_col)
        notes += hist.notes
        progress(f"fitting trend candidates on {len(hist.dates)} days (zone {req.zone})")
        try:
            forecast = fit_forecast(hist.dates, hist.visits, req.horizon_days, req.zone)
        except ValueError as exc:
            raise CapacityInputError(f"{req.history_path}: {exc}") from None
        notes += forecast.notes
        inputs["history"] = str(req.history_path)
    progress("planning")
    plan = make_plan(ref, s, forecast)
    result = _assemble(series, traffic, ref, plan, forecast, per_visit, s, req, inputs, notes, assumptions)
    if req.out_dir:
        out = Path(req.out_dir)
        try:
            (out / "plots").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CapacityInputError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
        figs = {}
        if req.plots:
            from capacity import plots  # matplotlib only when drawing

            progress(f"drawing plots into {out / 'plots'}")
            figs["series"] = "plots/" + plots.series_overview(series, traffic, out / "plots" / "series.png")
            figs["variance_time"] = "plots/" + plots.variance_time(traffic, s.timescale_s,
                                                                   out / "plots" / "variance_time.png")
            figs["transfer_times"] = "plots/" + plots.transfer_plot(plan, s.plan_at, s.upgrade_at,
                                                                    out / "plots" / "transfer_times.png")
            if forecast is not None:
                figs["forecast"] = "plots/" + plots.forecast_plot(forecast, plan, s.link_bps,
                                                                  out / "plots" / "forecast.png")
                figs["required_by_month"] = "plots/" + plots.months_plot(
                    plan, s.link_bps, s.tiers_bps, out / "plots" / "required_by_month.png")
        result["plots"] = figs
        result["elapsed_s"] = round(time.perf_counter() - t0, 3)
        write_outputs(result, out)
    result["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return result


def _assemble(series, traffic, ref, plan, forecast, per_visit, s, req, inputs, notes, assumptions) -> dict:
    from capacity.report import describe

    main = max(ref.required_bps, key=ref.required_bps.get)
    summ = plan.summary
    directions = {}
    for d, tr in traffic.items():
        directions[d] = {
            "busy_hour_start": tr.busy_label,
            "mean_bps": tr.mean_bps,
            "whole_series_mean_bps": tr.daily_mean_bps,
            "busy_hour_to_mean_ratio": tr.peak_to_mean,
            "required_bps": ref.required_bps[d],
            "required_bps_chernoff": tr.capacity(s.timescale_s, s.epsilon, "chernoff"),
            "required_bps_gaussian_quantile": tr.capacity(s.timescale_s, s.epsilon, "quantile"),
            "p95_5min_bps": ref.p95_5min_bps[d],
            "variance_time": [
                {"timescale_s": float(t), "variance_bits2": float(v), "sd_rate_bps": float(np.sqrt(v) / t),
                 "dof": int(b)}
                for t, v, b in zip(tr.timescales_s, tr.variance_bits2, tr.blocks, strict=True)
            ],
            "timescale_observed": tr.observed(s.timescale_s),
            "hurst": tr.hurst.as_dict(),
            "required_bps_by_hurst": {f"{h:.1f}": c for h, c in ref.sensitivity[d].items()},
            "days_pooled": tr.days_pooled,
            "busy_hour_skewness": tr.skewness,
        }
    link = s.link_bps
    required_now = summ["required_now_bps"]
    assumptions = [
        f"Gaussian traffic at the busy hour; required capacity C(T, ε) = μ + √(−2 ln ε)·√v(T)/T "
        f"({'Chernoff form' if s.form == 'chernoff' else 'exact Gaussian quantile μ + z₁₋ε·√v(T)/T'} used for the plan; "
        "both forms are reported)",
        f"overflow probability ε = {s.epsilon:g} over windows of T = {s.timescale_s:g} s",
        "busy hour = the busiest 60-minute window of the series (sliding by one step)",
        "v(T) measured inside busy-hour windows after removing each window's linear trend",
        "below the series step, v(T) = v(step)·(T/step)^(2H); the sensitivity over H = 0.5…0.9 is reported",
        "growth: visits ×g gives C' = gμ + √g·(C − μ) (independent visits); bytes per visit ×k gives C' = k·C",
        f"utilisation policy: plan at {s.plan_at:.0%}, upgrade before {s.upgrade_at:.0%} of the link, measured as "
        "the 95th percentile of 5-minute averages at the busy hour (from the same Gaussian model)",
        f"procurement lead time {s.lead_time_days:g} days; order-by = the earlier of the run-out date and the "
        "upgrade trigger, minus the lead time",
        "tier recommended: the smallest in the list that carries the busiest forecast day to the end of the "
        "horizon and keeps the upgrade trigger (or the current link if it already does)",
        "transfer times: the link as an M/G/1 processor-sharing queue, x / (C (1 − ρ)); the user's own access "
        "line is not included",
    ] + assumptions
    if series.compression != 1:
        assumptions.append(
            f"time compression k = {series.compression:g}: one run row holds k real seconds of traffic; the real "
            f"mean rate is the per-row bytes / k s and v_real(kT) = v_wall(T), so the variance-time curve starts "
            f"at T = k = {series.compression:g} s"
        )
    if forecast is not None:
        assumptions.append(
            f"forecast: log visits = trend + calendar effects (weekends, zone {forecast.zone} school holidays, "
            "summer, public holidays); trend chosen by AICc among linear, exponential, logistic; "
            f"{forecast.level:.0%} prediction intervals by the {forecast.interval_method}; the run-out range uses "
            "the upper and lower prediction bounds"
        )
    if ref.visits:
        assumptions.append(f"reference: the measured busy hour stands for {ref.visits:,.0f} visits a day ({ref.how_visits})")
    hurst_main = traffic[main].hurst
    result = {
        "schema_version": 1,
        "answer": "",
        "mean_bps": summ["mean_now_bps"],
        "required_bps": required_now,
        "required_direction": main,
        "link_bps": link,
        "runs_out_on": summ["runs_out_on"],
        "runs_out_range": summ["runs_out_range"],
        "order_by": summ["order_by"],
        "recommended_tier_bps": summ["recommended_tier_bps"],
        "hurst": hurst_main.used,
        "hurst_fit": hurst_main.as_dict(),
        "epsilon": s.epsilon,
        "timescale_s": s.timescale_s,
        "form": s.form,
        "policy": {"plan_at": s.plan_at, "upgrade_at": s.upgrade_at, "lead_time_days": s.lead_time_days,
                   "tiers_bps": list(s.tiers_bps), "p95_window_s": 300},
        "reference_visits": ref.visits,
        "reference_visits_how": ref.how_visits,
        "measured_busy_hour": {"mean_bps": max(ref.mean_bps.values()), "required_bps": max(ref.required_bps.values())},
        "series": {"source": series.source, "step_s": series.step_s, "rows": series.n,
                   "compression": series.compression, "directions": list(series.directions),
                   "from": series.label_time(series.t_s[0]), "to": series.label_time(series.t_s[-1])},
        "directions": directions,
        "per_visit_model": per_visit,
        "forecast": forecast.as_dict() if forecast is not None else None,
        "plan": {k: v for k, v in summ.items() if k not in ("what_if", "visits_query", "transfer_times")},
        "months": plan.months,
        "what_if": summ["what_if"],
        "visits_query": summ.get("visits_query"),
        "transfer_times": summ["transfer_times"],
        "inputs": inputs,
        "assumptions": assumptions,
        "notes": notes,
    }
    result["answer"] = describe(result)
    return result
