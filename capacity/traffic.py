"""Traffic characterisation from a byte series: the busy hour, its mean rate mu, the variance-time
curve v(T) = Var A(T) from the series step up to 15 minutes, the Hurst parameter H from the slope of
log v against log T (v ~ T^(2H)), and v(T) below the step by extrapolation with T^(2H).

Estimation choices (each also written into the report):
- busy hour = the busiest 60-minute window of the series (sliding by one step), the conservative
  "peak" choice for a link that must carry the worst hour;
- v(T) is measured inside busy-hour windows after removing each window's linear trend (the slow
  drift of a school day is not burstiness); block sums use ddof = 2 for the two trend parameters;
- with several days, v(T)/mu is pooled over the busy hours of the D busiest days and scaled back to
  the peak mu (independent visits: v grows like mu, the same assumption as the growth law), giving more
  blocks at long timescales than one hour alone;
- below the step, v(T) = v(step) (T/step)^(2H); H = 0.5 is the conservative end there (the largest
  fluctuations at short T), so it is the fallback when H cannot be estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from capacity.dimension import required_capacity
from capacity.series import ByteSeries, CapacityInputError

MAX_TIMESCALE_S = 900.0
BUSY_WINDOW_S = 3600.0
H_SENSITIVITY = (0.5, 0.6, 0.7, 0.8, 0.9)
H_FALLBACK = 0.5


@dataclass
class HurstFit:
    """H from the variance-time slope, with its fit quality."""

    estimate: float | None
    stderr: float | None
    r2: float | None
    n_points: int
    used: float
    reason: str

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "stderr": self.stderr, "r2": self.r2,
                "n_points": self.n_points, "used": self.used, "how": self.reason}


@dataclass
class DirectionTraffic:
    """Busy-hour characterisation of one direction of one series."""

    name: str
    step_s: float
    mean_bps: float
    busy_start_s: float
    busy_label: str
    timescales_s: np.ndarray
    variance_bits2: np.ndarray
    blocks: np.ndarray
    days_pooled: int
    hurst: HurstFit
    daily_mean_bps: float
    peak_to_mean: float
    notes: list[str] = field(default_factory=list)
    skewness: float = math.nan

    def variance_at(self, timescale_s: float, hurst: float | None = None) -> float:
        """v(T) in bit^2: measured (log-log interpolation) inside the observed range, T^(2H) outside."""
        h = self.hurst.used if hurst is None else hurst
        ts, vs = self.timescales_s, self.variance_bits2
        if len(ts) == 0:
            raise CapacityInputError(f"{self.name}: no timescale could be measured")
        if timescale_s <= ts[0]:
            return float(vs[0] * (timescale_s / ts[0]) ** (2 * h))
        if timescale_s >= ts[-1]:
            return float(vs[-1] * (timescale_s / ts[-1]) ** (2 * h))
        return float(np.exp(np.interp(np.log(timescale_s), np.log(ts), np.log(vs))))

    def observed(self, timescale_s: float) -> bool:
        return len(self.timescales_s) > 0 and (
            self.timescales_s[0] * 0.999 <= timescale_s <= self.timescales_s[-1] * 1.001
        )

    def capacity(self, timescale_s, epsilon, form="chernoff", hurst=None, mean_bps=None, scale=1.0):
        """C(T, eps) for this direction, optionally for `scale` x the visits (mu and v both x scale)."""
        mu = (self.mean_bps if mean_bps is None else mean_bps) * scale
        return required_capacity(mu, self.variance_at(timescale_s, hurst) * scale, timescale_s, epsilon, form)

    def sensitivity(self, timescale_s, epsilon, form="chernoff", scale=1.0) -> dict[float, float]:
        return {h: self.capacity(timescale_s, epsilon, form, hurst=h, scale=scale) for h in H_SENSITIVITY}


def _rolling_sums(x: np.ndarray, w: int) -> np.ndarray:
    """Sums of every w consecutive steps; NaN where the window holds a missing step."""
    filled = np.nan_to_num(x, nan=0.0)
    c = np.concatenate([[0.0], np.cumsum(filled)])
    sums = c[w:] - c[:-w]
    miss = np.concatenate([[0], np.cumsum(np.isnan(x))])
    sums[(miss[w:] - miss[:-w]) > 0] = np.nan
    return sums


def _timescale_grid(step: float, window_steps: int) -> list[int]:
    """Block sizes m (T = m step) from 1 up to 15 min, at least 4 blocks per window, ~log spaced."""
    m_max = min(int(MAX_TIMESCALE_S // step + 1e-9), window_steps // 4)
    grid, m = [], 1
    while m <= m_max:
        grid.append(m)
        m = max(m + 1, int(round(m * 1.25)))
    return grid


def _block_variances(window: np.ndarray, grid: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Var of block sums of the linearly detrended window, for each block size; (variances, blocks)."""
    n = len(window)
    idx = np.arange(n, dtype=float)
    slope, intercept = np.polyfit(idx, window, 1) if n >= 3 else (0.0, float(np.mean(window)))
    resid = window - (intercept + slope * idx)
    out, nb = [], []
    for m in grid:
        k = n // m
        sums = resid[: k * m].reshape(k, m).sum(axis=1)
        sums = sums - sums.mean()
        out.append(float(np.sum(sums**2) / (k - 2)) if k > 2 else np.nan)
        nb.append(k)
    return np.array(out), np.array(nb)


