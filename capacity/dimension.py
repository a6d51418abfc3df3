"""Gaussian link dimensioning (van den Berg, Mandjes et al., Computer Networks 2006; Pras et al., IEEE
Network 2009): the capacity C such that the bits A(T) offered in a window of T seconds exceed C*T with
probability at most epsilon, when A(T) is close to Gaussian (many independent users).

Symbols: mu mean rate (bit/s), v = Var A(T) (bit^2), T timescale (s), epsilon overflow probability.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, ndtri  # the normal CDF and its inverse, without importing scipy.stats


def _check(mean_bps, var_bits2, timescale_s, epsilon=None):
    if mean_bps < 0 or var_bits2 < 0:
        raise ValueError("mean and variance must be >= 0")
    if timescale_s <= 0:
        raise ValueError("timescale must be positive")
    if epsilon is not None and not 0 < epsilon < 1:
        raise ValueError("epsilon must lie strictly between 0 and 1")


def required_capacity_chernoff(mean_bps, var_bits2, timescale_s, epsilon):
    """C(T, eps) = mu + sqrt(-2 ln eps) * sqrt(v(T)) / T: the Chernoff-bound form of the papers
    (slightly conservative: it bounds the Gaussian tail)."""
    _check(mean_bps, var_bits2, timescale_s, epsilon)
    return mean_bps + math.sqrt(-2.0 * math.log(epsilon)) * math.sqrt(var_bits2) / timescale_s


def required_capacity_quantile(mean_bps, var_bits2, timescale_s, epsilon):
    """C(T, eps) = mu + z_{1-eps} * sqrt(v(T)) / T: the exact Gaussian quantile."""
    _check(mean_bps, var_bits2, timescale_s, epsilon)
    return mean_bps + float(-ndtri(epsilon)) * math.sqrt(var_bits2) / timescale_s


def required_capacity(mean_bps, var_bits2, timescale_s, epsilon, form="chernoff"):
    """Either form by name; `chernoff` (the papers' formula) is the planning default."""
    if form == "chernoff":
        return required_capacity_chernoff(mean_bps, var_bits2, timescale_s, epsilon)
    if form == "quantile":
        return required_capacity_quantile(mean_bps, var_bits2, timescale_s, epsilon)
    raise ValueError(f"unknown form {form!r} (chernoff or quantile)")


def overflow_probability(mean_bps, var_bits2, timescale_s, capacity_bps):
    """P(A(T) > C T) under the Gaussian model: the tail 1 - Phi((C - mu) T / sqrt(v)).

    With zero variance the answer is 0 or 1 (deterministic traffic)."""
    _check(mean_bps, var_bits2, timescale_s)
    if var_bits2 == 0:
        return 0.0 if capacity_bps >= mean_bps else 1.0
    z = (capacity_bps - mean_bps) * timescale_s / math.sqrt(var_bits2)
    return float(ndtr(-z))


def grow_visits(mean_bps, capacity_bps, g):
    """Visits x g with independent visits (mean and variance both scale by g):
    C' = g mu + sqrt(g) (C - mu)."""
    g = np.asarray(g, dtype=float)
    if np.any(g < 0):
        raise ValueError("growth factor must be >= 0")
    out = g * mean_bps + np.sqrt(g) * (capacity_bps - mean_bps)
    return float(out) if out.ndim == 0 else out


def grow_bytes_per_visit(capacity_bps, k):
    """Bytes per visit x k (same visits, every transfer k times larger): C' = k C."""
    if k < 0:
        raise ValueError("growth factor must be >= 0")
    return k * capacity_bps


def percentile_average_rate(mean_bps, var_bits2, timescale_s, q=0.95):
    """The q-quantile of the average rate over windows of T seconds, mu + z_q sqrt(v(T))/T.

    With T = 300 s and q = 0.95 this is the practitioners' "95th percentile of 5-minute averages"
    used by the utilisation policy, computed from the same Gaussian model."""
    _check(mean_bps, var_bits2, timescale_s)
    return mean_bps + float(ndtri(q)) * math.sqrt(var_bits2) / timescale_s


def per_visit_busy_hour(visits_per_day, busy_hour_share, bytes_per_visit, bytes_sq_per_visit=None,
                        timescale_s=1.0):
    """Per-visit model: busy-hour mean rate mu = N s b 8 / 3600 (bit/s) for N visits a day, a share s
    of them in the busiest hour and b bytes per visit (persona mix averaged).

    If `bytes_sq_per_visit` (E[b^2], bytes^2) is given, also returns v(T) for a Poisson stream of
    visits whose bytes each arrive as one burst inside the window (compound Poisson:
    Var A(T) = lambda T E[(8b)^2]); this is an upper bound at short T, used only when no measured
    series gives v(T)."""
    lam = visits_per_day * busy_hour_share / 3600.0
    mu = lam * bytes_per_visit * 8.0
    if bytes_sq_per_visit is None:
        return mu, None
    return mu, lam * timescale_s * 64.0 * bytes_sq_per_visit


def variance_for_visits(v_ref, visits_ref, visits):
    """Independent visits: v(T) scales linearly with the number of visits."""
    return np.asarray(v_ref, dtype=float) * (visits / visits_ref)
