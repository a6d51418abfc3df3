"""capacity.json, report.md and report.html, and the one plain sentence that answers the planner."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np


def rate(bps) -> str:
    if bps is None or (isinstance(bps, float) and not math.isfinite(bps)):
        return "n/a"
    for unit, scale in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if abs(bps) >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} bit/s"


def _month(iso: str | None) -> str:
    return iso[:7] if iso else "?"


def _share(x: float) -> str:
    return f"{x:.0%}" if x >= 0.1 else f"{x:.2g}".replace("e-0", "e-") if x < 1e-4 else f"{x * 100:.2g} %"


def _pct(x: float) -> str:
    return f"{x * 100:g} %"


def describe(r: dict) -> str:
    """The answer in one plain sentence (two when the inverse question was asked)."""
    eps = f"ε = {_pct(r['epsilon'])}"
    ctx = f"{eps}, T = {r['timescale_s']:g} s"
    link, plan, tier = r["link_bps"], r["plan"], r["recommended_tier_bps"]
    status = plan.get("status") or ""
    if link is None:
        s = (f"The busy hour needs {rate(r['required_bps'])} ({ctx}); "
             f"the smallest tier that carries it{' through the forecast' if r['forecast'] else ''} is {rate(tier)}.")
    elif status.startswith("exceeded"):
        s = (f"The {rate(link)} link is already too small at the busy hour: it needs {rate(r['required_bps'])} "
             f"({ctx}); order {rate(tier)} now.")
    elif r["runs_out_on"]:
        order = r["order_by"]
        trig = plan.get("upgrade_trigger_on")
        s = f"The {rate(link)} link runs out around {_month(r['runs_out_on'])} at the busy hour ({eps}); "
        if order and plan.get("status") == "order overdue":
            s += f"order {rate(tier)} now (the order-by date {order} has passed)."
        else:
            s += f"order {rate(tier)} by {_month(order)}"
            if trig and trig < r["runs_out_on"]:
                s += f" (the {_pct(r['policy']['upgrade_at'])} upgrade trigger comes first, around {_month(trig)})"
            s += "."
    elif r["forecast"]:
        trig = plan.get("upgrade_trigger_on")
        if trig:
            s = (f"The {rate(link)} link carries the busy hour ({eps}) but reaches the "
                 f"{_pct(r['policy']['upgrade_at'])} upgrade trigger around {_month(trig)}; "
                 f"order {rate(tier)} by {_month(r['order_by'])}.")
        else:
            s = (f"The {rate(link)} link lasts through {r['forecast']['forecast_to'][:7]} at the busy hour "
                 f"({eps}): the busiest forecast day needs {rate(plan.get('required_end_of_horizon_bps'))}.")
    elif status.startswith("upgrade trigger"):
        s = (f"The {rate(link)} link carries the busy hour ({rate(r['required_bps'])} needed, {ctx}) but is past the "
             f"{_pct(r['policy']['upgrade_at'])} upgrade trigger; order {rate(tier)} now.")
    else:
        s = (f"The busy hour needs {rate(r['required_bps'])} ({ctx}): the {rate(link)} link is enough now "
             f"(busy-hour mean {_share(plan.get('utilisation_now', 0))} of it); give --history for a run-out date.")
    q = r.get("visits_query")
    if q:
        s += (f" For {q['visits_per_day']:,.0f} visits a day the busy hour needs {rate(q['required_bps'])}: "
              f"tier {rate(q['tier_bps'])}.")
    return s


def _default(o):
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.datetime64):
        return str(o)
    raise TypeError(type(o))


def _clean(o):
    """JSON has no inf/nan: write null."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (float, np.floating)) and not math.isfinite(float(o)):
        return None
    return o


