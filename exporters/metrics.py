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
import time
from collections.abc import Callable, Iterable
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest, make_wsgi_app

from exporters import events as entload_events

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


def _request_wire_bytes(response, context: dict) -> int:
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


def _response_wire_bytes(response, response_length: int) -> int:
    """Bytes received: status line + headers + body as sent (Content-Length when present, else what was read)."""
    headers = getattr(response, "headers", None) if response is not None else None
    if not headers:
        return int(response_length or 0)
    size = 17  # "HTTP/1.1 200 OK\r\n"; the reason phrase varies by a few bytes
    body = None
    for k, v in headers.items():
        size += len(k) + len(v) + 4
        if body is None and len(k) == 14 and k.lower() == "content-length":
            try:
                body = int(v)
            except ValueError:
                body = None
    return size + 2 + (body if body is not None else int(response_length or 0))


class RunMetrics:
    """The metric families of one Locust process, in their own registry, and the listeners that feed them."""

    def __init__(
        self,
        role: str = "local",
        registry: CollectorRegistry | None = None,
        max_endpoints: int = DEFAULT_MAX_ENDPOINTS,
        link_capacity_bps: float | None = None,
        user_count: Callable[[], float] | None = None,
        worker_count: Callable[[], float] | None = None,
    ):
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.role = role
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.endpoint = BoundedLabel("endpoint", max_endpoints, endpoint_label)
        self.persona = BoundedLabel("persona", MAX_PERSONAS)
        ProcessCollector(registry=r)  # process_cpu_seconds_total etc.: the generator's own cost
        self.build_info = Gauge(
            "entload_build_info",
            "entload build and process role (value 1)",
            ["version", "locust_version", "python_version", "role"],
            registry=r,
        )
        self.build_info.labels(_version("entload"), _version("locust"), platform.python_version(), role).set(1)
        self.link_capacity = None
        if role != "worker":  # once per run, so sum() and max() over a run agree
            self.link_capacity = Gauge(
                "entload_link_capacity_bits_per_second",
                "capacity of the access link under test (--link-capacity), for utilisation rules",
                registry=r,
            )
            if link_capacity_bps:
                self.link_capacity.set(link_capacity_bps)
        if role == "master":
            self.workers = Gauge("entload_workers", "Locust workers connected to this master", registry=r)
            if worker_count is not None:
                self.workers.set_function(worker_count)
            return  # requests, visits and arrivals are exported by the workers that live them

        labels = ["endpoint", "method", "outcome"]
        self.request_duration = Histogram(
            "entload_request_duration_seconds",
            "HTTP request latency from send to the last byte of the response",
            labels,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "entload_requests", "HTTP requests by endpoint, method and outcome", labels, registry=r
        )
        self.intended_duration = Histogram(
            "entload_request_intended_duration_seconds",
            "latency measured from the visit's intended start (free of coordinated omission)",
            ["endpoint", "method"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.response_bytes = Counter(
            "entload_response_bytes",
            "bytes received (status line, headers and body as sent)",
            ["endpoint", "method"],
            registry=r,
        )
        self.request_bytes = Counter(
            "entload_request_bytes",
            "bytes sent (request line, headers and body)",
            ["endpoint", "method"],
            registry=r,
        )
        self.visits_started = Counter("entload_visits_started", "visits begun", ["persona"], registry=r)
        self.visits_completed = Counter(
            "entload_visits_completed", "visits ended, by outcome", ["persona", "outcome"], registry=r
        )
        self.visit_duration = Histogram(
            "entload_visit_duration_seconds",
            "whole visit (journey) duration",
            ["persona"],
            buckets=VISIT_BUCKETS,
            registry=r,
        )
        self.arrivals_late = Counter(
            "entload_arrivals_late", "arrivals whose visit started late", ["persona"], registry=r
        )
        self.arrivals_dropped = Counter(
            "entload_arrivals_dropped", "arrivals that found no free virtual user", ["persona"], registry=r
        )
        self.arrivals_target = Counter(
            "entload_arrivals_target", "target arrivals (the arrival rate integrated over time)", registry=r
        )
        self.arrival_rate_target = Gauge(
            "entload_arrival_rate_target", "target arrival rate now, visits per second", registry=r
        )
        self.active_visits = Gauge("entload_active_visits", "visits in progress", ["persona"], registry=r)
        self.virtual_users = Gauge("entload_virtual_users", "Locust users spawned in this process", registry=r)
        if user_count is not None:
            self.virtual_users.set_function(user_count)
        self._seen_personas: set[str] = set()
        self._req_children: dict[tuple[str, str, str], tuple] = {}
        self._ep_children: dict[tuple[str, str], tuple] = {}

    # -- listeners -------------------------------------------------------------------------------------------
    def on_request(
        self, request_type, name, response_time, response_length=0, response=None, context=None, exception=None,
        **_kw,
    ) -> None:
        """Locust `request` event: one HTTP request (or any Locust-measured call)."""
        method = str(request_type or "").upper()
        endpoint = self.endpoint(name)
        ctx = context or {}
        outcome = "ok" if exception is None else self._failure_outcome(response, exception)
        key = (endpoint, method, outcome)
        pair = self._req_children.get(key)
        if pair is None:
            pair = (self.request_duration.labels(*key), self.requests.labels(*key))
            self._req_children[key] = pair
        seconds = (response_time or 0.0) / 1000.0
        pair[0].observe(seconds)
        pair[1].inc()
        epkey = (endpoint, method)
        trio = self._ep_children.get(epkey)
        if trio is None:
            trio = (
                self.intended_duration.labels(*epkey),
                self.response_bytes.labels(*epkey),
                self.request_bytes.labels(*epkey),
            )
            self._ep_children[epkey] = trio
        trio[0].observe(seconds + float(ctx.get("lateness_s") or 0.0))
        trio[1].inc(_response_wire_bytes(response, response_length))
        trio[2].inc(_request_wire_bytes(response, ctx))

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

    def _first_seen(self, p: str) -> None:
        """Create a persona's counters at 0, so rates and the dashboard show 0 rather than no data."""
        self.visits_started.labels(p)
        self.arrivals_late.labels(p)
        self.arrivals_dropped.labels(p)
        self.active_visits.labels(p)
        for o in VISIT_OUTCOMES:
            self.visits_completed.labels(p, o)

    def _persona(self, persona) -> str:
        p = self.persona(str(persona))
        if p not in self._seen_personas:
            self._seen_personas.add(p)
            self._first_seen(p)
        return p

    def on_visit_started(self, persona, intended_at=None, started_at=None, late=False, **_kw) -> None:
        p = self._persona(persona)
        self.visits_started.labels(p).inc()
        self.active_visits.labels(p).inc()
        if late:
            self.arrivals_late.labels(p).inc()

    def on_visit_completed(self, persona, outcome="ok", duration_s=0.0, **_kw) -> None:
        p = self._persona(persona)
        o = outcome if outcome in VISIT_OUTCOMES else "failed"
        self.visits_completed.labels(p, o).inc()
        self.active_visits.labels(p).dec()
        self.visit_duration.labels(p).observe(max(0.0, float(duration_s)))

    def on_arrival_dropped(self, persona, intended_at=None, **_kw) -> None:
        self.arrivals_dropped.labels(self._persona(persona)).inc()

    def on_arrival_target(self, rate_per_s, expected_in_tick=0.0, **_kw) -> None:
        self.arrival_rate_target.set(float(rate_per_s))
        if expected_in_tick and expected_in_tick > 0:
            self.arrivals_target.inc(float(expected_in_tick))

    def _pairs(self, locust_events) -> Iterable[tuple]:
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

    def exposition(self) -> bytes:
        """The text exposition format, as a scrape would see it."""
        return generate_latest(self.registry)

    def series_count(self) -> int:
        """Number of samples in the exposition (for cardinality checks)."""
        return sum(len(fam.samples) for fam in self.registry.collect())


class MetricsServer:
    """`/metrics` over HTTP in a gevent server (Locust's runtime); remembers when it was last scraped."""

    def __init__(self, registry: CollectorRegistry, bind: str, port: int):
        from gevent.pywsgi import WSGIServer

        app = make_wsgi_app(registry)
        self.last_scrape = 0.0
        self.scrapes = 0

        def counting_app(environ, start_response):
            body = app(environ, start_response)
            if environ.get("PATH_INFO", "/") in ("/", "/metrics"):
                self.last_scrape = time.time()
                self.scrapes += 1
            return body

        self.bind, self.port = bind, port
        self._server = WSGIServer((bind, port), counting_app, log=None, error_log=None)

    def start(self) -> None:
        try:
            self._server.start()
        except OSError as exc:
            raise OSError(f"--metrics-port: cannot serve /metrics on {self.bind}:{self.port}: {exc.strerror or exc}") from None
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
        help="after the test stops, keep /metrics up until it is scraped once more, at most this many seconds")  # fmt: skip
    add("--metrics-max-endpoints", type=int, default=DEFAULT_MAX_ENDPOINTS,
        help="cap on distinct endpoint label values; later ones count as [other]")  # fmt: skip
    add("--pushgateway", default="", env_var="ENTLOAD_PUSHGATEWAY",
        help="Pushgateway URL: push metrics (job=entload, grouped by run_id and instance) periodically and at the end")  # fmt: skip
    add("--pushgateway-interval", type=float, default=15.0,
        help="seconds between pushes during the run (0 = only at the end)")  # fmt: skip
    add("--link-capacity", default="", env_var="ENTLOAD_LINK_CAPACITY",
        help="access link capacity (e.g. 1Gbit, 500Mbit/s) exported as entload_link_capacity_bits_per_second")  # fmt: skip
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
            while time.monotonic() < deadline and self.server.last_scrape <= end:
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
        server = MetricsServer(metrics.registry, getattr(opts, "metrics_bind", "127.0.0.1") or "127.0.0.1", port)
        server.start()
        log.info("Prometheus metrics (%s) at %s", role, server.url)
    pusher = None
    url = getattr(opts, "pushgateway", "") if opts else ""
    if url:
        if not getattr(opts, "run_id", None):
            opts.run_id = default_run_id()
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


def _register() -> None:
    from locust import events as locust_events

    if getattr(locust_events, "_entload_metrics_registered", False):
        return
    locust_events.init_command_line_parser.add_listener(add_options)
    locust_events.init.add_listener(_on_locust_init)
    locust_events._entload_metrics_registered = True


_register()
