"""A real Prometheus for tests, and a metrics exporter whose values the test controls (no pytest here).

- ``MetricsExporter``: a ``/metrics`` endpoint in Prometheus text format on a free loopback port. The
  test sets each series' value (a number, NaN, +/-Inf, or a function of time called at each scrape).
- ``PromHarness``: the sandbox's ``PrometheusEngine`` (sandbox/prometheus.py) scraping exporters every
  second, optionally behind basic auth (``basic_auth=True``: user BASIC_AUTH_USER, password
  BASIC_AUTH_PASSWORD), optionally with samples backfilled before it starts (``backfill``: OpenMetrics
  text, written into its data directory with ``promtool tsdb create-blocks-from openmetrics``), so range
  queries can look at a past window with known values.
- ``wait_for_series``: waits until a query has a result (the first scrapes are done).

Used by the metric_query tests and by the watch tests.
"""
from __future__ import annotations

import base64
import json
import math
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Union

from sandbox.prometheus import PrometheusEngine

BASIC_AUTH_USER = "emp"
BASIC_AUTH_PASSWORD = "emp-harness-pass"  # noqa: S105  # a test-only password
# bcrypt of BASIC_AUTH_PASSWORD (cost 4: tests need no strength), as Prometheus' web config wants it
BASIC_AUTH_HASH = "$2b$04$sNAkG0fffR7/f/wsnvQQS.rcEWUPqjaa9I1iJsDOxkSsC8WBpajDu"

Value = Union[float, int, Callable[[], float]]


def prometheus_missing() -> str | None:
    """Why the tests cannot run a real Prometheus here, or None."""
    if PrometheusEngine.binary() is None:
        return "the prometheus binary is missing (tools/system-deps installs Debian's prometheus package)"
    if shutil.which("promtool") is None:
        return "promtool is missing (Debian's prometheus package ships it)"
    return None


def text_value(number: float) -> str:
    """A sample value as the text format writes it (NaN, +Inf, -Inf spelled out)."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(float(number))


class MetricsExporter:
    """Serves the series set with ``set`` at ``/metrics`` (text format 0.0.4)."""

    def __init__(self) -> None:
        self._series: dict[str, tuple[str, str, Value]] = {}  # "name{labels}" -> (name, type, value)
        self._lock = threading.Lock()
        self.scrapes = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  # http.server's naming
                body = outer.text().encode() if self.path.split("?")[0] == "/metrics" else b"not found\n"
                self.send_response(200 if self.path.split("?")[0] == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                outer.scrapes += 1

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def set(self, name: str, value: Value, labels: dict[str, str] | None = None, kind: str = "gauge") -> MetricsExporter:
        shown = ",".join(f'{key}="{val}"' for key, val in sorted((labels or {}).items()))
        with self._lock:
            self._series[f"{name}{{{shown}}}" if shown else name] = (name, kind, value)
        return self

    def text(self) -> str:
        with self._lock:
            items = sorted(self._series.items())
        lines, typed = [], set()
        for key, (name, kind, value) in items:
            if name not in typed:
                lines.append(f"# TYPE {name} {kind}")
                typed.add(name)
            lines.append(f"{key} {text_value(value() if callable(value) else float(value))}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> MetricsExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def openmetrics(series: dict[str, list[tuple[float, float]]], kind: str = "gauge") -> str:
    """OpenMetrics text for backfilling: {'name{labels}': [(timestamp, value), ...]} (one metric family per name)."""
    lines, typed = [], set()
    for key, samples in series.items():
        name = key.split("{", 1)[0]
        if name not in typed:
            lines.append(f"# TYPE {name} {kind}")
            typed.add(name)
        lines += [f"{key} {text_value(value)} {timestamp:.3f}" for timestamp, value in samples]
    return "\n".join(lines) + "\n# EOF\n"


class PromHarness:
    """A PrometheusEngine in ``workdir`` scraping ``targets`` every second; a context manager."""

    def __init__(self, workdir: Path, targets: dict[str, list[str]] | None = None, *, basic_auth: bool = False,
                 backfill: str | None = None) -> None:
        self.workdir = Path(workdir)
        web_config = {"basic_auth_users": {BASIC_AUTH_USER: BASIC_AUTH_HASH}} if basic_auth else None
        self.engine = PrometheusEngine(self.workdir, targets=targets or {}, web_config=web_config)
        self.basic_auth = basic_auth
        self.backfill = backfill

    @property
    def url(self) -> str:
        return self.engine.url

    @property
    def auth_headers(self) -> dict[str, str]:
        """The Authorization header that passes basic auth (empty without it)."""
        if not self.basic_auth:
            return {}
        token = base64.b64encode(f"{BASIC_AUTH_USER}:{BASIC_AUTH_PASSWORD}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def start(self) -> PromHarness:
        if self.backfill is not None:
            self._backfill(self.backfill)
        self.engine.start()
        return self

    def _backfill(self, text: str) -> None:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        source = self.workdir / "backfill.om"
        source.write_text(text, encoding="utf-8")
        proc = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", str(source), str(data)],
                              capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"promtool backfill failed: {proc.stdout}{proc.stderr}")

    def stop(self) -> None:
        self.engine.stop()

    def __enter__(self) -> PromHarness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def query(self, promql: str, timeout: float = 5.0) -> dict[str, Any]:
        """The API's JSON for an instant query (the test's own view, independent of the code under test)."""
        body = urllib.parse.urlencode({"query": promql}).encode()
        request = urllib.request.Request(self.url + "/api/v1/query", data=body, headers=self.auth_headers)
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read())

    def wait_for_series(self, promql: str, count: int = 1, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Polls until ``promql`` returns at least ``count`` series (the first scrapes are in); its result."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.query(promql)
                result = last.get("data", {}).get("result") or []
                if len(result) >= count:
                    return result
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = exc
            time.sleep(0.2)
        raise TimeoutError(f"{promql!r} had no {count} series on {self.url} after {timeout:.0f} s (last: {last})")
