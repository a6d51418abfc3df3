"""Prometheus metrics of a load run, fed by Locust's events and by `exporters.events`.

Why a module of its own: Locust's stats are in milliseconds, per process and only reachable through its web UI;
Prometheus wants base units, counters that only grow, histograms it can aggregate across processes, and labels
that stay bounded however many ids a run touches. Importing this module (the scenarios' locustfile does) is
enough: it registers its command-line options and an `init` listener, so the same metrics exist under
`entload run` and under plain `locust -f scenarios`.

Each Locust process exports what happens in it: local and worker processes serve the request, visit and arrival
metrics of their own users, the master serves its own gauges only (workers connected, link capacity, build info).
So `sum()` over the workers of a run equals what one process would report. Ports: the master (or the local
process) serves `--metrics-port P`; worker number i (Locust's `worker_index`, 0-based) serves P + 1 + i.

Imports locust, gevent (Locust's own runtime) and prometheus_client only; never `entload`.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import sys
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from importlib import metadata

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from exporters._headers import head_bytes

log = logging.getLogger("entload.metrics")

# `*_created` series double the series count and the scrape cost for a value nobody graphs; rate() does not need
# them. (prometheus_client's switch is process-wide; a Locust process exposes only these metrics.)
disable_created_metrics()

#: Request latency buckets (seconds): web latency from 5 ms to a 60 s timeout, roughly 1-2-5 with extra
#: resolution where SLOs sit (100 ms - 3 s), so histogram_quantile() lands within a narrow bucket there.
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0,
)  # fmt: skip
#: Visit (whole journey) buckets: compressed runs last seconds, real-time visits about 12 minutes.
VISIT_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 7200.0)

#: Request outcomes (the `outcome` label): a closed set, so the label is bounded.
OUTCOMES = ("ok", "failed", "http_4xx", "http_5xx", "quota", "error")
VISIT_OUTCOMES = ("ok", "failed", "quota")
OTHER = "[other]"  # the label value every name past the cap falls into
DEFAULT_MAX_ENDPOINTS = 200
MAX_PERSONAS = 20
ROLES = ("local", "master", "worker")

# A path segment that is an identifier, not part of a route: digits, UUIDs, long hex or token-like strings,
# e-mail addresses. Route templates (`/conversation/message/[id]`) never match.
_ID_SEGMENT = re.compile(
    r"""^(?:
        \d+                                   # 12345
      | [0-9a-fA-F]{8}-[0-9a-fA-F-]{27,}      # UUID
      | (?=[^/]*\d)[0-9a-fA-F]{8,}            # hex id with a digit (ObjectId, sha)
      | (?=[^/]*\d)(?=[^/]*[A-Za-z])[\w.~=-]{16,}  # long token mixing letters and digits
      | [^/@]+@[^/@]+                         # an e-mail address
      | (?=(?:[^/\d]*\d){2})[^/]+             # two digits or more (m-I6-0-17, ex-44-3); one is a name (oauth2, v2)
    )$""",
    re.VERBOSE,
)
_SCHEME_HOST = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*")


def endpoint_label(name: str) -> str:
    """A route template from a Locust request name: query string and host dropped, id-like segments -> [id].

    The scenarios already name requests by template; this is the safety net for a locustfile that forgot
    `name=` and passed raw URLs, so a message id can never become a label value.
    """
    path = _SCHEME_HOST.sub("", name or "", count=1).split("?", 1)[0].split("#", 1)[0] or "/"
    if "/" not in path:
        return path
    parts = path.split("/")
    for i, seg in enumerate(parts):
        if seg and not seg.startswith("[") and _ID_SEGMENT.match(seg):
            parts[i] = "[id]"
    return "/".join(parts)


class BoundedLabel:
    """Keeps at most `cap` distinct values of one label; later newcomers all map to `[other]` (logged once)."""

    def __init__(self, what: str, cap: int, normalise: Callable[[str], str] | None = None):
        self.what, self.cap, self.normalise = what, cap, normalise
        self.values: set[str] = set()
        self._memo: dict[str, str] = {}
        self.overflowed = 0

    def __call__(self, raw: str) -> str:
        value = self._memo.get(raw)
        if value is not None:
            return value
        value = self.normalise(raw) if self.normalise else raw
        if value not in self.values:
            if len(self.values) < self.cap:
                self.values.add(value)
            else:
                if not self.overflowed:
                    log.warning(
                        "more than %d distinct %s label values; the rest are counted as %r", self.cap, self.what, OTHER
                    )
                self.overflowed += 1
                value = OTHER
        if len(self._memo) < 4 * self.cap + 1000:  # the memo is bounded too (raw names may be unbounded)
            self._memo[raw] = value
        return value


_RATE_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*(?:([kKmMgGtT]?)(bit|bps|B)(?:/s|ps)?)?\s*$")
_PREFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_bits_per_second(text: str | float | None) -> float | None:
    """`1Gbit`, `500 Mbit/s`, `125MB/s` (bytes, x8) or a plain number of bits/s -> bits/s; None/''/0 -> None.

    Deliberately small (exporters never import `entload`); raises ValueError naming the option on bad input.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = _RATE_TEXT.match(text)
        if not m:
            raise ValueError(f"--link-capacity: expected a rate such as 1Gbit, 500Mbit/s or 125MB/s, got {text!r}")
        factor = 8.0 if m.group(3) == "B" else 1.0
        value = float(m.group(1)) * _PREFIX[(m.group(2) or "").lower()] * factor
    if value < 0:
        raise ValueError(f"--link-capacity: must not be negative, got {text!r}")
    return value or None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def request_wire_bytes(response, context: dict) -> int:
    """Bytes sent: the scenarios' count when given, else the request head geventhttpclient sent + the body."""
    given = context.get("request_bytes") if context else None
    if given is not None:
        return int(given)
    if response is None:
        return 0
    head = getattr(response, "_sent_request", None)  # FastHttpUser: request line + headers as sent
    if head is not None:
        request = getattr(response, "request", None)
        payload = getattr(request, "payload", None) if request is not None else None
        return len(head) + (len(payload) if isinstance(payload, bytes | bytearray | str) else 0)
    request = getattr(response, "request", None)  # HttpUser (requests): rebuild the head from the prepared request
    if request is None or not hasattr(request, "headers"):
        return 0
    size = len(request.method or "") + len(request.path_url or "") + 12
    for k, v in request.headers.items():
        size += len(k) + len(v) + 4
    body = getattr(request, "body", None)
    return size + 2 + (len(body) if isinstance(body, bytes | str) else 0)


