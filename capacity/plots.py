"""The capacity plots (PNG, matplotlib's Agg backend so no display is needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from capacity.traffic import H_SENSITIVITY  # noqa: E402


def _rate_label(bps: float) -> str:
    for unit, scale in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if abs(bps) >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} bit/s"


def _save(fig, path: Path) -> str:
    # Fixed margins: tight_layout measures every tick label of the log axes and costs seconds.
    fig.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=0.14, hspace=0.25)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def series_overview(series, traffic, path: Path) -> str:
    """The rate over the whole series, the busy hour shaded."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    x_days = (series.t_s - series.t_s[0]) / 86400.0
    for d, arr in series.directions.items():
        ax.plot(x_days, arr * 8 / series.step_s / 1e6, lw=0.5, label=d)
        tr = traffic[d]
        b0 = (tr.busy_start_s - series.t_s[0]) / 86400.0
        ax.axvspan(b0, b0 + 1 / 24, color="red", alpha=0.25)
    ax.set_xlabel(f"days since {series.label_time(series.t_s[0])}")
    ax.set_ylabel("Mbit/s (per step)")
    ax.set_title("Offered traffic; busy hour shaded")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def variance_time(traffic, timescale_s: float, path: Path) -> str:
    """log v(T) against log T: measured points, the fitted slope 2H, and T^(2H) below the step."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for d, tr in traffic.items():
        ts, vs = tr.timescales_s, tr.variance_bits2
        ax.loglog(ts, vs, "o", label=f"{d}: measured (step {tr.step_s:g} s)")
        h = tr.hurst
        if h.estimate is not None:
            fit_t = np.geomspace(ts[0], ts[-1], 20)
            ax.loglog(fit_t, vs[0] * (fit_t / ts[0]) ** (2 * h.estimate), "-", lw=1,
                      label=f"{d}: fit H = {h.estimate:.2f} ± {h.stderr:.2f}, R² = {h.r2:.3f}")
        lo = min(timescale_s, ts[0]) / 2
        if lo < ts[0]:
            ext_t = np.geomspace(lo, ts[0], 20)
            for hh in H_SENSITIVITY:
                ax.loglog(ext_t, vs[0] * (ext_t / ts[0]) ** (2 * hh), ":", lw=1, color="grey")
            ax.annotate("H = 0.5 … 0.9", (ext_t[0], vs[0] * (ext_t[0] / ts[0]) ** (2 * 0.7)), fontsize=8,
                        color="grey")
    ax.axvline(timescale_s, color="red", ls="--", lw=1, label=f"planning timescale T = {timescale_s:g} s")
    ax.set_xlabel("timescale T (s)")
    ax.set_ylabel("v(T) = Var A(T)  (bit²)")
    ax.set_title("Variance-time plot at the busy hour")
    ax.legend(fontsize=7)
    return _save(fig, path)


def forecast_plot(forecast, plan, link_bps, path: Path) -> str:
    """Visits (history, fit, forecast with bands) and the busy-hour requirement against the link."""
    daily = plan.daily
    s = plan.summary
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    hd, fd = forecast.hist_dates.astype("datetime64[D]"), forecast.dates.astype("datetime64[D]")
    a1.plot(hd, forecast.hist_visits, ".", ms=2, color="black", label="history")
    a1.plot(hd, forecast.hist_fit, lw=0.6, color="tab:blue", label=f"fit ({forecast.best.kind} + calendar)")
    a1.plot(fd, forecast.median, lw=0.6, color="tab:orange", label="forecast (median)")
    a1.fill_between(fd, forecast.lower, forecast.upper, color="tab:orange", alpha=0.25,
                    label=f"{forecast.level:.0%} prediction interval")
    a1.set_ylabel("visits per day")
    a1.legend(fontsize=8, loc="upper left")
    a1.set_title(f"Daily visits, school zone {forecast.zone}")
    a2.plot(hd, daily["hist_required"] / 1e6, lw=0.5, color="black", label="required (history)")
    a2.plot(fd, daily["required"] / 1e6, lw=0.6, color="tab:orange", label="required C(T, ε) (median)")
    a2.fill_between(fd, daily["required_lo"] / 1e6, daily["required_hi"] / 1e6, color="tab:orange", alpha=0.25)
    if link_bps:
        a2.axhline(link_bps / 1e6, color="red", lw=1, label=f"link {_rate_label(link_bps)}")
    if s.get("runs_out_on"):
        a2.axvline(np.datetime64(s["runs_out_on"]), color="red", ls="--", lw=1,
                   label=f"runs out {s['runs_out_on']}")
    if s.get("order_by"):
        a2.axvline(np.datetime64(s["order_by"]), color="purple", ls=":", lw=1, label=f"order by {s['order_by']}")
    a2.set_ylabel("busy-hour requirement (Mbit/s)")
    a2.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def months_plot(plan, link_bps, tiers, path: Path) -> str:
    """Required capacity of each month's busiest day against the tiers."""
    months = plan.months
    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = np.arange(len(months))
    req = np.array([m["required_bps"] for m in months]) / 1e6
    hi = np.array([m["required_hi_bps"] for m in months]) / 1e6
    ax.bar(x, req, color="tab:orange", label="required (busiest day, median)")
    ax.errorbar(x, req, yerr=[np.zeros_like(req), hi - req], fmt="none", ecolor="grey", lw=0.8,
                label="upper prediction bound")
    need = max(hi.max() if len(hi) else 0, (link_bps or 0) / 1e6)
    above = [t / 1e6 for t in sorted(tiers) if t / 1e6 >= need]
    top = (above[0] if above else need) * 1.15
    for t in tiers:
        if t / 1e6 <= top:
            ax.axhline(t / 1e6, color="grey", lw=0.6, ls="--")
            ax.text(len(months) - 0.5, t / 1e6, _rate_label(t), fontsize=7, va="bottom", ha="right")
    if link_bps:
        ax.axhline(link_bps / 1e6, color="red", lw=1.2, label=f"current link {_rate_label(link_bps)}")
    step = max(1, len(months) // 18)
    ax.set_xticks(x[::step], [m["month"] for m in months][::step], rotation=45, fontsize=7)
    ax.set_ylim(0, top)
    ax.set_ylabel("Mbit/s")
    ax.set_title("Busy-hour requirement by month against the tiers")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def transfer_plot(plan, plan_at, upgrade_at, path: Path) -> str:
    """Processor-sharing transfer times x / (C (1 - rho)) against utilisation."""
    tc = plan.transfer_curves
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, y in tc["curves"].items():
        ax.semilogy(tc["rho"] * 100, y * 1000, label=name)
    ax.axvspan(plan_at * 100, upgrade_at * 100, color="orange", alpha=0.15, label="plan … upgrade triggers")
    rho_now = plan.summary["transfer_times"]["busy_hour_utilisation"]
    if np.isfinite(rho_now) and rho_now < 1:
        ax.axvline(rho_now * 100, color="red", ls="--", lw=1, label=f"busy hour now ({rho_now:.0%})")
    ax.set_xlabel("link utilisation ρ (%)")
    ax.set_ylabel("mean transfer time on the link (ms)")
    ax.set_title(f"Transfer time on a {_rate_label(tc['capacity_bps'])} link (processor sharing)")
    ax.legend(fontsize=7)
    return _save(fig, path)
