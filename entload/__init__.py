"""entload: replay an ENT school day, measure it, and plan the link.

This package is the front door (CLI, run orchestration, run store, gate, compare). It imports the
rooms below it (scenarios, exporters, capacity, staging); none of them imports it.
"""

__version__ = "0.1.0"
