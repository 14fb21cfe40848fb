"""Test harness: start and steer a real ``python -m sandbox.telemetry`` process from tests and
benchmarks. Import it as ``telemetry_harness`` (tests/ is on the tests' import path).

    with TelemetryProcess(tmp_path) as backend:
        backend.fault(mode="drop", signals=["traces"])
        ... backend.otlp, backend.query, backend.health_url, backend.metrics_url ...

Ports are chosen by the process itself (port 0) and read back from its ready file, so two test
modules never race for a port.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

TOKEN = "sandbox-token"
REPO = Path(__file__).resolve().parents[1]


class TelemetryProcess:
    def __init__(self, workdir: str | os.PathLike | None = None, *, token: str = TOKEN,
                 datasets: list[str] | None = None, metrics_suffix: str = "none",
                 extra_args: list[str] | None = None, python: str = sys.executable):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="telemetry-"))
        self.state_dir = Path(tempfile.mkdtemp(dir=self.workdir, prefix="telemetry-state-"))
        self.token = token
        self.datasets = datasets or ["default"]
        self.metrics_suffix = metrics_suffix
        self.extra_args = extra_args or []
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle
    def argv(self) -> list[str]:
        args = [self.python, "-m", "sandbox.telemetry", "--otlp-port", "0", "--query-port", "0",
                "--health-port", "0", "--token", self.token, "--metrics-suffix", self.metrics_suffix,
                "--state-dir", str(self.state_dir), "--log-file", str(self.state_dir / "telemetry.log")]
        for dataset in self.datasets:
            args += ["--dataset", dataset]
        return args + self.extra_args

    def start(self, timeout: float = 30.0) -> "TelemetryProcess":
        ready = self.state_dir / "telemetry.json"
        if ready.exists():
            ready.unlink()
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
                    return self
                except ValueError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"sandbox.telemetry not ready after {timeout}s")

    def stop(self) -> None:
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
        self._control("/_control/reset", {})

    def stats(self) -> dict[str, Any]:
        return self._control("/_control/stats")
