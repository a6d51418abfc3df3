"""Forecast of daily ENT visits with the French school calendar.

Model (log scale, so calendar effects are multiplicative):
    log visits(d) = log trend(t_d) + b_sat [Saturday] + b_sun [Sunday] + b_hol [school holiday of the zone,
                    not summer] + b_sum [summer holiday] + b_pub [public holiday] + e_d,   e_d ~ N(0, s^2)
with t in years since the first day of history and three trend candidates:
    linear       trend = a + b t
    exponential  trend = a exp(b t)
    logistic     trend = K / (1 + exp(-r (t - t0)))
fitted by nonlinear least squares (scipy.optimize.curve_fit) and ranked by AICc on the same log data.
Prediction intervals use the delta method: Var = J Cov(params) J^T + s^2 (residuals taken as
independent, so the bands are somewhat optimistic when the daily noise is autocorrelated). A calendar
effect with no day of that kind in the history is left out (factor 1) and said so.

School holidays come from `vacances-scolaires-france` (data up to its last year); after that, the
holiday pattern of the last covered year is reused, shifted by whole weeks (7 round(365.2425 n / 7)
days), so weekdays stay aligned and the dates move by at most a few days. Public holidays come from
`holidays` (France), computed for any year.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.special import stdtrit

CALENDAR_EFFECTS = ("saturday", "sunday", "school_holiday", "summer_holiday", "public_holiday")
ZONES = ("A", "B", "C")


@lru_cache(maxsize=1)
def _school_calendar():
    from vacances_scolaires_france import SchoolHolidayDates

    return SchoolHolidayDates()


def calendar_features(dates: np.ndarray, zone: str = "C") -> tuple[np.ndarray, list[str]]:
    """0/1 matrix (days x CALENDAR_EFFECTS) and notes about the calendar data used."""
    import holidays as pyholidays

    if zone not in ZONES:
        raise ValueError(f"zone must be one of {', '.join(ZONES)}")
    cal = _school_calendar()
    key = cal.zone_key(zone)
    pydates = dates.astype("datetime64[D]").astype(object)
    years = sorted({d.year for d in pydates})
    public = pyholidays.France(years=years)
    notes = []
    shifted_years = set()
    first, last = min(cal.data), max(cal.data)
    x = np.zeros((len(pydates), len(CALENDAR_EFFECTS)))
    for i, d in enumerate(pydates):
        wd = d.weekday()
        x[i, 0] = wd == 5
        x[i, 1] = wd == 6
        look = d
        if d > last or d < first:
            years_off = math.ceil((d - last).days / 365.2425) if d > last else -math.ceil((first - d).days / 365.2425)
            look = d - dt.timedelta(days=7 * round(365.2425 * years_off / 7))
            while look > last:
                look -= dt.timedelta(days=364)
            while look < first:
                look += dt.timedelta(days=364)
            shifted_years.add(d.year)
        row = cal.data.get(look)
        if row is not None and row[key]:
            if row["nom_vacances"] == "Vacances d'été":
                x[i, 3] = 1
            else:
                x[i, 2] = 1
        x[i, 4] = d in public
    if shifted_years:
        notes.append(
            f"school holidays for {min(shifted_years)}-{max(shifted_years)} are not in vacances-scolaires-france "
            f"(it ends on {last}); the nearest known year's dates are reused, shifted by whole weeks"
        )
    return x, notes


def _trend(kind: str, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """log trend(t) for each candidate (level scaled so the history's mean is 1)."""
    if kind == "linear":
        return np.log(np.maximum(p[0] + p[1] * t, 1e-6))
    if kind == "exponential":
        return p[0] + p[1] * t
    if kind == "logistic":
        return np.log(p[0]) - np.logaddexp(0.0, -p[1] * (t - p[2]))
    raise ValueError(kind)


N_TREND = {"linear": 2, "exponential": 2, "logistic": 3}


@dataclass
class TrendFit:
    kind: str
    params: np.ndarray
    cov: np.ndarray
    sigma: float
    n: int
    aicc: float
    effects: dict[str, float]
    weight: float = 0.0

    @property
    def k(self) -> int:
        return len(self.params) + 1


@dataclass
class Forecast:
    """Daily visits: fitted history and forecast ahead, with 95 % bands (level `level`)."""

    zone: str
    start: np.datetime64
    scale: float
    effects_used: list[str]
    best: TrendFit
    candidates: list[TrendFit]
    hist_dates: np.ndarray
    hist_visits: np.ndarray
    hist_fit: np.ndarray
    dates: np.ndarray
    median: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    mean_lower: np.ndarray
    mean_upper: np.ndarray
    level: float
    notes: list[str] = field(default_factory=list)
    interval_method: str = "delta method (curve_fit covariance) on the log scale, t quantile"

    def as_dict(self) -> dict:
        return {
            "zone": self.zone,
            "model": self.best.kind,
            "interval_method": self.interval_method,
            "level": self.level,
            "calendar_effects": {k: round(math.exp(v), 4) for k, v in self.best.effects.items()},
            "candidates": [
                {"model": c.kind, "aicc": round(c.aicc, 2), "akaike_weight": round(c.weight, 4),
                 "residual_sd_log": round(c.sigma, 4)} for c in self.candidates
            ],
            "history_days": int(len(self.hist_dates)),
            "history_from": str(self.hist_dates[0]), "history_to": str(self.hist_dates[-1]),
            "forecast_to": str(self.dates[-1]) if len(self.dates) else None,
        }


def _years(dates: np.ndarray, start: np.datetime64) -> np.ndarray:
    return (dates - start).astype(float) / 365.2425


def fit_forecast(dates: np.ndarray, visits: np.ndarray, horizon_days: int = 3 * 365, zone: str = "C",
                 level: float = 0.95, models=("linear", "exponential", "logistic")) -> Forecast:
    """Fit every trend candidate with the calendar, keep the lowest AICc, forecast `horizon_days`."""
    from scipy import optimize  # heavy import, only when there is a history to fit

    dates = dates.astype("datetime64[D]")
    start = dates[0]
    t = _years(dates, start)
    scale = float(np.mean(visits))
    y = np.log(visits / scale)
    xcal, notes = calendar_features(dates, zone)
    used = [j for j in range(xcal.shape[1]) if xcal[:, j].sum() > 0]
    dropped = [CALENDAR_EFFECTS[j] for j in range(xcal.shape[1]) if j not in used]
    if dropped:
        notes.append("no day of kind " + ", ".join(dropped) + " in the history: that effect is left out (factor 1)")
    xu = xcal[:, used]
    n = len(y)
    design = np.column_stack([np.ones(n), t, xu])
    ols, *_ = np.linalg.lstsq(design, y, rcond=None)
    beta0 = ols[2:]
    span = max(t[-1], 1 / 12)

    fits: list[TrendFit] = []
    for kind in models:
        nt = N_TREND[kind]

        def f(tt, *p, _kind=kind, _nt=nt, _x=xu):
            p = np.asarray(p)
            return _trend(_kind, tt, p[:_nt]) + _x @ p[_nt:]

        starts = []
        if kind == "exponential":
            starts.append((np.r_[ols[0], ols[1], beta0], None))
        elif kind == "linear":
            a = math.exp(ols[0])
            starts.append((np.r_[a, a * ols[1], beta0], None))
        else:
            level_end = math.exp(ols[0] + ols[1] * t[-1])
            # Bounds keep the fit where the data can speak: K up to 20x today's level and the
            # inflection within 10 years (beyond that the logistic is the exponential, already a candidate).
            lo = np.r_[level_end * 0.5, 1e-3, -5.0, np.full(len(beta0), -np.inf)]
            hi = np.r_[level_end * 20, 20.0, t[-1] + 10, np.full(len(beta0), np.inf)]
            for kfac, t0 in ((1.5, t[-1]), (4.0, t[-1] + span)):
                r0 = max(abs(ols[1]) * kfac / max(kfac - 1, 0.1), 0.05)
                p0 = np.r_[level_end * kfac, min(r0, 15.0), t0, beta0]
                starts.append((p0, (lo, hi)))
        best = None
        for p0, bounds in starts:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if bounds is None:
                        popt, pcov = optimize.curve_fit(f, t, y, p0=p0, maxfev=20000)
                    else:
                        p0 = np.clip(p0, bounds[0] + 1e-9, bounds[1] - 1e-9)
                        popt, pcov = optimize.curve_fit(f, t, y, p0=p0, bounds=bounds, max_nfev=3000)
            except (RuntimeError, ValueError, optimize.OptimizeWarning):
                continue
            rss = float(np.sum((y - f(t, *popt)) ** 2))
            if best is None or rss < best[2]:
                best = (popt, pcov, rss)
        if best is None:
            notes.append(f"the {kind} trend did not converge and was left out")
            continue
        popt, pcov, rss = best
        k = len(popt) + 1
        if n - k - 1 <= 0:
            continue
        sigma2 = rss / n
        aicc = n * math.log(sigma2) + 2 * k + 2 * k * (k + 1) / (n - k - 1)
        if not np.all(np.isfinite(pcov)):
            pcov = np.where(np.isfinite(pcov), pcov, 0.0)
            notes.append(f"the {kind} trend's parameter covariance is not fully identified (bands too narrow)")
        effects = {CALENDAR_EFFECTS[j]: float(popt[nt + i]) for i, j in enumerate(used)}
        fits.append(TrendFit(kind, popt, pcov, math.sqrt(rss / (n - len(popt))), n, aicc, effects))
    if not fits:
        raise ValueError("no trend model could be fitted to the history")
    amin = min(c.aicc for c in fits)
    w = np.array([math.exp(-(c.aicc - amin) / 2) for c in fits])
    for c, wi in zip(fits, w / w.sum(), strict=True):
        c.weight = float(wi)
    fits.sort(key=lambda c: c.aicc)
    best = fits[0]

    fut = dates[-1] + np.arange(1, horizon_days + 1).astype("timedelta64[D]")
    xf, fnotes = calendar_features(fut, zone)
    notes += [m for m in fnotes if m not in notes]
    nt = N_TREND[best.kind]

    def g(tt, x, p):
        return _trend(best.kind, tt, p[:nt]) + x[:, used] @ p[nt:]

    tf = _years(fut, start)
    mu_f = g(tf, xf, best.params)
    # Delta method: numerical Jacobian of the log prediction with respect to the parameters.
    jac = np.empty((len(tf), len(best.params)))
    for i, p in enumerate(best.params):
        hstep = 1e-6 * max(abs(p), 1e-3)
        up, dn = best.params.copy(), best.params.copy()
        up[i] += hstep
        dn[i] -= hstep
        jac[:, i] = (g(tf, xf, up) - g(tf, xf, dn)) / (2 * hstep)
    var_mean = np.einsum("ij,jk,ik->i", jac, best.cov, jac)
    var_mean = np.maximum(var_mean, 0.0)
    q = float(stdtrit(max(n - len(best.params), 1), 0.5 + level / 2))
    sd_pred = np.sqrt(var_mean + best.sigma**2)
    sd_mean = np.sqrt(var_mean)
    hist_fit = np.exp(g(t, xcal, best.params)) * scale
    return Forecast(
        zone=zone, start=start, scale=scale, effects_used=[CALENDAR_EFFECTS[j] for j in used], best=best,
        candidates=fits, hist_dates=dates, hist_visits=visits, hist_fit=hist_fit, dates=fut,
        median=np.exp(mu_f) * scale, lower=np.exp(mu_f - q * sd_pred) * scale,
        upper=np.exp(mu_f + q * sd_pred) * scale, mean_lower=np.exp(mu_f - q * sd_mean) * scale,
        mean_upper=np.exp(mu_f + q * sd_mean) * scale, level=level, notes=notes,
    )
