"""What load is sent: the workload model, ENT journeys, the open-model arrival scheduler, the school-day
shape, and access log -> workload profile.

Locust imports every `.py` file of this folder that does not start with `_` as a locustfile when run as
`locust -f scenarios`, so the only public file is `locustfile.py`; library modules start with `_` and the
public API is re-exported from this package. Imports locust and exporters only.

The workload and plan API (`load_workload`, `plan_from_options`, `ReplayPlan`, ...) is importable without
Locust (no gevent monkey-patching); the Locust parts (users, shape, scheduler) load on first use.
"""

from __future__ import annotations

import importlib

from scenarios._options import OPTION_DESTS, ScenarioError, add_options, parse_clock, parse_duration
from scenarios._plan import BUCKET_S, DAY_S, Arrival, ReplayPlan
from scenarios._workload import DEFAULT_WORKLOAD, Workload, WorkloadError, load_workload, workload_digest

# name -> module, loaded lazily because importing locust monkey-patches the process
_LAZY = {
    "EntDayShape": "scenarios._shape",
    "EntVisitor": "scenarios._journeys",
    "StudentUser": "scenarios._journeys",
    "ParentUser": "scenarios._journeys",
    "TeacherUser": "scenarios._journeys",
    "EnseignoStudentUser": "scenarios._journeys",
    "EnseignoTeacherUser": "scenarios._journeys",
    "PERSONA_CLASSES": "scenarios._journeys",
    "Scheduler": "scenarios._arrivals",
    "RUNTIME": "scenarios._runtime",
    "arrival_counts": "scenarios._runtime",
    "load_accounts": "scenarios._accounts",
}

__all__ = ["BUCKET_S", "DAY_S", "DEFAULT_WORKLOAD", "OPTION_DESTS", "Arrival", "ReplayPlan", "ScenarioError",
           "Workload", "WorkloadError", "add_options", "load_workload", "parse_clock", "parse_duration",
           "plan_from_options", "workload_digest", *_LAZY]


def plan_from_options(options, workload=None):
    """ReplayPlan from parsed options (see scenarios._options.plan_from_options)."""
    from scenarios._options import plan_from_options as _plan

    return _plan(options, workload)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scenarios' has no attribute {name!r}")
