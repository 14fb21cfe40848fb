"""Test harness: start and steer a real ``python -m sandbox.telemetry`` process from tests and
benchmarks. Import it as ``telemetry_harness`` (tests/ is on the tests' import path).

    with TelemetryProcess(tmp_path) as backend:
        backend.fault(mode="drop", signals=["traces"])
        ... backend.otlp, backend.query, backend.health_url, backend.metrics_url ...

Ports are chosen by the process itself (port 0) and read back from its ready file, so two test
modules never race for a port.

As in the sandbox, a private Prometheus (sandbox/prometheus.py) scrapes the stand-in's exposition of
the ingested metrics each second and evaluates the PromQL of ``/api/prometheus/api/v1/query[_range]``
(``prometheus=False`` leaves it out: PromQL then answers 503). Data sent is visible to PromQL after
the next scrape (~1 s): poll, as a real Dash0 client does.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from sandbox.prometheus import PrometheusEngine
from sandbox.telemetry import EXPOSITION_PATH

TOKEN = "sandbox-token"
REPO = Path(__file__).resolve().parents[1]


class TelemetryProcess:
    def __init__(self, workdir: str | os.PathLike | None = None, *, token: str = TOKEN,
                 datasets: list[str] | None = None, metrics_suffix: str = "none",
                 extra_args: list[str] | None = None, python: str = sys.executable, prometheus: bool = True):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="telemetry-"))
        self.state_dir = Path(tempfile.mkdtemp(dir=self.workdir, prefix="telemetry-state-"))
        self.token = token
        self.datasets = datasets or ["default"]
        self.metrics_suffix = metrics_suffix
        self.extra_args = extra_args or []
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}
        self.reset_at: float | None = None
        self.engine = (PrometheusEngine(self.state_dir / "prometheus", metrics_paths={"dash0": EXPOSITION_PATH})
                       if prometheus else None)

    # ------------------------------------------------------------------ lifecycle
    def argv(self) -> list[str]:
        args = [self.python, "-m", "sandbox.telemetry", "--otlp-port", "0", "--query-port", "0",
                "--health-port", "0", "--token", self.token, "--metrics-suffix", self.metrics_suffix,
                "--state-dir", str(self.state_dir), "--log-file", str(self.state_dir / "telemetry.log")]
        for dataset in self.datasets:
            args += ["--dataset", dataset]
        if self.engine is not None:
            args += ["--prometheus-url", self.engine.url]
        return args + self.extra_args

    def start(self, timeout: float = 30.0) -> "TelemetryProcess":
        ready = self.state_dir / "telemetry.json"
        if ready.exists():
            ready.unlink()
        if self.engine is not None:
            self.engine.start()
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(self.argv(), cwd=str(REPO), env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"sandbox.telemetry exited with {self.proc.returncode}: {err}")
            if ready.exists():
                try:
                    self.info = json.loads(ready.read_text())
                except ValueError:
                    time.sleep(0.02)
                    continue
                if self.engine is not None:  # the query port is known now: scrape its exposition
                    self.engine.set_targets({"dash0": [self.info["query"].split("//", 1)[1]]})
                    # Prometheus applies new targets within ~5 s (its discovery batching): wait for the
                    # first scrape, so a test's first PromQL query does not pay for it
                    self.wait_scraped(after=0.0, timeout=max(deadline - time.monotonic(), 1.0))
                return self
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"sandbox.telemetry not ready after {timeout}s")

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self) -> "TelemetryProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def otlp(self) -> str:
        return self.info["otlp"]

    @property
    def query(self) -> str:
        return self.info["query"]

    @property
    def health_url(self) -> str:
        return self.info["collector_health"]

    @property
    def metrics_url(self) -> str:
        return self.info["collector_metrics"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def log_text(self) -> str:
        path = self.state_dir / "telemetry.log"
        return path.read_text() if path.exists() else ""

    # ------------------------------------------------------------------ control
    def _control(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.query + path, data=data, method="POST" if data is not None else "GET",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  # loopback only
            return json.loads(response.read())

    def fault(self, **request: Any) -> dict[str, Any]:
        """POST /_control/faults, e.g. fault(mode="unavailable", retry_after=1, times=2, signals=["logs"])."""
        return self._control("/_control/faults", request)

    def reset(self) -> None:
        """Wipes data, counters and faults. PromQL may show the old data until the next scrape:
        ``wait_scraped()`` waits for it."""
        self.reset_at = time.time()
        self._control("/_control/reset", {})

    def wait_scraped(self, after: float | None = None, timeout: float = 15.0) -> None:
        """Waits until the engine's newest scrape of the stand-in began after ``after`` (default: the
        last reset, else now), so PromQL never answers with what an earlier test sent."""
        after = after if after is not None else (self.reset_at or time.time())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.last_scrape() > after:
                return
            time.sleep(0.1)
        raise TimeoutError(f"the Prometheus engine did not scrape the stand-in within {timeout}s")

    def last_scrape(self) -> float:
        assert self.engine is not None
        url = self.engine.url + "/api/v1/query?query=" + urllib.parse.quote('timestamp(up{job="dash0"})')
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  # loopback only
            result = json.loads(response.read())["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    def stats(self) -> dict[str, Any]:
        return self._control("/_control/stats")
