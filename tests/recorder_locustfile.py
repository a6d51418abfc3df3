"""A small locustfile for the recorder and run tests: fires the same events as the real scenarios.

Each task is one "visit" (visit_started, a few requests with the scenarios' context, visit_completed);
a shape runs RECORDER_TEST_SECONDS seconds with RECORDER_TEST_USERS users and reports the target arrival
rate each tick. Only loopback is ever targeted (the tests pass --host).
"""

from __future__ import annotations

import os
import time

from locust import FastHttpUser, LoadTestShape, between, events, task

import exporters.recorder  # noqa: F401  (registers --results-dir/--run-id, as the real locustfile does)
from exporters import events as ev

SECONDS = float(os.environ.get("RECORDER_TEST_SECONDS", "6"))
USERS = int(os.environ.get("RECORDER_TEST_USERS", "4"))


class Visitor(FastHttpUser):
    wait_time = between(0.05, 0.15)

    @task
    def visit(self):
        persona = "student" if self.environment.runner and hash(self) % 3 else "teacher"
        now = time.time()
        ev.visit_started.fire(persona=persona, intended_at=now, started_at=now, late=False)
        ok = True
        ctx = {"persona": persona, "request_bytes": 120, "lateness_s": 0.0}
        for path, name in (("/healthz", "/healthz"), ("/missing/123", "/missing/[id]"), ("/", "/")):
            with self.client.get(path, name=name, context=ctx, catch_response=True) as resp:
                if resp.status_code >= 400 or resp.status_code == 0:
                    resp.failure(f"status {resp.status_code}")
                    ok = ok and resp.status_code != 0  # a 404 is an answer; no answer fails the visit
                else:
                    resp.success()
        ev.visit_completed.fire(persona=persona, outcome="ok" if ok else "failed", duration_s=time.time() - now)


class FixedShape(LoadTestShape):
    """USERS users for SECONDS seconds, then stop (so the run ends 'completed')."""

    def tick(self):
        t = self.get_run_time()
        if t >= SECONDS:
            return None
        ev.arrival_target.fire(rate_per_s=1.0, expected_in_tick=1.0)
        return (USERS, 100)


@events.init_command_line_parser.add_listener
def _scenario_options(parser):
    """The scenarios' options, accepted and ignored, so `entload run --locustfile` can drive this file."""
    known = getattr(parser, "_option_string_actions", {})
    for flag in ("--workload", "--day-in", "--from", "--to", "--scale", "--seed", "--accounts",
                 "--enseigno-host", "--day-type", "--arrivals", "--allow-host"):  # fmt: skip
        if flag not in known:
            parser.add_argument(flag, action="append" if flag == "--allow-host" else "store", default=None)