def fit_hurst(timescales_s: np.ndarray, variances: np.ndarray, override: float | None = None,
              dof: np.ndarray | None = None) -> HurstFit:
    """Least squares of log v on log T: slope = 2H, with its standard error and R^2.

    With `dof` (degrees of freedom of each v estimate) the fit is weighted by dof/2, the inverse
    variance of the log of a sample variance, so the long timescales resting on few blocks count less.
    The standard error treats the points as independent (they share data: it is optimistic). The fit
    is used with at least 4 timescales; for use it is clipped to [0.5, 0.99] (outside, v ~ T^2H with
    a stationary source does not hold)."""
    ok = np.isfinite(variances) & (variances > 0)
    x, y = np.log(timescales_s[ok]), np.log(variances[ok])
    w = np.ones_like(x) if dof is None else np.maximum(np.asarray(dof, dtype=float)[ok], 1.0) / 2
    n = int(ok.sum())
    est = se = r2 = None
    if n >= 3:
        xm, ym = np.average(x, weights=w), np.average(y, weights=w)
        sxx = float(np.sum(w * (x - xm) ** 2))
        slope = float(np.sum(w * (x - xm) * (y - ym)) / sxx)
        resid = y - (ym + slope * (x - xm))
        s2 = float(np.sum(w * resid**2) / (n - 2))
        syy = float(np.sum(w * (y - ym) ** 2))
        est, se = slope / 2, math.sqrt(s2 / sxx) / 2
        r2 = 1 - float(np.sum(w * resid**2)) / syy if syy > 0 else 1.0
    if override is not None:
        return HurstFit(est, se, r2, n, float(override), "given with --hurst")
    if est is None or n < 4:
        return HurstFit(est, se, r2, n, H_FALLBACK,
                        f"only {n} timescales measured: H not estimable, conservative H = {H_FALLBACK} used")
    used = float(min(max(est, 0.5), 0.99))
    how = "variance-time slope, weighted by degrees of freedom"
    if used != est:
        how += f" (estimate {est:.2f} clipped to {used:.2f})"
    return HurstFit(float(est), float(se), float(r2), n, used, how)


