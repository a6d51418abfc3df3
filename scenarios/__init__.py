"""What load is sent: the workload model, ENT journeys, the open-model arrival scheduler, the school-day
shape, and access log -> workload profile.

Locust imports every `.py` file of this folder that does not start with `_` as a locustfile when run as
`locust -f scenarios`, so the only public file is `locustfile.py`; library modules start with `_` and the
public API is re-exported from this package. Imports locust and exporters only.
"""