def response_wire_bytes(response, response_length: int) -> int:
    """Bytes received: status line + headers + body as sent (Content-Length when present, else what was read)."""
    headers = getattr(response, "headers", None) if response is not None else None
    if headers is None:
        return int(response_length or 0)
    lines, body = head_bytes(headers)
    if not lines:
        return int(response_length or 0)
    # "HTTP/1.1 200 OK\r\n" (the reason phrase varies by a few bytes), the header lines, the blank line, the body
    return 17 + lines + 2 + (body if body is not None else int(response_length or 0))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    """A sample value as the exposition format wants it (Go-style floats, plain integers)."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


_DURATION_LE = [_fmt(b) for b in DURATION_BUCKETS] + ["+Inf"]
_VISIT_LE = [_fmt(b) for b in VISIT_BUCKETS] + ["+Inf"]


class _Hist:
    """A histogram child without locks: Locust runs every listener in one thread (greenlets), so a scrape
    (another greenlet) always sees a consistent state, and an observation costs a bisect and two adds."""

    __slots__ = ("counts", "sum", "bounds")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket (not cumulative); the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self, le_texts: list[str]) -> list[tuple[str, int]]:
        out, cum = [], 0
        for le, c in zip(le_texts, self.counts, strict=True):
            cum += c
            out.append((le, cum))
        return out


class _Endpoint:
    """Everything measured for one (endpoint, method)."""

    __slots__ = ("endpoint", "method", "labels", "outcomes", "duration", "intended", "response_bytes", "request_bytes")

    def __init__(self, endpoint: str, method: str):
        self.endpoint, self.method = endpoint, method
        self.labels = f'endpoint="{_escape(endpoint)}",method="{_escape(method)}"'
        self.outcomes: dict[str, int] = {}
        self.duration = _Hist(DURATION_BUCKETS)
        self.intended = _Hist(DURATION_BUCKETS)
        self.response_bytes = 0
        self.request_bytes = 0


class _Persona:
    __slots__ = ("name", "labels", "started", "late", "dropped", "active", "completed", "duration")

    def __init__(self, name: str):
        self.name = name
        self.labels = f'persona="{_escape(name)}"'
        self.started = self.late = self.dropped = self.active = 0
        self.completed = dict.fromkeys(VISIT_OUTCOMES, 0)
        self.duration = _Hist(VISIT_BUCKETS)


_HELP = {
    "entload_request_duration_seconds": ("histogram", "HTTP request latency from send to the last byte of the response"),
    "entload_requests_total": ("counter", "HTTP requests by endpoint, method and outcome"),
    "entload_request_intended_duration_seconds": (
        "histogram", "request latency from the intended start of its visit (free of coordinated omission)"),
    "entload_response_bytes_total": ("counter", "bytes received: status line, headers and body as sent"),
    "entload_request_bytes_total": ("counter", "bytes sent: request line, headers and body"),
    "entload_visits_started_total": ("counter", "visits begun"),
    "entload_visits_completed_total": ("counter", "visits ended, by outcome"),
    "entload_visit_duration_seconds": ("histogram", "whole visit (journey) duration"),
    "entload_arrivals_late_total": ("counter", "arrivals whose visit started late"),
    "entload_arrivals_dropped_total": ("counter", "arrivals that found no free virtual user"),
    "entload_arrivals_target_total": ("counter", "target arrivals (the target arrival rate integrated over time)"),
    "entload_arrival_rate_target": ("gauge", "target arrival rate now, visits per second"),
    "entload_active_visits": ("gauge", "visits in progress"),
}  # fmt: skip


class _RunCollector:
    """prometheus_client view of the run's measurements (for registries, the Pushgateway, generate_latest)."""

    def __init__(self, run: RunMetrics):
        self.run = run

    def describe(self):
        return []  # families are dynamic; no name clash is possible inside the run's own registry

    def collect(self):
        run = self.run
        hist_dur = HistogramMetricFamily("entload_request_duration_seconds", _HELP["entload_request_duration_seconds"][1],
                                         labels=["endpoint", "method"])  # fmt: skip
        hist_int = HistogramMetricFamily("entload_request_intended_duration_seconds",
                                         _HELP["entload_request_intended_duration_seconds"][1],
                                         labels=["endpoint", "method"])  # fmt: skip
        reqs = CounterMetricFamily("entload_requests", _HELP["entload_requests_total"][1],
                                   labels=["endpoint", "method", "outcome"])  # fmt: skip
        down = CounterMetricFamily("entload_response_bytes", _HELP["entload_response_bytes_total"][1],
                                   labels=["endpoint", "method"])  # fmt: skip
        up = CounterMetricFamily("entload_request_bytes", _HELP["entload_request_bytes_total"][1],
                                 labels=["endpoint", "method"])  # fmt: skip
        for ep in run.endpoints():
            lv = [ep.endpoint, ep.method]
            hist_dur.add_metric(lv, ep.duration.buckets(_DURATION_LE), ep.duration.sum)
            hist_int.add_metric(lv, ep.intended.buckets(_DURATION_LE), ep.intended.sum)
            for outcome, n in ep.outcomes.items():
                reqs.add_metric([*lv, outcome], n)
            down.add_metric(lv, ep.response_bytes)
            up.add_metric(lv, ep.request_bytes)
        yield from (hist_dur, reqs, hist_int, down, up)
        fams = {
            name: CounterMetricFamily(name[: -len("_total")], _HELP[name][1], labels=["persona"])
            for name in ("entload_visits_started_total", "entload_arrivals_late_total", "entload_arrivals_dropped_total")
        }
        done = CounterMetricFamily("entload_visits_completed", _HELP["entload_visits_completed_total"][1],
                                   labels=["persona", "outcome"])  # fmt: skip
        vdur = HistogramMetricFamily("entload_visit_duration_seconds", _HELP["entload_visit_duration_seconds"][1],
                                     labels=["persona"])  # fmt: skip
        active = GaugeMetricFamily("entload_active_visits", _HELP["entload_active_visits"][1], labels=["persona"])
        for p in run.personas():
            fams["entload_visits_started_total"].add_metric([p.name], p.started)
            fams["entload_arrivals_late_total"].add_metric([p.name], p.late)
            fams["entload_arrivals_dropped_total"].add_metric([p.name], p.dropped)
            for o, n in p.completed.items():
                done.add_metric([p.name, o], n)
            vdur.add_metric([p.name], p.duration.buckets(_VISIT_LE), p.duration.sum)
            active.add_metric([p.name], p.active)
        yield from (fams["entload_visits_started_total"], done, vdur, fams["entload_arrivals_late_total"],
                    fams["entload_arrivals_dropped_total"])  # fmt: skip
        yield CounterMetricFamily("entload_arrivals_target", _HELP["entload_arrivals_target_total"][1],
                                  value=run.arrivals_target)  # fmt: skip
        yield GaugeMetricFamily("entload_arrival_rate_target", _HELP["entload_arrival_rate_target"][1],
                                value=run.arrival_rate_target)  # fmt: skip
        yield active


