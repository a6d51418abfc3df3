"""Process-wide state of a run: the plan, accounts, hosts, and this process's arrival scheduler.

Configured from Locust's parsed options: at `init` in the local process or master (so user weights and the
shape are ready before the first spawn), and at `test_start` on workers (which receive the master's options
with their first spawn message). The open-model clock (t0, this process's share) is set by the shape in
local mode and by the master's `entload_clock` message in distributed mode.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import gevent
from gevent.event import Event

from scenarios._accounts import Account, load_accounts
from scenarios._arrivals import Scheduler
from scenarios._options import ScenarioError, check_url, plan_from_options
from scenarios._plan import ReplayPlan

log = logging.getLogger("entload.scenarios")
CLOCK_MESSAGE = "entload_clock"
REPORT_KEY = "entload_pool"


@dataclass
class Runtime:
    plan: ReplayPlan | None = None
    accounts: dict[str, list[Account]] = field(default_factory=dict)
    ent_host: str = ""
    enseigno_host: str = ""
    signature: tuple = ()
    open_model: bool = False
    scheduler: Scheduler | None = None
    scheduler_ready: Event = field(default_factory=Event)
    t0: float | None = None
    pool_users: dict[str, int] = field(default_factory=dict)
    worker_reports: dict[str, dict] = field(default_factory=dict)
    counts_at_end: dict | None = None
    pending_clock: dict | None = None  # a worker's clock message, applied once the master's options are in

    # -- configuration ----------------------------------------------------------------------------------
    def configure(self, environment) -> Runtime:
        """(Re)build the plan and load accounts from the environment's options; raises ScenarioError."""
        options = environment.parsed_options
        host = (environment.host or getattr(options, "host", "") or "").strip()
        sig = (host,) + tuple(str(getattr(options, name, "")) for name in (
            "workload", "day_in", "from_time", "to_time", "scale", "seed", "day_type", "arrivals",
            "accounts", "enseigno_host", "allow_host"))
        if sig == self.signature and self.plan is not None:
            return self
        plan = plan_from_options(options)
        allow = list(getattr(options, "allow_host", None) or [])
        apps = {plan.workload.personas[p]["app"] for p in plan.personas}
        if not host:
            raise ScenarioError("--host: the ENT base URL is required, e.g. --host http://127.0.0.1:8080")
        ent_host = check_url(host, "--host", allow)
        enseigno = (getattr(options, "enseigno_host", "") or "").strip()
        if "enseigno" in apps and not enseigno:
            raise ScenarioError("--enseigno-host: the workload has Enseigno visits; give the Enseigno base URL "
                                "(entload staging prints it), or a workload without Enseigno personas")
        enseigno_host = check_url(enseigno, "--enseigno-host", allow) if enseigno else ""
        accounts_path = (getattr(options, "accounts", "") or "").strip()
        if not accounts_path:
            raise ScenarioError("--accounts: an accounts CSV (login,password,persona) is required; "
                                "`entload staging --export-accounts FILE` writes the staging ENT's")
        needed = {plan.workload.personas[p]["accounts"] for p in plan.personas}
        self.accounts = load_accounts(accounts_path, needed)
        self.plan, self.ent_host, self.enseigno_host, self.signature = plan, ent_host, enseigno_host, sig
        resolve_literals_inline(ent_host, enseigno_host)
        return self

    # -- the open-model clock -----------------------------------------------------------------------------
    def start_scheduler(self, t0: float, share_index: int, share_count: int) -> Scheduler:
        if self.scheduler is not None and self.t0 == t0:
            return self.scheduler
        if self.scheduler is not None:
            self.scheduler.stop()
        assert self.plan is not None
        self.t0 = t0
        self.scheduler = Scheduler(self.plan, t0, share_index, share_count)
        self.scheduler.start()
        self.scheduler_ready.set()
        log.info("open-model arrivals: share %d of %d, k=%.4g, window starts in %.1fs", share_index,
                 share_count, self.plan.k, t0 - time.time())
        return self.scheduler

    def wait_scheduler(self, timeout: float | None = None) -> Scheduler | None:
        self.scheduler_ready.wait(timeout)
        return self.scheduler

    def reset(self) -> None:
        """Forget the clock at the end of a test (a new test in the same process starts a new day)."""
        if self.scheduler is not None:
            self.counts_at_end = self.scheduler.counts()
            self.scheduler.stop()
        self.scheduler = None
        self.scheduler_ready = Event()
        self.t0 = None
        self.worker_reports.clear()

    # -- the pool -----------------------------------------------------------------------------------------
    def user_joined(self, persona: str) -> None:
        self.pool_users[persona] = self.pool_users.get(persona, 0) + 1
        if self.scheduler is not None:
            self.scheduler.users[persona] = self.pool_users[persona]

    def user_left(self, persona: str) -> None:
        self.pool_users[persona] = max(0, self.pool_users.get(persona, 0) - 1)
        if self.scheduler is not None:
            self.scheduler.users[persona] = self.pool_users[persona]

    def pool_state(self) -> dict | None:
        """This process's pool (local) or the sum of the workers' last reports (master)."""
        if self.scheduler is not None:
            for p, n in self.pool_users.items():
                self.scheduler.users[p] = n
            return self.scheduler.pool_state()
        if not self.worker_reports:
            return None
        merged: dict = {"personas": {}, "dropped": 0, "done": True, "durations": {}, "handed": 0}
        for rep in self.worker_reports.values():
            merged["dropped"] += rep.get("dropped", 0)
            merged["handed"] += rep.get("handed", 0)
            merged["done"] = merged["done"] and rep.get("done", False)
            for p, d in rep.get("durations", {}).items():
                merged["durations"][p] = max(d, merged["durations"].get(p, 0.0))
            for p, vals in rep.get("personas", {}).items():
                cur = merged["personas"].setdefault(p, [0, 0, 0])
                for i, v in enumerate(vals):
                    cur[i] += v
        for rep in self.worker_reports.values():
            rep["dropped"] = 0  # counted once
        return merged


RUNTIME = Runtime()


def arrival_counts() -> dict | None:
    """This process's arrival counts (scheduled, started, late, dropped; per 10-minute bucket), or None."""
    if RUNTIME.scheduler is not None:
        return RUNTIME.scheduler.counts()
    return RUNTIME.counts_at_end


def resolve_literals_inline(*urls: str) -> bool:
    """Resolve in the calling greenlet when every target is an IP literal (the loopback default).

    Each visit opens new connections (the ENT closes idle keep-alive ones between visits), and geventhttpclient
    resolves the host on every new connection. gevent's default resolver sends each call to a native thread: at
    the full day's peak that hand-off (and the GIL traffic it brings) was ~11 % of a worker's CPU, to "resolve"
    127.0.0.1. An IP literal needs no lookup, so the blocking resolver answers at once; a host name keeps the
    threaded resolver, since a real DNS query must not block the whole process.
    """
    hosts = [urlsplit(u).hostname or "" for u in urls if u]
    try:
        for h in hosts:
            ipaddress.ip_address(h)
    except ValueError:
        return False
    if hosts:
        from gevent.resolver.blocking import Resolver

        hub = gevent.get_hub()
        if not isinstance(hub.resolver, Resolver):
            hub.resolver = Resolver(hub)
    return bool(hosts)


def sleep_think(seconds: float) -> None:
    if seconds > 0:
        gevent.sleep(seconds)
