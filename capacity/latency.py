"""Queueing formulas for what users feel on the link: processor-sharing transfer times (elastic TCP
traffic sharing a bottleneck), plus the textbook M/M/1, M/D/1, Erlang B and Erlang C results used to
sanity-check them. Pure functions of numbers; no I/O.
"""

from __future__ import annotations

import math

import numpy as np


def ps_mean_transfer_time(size_bits, capacity_bps, rho):
    """Mean time to move `size_bits` through an M/G/1-PS link of `capacity_bps` at load `rho`.

    Processor sharing is insensitive to the size distribution: E[T | x] = x / (C (1 - rho)).
    Returns seconds; `inf` where rho >= 1 (the queue is unstable). Accepts arrays (broadcast).
    """
    size = np.asarray(size_bits, dtype=float)
    cap = np.asarray(capacity_bps, dtype=float)
    load = np.asarray(rho, dtype=float)
    if np.any(cap <= 0):
        raise ValueError("capacity_bps must be positive")
    if np.any(load < 0):
        raise ValueError("rho must be >= 0")
    with np.errstate(divide="ignore"):
        out = np.where(load < 1.0, size / (cap * np.clip(1.0 - load, 1e-300, None)), np.inf)
    return float(out) if out.ndim == 0 else out


def mm1_mean_wait(arrival_rate, service_rate):
    """M/M/1 mean waiting time in queue, Wq = rho / (mu - lambda) (Kleinrock vol. 1, eq. 3.26)."""
    rho = arrival_rate / service_rate
    if rho >= 1:
        return math.inf
    return rho / (service_rate - arrival_rate)


def mm1_mean_sojourn(arrival_rate, service_rate):
    """M/M/1 mean time in system, W = 1 / (mu - lambda)."""
    if arrival_rate >= service_rate:
        return math.inf
    return 1.0 / (service_rate - arrival_rate)


def md1_mean_wait(arrival_rate, service_rate):
    """M/D/1 mean wait by Pollaczek-Khinchine with zero service variance: Wq = rho / (2 mu (1 - rho)),
    exactly half the M/M/1 wait at the same load."""
    rho = arrival_rate / service_rate
    if rho >= 1:
        return math.inf
    return rho / (2.0 * service_rate * (1.0 - rho))


def erlang_b(offered_erlangs: float, servers: int) -> float:
    """Blocking probability of M/M/m/m (Erlang B), by the stable recursion B(E, k) = E B / (k + E B)."""
    if servers < 0 or offered_erlangs < 0:
        raise ValueError("servers and offered load must be >= 0")
    b = 1.0
    for k in range(1, int(servers) + 1):
        b = offered_erlangs * b / (k + offered_erlangs * b)
    return b


def erlang_c(offered_erlangs: float, servers: int) -> float:
    """Probability of waiting in M/M/m (Erlang C), from Erlang B: C = m B / (m - E (1 - B))."""
    m, e = int(servers), float(offered_erlangs)
    if e >= m:
        return 1.0
    b = erlang_b(e, m)
    return m * b / (m - e * (1.0 - b))


def mmm_mean_wait(arrival_rate: float, service_rate: float, servers: int) -> float:
    """M/M/m mean wait in queue, Wq = C(m, E) / (m mu - lambda)."""
    e = arrival_rate / service_rate
    if e >= servers:
        return math.inf
    return erlang_c(e, servers) / (servers * service_rate - arrival_rate)


#: Transfers the planner cares about, in bits (assumptions, stated in every report).
REFERENCE_TRANSFERS = {
    "page (1.5 MB: portal page with assets)": 1.5e6 * 8,
    "message with attachment (2 MB)": 2.0e6 * 8,
    "casier deposit (3 MB phone photo)": 3.0e6 * 8,
}
