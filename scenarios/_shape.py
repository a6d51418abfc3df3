"""The school-day shape: sizes the pool of virtual users, starts the open-model clock, ends the run.

Locust's `LoadTestShape` controls how many users exist; here users do not generate load by themselves (each
waits for an arrival ticket from the scheduler), so the shape's job is the pool:
- before the clock starts, spawn the pool the first minutes need (warm-up), then start the clock;
- during the window, keep the pool at Little's law (rate x mean visit duration) plus 4 standard deviations
  of the number of visits in progress, times the headroom, looking one visit back and 15 s ahead. The mean
  duration is the larger of the plan's estimate and the one observed on completed visits, and the pool is
  also kept above the visits in progress plus 4 standard deviations: a slow ENT makes visits longer, so more
  of them are in progress (the open model's point), and the pool follows. Arrivals dropped anyway grow it
  by half again. The pool never shrinks: stopping users would cut visits in flight;
- after the window, let visits in flight finish for at most `plan.drain_s()` wall seconds, then stop
  (tick returns None; headless Locust then quits).

Users are split across personas by Locust's weights, set at `init` to each persona's peak need, so a pool of
N users holds about N x need_p / sum(need) users of persona p. In distributed mode the master runs the
shape; each worker runs a scheduler for its share and reports its pool with its stats.
"""

from __future__ import annotations

import logging
import math
import sys
import time

from locust import events
from locust.runners import MasterRunner, WorkerRunner
from locust.shape import LoadTestShape

from scenarios._options import ScenarioError, add_options
from scenarios._runtime import CLOCK_MESSAGE, REPORT_KEY, RUNTIME
from scenarios._workload import WorkloadError

log = logging.getLogger("entload.scenarios")
LOOKAHEAD_S = 15.0  # wall seconds of arrivals the pool is sized for in advance
SPAWN_RATE = 100.0  # users per second per process once the clock runs (Locust warns above 100)
WARMUP_SPAWN_RATE = 500.0  # before the clock starts nothing else competes for the CPU
GROWTH = 1.5
#: The pool grows on drops, but at most to this multiple of its Little's-law size: past it the drops are the honest
#: signal that the generator (or the target) cannot keep up, and an unbounded pool only exhausts memory.
MAX_GROWTH = 4.0


class EntDayShape(LoadTestShape):
    """Replays the plan's window as open-model arrivals; see the module docstring."""

    def __init__(self):
        super().__init__()
        self._reset_state()

    def _reset_state(self) -> None:
        self.growth = 1.0
        self.pool = 0
        self.weights: dict[str, int] = {}
        self.clock_sent_to: set[str] = set()
        self.shares: dict[str, int] = {}
        #: wall epoch at which the simulated clock reads the window's start (read by the exporters' recorder;
        #: kept after the test ends, so the last rows still map to the simulated clock)
        self.t0: float | None = None
        self.ended_at: float | None = None
        self.finished = False

    def mark_finished(self) -> None:
        """The test ended: the next tick (a new test in the same process) starts a new day."""
        self.finished = True

    # -- sizing -------------------------------------------------------------------------------------------
    def _processes(self) -> int:
        runner = self.runner
        return max(1, runner.worker_count) if isinstance(runner, MasterRunner) else 1

    def _needed(self, now: float, state: dict | None = None) -> int:
        plan = RUNTIME.plan
        state = state or {}
        durations = state.get("durations", {})
        busy = {p: vals[1] for p, vals in state.get("personas", {}).items()}
        t0 = self.t0 if self.t0 is not None else now
        sim_now = min(max(plan.sim_at(t0, now), plan.from_s), plan.to_s)
        sim_ahead = min(sim_now + LOOKAHEAD_S * plan.k, plan.to_s)
        weights = self.weights or plan.peak_pool()
        total_w = sum(weights.values())
        # the pool split by weights must give each persona its need: N >= need_p * W / w_p
        share = 0.0
        for p in weights:
            n = self._processes()
            need = plan.pool_need(p, sim_now, sim_ahead, durations.get(p), processes=n)
            b = busy.get(p, 0) / n
            need = max(need, n * math.ceil((b + 4.0 * math.sqrt(b) + 1.0) * plan.workload.arrivals["headroom"]))
            share = max(share, need / weights[p])
        per_process_min = len(weights) * self._processes()
        return max(per_process_min, math.ceil(share * total_w * self.growth))

    def _react(self, state: dict | None) -> None:
        if state and state.get("dropped", 0) > 0:
            self.growth = min(self.growth * GROWTH, MAX_GROWTH)
            log.info("arrivals dropped (%d): pool growth x%.2f", state["dropped"], self.growth)

    # -- the tick -----------------------------------------------------------------------------------------
    def tick(self):
        runner = self.runner
        env = runner.environment
        if self.finished:
            self._reset_state()
        if RUNTIME.plan is None:
            try:
                RUNTIME.configure(env)
            except (ScenarioError, WorkloadError) as exc:
                log.error("entload scenarios: %s", exc)
                env.process_exit_code = 2
                return None
        plan = RUNTIME.plan
        RUNTIME.open_model = True
        now = time.time()
        procs = self._processes()
        if not self.weights:  # the weights Locust's dispatcher splits the pool by (set at init)
            self.weights = {c.persona: c.weight for c in env.user_classes
                            if getattr(c, "persona", None) in plan.personas} or plan.peak_pool()
        if self.t0 is None:
            initial = self._needed(now)
            # workers learn the clock one tick after their first spawn job: give them time
            warmup = 2.0 + initial / (WARMUP_SPAWN_RATE * procs) + (3.0 if isinstance(runner, MasterRunner) else 0)
            self.t0 = now + warmup
            log.info("school day: %s, window %s-%s in %.0fs (k=%.3g), scale %g, seed %d, %d expected arrivals; "
                     "pool %d, clock starts in %.1fs", plan.day_type, _hhmm(plan.from_s), _hhmm(plan.to_s),
                     plan.wall_duration_s, plan.k, plan.scale, plan.seed, round(plan.expected_total()), initial,
                     warmup)
        if isinstance(runner, MasterRunner):
            if self.pool:  # after the first spawn jobs: workers have the options and the host by then
                self._send_clock(runner)
        elif RUNTIME.scheduler is None or RUNTIME.t0 != self.t0:
            RUNTIME.start_scheduler(self.t0, 0, 1)
        state = RUNTIME.pool_state() if now >= self.t0 else None
        self._react(state)
        self.pool = max(self.pool, self._needed(now, state))
        end_wall = plan.wall_at(self.t0, plan.to_s)
        if now >= end_wall:
            state = state or {}
            active = sum(busy for _u, busy, _i in state.get("personas", {}).values()) + state.get("handed", 0)
            if self.ended_at is None:
                self.ended_at = now
                log.info("window over; draining %d visits in flight (at most %.0fs)", active, plan.drain_s())
            if (active == 0 and state.get("done", True)) or now >= end_wall + plan.drain_s():
                return None
        rate = WARMUP_SPAWN_RATE if now < self.t0 else SPAWN_RATE
        return (self.pool, rate * procs)

    def _send_clock(self, runner: MasterRunner) -> None:
        """Tell each worker the clock and its share; shares are fixed by the workers present at start."""
        clients = sorted(c.id for c in runner.clients.all)
        if not self.clock_sent_to:
            self.shares = {cid: i for i, cid in enumerate(clients)}
        for cid in clients:
            if cid in self.clock_sent_to or cid not in self.shares:
                continue
            runner.send_message(CLOCK_MESSAGE, {"t0": self.t0, "share_index": self.shares[cid],
                                                "share_count": len(self.shares)}, client_id=cid)
            self.clock_sent_to.add(cid)


