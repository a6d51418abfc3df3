"""The ENT school day for Locust: `locust -f scenarios --config locust.conf --host URL --accounts CSV ...`.

This is the one public file of the folder (Locust imports every `scenarios/*.py` not starting with `_`): it
brings in the persona users, the school-day shape (open-model arrivals) and the exporters that listen to
the run (the recorder, on with --results-dir; Prometheus metrics, on with --metrics-port or --pushgateway). See locust.conf for a runnable configuration.
"""

from __future__ import annotations

import exporters.metrics  # noqa: F401  (registers --metrics-port/--pushgateway/--link-capacity: Prometheus)
import exporters.recorder  # noqa: F401  (registers --results-dir/--run-id: summary, timeseries, samples)
from scenarios._journeys import (  # noqa: F401  (Locust collects the user classes of this module)
    EnseignoStudentUser,
    EnseignoTeacherUser,
    ParentUser,
    StudentUser,
    TeacherUser,
)
from scenarios._shape import EntDayShape  # noqa: F401  (the shape: arrivals, pool, end of the day)