def characterise(series: ByteSeries, direction: str, busy_days: int = 10,
                 hurst_override: float | None = None, busy_start_s: float | None = None) -> DirectionTraffic:
    """Busy hour, mu and v(T) of one direction (see the module docstring for the choices)."""
    x = series.directions[direction]
    step = series.step_s
    notes: list[str] = []
    valid = x[np.isfinite(x)]
    if valid.size == 0 or float(valid.sum()) <= 0:
        raise CapacityInputError(f"{series.source}: column {direction!r} carries no bytes at all")
    if step > MAX_TIMESCALE_S:
        hint = (f" (the run is compressed x{series.compression:g}: one row holds {step:g} real seconds; replay with "
                f"a compression of 900 or less, e.g. entload run --day-in 2m or longer)" if series.compression > 1 else "")
        raise CapacityInputError(
            f"{series.source}: step {step:g} s is coarser than 15 min; the busy-hour analysis needs a finer series{hint}"
        )
    w = int(round(BUSY_WINDOW_S / step))
    if w > len(x):
        w = len(x)
        notes.append(f"{direction}: the series covers {len(x) * step / 60:.0f} min only, less than an hour: "
                     "the whole series is taken as the busy period")
    w = max(w, 1)
    sums = _rolling_sums(x, w)
    if not np.any(np.isfinite(sums)):
        raise CapacityInputError(f"{series.source}: column {direction!r}: no complete hour without missing steps")
    if busy_start_s is not None:
        tod = np.mod(series.t_s[: len(sums)], 86400)
        cand = np.where(np.isfinite(sums) & (np.abs(tod - busy_start_s) < step / 2))[0]
        if cand.size == 0:
            raise CapacityInputError(f"{series.source}: no complete hour starts at the requested busy hour")
        start = int(cand[np.argmax(sums[cand])])
        notes.append(f"{direction}: busy hour fixed by the user at {series.label_time(series.t_s[start])}")
    else:
        start = int(np.nanargmax(sums))
    mean_bytes_per_step = sums[start] / w
    mean_bps = mean_bytes_per_step * 8.0 / step

    # Windows for v(T): the peak hour, plus the busiest hour of each of the next busiest days.
    day = np.floor(series.t_s[: len(sums)] / 86400).astype(np.int64)
    starts = [start]
    if busy_days > 1:
        best: dict[int, int] = {}
        order = np.argsort(np.nan_to_num(sums, nan=-1.0))[::-1]
        for i in order:
            if not np.isfinite(sums[i]):
                break
            d = int(day[i])
            if d not in best:
                best[d] = int(i)
        ranked = sorted(best.values(), key=lambda i: -sums[i])
        starts = [start] + [i for i in ranked if int(day[i]) != int(day[start])][: busy_days - 1]
    grid = _timescale_grid(step, w)
    if not grid:
        notes.append(f"{direction}: the busy period holds {w} steps: too few to measure any variance")
        ts = np.array([step])
        var_raw = np.var(x[start : start + w][np.isfinite(x[start : start + w])], ddof=1) if w > 1 else 0.0
        vt = np.array([var_raw * 64.0])
        blocks = np.array([w])
    else:
        acc = np.zeros(len(grid))
        dof = np.zeros(len(grid))
        for s in starts:
            win = x[s : s + w]
            mean_w = float(np.mean(win))
            if mean_w <= 0:
                continue
            var, nb = _block_variances(win, grid)
            good = np.isfinite(var)
            acc[good] += (var[good] / mean_w) * (nb[good] - 2)
            dof[good] += nb[good] - 2
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = acc / dof
        vt = ratio * mean_bytes_per_step * 64.0  # bytes^2 -> bits^2, scaled to the peak mu
        ts = np.array(grid, dtype=float) * step
        blocks = dof.astype(int)
        keep = np.isfinite(vt) & (vt > 0)
        ts, vt, blocks = ts[keep], vt[keep], blocks[keep]
    hurst = fit_hurst(ts, vt, hurst_override, blocks)
    if len(starts) > 1:
        notes.append(f"{direction}: v(T)/mu pooled over the busy hours of {len(starts)} days, scaled to the peak mu")
    daily_mean = float(np.nanmean(x)) * 8.0 / step
    busy = x[start : start + w]
    busy = busy[np.isfinite(busy)]
    sd = float(np.std(busy))
    skew = float(np.mean((busy - busy.mean()) ** 3) / sd**3) if sd > 0 else math.nan
    return DirectionTraffic(
        name=direction, step_s=step, mean_bps=mean_bps, busy_start_s=float(series.t_s[start]),
        busy_label=series.label_time(series.t_s[start]), timescales_s=ts, variance_bits2=vt, blocks=blocks,
        days_pooled=len(starts), hurst=hurst, daily_mean_bps=daily_mean,
        peak_to_mean=mean_bps / daily_mean if daily_mean > 0 else math.nan, notes=notes, skewness=skew,
    )


def characterise_all(series: ByteSeries, busy_days: int = 10, hurst_override: float | None = None,
                     busy_start_s: float | None = None) -> dict[str, DirectionTraffic]:
    return {d: characterise(series, d, busy_days, hurst_override, busy_start_s) for d in series.directions}


def busy_hour_share(t_s: np.ndarray, arrivals: np.ndarray) -> float:
    """Share of a day's arrivals in its busiest clock-aligned hour (for the per-visit model)."""
    hours = np.floor(np.mod(t_s, 86400) / 3600).astype(int)
    per_hour = np.bincount(hours, weights=arrivals, minlength=24)
    total = per_hour.sum()
    return float(per_hour.max() / total) if total > 0 else math.nan
