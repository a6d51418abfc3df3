"""The measurement contract between the scenarios (who fire) and the exporters (who listen).

Locust's own `events.request` carries each HTTP request. The scenarios pass a `context` dict with:
  - `persona`      : str, the visit's persona (student, parent, teacher, enseigno_student, enseigno_teacher)
  - `request_bytes`: int, bytes sent on the wire for this request (request line + headers + body)
  - `lateness_s`   : float >= 0, how late the visit started against its intended arrival time; the
                     latency from the intended start is `response_time/1000 + lateness_s`
and the request `name` is a route template ("GET /conversation/message/[id]" is split by Locust into
method + name "/conversation/message/[id]"), never a raw id. Response bytes on the wire are the listener's
job: `response_length` plus the status line and headers of the `response` argument when there is one.

The hooks below are the visit-level events. They are `locust.event.EventHook`s attached to
`locust.events` under the same names at import, so `environment.events.<name>` works too.
"""

from __future__ import annotations

from locust import events as _locust_events
from locust.event import EventHook

#: fire(persona: str, intended_at: float, started_at: float, late: bool)
#:   an arrival found a free virtual user and its visit began; times are time.time() epochs.
visit_started = EventHook()

#: fire(persona: str, outcome: str, duration_s: float)
#:   a visit ended; outcome in {"ok", "failed", "quota"} ("quota": the ENT answered "too many users").
visit_completed = EventHook()

#: fire(persona: str, intended_at: float)
#:   an arrival found no free virtual user and was dropped (k6 semantics).
arrival_dropped = EventHook()

#: fire(rate_per_s: float, expected_in_tick: float, scheduled_in_tick: int)
#:   this process's target rate now; the expected arrivals in the tick just scheduled (rate integrated) and the
#:   arrivals actually drawn for it (the seeded realisation); summing scheduled_in_tick gives the run's target,
#:   summing expected_in_tick its expected count.
arrival_target = EventHook()

for _name in ("visit_started", "visit_completed", "arrival_dropped", "arrival_target"):
    if not hasattr(_locust_events, _name):
        setattr(_locust_events, _name, globals()[_name])
