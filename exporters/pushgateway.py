"""Push a run's metrics to a Prometheus Pushgateway: periodically during the run and once at the end.

Why: CI jobs end before any Prometheus could scrape them. Each process pushes its own registry with PUT under
`job="entload"` and the grouping key {run_id, instance} (instance = local, master or worker-<i>), so two runs never
overwrite each other and the workers of one run sit side by side (sum() over instance = the run's totals).
A Pushgateway that is down costs a warning, never the run.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, delete_from_gateway, push_to_gateway

log = logging.getLogger("entload.pushgateway")

JOB = "entload"


def check_url(url: str) -> str:
    """The Pushgateway URL, validated: http(s)://host[:port][/path]; raises ValueError naming the option."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--pushgateway: expected a URL such as http://127.0.0.1:9091, got {url!r}")
    return url.rstrip("/")


def grouping_key(run_id: str, instance: str) -> dict[str, str]:
    if not run_id:
        raise ValueError("--run-id: a Pushgateway push needs a run id (the grouping key)")
    return {"run_id": str(run_id), "instance": str(instance)}


def push(url: str, registry: CollectorRegistry, run_id: str, instance: str = "local", timeout: float = 5.0) -> None:
    """Replace this process's group (PUT). Raises OSError with a one-line message when the gateway fails."""
    try:
        push_to_gateway(check_url(url), job=JOB, registry=registry, grouping_key=grouping_key(run_id, instance),
                        timeout=timeout)  # fmt: skip
    except ValueError:
        raise
    except Exception as exc:  # urllib raises URLError/HTTPError/OSError subclasses
        raise OSError(f"--pushgateway: push to {url} failed: {exc}") from None


def delete(url: str, run_id: str, instance: str = "local", timeout: float = 5.0) -> None:
    """Remove a run's group (for cleaning a shared gateway)."""
    delete_from_gateway(check_url(url), job=JOB, grouping_key=grouping_key(run_id, instance), timeout=timeout)


class PeriodicPusher:
    """Pushes every `interval_s` seconds in a greenlet (Locust's runtime), and a final time on stop()."""

    def __init__(self, url: str, registry: CollectorRegistry, run_id: str, instance: str = "local",
                 interval_s: float = 15.0, timeout: float = 5.0):  # fmt: skip
        self.url = check_url(url)
        grouping_key(run_id, instance)
        self.registry, self.run_id, self.instance = registry, run_id, instance
        self.interval_s, self.timeout = interval_s, timeout
        self.pushes = 0
        self.failures = 0
        self._greenlet = None

    def push_now(self) -> bool:
        try:
            push(self.url, self.registry, self.run_id, self.instance, self.timeout)
        except OSError as exc:
            self.failures += 1
            log.warning("%s", exc)
            return False
        self.pushes += 1
        return True

    def _loop(self) -> None:
        import gevent

        next_at = time.monotonic() + self.interval_s
        while True:
            gevent.sleep(max(0.0, next_at - time.monotonic()))
            next_at += self.interval_s
            self.push_now()

    def start(self) -> None:
        if self.interval_s and self.interval_s > 0 and self._greenlet is None:
            import gevent

            self._greenlet = gevent.spawn(self._loop)

    def stop(self, final_push: bool = True) -> bool:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        return self.push_now() if final_push else True