def limits(r: dict) -> list[str]:
    """What the data can and cannot tell, in plain words."""
    out = []
    for d, rec in r["directions"].items():
        h = rec["hurst"]
        pts = rec["variance_time"]
        if h["n_points"] < 4:
            out.append(f"{d}: only {h['n_points']} timescale(s) between the step and 15 min fit in the busy period, "
                       f"so H cannot be estimated; H = {h['used']:g} is an assumption (conservative below the step).")
        elif h["r2"] is not None and h["r2"] < 0.9:
            out.append(f"{d}: the variance-time fit is loose (R² = {h['r2']:.2f}); treat H = {h['used']:.2f} with care.")
        if pts and min(p["dof"] for p in pts) < 10:
            out.append(f"{d}: the longest timescales rest on few degrees of freedom ({min(p['dof'] for p in pts)}), so v(T) "
                       "there is uncertain by tens of percent.")
        sk = rec.get("busy_hour_skewness")
        if sk is not None and math.isfinite(sk) and sk > 1.0:
            out.append(f"{d}: the busy-hour traffic per step is skewed (skewness {sk:.1f}): too few simultaneous "
                       "transfers for the Gaussian model to be accurate in the tail; C(T, ε) may be too small.")
        if not rec["timescale_observed"]:
            by_h = rec["required_bps_by_hurst"]
            lo, hi = min(by_h.values()), max(by_h.values())
            span = (f"{pts[0]['timescale_s']:g}–{pts[-1]['timescale_s']:g} s" if len(pts) > 1
                    else f"only {pts[0]['timescale_s']:g} s")
            out.append(f"{d}: T = {r['timescale_s']:g} s is outside the measured timescales "
                       f"({span}): C(T, ε) is extrapolated and ranges "
                       f"{rate(lo)}–{rate(hi)} for H = 0.5…0.9.")
    if r["series"]["compression"] != 1:
        out.append(f"The run was compressed ×{r['series']['compression']:g}: nothing below "
                   f"{r['series']['compression']:g} s is observed.")
    f = r.get("forecast")
    if f:
        if f["history_days"] < 365:
            out.append(f"The history covers {f['history_days']} days, less than a school year: the calendar effects "
                       "and the trend shape are weakly identified.")
        w = sorted(f["candidates"], key=lambda c: -c["akaike_weight"])
        if len(w) > 1 and w[1]["akaike_weight"] > 0.1:
            out.append(f"The trend choice is not clear-cut: {w[0]['model']} has Akaike weight {w[0]['akaike_weight']:.2f}, "
                       f"{w[1]['model']} {w[1]['akaike_weight']:.2f}.")
    return out


