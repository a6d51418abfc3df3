"""The capacity formulas against textbook values worked by hand, and the estimators against synthetic
traffic whose mean, variance and Hurst parameter are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from capacity import dimension, latency
from capacity.series import ByteSeries
from capacity.traffic import characterise

# ---- queueing: textbook values ------------------------------------------------------------------


def test_mm1_wait_and_sojourn():
    # lambda = 0.8, mu = 1: Wq = rho / (mu - lambda) = 0.8 / 0.2 = 4, W = 1 / (mu - lambda) = 5
    assert latency.mm1_mean_wait(0.8, 1.0) == pytest.approx(4.0)
    assert latency.mm1_mean_sojourn(0.8, 1.0) == pytest.approx(5.0)
    assert latency.mm1_mean_wait(1.0, 1.0) == math.inf


def test_md1_wait_is_half_of_mm1():
    # Pollaczek-Khinchine, zero service variance: Wq = rho / (2 mu (1 - rho)) = 0.8 / (2 * 0.2) = 2
    assert latency.md1_mean_wait(0.8, 1.0) == pytest.approx(2.0)
    assert latency.md1_mean_wait(0.5, 2.0) == pytest.approx(0.5 * latency.mm1_mean_wait(0.5, 2.0))


def test_erlang_b_table_values():
    # B(E, 1) = E / (1 + E); B(2, 3) = (8/6) / (1 + 2 + 2 + 8/6) = 4/19 by hand;
    # B(10, 10) = 0.2146 in the standard Erlang B tables (e.g. ITU-T E.500 / Kleinrock).
    assert latency.erlang_b(1.0, 1) == pytest.approx(0.5)
    assert latency.erlang_b(2.0, 3) == pytest.approx(4 / 19)
    assert latency.erlang_b(10.0, 10) == pytest.approx(0.2146, abs=5e-5)


def test_erlang_c_and_mmm_wait():
    # C(A=2, N=3) = [A^N/N! * N/(N-A)] / [sum_{k<N} A^k/k! + A^N/N! * N/(N-A)] = 4 / (5 + 4) = 4/9
    assert latency.erlang_c(2.0, 3) == pytest.approx(4 / 9)
    # M/M/3 with lambda = 2, mu = 1: Wq = C / (m mu - lambda) = (4/9) / 1
    assert latency.mmm_mean_wait(2.0, 1.0, 3) == pytest.approx(4 / 9)
    # One server: Erlang C is rho, and M/M/m reduces to M/M/1.
    assert latency.erlang_c(0.8, 1) == pytest.approx(0.8)
    assert latency.mmm_mean_wait(0.8, 1.0, 1) == pytest.approx(latency.mm1_mean_wait(0.8, 1.0))


def test_ps_mean_transfer_time():
    # 3 MB deposit = 24e6 bits on 1 Gbit/s: 24 ms idle, 48 ms at rho = 0.5, 240 ms at rho = 0.9
    assert latency.ps_mean_transfer_time(24e6, 1e9, 0.0) == pytest.approx(0.024)
    assert latency.ps_mean_transfer_time(24e6, 1e9, 0.5) == pytest.approx(0.048)
    assert latency.ps_mean_transfer_time(24e6, 1e9, 0.9) == pytest.approx(0.24)
    assert latency.ps_mean_transfer_time(24e6, 1e9, 1.0) == math.inf
    arr = latency.ps_mean_transfer_time(8e6, 1e8, np.array([0.0, 0.75, 1.2]))
    assert arr[0] == pytest.approx(0.08) and arr[1] == pytest.approx(0.32) and arr[2] == math.inf


# ---- Gaussian dimensioning by hand --------------------------------------------------------------


def test_required_capacity_both_forms_by_hand():
    mu, sd_rate = 100e6, 10e6
    for t in (1.0, 0.1, 10.0):
        v = (sd_rate * t) ** 2  # sqrt(v)/T = 10 Mbit/s at every T
        # sqrt(-2 ln 0.01) = sqrt(9.21034) = 3.03485; z_0.99 = 2.32635
        assert dimension.required_capacity_chernoff(mu, v, t, 0.01) == pytest.approx(130.3485e6, rel=1e-5)
        assert dimension.required_capacity_quantile(mu, v, t, 0.01) == pytest.approx(123.2635e6, rel=1e-5)
    # eps = 1e-3: sqrt(-2 ln 1e-3) = 3.71692, z = 3.09023
    assert dimension.required_capacity(50e6, 4e12, 1.0, 1e-3) == pytest.approx(50e6 + 3.71692 * 2e6, rel=1e-5)
    assert dimension.required_capacity(50e6, 4e12, 1.0, 1e-3, "quantile") == pytest.approx(
        50e6 + 3.09023 * 2e6, rel=1e-5)


def test_overflow_probability_inverts_the_quantile_form():
    mu, v, t = 300e6, (40e6) ** 2 * 0.25, 0.5
    for eps in (0.1, 0.01, 1e-4):
        c = dimension.required_capacity_quantile(mu, v, t, eps)
        assert dimension.overflow_probability(mu, v, t, c) == pytest.approx(eps, rel=1e-6)
    # The Chernoff form is conservative: its overflow is below eps.
    c = dimension.required_capacity_chernoff(mu, v, t, 0.01)
    assert dimension.overflow_probability(mu, v, t, c) < 0.01
    assert dimension.overflow_probability(mu, 0.0, t, mu) == 0.0


def test_percentile_of_5min_averages():
    # mu + z_0.95 sigma(300)/300, z_0.95 = 1.644854
    assert dimension.percentile_average_rate(100e6, (300 * 5e6) ** 2, 300) == pytest.approx(
        100e6 + 1.644854 * 5e6, rel=1e-6)


def test_c_from_a_series_of_known_mean_and_variance():
    """iid Gaussian bytes per second: mu = 8 m bit/s, v(1 s) = 64 s^2; C by hand from the true values
    must agree with C from the estimates within the estimator's own standard error."""
    rng = np.random.default_rng(11)
    m, s = 5e6, 4e5  # bytes per second
    x = rng.normal(m, s, 3600)
    series = ByteSeries("syn", np.arange(3600.0), 1.0, {"down": x})
    tr = characterise(series, "down", busy_days=1)
    assert tr.mean_bps == pytest.approx(8 * np.mean(x))
    v_true = 64 * s**2
    # Var of a sample variance with ~3598 dof: relative SE sqrt(2/3598) = 2.4 %; allow 4 SE.
    assert tr.variance_at(1.0) == pytest.approx(v_true, rel=4 * math.sqrt(2 / 3598))
    c_hand = 8 * m + math.sqrt(-2 * math.log(0.01)) * math.sqrt(v_true) / 1.0
    sd_c = math.sqrt(-2 * math.log(0.01)) * math.sqrt(v_true) * 0.5 * math.sqrt(2 / 3598) + 8 * s / 60
    assert tr.capacity(1.0, 0.01) == pytest.approx(c_hand, abs=4 * sd_c)
    # iid: H = 0.5 within 4 regression SE plus the estimator's small-sample slack of 0.05
    assert abs(tr.hurst.estimate - 0.5) < 0.05 + 4 * tr.hurst.stderr


