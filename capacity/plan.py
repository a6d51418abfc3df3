"""The link plan: busy-hour requirement now and per day ahead, the date it crosses the link, the date to
order by, the next tier, the practitioners' utilisation triggers, what-if multipliers and the inverse
question (which link for N visits a day).

Everything scales from one measured reference (mu, C(T, eps) and the 95th percentile of 5-minute
averages at the busy hour, per direction) by the growth law for g = visits / reference visits:
C' = g mu + sqrt(g) (C - mu) (independent visits add their means and their variances).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np

from capacity.dimension import percentile_average_rate
from capacity.forecast import Forecast
from capacity.latency import REFERENCE_TRANSFERS, ps_mean_transfer_time
from capacity.traffic import DirectionTraffic

DEFAULT_TIERS_BPS = (100e6, 200e6, 500e6, 1e9, 2e9, 5e9, 10e9, 20e9, 40e9, 100e9)
POLICY_WINDOW_S = 300.0
POLICY_QUANTILE = 0.95


@dataclass
class PlanSettings:
    epsilon: float = 0.01
    timescale_s: float = 1.0
    form: str = "chernoff"
    link_bps: float | None = None
    tiers_bps: tuple = DEFAULT_TIERS_BPS
    lead_time_days: float = 91.0
    plan_at: float = 0.5
    upgrade_at: float = 0.7
    what_if: tuple = ()
    visits_query: float | None = None
    hurst_override: float | None = None


@dataclass
class Reference:
    """Busy-hour figures per direction for `visits` visits a day (g = 1)."""

    visits: float | None
    mean_bps: dict[str, float]
    required_bps: dict[str, float]
    p95_5min_bps: dict[str, float]
    sensitivity: dict[str, dict[float, float]]
    how_visits: str = ""

    def scaled(self, g):
        """(required, mean, p95-5min) of the larger direction for growth factors g (array)."""
        g = np.asarray(g, dtype=float)
        req = np.max([g * m + np.sqrt(g) * (self.required_bps[d] - m) for d, m in self.mean_bps.items()], axis=0)
        mean = np.max([g * m for m in self.mean_bps.values()], axis=0)
        p95 = np.max([g * m + np.sqrt(g) * (self.p95_5min_bps[d] - m) for d, m in self.mean_bps.items()], axis=0)
        return req, mean, p95


def build_reference(traffic: dict[str, DirectionTraffic], settings: PlanSettings, visits: float | None,
                    how_visits: str = "") -> Reference:
    req, mean, p95, sens = {}, {}, {}, {}
    for d, tr in traffic.items():
        mean[d] = tr.mean_bps
        req[d] = tr.capacity(settings.timescale_s, settings.epsilon, settings.form)
        p95[d] = percentile_average_rate(tr.mean_bps, tr.variance_at(POLICY_WINDOW_S), POLICY_WINDOW_S,
                                         POLICY_QUANTILE)
        sens[d] = {h: float(c) for h, c in tr.sensitivity(settings.timescale_s, settings.epsilon,
                                                          settings.form).items()}
    return Reference(visits, mean, req, p95, sens, how_visits)


def smallest_tier(needed_bps: float, tiers) -> float | None:
    ok = [t for t in sorted(tiers) if t >= needed_bps]
    return ok[0] if ok else None


def _first(dates: np.ndarray, mask: np.ndarray):
    idx = np.flatnonzero(mask)
    return dates[idx[0]] if idx.size else None


def _iso(d) -> str | None:
    return None if d is None else str(np.datetime64(d, "D"))


@dataclass
class Plan:
    summary: dict
    months: list[dict] = field(default_factory=list)
    daily: dict | None = None
    transfer_curves: dict | None = None


def make_plan(ref: Reference, settings: PlanSettings, forecast: Forecast | None = None) -> Plan:
    """Dates, tiers and what-ifs from the reference (and the forecast when there is one)."""
    s = settings
    link = s.link_bps
    req_now = max(ref.required_bps.values())
    mean_now = max(ref.mean_bps.values())
    p95_now = max(ref.p95_5min_bps.values())
    out: dict = {
        "required_now_bps": req_now, "mean_now_bps": mean_now, "p95_5min_now_bps": p95_now,
        "runs_out_on": None, "runs_out_range": None, "order_by": None, "plan_trigger_on": None,
        "upgrade_trigger_on": None, "status": None,
    }
    tiers = sorted(s.tiers_bps)
    daily = None
    months: list[dict] = []
    if forecast is not None and ref.visits:
        as_of = forecast.hist_dates[-1]
        g_hist = forecast.hist_visits / ref.visits
        req_hist, _, p95_hist = ref.scaled(g_hist)
        g = forecast.median / ref.visits
        req, mean, p95 = ref.scaled(g)
        req_hi, _, p95_hi = ref.scaled(forecast.upper / ref.visits)
        req_lo, _, _ = ref.scaled(forecast.lower / ref.visits)
        daily = {"dates": forecast.dates, "required": req, "required_hi": req_hi, "required_lo": req_lo,
                 "mean": mean, "p95_5min": p95, "p95_5min_hi": p95_hi,
                 "hist_dates": forecast.hist_dates, "hist_required": req_hist}
        recent = forecast.hist_dates > as_of - np.timedelta64(365, "D")
        visits_now = float(np.max(forecast.hist_fit[recent]))
        out["visits_now"] = visits_now
        out["visits_now_how"] = "busiest fitted day of the last year of history"
        out["required_now_bps"], out["mean_now_bps"], out["p95_5min_now_bps"] = (
            float(x) for x in ref.scaled(visits_now / ref.visits))
        out["peak_forecast_visits"] = float(np.max(forecast.median))
        out["required_end_of_horizon_bps"] = float(np.max(req[-365:]))
        if link:
            past = np.flatnonzero(req_hist >= link)
            if past.size:
                out["runs_out_on"] = _iso(forecast.hist_dates[past[0]])
                out["status"] = "exceeded in the history already"
            else:
                out["runs_out_on"] = _iso(_first(forecast.dates, req >= link))
            early = _first(forecast.dates, req_hi >= link)
            late = _first(forecast.dates, req_lo >= link)
            out["runs_out_range"] = [_iso(early), _iso(late)]
            out["plan_trigger_on"] = _iso(_first(np.r_[forecast.hist_dates, forecast.dates],
                                                 np.r_[p95_hist, p95] >= s.plan_at * link))
            out["upgrade_trigger_on"] = _iso(_first(np.r_[forecast.hist_dates, forecast.dates],
                                                    np.r_[p95_hist, p95] >= s.upgrade_at * link))
            deadlines = [np.datetime64(d) for d in (out["runs_out_on"], out["upgrade_trigger_on"]) if d]
            if deadlines:
                deadline = min(deadlines)
                order = deadline - np.timedelta64(int(round(s.lead_time_days)), "D")
                out["deadline"] = _iso(deadline)
                out["order_by"] = _iso(order)
                if out["status"] is None:
                    out["status"] = "order overdue" if order <= as_of else "upgrade needed within the horizon"
            else:
                out["status"] = "the link lasts through the forecast horizon"
        # The tier: the smallest that carries the busiest forecast day and keeps the policy to the end.
        needed = max(float(np.max(req)), float(np.max(p95)) / s.upgrade_at)
        out["needed_through_horizon_bps"] = needed
        # Months: the busiest day of each month.
        month_keys = forecast.dates.astype("datetime64[M]")
        for m in np.unique(month_keys):
            sel = month_keys == m
            row = {"month": str(m), "visits": float(np.max(forecast.median[sel])),
                   "visits_hi": float(np.max(forecast.upper[sel])),
                   "required_bps": float(np.max(req[sel])), "required_hi_bps": float(np.max(req_hi[sel])),
                   "p95_5min_bps": float(np.max(p95[sel]))}
            row["tier_bps"] = smallest_tier(max(row["required_bps"], row["p95_5min_bps"] / s.upgrade_at), tiers)
            months.append(row)
    else:
        needed = max(req_now, p95_now / s.upgrade_at)
        out["needed_through_horizon_bps"] = needed
        if link:
            if req_now >= link:
                out["status"] = "exceeded now"
                out["runs_out_on"] = dt.date.today().isoformat()
                out["order_by"] = out["runs_out_on"]
            elif p95_now >= s.upgrade_at * link:
                out["status"] = "upgrade trigger reached now"
                out["order_by"] = dt.date.today().isoformat()
            else:
                out["status"] = "enough now (no history: no date ahead)"
    floor = link if link else 0.0
    tier = smallest_tier(max(needed, floor), tiers)
    if link and needed <= link:
        tier = link
    if tier is None:
        tier = tiers[-1] if tiers else None
        out["tier_note"] = "no tier in the list carries the forecast to the end of the horizon: the largest is shown"
    out["recommended_tier_bps"] = tier
    if link:
        out["utilisation_now"] = out["mean_now_bps"] / link
        out["p95_5min_utilisation_now"] = out["p95_5min_now_bps"] / link

    # What-if multipliers on today's busiest-day visits (e.g. a closure surge x3).
    base_visits = out.get("visits_now") or ref.visits
    wi = []
    for mult in s.what_if:
        req_m, mean_m, p95_m = (float(x) for x in ref.scaled(mult * (base_visits / ref.visits if ref.visits else 1)))
        row = {"multiplier": mult, "required_bps": req_m, "mean_bps": mean_m, "p95_5min_bps": p95_m,
               "tier_bps": smallest_tier(max(req_m, p95_m / s.upgrade_at), tiers)}
        if link:
            row["fits_link"] = bool(req_m <= link and p95_m <= s.upgrade_at * link)
            row["utilisation"] = mean_m / link
        if daily is not None and link:
            r_m, _, _ = ref.scaled(mult * forecast.median / ref.visits)
            row["runs_out_on"] = "now" if req_m >= link else _iso(_first(forecast.dates, r_m >= link))
        wi.append(row)
    out["what_if"] = wi

    if s.visits_query:
        if not ref.visits:
            raise ValueError("--visits needs reference visits for the measured traffic")
        req_q, mean_q, p95_q = (float(x) for x in ref.scaled(s.visits_query / ref.visits))
        out["visits_query"] = {
            "visits_per_day": s.visits_query, "required_bps": req_q, "mean_bps": mean_q,
            "p95_5min_bps": p95_q, "tier_bps": smallest_tier(max(req_q, p95_q / s.upgrade_at), tiers),
        }

    # Transfer times against utilisation on the link (or the recommended tier).
    cap = link or tier or req_now
    rho = np.linspace(0.0, 0.95, 96)
    curves = {name: ps_mean_transfer_time(bits, cap, rho) for name, bits in REFERENCE_TRANSFERS.items()}
    at_now = {}
    rho_now = min(out["mean_now_bps"] / cap, 0.999999) if cap else math.nan
    for name, bits in REFERENCE_TRANSFERS.items():
        at_now[name] = {
            "size_bytes": bits / 8, "at_zero_load_s": ps_mean_transfer_time(bits, cap, 0.0),
            "at_busy_hour_now_s": ps_mean_transfer_time(bits, cap, rho_now),
            "at_plan_threshold_s": ps_mean_transfer_time(bits, cap, s.plan_at),
            "at_upgrade_threshold_s": ps_mean_transfer_time(bits, cap, s.upgrade_at),
        }
    out["transfer_times"] = {"capacity_bps": cap, "busy_hour_utilisation": rho_now, "transfers": at_now}
    return Plan(out, months, daily, {"rho": rho, "curves": curves, "capacity_bps": cap})