def _hhmm(sim: float) -> str:
    return f"{int(sim // 3600):02d}:{int(sim % 3600 // 60):02d}"


# ------------------------------------------------------------------------------------ Locust wiring


@events.init_command_line_parser.add_listener
def _register_options(parser, **_kw):
    add_options(parser)


def _fail(environment, exc: Exception) -> None:
    """A user error in Locust-native use: one line on stderr, exit code 2, no traceback."""
    sys.stderr.write(f"locust: error: {exc}\n")
    sys.stderr.flush()
    raise SystemExit(2)


@events.init.add_listener
def _on_init(environment, runner=None, **_kw):
    if runner is None:
        return
    if isinstance(runner, WorkerRunner):
        runner.register_message(CLOCK_MESSAGE, _on_clock)
        environment.events.report_to_master.add_listener(_on_report_to_master)
        return
    if isinstance(runner, MasterRunner):
        environment.events.worker_report.add_listener(_on_worker_report)
    if environment.parsed_options is None:
        return
    try:
        RUNTIME.configure(environment)
    except (ScenarioError, WorkloadError) as exc:
        _fail(environment, exc)
    RUNTIME.open_model = isinstance(environment.shape_class, EntDayShape)
    if RUNTIME.open_model:
        weights = RUNTIME.plan.peak_pool()
        keep = [c for c in environment.user_classes if getattr(c, "persona", None) in weights]
        if keep:  # personas without visits in this day type get no users
            environment.user_classes[:] = keep
        for cls in keep:
            cls.weight = weights[cls.persona]


@events.test_start.add_listener
def _on_test_start(environment, **_kw):
    if environment.parsed_options is None:
        return
    try:
        RUNTIME.configure(environment)
    except (ScenarioError, WorkloadError) as exc:
        log.error("entload scenarios: %s", exc)
        environment.process_exit_code = 2
        if environment.runner is not None:
            environment.runner.quit()
        return
    RUNTIME.open_model = isinstance(environment.shape_class, EntDayShape)
    if isinstance(environment.runner, WorkerRunner):
        _apply_clock(environment)


@events.test_stop.add_listener
def _on_test_stop(environment, **_kw):
    RUNTIME.reset()
    if isinstance(environment.shape_class, EntDayShape):
        environment.shape_class.mark_finished()


def _on_clock(environment, msg, **_kw):
    RUNTIME.pending_clock = dict(msg.data)
    _apply_clock(environment)


def _apply_clock(environment) -> None:
    """Start this worker's scheduler once it has both the master's clock and the master's options."""
    data = RUNTIME.pending_clock
    if not data:
        return
    try:
        RUNTIME.configure(environment)
    except (ScenarioError, WorkloadError) as exc:
        log.error("entload scenarios: %s", exc)
        return
    RUNTIME.pending_clock = None
    RUNTIME.open_model = True
    RUNTIME.start_scheduler(float(data["t0"]), int(data["share_index"]), int(data["share_count"]))


def _on_report_to_master(client_id, data, **_kw):
    state = RUNTIME.pool_state() if RUNTIME.scheduler is not None else None
    if state is not None:
        data[REPORT_KEY] = state


def _on_worker_report(client_id, data, **_kw):
    state = data.get(REPORT_KEY)
    if state is not None:
        prev = RUNTIME.worker_reports.get(client_id, {})
        state["dropped"] = state.get("dropped", 0) + prev.get("dropped", 0)
        RUNTIME.worker_reports[client_id] = state
