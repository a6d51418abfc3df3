"""What is measured and exposed: Locust events -> run measurements, Prometheus metrics, Pushgateway.

`exporters.events` defines the custom Locust events that the scenarios fire; everything that records
or exposes measurements listens to them (and to Locust's own `request` event). Imports locust and
prometheus_client only.
"""
