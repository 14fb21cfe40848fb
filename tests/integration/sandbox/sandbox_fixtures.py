"""Fixtures and helpers for the sandbox core tests (import them into test modules; a conftest.py
here would shadow tests/conftest.py for `from conftest import ...`)."""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from conftest import ROOT, RedisServer, free_port, wait_for_port

import sandbox.redis as sandbox_redis

# How long a test waits for an event it expects (a log line, a state change, a client in CLIENT
# LIST). Generous on purpose: the 2-core CI box runs tests in parallel, and a wait returns as soon
# as the event happens, so only a failing test ever waits this long.
EVENT_DEADLINE = 30.0
# A service told to stop (SIGTERM) must be gone within this; one that hangs instead fails the test.
PROMPT_EXIT = 10.0


class ServiceProcess:
    """``python -m sandbox.<service>`` in its own session, with its log kept for failure messages."""

    def __init__(self, module: str, args: list[str], log_path: Path, port: int | None):
        self.module, self.args, self.log_path, self.port = module, args, log_path, port
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> ServiceProcess:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.log = open(self.log_path, "ab")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", self.module, *self.args], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=str(ROOT), env=env, start_new_session=True)
        if wait and self.port:
            self.wait_listening()
        return self

    def wait_listening(self, timeout: float = EVENT_DEADLINE) -> None:
        try:
            wait_for_port(self.port, timeout=timeout)
        except TimeoutError as exc:
            raise AssertionError(f"{self.module} not listening on {self.port}:\n{self.output()}") from exc

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = PROMPT_EXIT) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if getattr(self, "log", None):
            self.log.close()


def _service_starter(tmp_path: Path, started: list):

    def start(module: str, *args: str, port: int | None = None, wait: bool = True,
              release: dict | None = None) -> ServiceProcess:
        argv = list(args)
        if release is not None:
            release_dir = tmp_path / f"release-{len(started)}"
            release_dir.mkdir()
            (release_dir / "release.json").write_text(json.dumps(release))
            argv += ["--release-dir", str(release_dir)]
        if port is not None:
            argv += ["--port", str(port)]
        service = ServiceProcess(module, argv, tmp_path / f"{module}-{len(started)}.log", port)
        started.append(service)
        return service.start(wait=wait)

    return start


@pytest.fixture
def start_service(tmp_path):
    """start_service(module, *args, port=, wait=, release=) -> ServiceProcess, stopped at teardown."""
    started: list[ServiceProcess] = []
    yield _service_starter(tmp_path, started)
    for service in started:
        service.stop()


@pytest.fixture(scope="module")
def start_module_service(tmp_path_factory):
    """start_service for module-scoped fixtures."""
    started: list[ServiceProcess] = []
    yield _service_starter(tmp_path_factory.mktemp("services"), started)
    for service in started:
        service.stop()


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory):
    """A module-wide private redis-server with jobMatching loaded (tests FLUSHDB as they need)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    client = redis.Redis(port=server.port, decode_responses=True)
    sandbox_redis.load_library(client)
    client.close()
    yield server
    server.stop()


@pytest.fixture
def sandbox_redis_server(redis_factory):
    """A private redis-server with the jobMatching library loaded."""
    server = redis_factory()
    client = redis.Redis(port=server.port, decode_responses=True)
    sandbox_redis.load_library(client)
    client.close()
    return server


def client_names(port: int) -> list[str]:
    client = redis.Redis(port=port, decode_responses=True, socket_timeout=2)
    try:
        return [entry["name"] for entry in client.client_list()]
    finally:
        client.close()


def subscribed(redis_port: int, channel: str = "complete_job") -> bool:
    """Someone is subscribed to ``channel``: a service's pub/sub connection is up. (Its client name
    shows earlier, from a command before it subscribes; a Redis restart in that gap is no loss for the
    service to notice: it simply subscribes to the new server.)"""
    client = redis.Redis(port=redis_port, socket_timeout=2)
    try:
        return dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) > 0
    finally:
        client.close()


def wait_until(predicate, timeout: float = EVENT_DEADLINE, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met after {timeout}s")
        time.sleep(interval)


class OtlpSink:
    """A minimal OTLP/HTTP receiver written for the tests (not the sandbox's collector): it
    decodes the protobuf the real OpenTelemetry SDK exporter sends."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[tuple[str, bytes]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                sink.requests.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spans(self) -> list[tuple[str, object]]:
        """(service.name, span) for every span received."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )
        found = []
        for path, body in list(self.requests):
            if path != "/v1/traces":
                continue
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    found += [(attrs.get("service.name"), span) for span in scope.spans]
        return found

    def metric_names(self) -> set[tuple[str, str]]:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )
        names = set()
        for path, body in list(self.requests):
            if path != "/v1/metrics":
                continue
            request = ExportMetricsServiceRequest.FromString(body)
            for resource_metrics in request.resource_metrics:
                attrs = {a.key: a.value.string_value for a in resource_metrics.resource.attributes}
                for scope in resource_metrics.scope_metrics:
                    names |= {(attrs.get("service.name"), m.name) for m in scope.metrics}
        return names

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def otlp_sink():
    sink = OtlpSink()
    yield sink
    sink.close()


@pytest.fixture(scope="module")
def module_otlp_sink():
    sink = OtlpSink()
    yield sink
    sink.close()


# --------------------------------------------------------------------------- the sandbox CLI
def cli(state_dir: Path, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m sandbox --state-dir D ...`` as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "sandbox", "--state-dir", str(state_dir), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), check=False,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if check:
        assert proc.returncode == 0, f"sandbox {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def status(state_dir: Path) -> dict:
    return json.loads(cli(state_dir, "status", "--json").stdout)


def recorded_processes(state_dir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (state_dir / "run").glob("*.json")}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def dash0_promql(current: dict, expr: str, headers: dict | None = None, path: str = "query",
                 **params: Any) -> requests.Response:
    """PromQL through the Dash0 stand-in's Prometheus API (``status["prometheus_api"]``), with the
    sandbox token and dataset unless ``headers`` says otherwise; POSTed form-encoded as Grafana does."""
    if headers is None:
        headers = {"Authorization": f"Bearer {current['query_token']}", "Dash0-Dataset": current["dataset"]}
    return requests.post(f"{current['prometheus_api']}/api/v1/{path}", data={"query": expr, **params},
                         headers=headers, timeout=10)
