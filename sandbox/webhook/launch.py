"""Start and stop ``python -m sandbox.webhook`` as a child process (tests and benchmarks)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# Loopback only: never route through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_release(directory: Path, version: str = "1.1.0", faults: list[str] | None = None) -> Path:
    """A release directory as the release role deploys it: <dir>/release.json."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "release.json").write_text(json.dumps({"service": "webhook", "version": version,
                                                        "faults": faults or []}))
    return directory


class WebhookService:
    """One running webhook service; ``url`` is its base URL."""

    def __init__(self, redis_url: str, release_dir: Path | None = None, *, log_file: Path | None = None,
                 port: int | None = None, initial_delay_ms: int = 50, otlp_endpoint: str | None = None,
                 extra_args: list[str] | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self.argv = [sys.executable, "-m", "sandbox.webhook", "--host", "127.0.0.1", "--port", str(self.port),
                     "--redis-url", redis_url, "--default-initial-delay-ms", str(initial_delay_ms)]
        if release_dir is not None:
            self.argv += ["--release-dir", str(release_dir)]
        if log_file is not None:
            self.argv += ["--log-file", str(log_file)]
        if otlp_endpoint:
            self.argv += ["--otlp-endpoint", otlp_endpoint]
        self.argv += extra_args or []
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> "WebhookService":
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(self.argv, cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL,
                                     stderr=None if self.log_file is None else subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"webhook service exited with {self.proc.returncode}: {' '.join(self.argv)}")
            try:
                self.health()
                return self
            except OSError:
                time.sleep(0.03)
        self.stop()
        raise TimeoutError(f"webhook service on port {self.port} did not answer /health within {timeout}s")

    def health(self) -> dict[str, Any]:
        with _OPENER.open(f"{self.url}/health", timeout=2) as response:
            return json.load(response)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def __enter__(self) -> "WebhookService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