def _fgn(n: int, hurst: float, rng) -> np.ndarray:
    """Fractional Gaussian noise by circulant embedding (Davies-Harte), unit variance."""
    k = np.arange(n + 1)
    gamma = 0.5 * ((k + 1) ** (2 * hurst) - 2 * k ** (2 * hurst) + np.abs(k - 1) ** (2 * hurst))
    row = np.concatenate([gamma, gamma[-2:0:-1]])
    lam = np.maximum(np.fft.fft(row).real, 0.0)
    w = rng.normal(size=len(row)) + 1j * rng.normal(size=len(row))
    return np.fft.fft(np.sqrt(lam / len(row)) * w).real[:n]


@pytest.mark.parametrize("hurst", [0.5, 0.8])
def test_hurst_recovered_from_fractional_gaussian_noise(hurst):
    # The variance-time estimator is biased low for H near 1 (detrended 1-hour windows); at 0.5 and
    # 0.8 it is within 0.08 on three days of per-second traffic.
    rng = np.random.default_rng(5)
    n = 3 * 86400
    x = 1e6 + 1e5 * _fgn(n, hurst, rng)
    series = ByteSeries("fgn", np.arange(float(n)), 1.0, {"down": x})
    tr = characterise(series, "down", busy_days=3)
    assert tr.hurst.n_points >= 10 and tr.hurst.r2 > 0.95
    assert abs(tr.hurst.estimate - hurst) < 0.08


