"""A private Prometheus server (Debian's `prometheus` package): the real PromQL engine of the sandbox and the tests.

It scrapes the given targets on loopback, answers the Prometheus HTTP API on a free loopback port and
keeps its data in its own working directory. Nothing is downloaded: without the binary, start() says
how to install it (tools/system-deps does).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusError(RuntimeError):
    """Prometheus could not be started, reloaded or stopped."""


class PrometheusEngine:
    """One prometheus process: config, data and log in `workdir`, API on 127.0.0.1:`port`."""

    def __init__(self, workdir: Path | str, port: int | None = None, scrape_interval: str = "1s",
                 targets: dict[str, list[str]] | None = None, web_config: dict[str, Any] | None = None,
                 retention: str = "2d", metrics_paths: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port or _free_port()
        self.scrape_interval = scrape_interval
        self.targets = dict(targets or {})
        self.web_config = web_config
        self.retention = retention
        self.metrics_paths = dict(metrics_paths or {})  # job -> path other than /metrics
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str | None:
        return shutil.which("prometheus") or (
            "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.workdir / "prometheus.yml"

    def config(self) -> dict[str, Any]:
        jobs = [{"job_name": job, "honor_labels": True, "scrape_interval": self.scrape_interval,
                 "scrape_timeout": self.scrape_interval, "metrics_path": self.metrics_paths.get(job, "/metrics"),
                 "static_configs": [{"targets": list(addresses)}]}
                for job, addresses in sorted(self.targets.items())]
        return {"global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
                "scrape_configs": jobs}

    def write_config(self) -> None:
        """Writes prometheus.yml (and web.yml) for a process started elsewhere (the sandbox CLI)."""
        self._write_config()

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # JSON is YAML: no YAML writer needed
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.config(), indent=1), encoding="utf-8")
        tmp.replace(self.config_file)
        if self.web_config is not None:
            (self.workdir / "web.yml").write_text(json.dumps(self.web_config), encoding="utf-8")

    def argv(self) -> list[str]:
        binary = self.binary()
        if binary is None:
            raise PrometheusError("the prometheus binary is missing: install Debian's `prometheus` package "
                                  "(tools/system-deps does)")
        argv = [binary, f"--config.file={self.config_file}", f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--storage.tsdb.retention.time={self.retention}", f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle", "--log.level=warn"]
        if self.web_config is not None:
            argv.append(f"--web.config.file={self.workdir / 'web.yml'}")
        return argv

    def start(self, timeout: float = READY_TIMEOUT_S) -> PrometheusEngine:
        self._write_config()
        log = open(self.workdir / "prometheus.log", "ab")  # pylint: disable=consider-using-with  # the child keeps it
        try:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.workdir, start_new_session=True)
        finally:
            log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.proc.returncode}; see {self.workdir / 'prometheus.log'}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # basic auth configured: it answers, so it is ready
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(f"prometheus was not ready on {self.url} after {timeout:.0f}s; "
                              f"see {self.workdir / 'prometheus.log'}")

    def set_targets(self, targets: dict[str, list[str]], timeout: float = 10.0) -> None:
        """New scrape targets, applied by a config reload (no restart: the data stays)."""
        self.targets = dict(targets)
        self._write_config()
        request = urllib.request.Request(self.url + "/-/reload", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                if answer.status != 200:
                    raise PrometheusError(f"prometheus reload answered {answer.status}")
        except OSError as exc:
            raise PrometheusError(f"prometheus reload failed: {exc}") from exc

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_GRACE_S)
        except ProcessLookupError:
            pass

    def __enter__(self) -> PrometheusEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
