"""A metrics exporter the watch tests control, scraped by a real Prometheus (sandbox.prometheus).

The exporter serves the sandbox services' metric names (WATCH_SPEC section 1) from a registry of its
own; a background thread moves the counters at the rates the test sets, so increase() and rate() see
real scraped samples.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from servers import free_port

TICK_S = 0.1


class Exporter:
    """Counters for webhook deliveries, jobs, Redis failures; rates per second set by the test."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.port = free_port()
        self.deliveries = Counter("emp_webhook_deliveries", "webhook deliveries", ["outcome"], registry=self.registry)
        self.completed = Counter("emp_jobs_completed", "jobs completed", ["status"], registry=self.registry)
        self.redis_failures = Counter("emp_redis_connection_failures", "redis failures", registry=self.registry)
        self.pending = Gauge("emp_jobs_pending", "jobs pending", registry=self.registry)
        for outcome in ("success", "failure"):
            self.deliveries.labels(outcome=outcome)
        self.completed.labels(status="completed")
        self.rates = {"success": 10.0, "failure": 0.0, "jobs": 4.0}
        self._stop = threading.Event()
        self._server = None
        self._threads: list[threading.Thread] = []

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Exporter":
        self._server, thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        ticker = threading.Thread(target=self._tick, daemon=True)
        ticker.start()
        self._threads = [thread, ticker]
        return self

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            self.deliveries.labels(outcome="success").inc(self.rates["success"] * TICK_S)
            self.deliveries.labels(outcome="failure").inc(self.rates["failure"] * TICK_S)
            self.completed.labels(status="completed").inc(self.rates["jobs"] * TICK_S)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def query(url: str, promql: str, timeout: float = 5.0) -> list:
    data = urllib.parse.urlencode({"query": promql}).encode()
    with urllib.request.urlopen(url + "/api/v1/query", data=data, timeout=timeout) as answer:
        return json.load(answer)["data"]["result"]


def wait_for_series(url: str, promql: str, deadline_s: float = 30.0) -> list:
    """Until the query has an answer (Prometheus scraped enough samples for the range)."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = query(url, promql)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer to {promql} from {url} within {deadline_s:.0f} s")
        time.sleep(0.5)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