class RunMetrics:
    """The metrics of one Locust process and the listeners that feed them.

    Request, visit and arrival measurements live in plain Python objects (no locks: Locust's listeners all run
    in one thread), exposed through a prometheus_client collector in `registry` and, for /metrics, through
    `render()`, a direct text exposition about twenty times faster than `generate_latest` on the same data
    (a scrape with every ENT route populated takes a few milliseconds, not tens).
    """

    def __init__(
        self,
        role: str = "local",
        max_endpoints: int = DEFAULT_MAX_ENDPOINTS,
        link_capacity_bps: float | None = None,
        user_count: Callable[[], float] | None = None,
        worker_count: Callable[[], float] | None = None,
    ):
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.role = role
        self.endpoint = BoundedLabel("endpoint", max_endpoints, endpoint_label)
        self.persona = BoundedLabel("persona", MAX_PERSONAS)
        # the few classic collectors (process, build info, gauges read at scrape time)
        self.base_registry = base = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=base)  # process_cpu_seconds_total etc.: the generator's own cost
        build = Gauge("entload_build_info", "entload build and process role (value 1)",
                      ["version", "locust_version", "python_version", "role"], registry=base)  # fmt: skip
        build.labels(_version("entload"), _version("locust"), platform.python_version(), role).set(1)
        if role != "worker":  # once per run, so sum() and max() over a run agree
            # Bytes: Prometheus's base unit (promtool's linter rejects "bits" in a name). The rules record
            # entload_link_capacity_bits_per_second = 8 x this, the name the utilisation rule and dashboard use.
            capacity = Gauge("entload_link_capacity_bytes_per_second",
                             "capacity of the access link under test (--link-capacity), bytes per second",
                             registry=base)  # fmt: skip
            capacity.set((link_capacity_bps or 0.0) / 8.0)
        if role == "master":
            workers = Gauge("entload_workers", "Locust workers connected to this master", registry=base)
            if worker_count is not None:
                workers.set_function(worker_count)
        else:
            users = Gauge("entload_virtual_users", "Locust users spawned in this process", registry=base)
            if user_count is not None:
                users.set_function(user_count)
        self._endpoints: dict[tuple[str, str], _Endpoint] = {}
        self._by_raw: dict[tuple[str, str], _Endpoint] = {}
        self._personas: dict[str, _Persona] = {}
        self.arrivals_target = 0.0
        self.arrival_rate_target = 0.0
        # the full registry: the classic collectors plus the run's measurements
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in list(base._collector_to_names):
            self.registry.register(collector)
        if role != "master":
            self.registry.register(_RunCollector(self))

    # -- state -----------------------------------------------------------------------------------------------
    def endpoints(self) -> list[_Endpoint]:
        return list(self._endpoints.values())

    def personas(self) -> list[_Persona]:
        return list(self._personas.values())

    def _endpoint_for(self, name: str, method: str) -> _Endpoint:
        key = (self.endpoint(name), method)
        ep = self._endpoints.get(key)
        if ep is None:
            ep = self._endpoints[key] = _Endpoint(*key)
        if len(self._by_raw) < 4 * self.endpoint.cap + 1000:  # raw names may be unbounded; the memo is not
            self._by_raw[(name, method)] = ep
        return ep

    def _persona(self, name) -> _Persona:
        label = self.persona(str(name))
        p = self._personas.get(label)
        if p is None:
            p = self._personas[label] = _Persona(label)
        return p

    # -- listeners -------------------------------------------------------------------------------------------
    def on_request(self, request_type, name, response_time, response_length=0, response=None, context=None,
                   exception=None, start_time=None, url=None, **_kw) -> None:  # fmt: skip
        """Locust `request` event: one HTTP request (or any call measured through Locust)."""
        # (start_time and url are named although unused: a keyword caught by **_kw costs a dict per call)
        ep = self._by_raw.get((name, request_type))
        if ep is None:
            ep = self._endpoint_for(name, str(request_type or "").upper())
        outcome = "ok" if exception is None else self._failure_outcome(response, exception)
        outcomes = ep.outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        seconds = (response_time or 0.0) / 1000.0
        h = ep.duration  # _Hist.observe, inlined (twice per request)
        h.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        h.sum += seconds
        late = context.get("lateness_s") if context else None
        intended = seconds + late if late else seconds
        h = ep.intended
        h.counts[bisect_left(DURATION_BUCKETS, intended)] += 1
        h.sum += intended
        ep.response_bytes += response_wire_bytes(response, response_length)
        given = context.get("request_bytes") if context else None
        ep.request_bytes += int(given) if given is not None else request_wire_bytes(response, context)

    @staticmethod
    def _failure_outcome(response, exception) -> str:
        status = getattr(response, "status_code", 0) or 0
        if status == 509 or "too many users" in str(exception).lower():
            return "quota"
        if 400 <= status < 500:
            return "http_4xx"
        if status >= 500:
            return "http_5xx"
        if status:
            return "failed"  # an answer the journey's check rejected
        return "error"  # no HTTP answer: refused, reset, timeout

    def on_visit_started(self, persona, intended_at=None, started_at=None, late=False, **_kw) -> None:
        p = self._persona(persona)
        p.started += 1
        p.active += 1
        if late:
            p.late += 1

    def on_visit_completed(self, persona, outcome="ok", duration_s=0.0, **_kw) -> None:
        p = self._persona(persona)
        o = outcome if outcome in VISIT_OUTCOMES else "failed"
        p.completed[o] += 1
        p.active -= 1
        p.duration.observe(max(0.0, float(duration_s)))

    def on_arrival_dropped(self, persona, intended_at=None, **_kw) -> None:
        self._persona(persona).dropped += 1

    def on_arrival_target(self, rate_per_s, expected_in_tick=0.0, **_kw) -> None:
        self.arrival_rate_target = float(rate_per_s)
        if expected_in_tick and expected_in_tick > 0:
            self.arrivals_target += float(expected_in_tick)

    def _pairs(self, locust_events) -> Iterable[tuple]:
        from exporters import events as entload_events  # imports locust: only where Locust runs

        if self.role == "master":
            return ()  # the master's gauges read the runner; it records no requests, visits or arrivals
        return (
            (locust_events.request, self.on_request),
            (entload_events.visit_started, self.on_visit_started),
            (entload_events.visit_completed, self.on_visit_completed),
            (entload_events.arrival_dropped, self.on_arrival_dropped),
            (entload_events.arrival_target, self.on_arrival_target),
        )

    def attach(self, locust_events) -> None:
        """Listen to Locust's `request` event (of this environment) and to the scenarios' visit hooks."""
        for hook, handler in self._pairs(locust_events):
            hook.add_listener(handler)

    def detach(self, locust_events) -> None:
        for hook, handler in self._pairs(locust_events):
            try:
                hook.remove_listener(handler)
            except ValueError:
                pass

    # -- exposition ------------------------------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition format (0.0.4) of everything: what /metrics serves."""
        head = generate_latest(self.base_registry)
        if self.role == "master":
            return head
        out: list[str] = []
        a = out.append

        def family(name):
            kind, text = _HELP[name]
            a(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")

        def hist(name, labels, h, le_texts):
            cum = 0
            for le, c in zip(le_texts, h.counts, strict=True):
                cum += c
                a(f'{name}_bucket{{{labels},le="{le}"}} {cum}\n')
            a(f"{name}_sum{{{labels}}} {_fmt(h.sum)}\n{name}_count{{{labels}}} {cum}\n")

        eps = self.endpoints()
        family("entload_request_duration_seconds")
        for ep in eps:
            hist("entload_request_duration_seconds", ep.labels, ep.duration, _DURATION_LE)
        family("entload_requests_total")
        for ep in eps:
            for outcome, n in ep.outcomes.items():
                a(f'entload_requests_total{{{ep.labels},outcome="{outcome}"}} {n}\n')
        family("entload_request_intended_duration_seconds")
        for ep in eps:
            hist("entload_request_intended_duration_seconds", ep.labels, ep.intended, _DURATION_LE)
        family("entload_response_bytes_total")
        for ep in eps:
            a(f"entload_response_bytes_total{{{ep.labels}}} {ep.response_bytes}\n")
        family("entload_request_bytes_total")
        for ep in eps:
            a(f"entload_request_bytes_total{{{ep.labels}}} {ep.request_bytes}\n")
        ps = self.personas()
        for name, attr in (("entload_visits_started_total", "started"),):
            family(name)
            for p in ps:
                a(f"{name}{{{p.labels}}} {getattr(p, attr)}\n")
        family("entload_visits_completed_total")
        for p in ps:
            for o, n in p.completed.items():
                a(f'entload_visits_completed_total{{{p.labels},outcome="{o}"}} {n}\n')
        family("entload_visit_duration_seconds")
        for p in ps:
            hist("entload_visit_duration_seconds", p.labels, p.duration, _VISIT_LE)
        for name, attr in (("entload_arrivals_late_total", "late"), ("entload_arrivals_dropped_total", "dropped")):
            family(name)
            for p in ps:
                a(f"{name}{{{p.labels}}} {getattr(p, attr)}\n")
        family("entload_arrivals_target_total")
        a(f"entload_arrivals_target_total {_fmt(self.arrivals_target)}\n")
        family("entload_arrival_rate_target")
        a(f"entload_arrival_rate_target {_fmt(self.arrival_rate_target)}\n")
        family("entload_active_visits")
        for p in ps:
            a(f"entload_active_visits{{{p.labels}}} {p.active}\n")
        return head + "".join(out).encode()

    def exposition(self) -> bytes:
        """Alias of render(): the text a scrape sees."""
        return self.render()

    def series_count(self) -> int:
        """Number of samples in the exposition (for cardinality checks)."""
        return sum(1 for line in self.render().splitlines() if line and not line.startswith(b"#"))


class MetricsServer:
    """`/metrics` over HTTP in a gevent server (Locust's runtime); remembers when it was last scraped."""

    def __init__(self, render: Callable[[], bytes], bind: str, port: int):
        from gevent.pywsgi import WSGIServer

        self.last_scrape = 0.0  # by anyone
        self.last_prometheus_scrape = 0.0  # by a Prometheus server (its User-Agent), for the final scrape
        self.scrapes = 0

        def app(environ, start_response):
            path = environ.get("PATH_INFO", "/")
            if path not in ("/", "/metrics"):
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"not found; try /metrics\n"]
            body = render()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
            self.last_scrape = now = time.time()
            if environ.get("HTTP_USER_AGENT", "").startswith("Prometheus/"):
                self.last_prometheus_scrape = now
            self.scrapes += 1
            return [body]

        self.bind, self.port = bind, port
        self._server = WSGIServer((bind, port), app, log=None, error_log=None)

    def start(self) -> None:
        try:
            self._server.start()
        except OSError as exc:
            raise OSError(
                f"--metrics-port: cannot serve /metrics on {self.bind}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.port = self._server.server_port

    def stop(self) -> None:
        self._server.stop(timeout=1)

    @property
    def url(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"http://{host}:{self.port}/metrics"


def metrics_port_for(role: str, base_port: int, worker_index: int = 0) -> int:
    """The master / local process serves `base_port`; worker i serves base_port + 1 + i (0 = off)."""
    if not base_port:
        return 0
    return base_port + 1 + worker_index if role == "worker" else base_port


def scrape_config(
    run_id: str,
    targets: list[str],
    scrape_interval: str = "5s",
    rule_files: Iterable[str] = (),
    node_exporter: str | None = None,
) -> str:
    """A ready `prometheus.yml` for one run: its metrics targets (labelled run_id), and optionally node_exporter."""
    q = _yaml_str
    lines = [
        "# Generated by entload for this run: prometheus --config.file=prometheus.yml",
        "global:",
        f"  scrape_interval: {scrape_interval}",
        f"  evaluation_interval: {scrape_interval}",
    ]
    rule_files = list(rule_files)
    if rule_files:
        lines.append("rule_files:")
        lines += [f"  - {q(f)}" for f in rule_files]
    lines += [
        "scrape_configs:",
        "  - job_name: entload",
        "    static_configs:",
        "      - targets: [" + ", ".join(q(t) for t in targets) + "]",
        "        labels:",
        f"          run_id: {q(run_id)}",
    ]
    if node_exporter:
        lines += [
            "  - job_name: node",
            "    static_configs:",
            f"      - targets: [{q(node_exporter)}]",
        ]
    return "\n".join(lines) + "\n"


def metrics_targets(bind: str, base_port: int, workers: int = 0) -> list[str]:
    """host:port of every process of a run: the master (or local process), then each worker."""
    host = f"[{bind}]" if ":" in bind else bind
    if workers <= 0:
        return [f"{host}:{base_port}"]
    return [f"{host}:{base_port}"] + [f"{host}:{metrics_port_for('worker', base_port, i)}" for i in range(workers)]


def _yaml_str(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{os.getpid()}"


# -- Locust integration: options and the init listener -------------------------------------------------------


def add_option_once(parser, *flags: str, **kwargs) -> None:
    """Add an option unless another module already registered it (the recorder shares `--run-id`)."""
    known = getattr(parser, "_option_string_actions", {})
    if any(f in known for f in flags):
        return
    parser.add_argument(*flags, **kwargs)


def add_options(parser) -> None:
    """Register the exporters' Locust options (skipping any another module registered first)."""
    group = parser.add_argument_group("entload metrics (Prometheus)")

    def add(*flags, **kw):
        add_option_once(group, *flags, **kw)

    add("--metrics-port", type=int, default=0, env_var="ENTLOAD_METRICS_PORT",
        help="serve Prometheus /metrics on this port (0 = off); worker i serves PORT+1+i")  # fmt: skip
    add("--metrics-bind", default="127.0.0.1", env_var="ENTLOAD_METRICS_BIND",
        help="address /metrics binds to (default loopback)")  # fmt: skip
    add("--metrics-linger", type=float, default=0.0, env_var="ENTLOAD_METRICS_LINGER",
        help="after the test stops, keep /metrics up until a Prometheus scrapes the final values, at most this "
             "many seconds (use about twice the scrape interval)")  # fmt: skip
    add("--metrics-max-endpoints", type=int, default=DEFAULT_MAX_ENDPOINTS,
        help="cap on distinct endpoint label values; later ones count as [other]")  # fmt: skip
    add("--pushgateway", default="", env_var="ENTLOAD_PUSHGATEWAY",
        help="Pushgateway URL: push metrics (job=entload, grouped by run_id and instance) periodically and at the end")  # fmt: skip
    add("--pushgateway-interval", type=float, default=15.0,
        help="seconds between pushes during the run (0 = only at the end)")  # fmt: skip
    add("--link-capacity", default="", env_var="ENTLOAD_LINK_CAPACITY",
        help="access link capacity (e.g. 1Gbit, 500Mbit/s), for the link utilisation rules")  # fmt: skip
    add("--run-id", default=None, env_var="ENTLOAD_RUN_ID",
        help="run identifier (results folder name, Pushgateway grouping key)")  # fmt: skip


def _role_of(runner) -> tuple[str, int]:
    from locust.runners import MasterRunner, WorkerRunner

    if isinstance(runner, MasterRunner):
        return "master", 0
    if isinstance(runner, WorkerRunner):
        return "worker", max(0, getattr(runner, "worker_index", 0))
    return "local", 0


class Installed:
    """What `install()` set up for one environment, so it can be torn down (tests, benchmarks)."""

    def __init__(self, metrics: RunMetrics, server: MetricsServer | None, pusher, environment):
        self.metrics, self.server, self.pusher, self.environment = metrics, server, pusher, environment
        self._stopped_at: float | None = None

    def on_test_stop(self, **_kw) -> None:
        self._stopped_at = time.time()

    def on_quitting(self, **_kw) -> None:
        opts = self.environment.parsed_options
        linger = float(getattr(opts, "metrics_linger", 0) or 0) if opts else 0.0
        if self.server is not None and linger > 0:
            import gevent

            end = self._stopped_at or time.time()
            deadline = time.monotonic() + linger
            while time.monotonic() < deadline and self.server.last_prometheus_scrape <= end:
                gevent.sleep(0.05)
        self.close()

    def close(self) -> None:
        if self.pusher is not None:
            self.pusher.stop(final_push=True)
            self.pusher = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.metrics.detach(self.environment.events)


def install(environment, runner=None) -> Installed:
    """Create this process's metrics for `environment`, serve and push them as its options say."""
    from exporters.pushgateway import PeriodicPusher

    runner = runner or environment.runner
    opts = environment.parsed_options
    role, worker_index = _role_of(runner)
    capacity = parse_bits_per_second(getattr(opts, "link_capacity", None)) if opts else None
    metrics = RunMetrics(
        role=role,
        max_endpoints=int(getattr(opts, "metrics_max_endpoints", DEFAULT_MAX_ENDPOINTS) or DEFAULT_MAX_ENDPOINTS),
        link_capacity_bps=capacity,
        user_count=(lambda: runner.user_count) if runner is not None and role != "master" else None,
        worker_count=(
            (lambda: len(runner.clients.ready) + len(runner.clients.spawning) + len(runner.clients.running))
            if role == "master"
            else None
        ),
    )
    metrics.attach(environment.events)
    server = None
    port = metrics_port_for(role, int(getattr(opts, "metrics_port", 0) or 0), worker_index) if opts else 0
    if port:
        server = MetricsServer(metrics.render, getattr(opts, "metrics_bind", "127.0.0.1") or "127.0.0.1", port)
        server.start()
        log.info("Prometheus metrics (%s) at %s", role, server.url)
    pusher = None
    url = getattr(opts, "pushgateway", "") if opts else ""
    if url:
        if not getattr(opts, "run_id", None):  # as the recorder names it: the results folder, else a timestamp
            results_dir = getattr(opts, "results_dir", "") or ""
            opts.run_id = os.path.basename(os.path.normpath(results_dir)) if results_dir else default_run_id()
        instance = f"worker-{worker_index}" if role == "worker" else role
        pusher = PeriodicPusher(
            url, metrics.registry, run_id=opts.run_id, instance=instance,
            interval_s=float(getattr(opts, "pushgateway_interval", 15.0) or 0.0),
        )  # fmt: skip
        pusher.start()
    installed = Installed(metrics, server, pusher, environment)
    environment.events.test_stop.add_listener(installed.on_test_stop)
    environment.events.quitting.add_listener(installed.on_quitting)
    environment.entload_metrics = installed
    return installed


def _on_locust_init(environment, runner=None, **_kw) -> None:
    if getattr(environment, "entload_metrics", None) is not None:
        return  # installed already (entload run may install explicitly)
    try:
        install(environment, runner)
    except (OSError, ValueError) as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


def register() -> None:
    """Register the options and the `init` listener with Locust (idempotent)."""
    from locust import events as locust_events

    if getattr(locust_events, "_entload_metrics_registered", False):
        return
    locust_events.init_command_line_parser.add_listener(add_options)
    locust_events.init.add_listener(_on_locust_init)
    locust_events._entload_metrics_registered = True


# Imported by a locustfile, Locust is already loaded: register. Imported elsewhere (the entload CLI writing a
# prometheus.yml, tests, benchmarks) do not import Locust, whose gevent monkey-patching would change that process.
if "locust" in sys.modules:
    register()