def test_extrapolation_below_the_step_follows_t_to_the_2h():
    rng = np.random.default_rng(2)
    x = rng.normal(6e6, 5e5, 1440)  # a per-minute series
    series = ByteSeries("min", np.arange(1440.0) * 60, 60.0, {"down": x})
    tr = characterise(series, "down", busy_days=1, hurst_override=0.7)
    v60 = tr.variance_at(60.0)
    assert tr.variance_at(1.0) == pytest.approx(v60 * (1 / 60) ** 1.4)
    sens = tr.sensitivity(1.0, 0.01)
    assert list(sens) == [0.5, 0.6, 0.7, 0.8, 0.9]
    values = list(sens.values())
    assert all(a > b for a, b in zip(values, values[1:], strict=False))  # H = 0.5 is the conservative end


# ---- growth law -------------------------------------------------------------------------------------


def _sources(n: int, seconds: int, rng) -> np.ndarray:
    """n independent users: each second a user sends a transfer with prob. 0.05, lognormal size (bytes)."""
    on = rng.random((seconds, n)) < 0.05
    sizes = rng.lognormal(mean=13.0, sigma=1.0, size=(seconds, n))
    return (on * sizes).sum(axis=1)


def test_growth_law_matches_direct_recomputation():
    rng = np.random.default_rng(7)
    n, g, seconds = 150, 4, 3600
    base = _sources(n, seconds, rng)
    grown = _sources(g * n, seconds, rng)
    t = np.arange(float(seconds))
    tr1 = characterise(ByteSeries("n", t, 1.0, {"d": base}), "d", busy_days=1)
    tr4 = characterise(ByteSeries("gn", t, 1.0, {"d": grown}), "d", busy_days=1)
    c1, c4 = tr1.capacity(1.0, 0.01), tr4.capacity(1.0, 0.01)
    predicted = dimension.grow_visits(tr1.mean_bps, c1, g)
    # The fluctuation part C - mu is sqrt(-2 ln eps) sigma; each sigma estimate has a relative SE of
    # about 1/sqrt(2 * 3598) (iid seconds); the means have SE sigma/sqrt(3600). Allow 4 combined SE.
    sd1 = math.sqrt(tr1.variance_at(1.0))
    se = math.sqrt(2) * math.sqrt(-2 * math.log(0.01)) * math.sqrt(g) * sd1 / math.sqrt(2 * 3598) \
        + 2 * g * sd1 / math.sqrt(3600)
    assert c4 == pytest.approx(predicted, abs=4 * se)
    assert tr4.mean_bps == pytest.approx(g * tr1.mean_bps, abs=4 * math.sqrt(g + g * g) * sd1 / 60)
    # and it is not the naive linear scaling g * C (that would over-provision by (g - sqrt g)(C - mu))
    assert abs(c4 - g * c1) > 4 * se


def test_bytes_per_visit_growth_scales_capacity():
    rng = np.random.default_rng(8)
    x = _sources(100, 3600, rng)
    t = np.arange(3600.0)
    c = characterise(ByteSeries("a", t, 1.0, {"d": x}), "d", busy_days=1).capacity(1.0, 0.01)
    c3 = characterise(ByteSeries("b", t, 1.0, {"d": 3 * x}), "d", busy_days=1).capacity(1.0, 0.01)
    assert c3 == pytest.approx(dimension.grow_bytes_per_visit(c, 3), rel=1e-9)
