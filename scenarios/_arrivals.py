"""The open-model arrival scheduler: visits arrive by themselves and are handed to idle virtual users.

One scheduler greenlet per load-generating process (the local process, or each worker) walks its share of
the plan's arrivals (scenarios/_plan.py) in wall time. At each arrival it hands a ticket to an idle user of
the arrival's persona; that user runs one whole visit and becomes idle again. No idle user: the arrival is
**dropped** (k6 semantics) and `arrival_dropped` fires. A visit that begins more than `late_tolerance_s`
wall seconds after its intended time is **late**; its lateness also travels with every request of the visit
(context `lateness_s`), so latency can be read from the intended start, free of coordinated omission.

Counts, per simulated 10-minute bucket of the intended time:
- expected : the plan's rate integrated over the bucket (`arrival_target`'s expected_in_tick, tick by tick);
- scheduled: arrivals this process drew from the seeded realisation (the run's target; `arrival_target`'s
             scheduled_in_tick);
- started  : arrivals a user took (visit_started fired), late ones included;
- late, dropped.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass

import gevent
from gevent.event import AsyncResult

from exporters import events as ev
from scenarios._plan import BUCKET_S, Arrival, ReplayPlan

log = logging.getLogger("entload.scenarios")
TICK_S = 1.0


@dataclass(frozen=True)
class Ticket:
    """One arrival handed to a user: who arrives and when it was meant to begin (epoch seconds)."""

    arrival: Arrival
    intended_at: float


class Scheduler:
    """Walks this process's share of the arrivals and dispatches them to idle users."""

    def __init__(self, plan: ReplayPlan, t0: float, share_index: int = 0, share_count: int = 1):
        self.plan = plan
        self.t0 = t0
        self.share_index = share_index
        self.share_count = max(1, share_count)
        self.end_wall = plan.wall_at(t0, plan.to_s)
        self.tolerance = plan.workload.arrivals["late_tolerance_s"]
        self.idle: dict[str, OrderedDict[int, AsyncResult]] = {p: OrderedDict() for p in plan.personas}
        self.users: dict[str, int] = defaultdict(int)  # users of each persona in the pool (idle or busy)
        self.busy: dict[str, int] = defaultdict(int)
        self.scheduled: dict[int, int] = defaultdict(int)
        self.started: dict[int, int] = defaultdict(int)
        self.late: dict[int, int] = defaultdict(int)
        self.dropped: dict[int, int] = defaultdict(int)
        self.scheduled_by_persona: dict[str, int] = defaultdict(int)
        self.started_by_persona: dict[str, int] = defaultdict(int)
        self.expected_sent = 0.0
        self.dropped_since_report = 0
        self.handed = 0  # tickets handed to a user whose visit has not begun yet
        self.max_lateness_s = 0.0
        # observed mean wall duration of visits per persona (EWMA), for Little's law with real durations
        self.mean_duration: dict[str, float] = {p: plan.mean_visit_wall_s(p) for p in plan.personas}
        self.done = False
        self.greenlet: gevent.Greenlet | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
        self.done = True

    def _run(self) -> None:
        plan, k = self.plan, self.plan.k
        stream = plan.stream(self.share_index, self.share_count)
        pending = next(stream, None)
        tick_start = self.t0
        while tick_start < self.end_wall:
            tick_end = min(tick_start + TICK_S, self.end_wall)
            sim_a, sim_b = plan.sim_at(self.t0, tick_start), plan.sim_at(self.t0, tick_end)
            delay = tick_start - time.time()
            if delay > 0:
                gevent.sleep(delay)
            expected = plan.expected(sim_a, sim_b) / self.share_count
            self.expected_sent += expected
            tick: list[Arrival] = []
            while pending is not None and pending.sim_t < sim_b:
                tick.append(pending)
                pending = next(stream, None)
            # scheduled_in_tick: an addition to the documented (rate_per_s, expected_in_tick); listeners take **kw
            ev.arrival_target.fire(rate_per_s=plan.rate(sim_a) * k / self.share_count, expected_in_tick=expected,
                                   scheduled_in_tick=len(tick))
            for arrival in tick:
                intended = plan.wall_at(self.t0, arrival.sim_t)
                delay = intended - time.time()
                if delay > 0.0005:
                    gevent.sleep(delay)
                self._dispatch(arrival, intended)
            tick_start = tick_end
        self.done = True
        log.info("arrival schedule finished: %d scheduled, %d started, %d dropped, %d late",
                 sum(self.scheduled.values()), sum(self.started.values()), sum(self.dropped.values()),
                 sum(self.late.values()))

    # -- dispatch ---------------------------------------------------------------------------------------
    def _dispatch(self, arrival: Arrival, intended_at: float) -> None:
        bucket = int(arrival.sim_t // BUCKET_S)
        self.scheduled[bucket] += 1
        self.scheduled_by_persona[arrival.persona] += 1
        self._hand(Ticket(arrival, intended_at), bucket)

    def _hand(self, ticket: Ticket, bucket: int) -> None:
        idle = self.idle.get(ticket.arrival.persona)
        if idle:
            _, slot = idle.popitem(last=False)
            slot.set(ticket)
            self.handed += 1
            return
        intended_at = ticket.intended_at
        arrival = ticket.arrival
        self.dropped[bucket] += 1
        self.dropped_since_report += 1
        ev.arrival_dropped.fire(persona=arrival.persona, intended_at=intended_at)

    def wait_ticket(self, user_key: int, persona: str) -> Ticket:
        """Block the calling user until an arrival of its persona is handed to it."""
        slot: AsyncResult = AsyncResult()
        idle = self.idle.setdefault(persona, OrderedDict())
        idle[user_key] = slot
        try:
            return slot.get()
        except BaseException:
            # the user was stopped (Locust killed its greenlet) after being handed a ticket: pass it on
            if slot.ready() and slot.successful():
                self.handed -= 1
                self._hand(slot.value, int(slot.value.arrival.sim_t // BUCKET_S))
            raise
        finally:
            idle.pop(user_key, None)

    def visit_began(self, ticket: Ticket, started_at: float) -> tuple[float, bool]:
        """Record the start of a ticket's visit; returns (lateness_s, late)."""
        self.handed = max(0, self.handed - 1)
        lateness = max(0.0, started_at - ticket.intended_at)
        late = lateness > self.tolerance
        bucket = int(ticket.arrival.sim_t // BUCKET_S)
        self.started[bucket] += 1
        self.started_by_persona[ticket.arrival.persona] += 1
        if late:
            self.late[bucket] += 1
        self.max_lateness_s = max(self.max_lateness_s, lateness)
        self.busy[ticket.arrival.persona] += 1
        return lateness, late

    def visit_ended(self, persona: str, duration_s: float) -> None:
        self.busy[persona] = max(0, self.busy[persona] - 1)
        prev = self.mean_duration.get(persona, duration_s)
        self.mean_duration[persona] = 0.95 * prev + 0.05 * duration_s

    # -- state for the shape (local) or the master (via worker reports) ------------------------------
    def pool_state(self) -> dict:
        """Per persona: users, busy, idle; plus drops since the last call and whether the schedule is done."""
        state = {
            "personas": {p: [self.users.get(p, 0), self.busy.get(p, 0), len(self.idle.get(p, ()))]
                         for p in set(self.users) | set(self.idle)},
            "handed": self.handed,
            "dropped": self.dropped_since_report,
            "done": self.done,
            "durations": dict(self.mean_duration),
        }
        self.dropped_since_report = 0
        return state

    def active_visits(self) -> int:
        """Visits in progress, and those handed to a user that has not begun them yet."""
        return sum(self.busy.values()) + self.handed

    def counts(self) -> dict:
        """Totals and per-bucket counts of this process (JSON-friendly)."""
        buckets = sorted(set(self.scheduled) | set(self.started) | set(self.dropped))
        return {
            "t0": self.t0,
            "from_s": self.plan.from_s,
            "share": [self.share_index, self.share_count],
            "compression": self.plan.k,
            "expected": self.expected_sent,
            "scheduled": sum(self.scheduled.values()),
            "started": sum(self.started.values()),
            "late": sum(self.late.values()),
            "dropped": sum(self.dropped.values()),
            "max_lateness_s": self.max_lateness_s,
            "scheduled_by_persona": dict(self.scheduled_by_persona),
            "started_by_persona": dict(self.started_by_persona),
            "buckets": {str(b): [self.scheduled.get(b, 0), self.started.get(b, 0), self.late.get(b, 0),
                                 self.dropped.get(b, 0)] for b in buckets},
        }