def markdown(r: dict) -> str:
    s = r["series"]
    lines = [
        "# Capacity plan", "", f"**{r['answer']}**", "",
        "| figure | value |", "| --- | --- |",
        f"| busy-hour mean rate μ ({r['required_direction']}) | {rate(r['mean_bps'])} |",
        f"| required capacity C(T, ε) (busy hour, larger direction) | {rate(r['required_bps'])} |",
        f"| link | {rate(r['link_bps']) if r['link_bps'] else 'not given'} |",
        f"| runs out on | {r['runs_out_on'] or '—'} |",
        f"| run-out range ({r['forecast']['level']:.0%} prediction bounds) | "
        f"{' … '.join(x or '—' for x in r['runs_out_range']) if r['runs_out_range'] else '—'} |"
        if r["forecast"] else "| run-out range | — (no history) |",
        f"| order by | {r['order_by'] or '—'} |",
        f"| recommended tier | {rate(r['recommended_tier_bps'])} |",
        f"| Hurst H used | {r['hurst']:.2f} ({r['hurst_fit']['how']}) |",
        f"| ε, T | {r['epsilon']:g}, {r['timescale_s']:g} s |", "",
        "## What the data can and cannot tell", "",
    ]
    lim = limits(r)
    lines += [f"- {x}" for x in lim] if lim else ["- Nothing to flag: H is fitted on enough timescales and T is inside them."]
    lines += ["", "## Traffic characterisation", "",
              f"Series `{s['source']}`: {s['rows']} steps of {s['step_s']:g} s, {s['from']} → {s['to']}"
              + (f", time compression ×{s['compression']:g}" if s["compression"] != 1 else "") + ".", ""]
    for d, rec in r["directions"].items():
        h = rec["hurst"]
        fit = (f"H = {h['estimate']:.3f} ± {h['stderr']:.3f} (R² = {h['r2']:.3f}, {h['n_points']} timescales)"
               if h["estimate"] is not None else f"H not estimable ({h['n_points']} timescales)")
        lines += [
            f"### {d}", "",
            f"- busy hour from {rec['busy_hour_start']}: μ = {rate(rec['mean_bps'])} "
            f"({rec['busy_hour_to_mean_ratio']:.2f} × the whole-series mean {rate(rec['whole_series_mean_bps'])})",
            f"- variance-time fit: {fit}; used H = {h['used']:.2f} ({h['how']}); {rec['days_pooled']} busy hour(s) pooled",
            f"- C(T, ε): {rate(rec['required_bps_chernoff'])} (Chernoff form √(−2 ln ε)), "
            f"{rate(rec['required_bps_gaussian_quantile'])} (exact Gaussian quantile z₁₋ε)",
            f"- 95th percentile of 5-minute averages: {rate(rec['p95_5min_bps'])}", "",
            "| T (s) | v(T) (bit²) | σ of the rate over T | degrees of freedom |", "| ---: | ---: | ---: | ---: |",
        ]
        lines += [f"| {p['timescale_s']:g} | {p['variance_bits2']:.3e} | {rate(p['sd_rate_bps'])} | {p['dof']} |"
                  for p in rec["variance_time"]]
        lines += ["", f"Sensitivity of C(T = {r['timescale_s']:g} s, ε) to H:", "",
                  "| H | " + " | ".join(rec["required_bps_by_hurst"]) + " |",
                  "| --- |" + " ---: |" * len(rec["required_bps_by_hurst"]),
                  "| C | " + " | ".join(rate(v) for v in rec["required_bps_by_hurst"].values()) + " |", ""]
    pv = r.get("per_visit_model")
    if pv:
        lines += ["## Per-visit model", "",
                  "Persona mix: " + ", ".join(f"{p} {x:.0%}" for p, x in pv["persona_mix"].items())
                  + f"; busy-hour share of daily visits {pv['busy_hour_share']:.1%} ({pv['busy_hour_share_how']}).", ""]
        for d, rec in pv["directions"].items():
            lines.append(f"- {d}: {rec['bytes_per_visit'] / 1e6:.3g} MB per visit; model busy-hour μ "
                         f"{rate(rec.get('busy_hour_mean_bps_model'))} vs measured {rate(rec.get('busy_hour_mean_bps_measured'))}")
        lines.append("")
    if r["reference_visits"]:
        lines += [f"Reference: the measured busy hour stands for **{r['reference_visits']:,.0f} visits a day** "
                  f"({r['reference_visits_how']}).", ""]
    f = r.get("forecast")
    if f:
        lines += ["## Forecast", "",
                  f"History {f['history_from']} → {f['history_to']} ({f['history_days']} days), school zone {f['zone']}; "
                  f"model **{f['model']}**, intervals: {f['interval_method']}.", "",
                  "| trend | AICc | Akaike weight | residual sd (log) |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {c['model']} | {c['aicc']:.1f} | {c['akaike_weight']:.3f} | {c['residual_sd_log']:.3f} |"
                  for c in f["candidates"]]
        lines += ["", "Calendar factors (× a school weekday): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in f["calendar_effects"].items()), ""]
    p = r["plan"]
    lines += ["## Plan", "", "| item | value |", "| --- | --- |"]
    for key, label in (("status", "status"), ("plan_trigger_on", f"plan trigger ({_pct(r['policy']['plan_at'])})"),
                       ("upgrade_trigger_on", f"upgrade trigger ({_pct(r['policy']['upgrade_at'])})"),
                       ("runs_out_on", "requirement crosses the link"), ("deadline", "deadline"),
                       ("order_by", f"order by (lead time {r['policy']['lead_time_days']:g} d)")):
        if p.get(key) is not None:
            lines.append(f"| {label} | {p[key]} |")
    if p.get("utilisation_now") is not None:
        lines.append(f"| busy-hour utilisation now (mean / 95th pct of 5-min) | {p['utilisation_now']:.1%} / "
                     f"{p['p95_5min_utilisation_now']:.1%} |")
    lines.append(f"| capacity needed through the horizon | {rate(p.get('needed_through_horizon_bps'))} |")
    if p.get("tier_note"):
        lines.append(f"| note | {p['tier_note']} |")
    lines.append("")
    if r["months"]:
        lines += ["| month | busiest day visits | required | upper bound | tier |", "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {m['month']} | {m['visits']:,.0f} | {rate(m['required_bps'])} | {rate(m['required_hi_bps'])} | "
                  f"{rate(m['tier_bps'])} |" for m in r["months"]]
        lines.append("")
    if r["what_if"]:
        lines += ["### What if", "", "| visits × | required | tier | fits the link | runs out |",
                  "| ---: | ---: | ---: | --- | --- |"]
        lines += [f"| {w['multiplier']:g} | {rate(w['required_bps'])} | {rate(w['tier_bps'])} | "
                  f"{w.get('fits_link', '—')} | {w.get('runs_out_on') or '—'} |" for w in r["what_if"]]
        lines.append("")
    if r.get("visits_query"):
        q = r["visits_query"]
        lines += [f"**{q['visits_per_day']:,.0f} visits a day** need {rate(q['required_bps'])} at the busy hour "
                  f"(mean {rate(q['mean_bps'])}): tier {rate(q['tier_bps'])}.", ""]
    tt = r["transfer_times"]
    lines += ["## Transfer times on the link (processor sharing)", "",
              f"On {rate(tt['capacity_bps'])}, busy-hour utilisation now {tt['busy_hour_utilisation']:.1%}:", "",
              "| transfer | idle link | busy hour now | at plan trigger | at upgrade trigger |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for name, t in tt["transfers"].items():
        lines.append(f"| {name} | {_ms(t['at_zero_load_s'])} | {_ms(t['at_busy_hour_now_s'])} | "
                     f"{_ms(t['at_plan_threshold_s'])} | {_ms(t['at_upgrade_threshold_s'])} |")
    lines += ["", "## Assumptions", ""] + [f"- {a}" for a in r["assumptions"]]
    if r["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    if r.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{k}]({v})" for k, v in r["plots"].items()]
    return "\n".join(lines) + "\n"


def _ms(sec) -> str:
    if sec is None or not math.isfinite(sec):
        return "∞"
    return f"{sec * 1000:.3g} ms" if sec < 1 else f"{sec:.3g} s"


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def to_html(md: str) -> str:
    """The small Markdown subset `markdown()` writes: headings, tables, lists, images, paragraphs."""
    out, in_list, table = [], False, []

    def flush_table():
        if not table:
            return
        rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in table if not re.match(r"^\|\s*-", ln)]
        out.append("<table>")
        for i, row in enumerate(rows):
            tag = "th" if i == 0 else "td"
            out.append("<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in row) + "</tr>")
        out.append("</table>")
        table.clear()

    for ln in md.splitlines():
        if ln.startswith("|"):
            table.append(ln)
            continue
        flush_table()
        if in_list and not ln.startswith("- "):
            out.append("</ul>")
            in_list = False
        if m := re.match(r"^(#{1,3}) (.*)", ln):
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
        elif m := re.match(r"^!\[(.*?)\]\((.*?)\)", ln):
            out.append(f'<p><img alt="{html.escape(m.group(1))}" src="{html.escape(m.group(2))}" style="max-width:100%"></p>')
        elif ln.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(ln[2:])}</li>")
        elif ln.strip():
            out.append(f"<p>{_inline(ln)}</p>")
    flush_table()
    if in_list:
        out.append("</ul>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Capacity plan</title><style>{style}</style>"
            f"</head><body>{''.join(out)}</body></html>\n")


def write_outputs(r: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(_clean(r), indent=2, default=_default, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    md = markdown(r)
    (out / "report.md").write_text(md, encoding="utf-8")
    (out / "report.html").write_text(to_html(md), encoding="utf-8")
