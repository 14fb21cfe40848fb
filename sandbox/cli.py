"""``python -m sandbox up|down|status [--json]|restart <svc>|deploy <svc> <version>|fault ...|pm2 jlist|releases``.

Everything lives under one state directory (``--state-dir``, default ``$EMP_SANDBOX_STATE`` or
``<repo>/.tmp/sandbox``):

    ports.json              ports chosen by the first ``up`` (kept stable afterwards)
    run/<service>.json      pid, process group, /proc start time, version, argv of each process
    logs/<service>.log      service logs (stdout/stderr in logs/<service>.out)
    redis/                  redis-server working directory (RDB saved on shutdown)
    releases/<service>/releases/<version>/release.json and releases/<service>/current -> releases/<version>
    telemetry/              the telemetry backend's state (telemetry.json)
    prometheus/             the sandbox Prometheus: prometheus.yml, data/, prometheus.log
    faults.json             runtime faults (``fault NAME``), polled by the services
    ngrok/ngrok.yml         the ngrok stand-in's v3 configuration
    status.json             the last ``status --json`` written by ``up``
    database.json           the sandbox's own PostgreSQL database (URL, ledger), or why there is none

Every service runs in its own session (process group); ``down`` signals whole groups with
SIGTERM, then SIGKILL after a grace period, and verifies that no process of any group is left.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import database as sandbox_database
from sandbox import redis as sandbox_redis
from sandbox._faults import FAULT_SERVICES, file_version, read_ack, read_faults
from sandbox._faults import POLL_S as FAULT_POLL_S
from sandbox.prometheus import PrometheusEngine
from sandbox.telemetry import EXPOSITION_PATH

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sandbox"
CATALOGUE = PACKAGE / "releases"
NGROK_BINARY = PACKAGE / "bin" / "ngrok"
PM2_BINARY = PACKAGE / "bin" / "pm2"  # `pm2 jlist` of the sandbox worker machine
HOST = "127.0.0.1"
INITIAL_VERSION = "1.0.0"
VERSIONED_SERVICES = ("api", "webhook", "worker", "monitor")
# Start order; `down` goes the other way round (redis last, so workers can deregister).
SERVICES = ("redis", "prometheus", "telemetry", "api", "webhook", "worker", "monitor", "traffic", "ngrok")
# Prometheus scrape jobs: job -> port key of the target (the telemetry job is the collector's /metrics;
# dash0 is the Dash0 stand-in's exposition of the OTLP metrics it ingested).
SCRAPE_JOBS = {"api": "api", "webhook": "webhook", "worker": "worker_health", "monitor": "monitor",
               "telemetry": "collector_health", "traffic": "traffic", "dash0": "query"}
SCRAPE_INTERVAL = "1s"
TRAFFIC_INTERVAL_S = 0.5
STOP_GRACE_S = 6.0
READY_TIMEOUT_S = 15.0
# how long `fault` waits for the services to take a change of the faults file up (they read it every 0.5 s)
FAULT_ACK_TIMEOUT_S = 10.0
# The monitor's tries per Redis outage, 1 s apart: a predeploy's disruptive check keeps the sandbox's Redis
# down for a few seconds, and for a minute and more on a machine busy with other work; past this the
# monitor gives up for good (what its health then says), which the predeploy would rightly call NO-GO.
MONITOR_REDIS_RETRIES = 120
DASH0_TOKEN = "sandbox-token"  # sandbox-only bearer token of the query API, not a secret
DASH0_DATASET = "default"
NGROK_AUTHTOKEN = "sandbox-ngrok-authtoken"  # the stand-in only checks its shape

# Ports each component needs (keys of ports.json).
PORT_KEYS: dict[str, tuple[str, ...]] = {
    "redis": ("redis",),
    "prometheus": ("prometheus",),
    "telemetry": ("otlp", "query", "collector_health"),
    "api": ("api",),
    "webhook": ("webhook",),
    "worker": ("worker_health", "comfyui", "ollama"),
    "monitor": ("monitor",),
    "traffic": ("traffic",),
    "ngrok": ("ngrok_api", "ngrok_tunnel_api", "ngrok_tunnel_webhook", "ngrok_tunnel_redis"),
}
# Ports a component listens on itself (readiness); ngrok tunnels listen once the agent is up.
READY_PORT_KEYS: dict[str, tuple[str, ...]] = dict(PORT_KEYS, ngrok=PORT_KEYS["ngrok"])


class SandboxError(Exception):
    """Something the user must look at; printed without a traceback."""


# --------------------------------------------------------------------------- state
@dataclass
class State:
    root: Path

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def releases_dir(self) -> Path:
        return self.root / "releases"

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    @property
    def faults_file(self) -> Path:
        return self.root / "faults.json"

    def ensure(self) -> None:
        for directory in (self.root, self.run_dir, self.logs_dir, self.releases_dir, self.root / "redis",
                          self.root / "telemetry", self.root / "ngrok", self.root / "assets", self.root / "prometheus"):
            directory.mkdir(parents=True, exist_ok=True)

    def record_path(self, service: str) -> Path:
        return self.run_dir / f"{service}.json"

    def read_record(self, service: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.record_path(service).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def write_record(self, service: str, record: dict[str, Any]) -> None:
        write_json_atomic(self.record_path(service), record)

    def drop_record(self, service: str) -> None:
        try:
            self.record_path(service).unlink()
        except FileNotFoundError:
            pass

    def ports(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self.ports_file.read_text(encoding="utf-8")).items()}
        except (FileNotFoundError, ValueError):
            return {}

    def current_release_dir(self, service: str) -> Path:
        return self.releases_dir / service / "current"


def default_state_dir() -> Path:
    return Path(os.environ.get("EMP_SANDBOX_STATE") or ROOT / ".tmp" / "sandbox")


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- processes
def proc_start_time(pid: int) -> int | None:
    """The process start time in clock ticks (tells a live pid from a reused one); None if gone/zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if fields[0] in ("Z", "X"):
        _reap(pid)
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def processes_in_group(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


def record_alive(record: dict[str, Any] | None) -> bool:
    return bool(record) and proc_start_time(record["pid"]) == record.get("start_time")


def port_open(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
            return True
        except OSError:
            return False


def pick_free_port(taken: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


# --------------------------------------------------------------------------- the sandbox
class Sandbox:
    def __init__(self, state_dir: Path, out: Callable[[str], None] = print, pg_url: str | None = None):
        self.state = State(Path(state_dir).resolve())
        self.out = out
        self.python = sys.executable
        self.pg_url = sandbox_database.admin_url(pg_url)

    # ------------------------------------------------------------------ components
    def available(self, service: str) -> bool:
        if service == "redis":
            return shutil.which("redis-server") is not None
        if service == "ngrok":
            return NGROK_BINARY.is_file()
        if service == "prometheus":
            return PrometheusEngine.binary() is not None
        return importlib.util.find_spec(f"sandbox.{service}.__main__") is not None

    @staticmethod
    def missing(service: str) -> str:
        if service == "prometheus":
            return ("prometheus: the binary is missing; install Debian's `prometheus` package (tools/system-deps "
                    "does), or start without it: up --only <services>")
        where = NGROK_BINARY if service == "ngrok" else f"sandbox.{service}.__main__"
        return f"{service}: entry point missing (looked for {where})"

    def urls(self, ports: dict[str, int]) -> dict[str, str | None]:
        def url(key: str, scheme: str = "http", suffix: str = "") -> str | None:
            return f"{scheme}://{HOST}:{ports[key]}{suffix}" if key in ports else None
        return {"redis": url("redis", "redis", "/0"), "api": url("api"), "webhook": url("webhook"),
                "otlp": url("otlp"), "query": url("query"), "collector_health": url("collector_health", suffix="/"),
                "collector_metrics": url("collector_health", suffix="/metrics"), "ngrok_api": url("ngrok_api"),
                "monitor": url("monitor"), "worker_health": url("worker_health"), "prometheus": url("prometheus"),
                "traffic": url("traffic"), "comfyui": url("comfyui"), "ollama": url("ollama")}

    def prometheus_engine(self, ports: dict[str, int]) -> PrometheusEngine:
        """The sandbox Prometheus: every service's /metrics and the Dash0 stand-in's exposition, each second."""
        targets = {job: [f"{HOST}:{ports[key]}"] for job, key in SCRAPE_JOBS.items()}
        return PrometheusEngine(self.state.root / "prometheus", port=ports["prometheus"],
                                scrape_interval=SCRAPE_INTERVAL, targets=targets,
                                metrics_paths={"dash0": EXPOSITION_PATH})

    def argv(self, service: str, ports: dict[str, int], restarts: int) -> list[str]:
        urls = self.urls(ports)
        log_file = str(self.state.logs_dir / f"{service}.log")
        if service == "redis":
            return sandbox_redis.redis_server_argv(ports["redis"], self.state.root / "redis")
        if service == "prometheus":
            engine = self.prometheus_engine(ports)
            engine.write_config()
            return engine.argv()
        if service == "telemetry":
            return [self.python, "-m", "sandbox.telemetry", "--host", HOST, "--otlp-port", str(ports["otlp"]),
                    "--query-port", str(ports["query"]), "--health-port", str(ports["collector_health"]),
                    "--token", DASH0_TOKEN, "--dataset", DASH0_DATASET, "--prometheus-url", str(urls["prometheus"]),
                    "--state-dir", str(self.state.root / "telemetry"), "--log-file", log_file]
        if service == "traffic":
            return [self.python, "-m", "sandbox.traffic", "--host", HOST, "--port", str(ports["traffic"]),
                    "--api", str(urls["api"]), "--webhook", str(urls["webhook"]), "--interval", str(TRAFFIC_INTERVAL_S),
                    "--log-file", log_file]
        if service == "ngrok":
            return [self.python, str(NGROK_BINARY), "start", "--all", "--config", str(self.write_ngrok_config(ports)),
                    "--log", "stdout"]
        common = [self.python, "-m", f"sandbox.{service}", "--host", HOST, "--port", str(ports[PORT_KEYS[service][0]]),
                  "--redis-url", urls["redis"], "--release-dir", str(self.state.current_release_dir(service)),
                  "--log-file", log_file, "--faults-file", str(self.state.faults_file)]
        if service in ("api", "webhook", "worker") and self.service_running("telemetry"):
            common += ["--otlp-endpoint", urls["otlp"]]
        if service == "worker":
            common += ["--asset-dir", str(self.state.root / "assets"), "--restart-count", str(restarts),
                       "--comfyui-port", str(ports["comfyui"]), "--ollama-port", str(ports["ollama"])]
        if service == "monitor":
            common += ["--redis-retries", str(MONITOR_REDIS_RETRIES)]
        return common

    def write_ngrok_config(self, ports: dict[str, int]) -> Path:
        """ngrok v3 config: api -> API, webhook -> webhook service, redis (tcp) -> Redis, with
        the public side pinned to loopback ports so the URLs stay stable across restarts."""
        endpoints = [
            {"name": "api", "url": f"http://{HOST}:{ports['ngrok_tunnel_api']}",
             "upstream": {"url": f"http://{HOST}:{ports['api']}"}},
            {"name": "webhook", "url": f"http://{HOST}:{ports['ngrok_tunnel_webhook']}",
             "upstream": {"url": f"http://{HOST}:{ports['webhook']}"}},
            {"name": "redis", "url": f"tcp://{HOST}:{ports['ngrok_tunnel_redis']}",
             "upstream": {"url": f"tcp://{HOST}:{ports['redis']}"}},
        ]
        config = {"version": 3, "agent": {"authtoken": NGROK_AUTHTOKEN, "web_addr": f"{HOST}:{ports['ngrok_api']}"},
                  "endpoints": endpoints}
        path = self.state.root / "ngrok" / "ngrok.yml"
        write_json_atomic(path, config)  # JSON is valid YAML
        return path

    # ------------------------------------------------------------------ ports & releases
    def assign_ports(self) -> dict[str, int]:
        """Keeps the ports of a previous run when still usable, picks free ones otherwise."""
        ports = self.state.ports()
        running_ports = {p for svc in SERVICES if self.service_running(svc)
                         for key in PORT_KEYS[svc] if (p := ports.get(key))}
        taken: set[int] = set()
        for svc in SERVICES:
            for key in PORT_KEYS[svc]:
                port = ports.get(key)
                if port and port not in taken and (port in running_ports or port_free(port)):
                    taken.add(port)
                    continue
                ports[key] = pick_free_port(taken | set(ports.values()))
                taken.add(ports[key])
        write_json_atomic(self.state.ports_file, ports)
        return ports

    def install_release(self, service: str, version: str) -> Path:
        """Copies the catalogue release into releases/<version> (ansistrano layout)."""
        source = CATALOGUE / service / version / "release.json"
        if not source.is_file():
            known = ", ".join(catalogue_versions(service)) or "none"
            raise SandboxError(f"no release {service} {version} in {CATALOGUE} (known: {known})")
        target = self.state.releases_dir / service / "releases" / version
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / "release.json")
        return target

    def switch_current(self, service: str, version: str) -> None:
        """Atomic symlink switch: current -> releases/<version> (relative, like ansistrano)."""
        current = self.state.current_release_dir(service)
        tmp = current.with_name(f".current.{os.getpid()}")
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(f"releases/{version}", tmp)
        os.replace(tmp, current)

    def ensure_releases(self) -> None:
        for service in VERSIONED_SERVICES:
            if not (self.state.current_release_dir(service) / "release.json").is_file():
                self.install_release(service, INITIAL_VERSION)
                self.switch_current(service, INITIAL_VERSION)

    def current_version(self, service: str) -> str | None:
        try:
            data = json.loads((self.state.current_release_dir(service) / "release.json").read_text(encoding="utf-8"))
            return str(data.get("version"))
        except (FileNotFoundError, ValueError):
            return None

    # ------------------------------------------------------------------ start / stop
    def service_running(self, service: str) -> bool:
        return record_alive(self.state.read_record(service))

    def spawn(self, service: str, ports: dict[str, int]) -> dict[str, Any]:
        previous = self.state.read_record(service) or {}
        restarts = int(previous.get("restarts", -1)) + 1
        argv = self.argv(service, ports, restarts)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("EMP_SANDBOX_REDIS_URL", None)
        out_path = self.state.logs_dir / f"{service}.out"
        with open(out_path, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=str(ROOT), env=env, start_new_session=True)
        start_time = None
        for _attempt in range(50):  # /proc entry appears immediately; loop only for safety
            start_time = proc_start_time(proc.pid)
            if start_time is not None:
                break
            time.sleep(0.01)
        record = {"service": service, "pid": proc.pid, "pgid": proc.pid, "start_time": start_time,
                  "argv": argv, "ports": {k: ports[k] for k in PORT_KEYS[service]},
                  "version": self.current_version(service) if service in VERSIONED_SERVICES else None,
                  "started_at": time.time(), "restarts": restarts, "log": str(out_path)}
        self.state.write_record(service, record)
        return record

    def wait_ready(self, service: str, record: dict[str, Any], deadline: float) -> None:
        keys = READY_PORT_KEYS[service]
        pending = [record["ports"][k] for k in keys]
        while pending:
            if proc_start_time(record["pid"]) != record["start_time"]:
                raise SandboxError(f"{service} exited during start-up; see {record['log']}:\n{tail(record['log'])}")
            pending = [port for port in pending if not port_open(port)]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise SandboxError(f"{service} is not listening on {HOST}:{pending[0]} after {READY_TIMEOUT_S:.0f}s; "
                                   f"see {record['log']}:\n{tail(record['log'])}")
            time.sleep(0.03)
        if service == "redis":
            self.load_redis_library(record["ports"]["redis"])
        if service == "prometheus":
            self.wait_prometheus_ready(service, record, deadline)

    def wait_prometheus_ready(self, service: str, record: dict[str, Any], deadline: float) -> None:
        """The port opens before the TSDB is loaded: wait for /-/ready."""
        url = f"http://{HOST}:{record['ports']['prometheus']}/-/ready"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310  # loopback
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if proc_start_time(record["pid"]) != record["start_time"]:
                raise SandboxError(f"{service} exited during start-up; see {record['log']}:\n{tail(record['log'])}")
            if time.monotonic() > deadline:
                raise SandboxError(f"{service} not ready at {url} after {READY_TIMEOUT_S:.0f}s; "
                                   f"see {record['log']}:\n{tail(record['log'])}")
            time.sleep(0.1)

    def load_redis_library(self, port: int) -> str:
        from sandbox._common import redis_client  # heavy import only when needed
        client = redis_client(f"redis://{HOST}:{port}/0", "emp-sandbox-cli")
        deadline = time.monotonic() + 5
        while True:
            try:
                checksum = sandbox_redis.load_library(client)
                break
            except Exception as exc:  # pylint: disable=broad-except  # redis still loading its RDB
                if time.monotonic() > deadline:
                    raise SandboxError(f"cannot load jobMatching into redis {HOST}:{port}: {exc}") from exc
                time.sleep(0.05)
        client.close()
        return checksum

    def up(self, only: list[str] | None = None) -> dict[str, Any]:
        self.state.ensure()
        self.ensure_releases()
        ports = self.assign_ports()
        wanted = [s for s in SERVICES if not only or s in only]
        deadline = time.monotonic() + READY_TIMEOUT_S
        # Redis first (the API keeps its port closed until Redis answers, and the library must be
        # loaded before workers claim); then everything else at once. Telemetry is spawned first
        # in that batch so the services get --otlp-endpoint; their exporters cope with a collector
        # that needs a moment longer.
        batches = [["redis"], [s for s in SERVICES if s != "redis"]]
        self.ensure_database()
        for batch in batches:
            started: list[tuple[str, dict[str, Any]]] = []
            for service in batch:
                if service not in wanted:
                    continue
                if self.service_running(service):
                    continue
                if not self.available(service):
                    raise SandboxError(self.missing(service))
                started.append((service, self.spawn(service, ports)))
            for service, record in started:
                self.wait_ready(service, record, deadline)
                self.out(f"started {service} (pid {record['pid']})")
        status = self.status()
        write_json_atomic(self.state.root / "status.json", status)
        return status

    def stop_services(self, services: list[str]) -> list[str]:
        """SIGTERM to each process group, SIGKILL after the grace period; returns what was stopped."""
        targets = []
        for service in services:
            record = self.state.read_record(service)
            if not record:
                continue
            if record_alive(record):
                try:
                    os.killpg(record["pgid"], signal.SIGTERM)
                except ProcessLookupError:
                    pass
            targets.append((service, record))
        deadline = time.monotonic() + STOP_GRACE_S
        for service, record in targets:
            while processes_in_group(record["pgid"]) and time.monotonic() < deadline:
                _reap(record["pid"])
                time.sleep(0.03)
            left = processes_in_group(record["pgid"])
            if left:
                self.out(f"{service}: still running after {STOP_GRACE_S:.0f}s, killing {left}")
                try:
                    os.killpg(record["pgid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
                kill_deadline = time.monotonic() + 3
                while processes_in_group(record["pgid"]) and time.monotonic() < kill_deadline:
                    _reap(record["pid"])
                    time.sleep(0.02)
            _reap(record["pid"])
            left = processes_in_group(record["pgid"])
            if left:
                raise SandboxError(f"{service}: processes {left} of group {record['pgid']} survived SIGKILL")
            self.state.drop_record(service)
        return [service for service, _record in targets]

    def down(self) -> list[str]:
        # Applications first (in parallel), so they can deregister from Redis and flush their
        # telemetry; then the telemetry backend; Redis last.
        stopped = self.stop_services([s for s in reversed(SERVICES) if s not in ("redis", "telemetry", "prometheus")])
        stopped += self.stop_services(["telemetry", "prometheus"])
        stopped += self.stop_services(["redis"])
        self.clear_faults()
        for service in stopped:
            self.out(f"stopped {service}")
        dropped = sandbox_database.drop(sandbox_database.read_record(self.database_file))
        if dropped:
            self.out(f"dropped database {dropped}")
        self.database_file.unlink(missing_ok=True)
        try:
            (self.state.root / "status.json").unlink()
        except FileNotFoundError:
            pass
        return stopped

    def restart(self, service: str) -> dict[str, Any]:
        if service not in SERVICES:
            raise SandboxError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
        self.stop_services([service])
        ports = self.state.ports()
        if not ports:
            raise SandboxError("the sandbox was never started here; run `up` first")
        if not self.available(service):
            raise SandboxError(self.missing(service))
        for name in self.clear_faults(service=service):  # a rollback restarts the component: its bug is gone
            self.out(f"fault {name} cleared (restart of {service})")
        deadline = time.monotonic() + READY_TIMEOUT_S
        for key in PORT_KEYS[service]:  # the old process just released it
            while not port_free(ports[key]) and time.monotonic() < deadline:
                time.sleep(0.05)
        record = self.spawn(service, ports)
        self.wait_ready(service, record, deadline)
        self.out(f"restarted {service} (pid {record['pid']})")
        status = self.status()
        write_json_atomic(self.state.root / "status.json", status)
        return record

    def deploy(self, service: str, version: str, restart: bool = True) -> dict[str, Any]:
        if service not in VERSIONED_SERVICES:
            raise SandboxError(f"{service} is not deployed in versions; versioned: {', '.join(VERSIONED_SERVICES)}")
        self.state.ensure()
        self.install_release(service, version)
        previous = self.current_version(service)
        self.switch_current(service, version)
        self.out(f"{service}: current -> releases/{version} (was {previous})")
        if restart and self.service_running(service):  # a stopped sandbox just gets the new symlink
            self.restart(service)
        return {"service": service, "version": version, "previous": previous}

    def stop(self, service: str) -> list[str]:
        """Stops one service and leaves it stopped (`up --only <service>` starts it again, same ports):
        the predeploy's disruptive checks take the sandbox's own Redis away this way."""
        if service not in SERVICES:
            raise SandboxError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
        stopped = self.stop_services([service])
        self.out(f"stopped {service}" if stopped else f"{service} was not running")
        return stopped

    # ------------------------------------------------------------------ database
    @property
    def database_file(self) -> Path:
        return self.state.root / "database.json"

    def ensure_database(self) -> dict[str, Any]:
        record = sandbox_database.ensure(self.state.root, self.pg_url)
        write_json_atomic(self.database_file, record)
        self.out(f"database {record['name']} ({len(record['migrations'])} migrations applied)" if record["url"]
                 else f"{record['error']}; starting without it")
        return record

    # ------------------------------------------------------------------ faults
    def faults(self) -> dict[str, dict[str, Any]]:
        return read_faults(self.state.faults_file)

    def set_fault(self, name: str, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
        faults = self.faults()
        faults[name] = dict(params, services=list(FAULT_SERVICES[name]), since=round(time.time(), 3))
        write_json_atomic(self.state.faults_file, {"faults": faults})
        return faults

    def clear_faults(self, name: str | None = None, service: str | None = None) -> list[str]:
        """Removes one fault, the faults of a service, or all of them; returns the names removed."""
        faults = self.faults()
        gone = [n for n in faults if (name is None or n == name) and (service is None or service in FAULT_SERVICES.get(n, ()))]
        if gone or (name is None and service is None and self.state.faults_file.exists()):
            write_json_atomic(self.state.faults_file, {"faults": {n: p for n, p in faults.items() if n not in gone}})
        return gone

    def wait_until_applied(self, names: list[str], timeout: float = FAULT_ACK_TIMEOUT_S) -> list[str]:
        """Waits until every running service the named faults concern acts on the current faults file (its
        acknowledgement names its pid and the file's version); returns those services."""
        services = sorted({service for name in names for service in FAULT_SERVICES.get(name, ())})
        deadline = time.monotonic() + timeout
        while True:
            records = {service: self.state.read_record(service) for service in services}
            running = {service: record for service, record in records.items() if record and record_alive(record)}
            version = file_version(self.state.faults_file)
            expected = {"version": list(version) if version else None}
            waiting = [service for service, record in running.items()
                       if read_ack(self.state.faults_file, service) != dict(expected, pid=record["pid"])]
            if not waiting:
                return sorted(running)
            if time.monotonic() >= deadline:
                raise SandboxError(f"{', '.join(waiting)} did not take up the faults file within {timeout:g} s "
                                   f"(each service reads it every {FAULT_POLL_S} s): the fault is written, but may "
                                   "not be in effect")
            time.sleep(0.05)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        ports = self.state.ports()
        urls = self.urls(ports)
        services: dict[str, Any] = {}
        versions: dict[str, str | None] = {}
        for service in SERVICES:
            record = self.state.read_record(service)
            running = record_alive(record)
            if running:
                state = "running"
            elif not self.available(service):
                state = "not available"
            else:
                state = "stopped"
            services[service] = {"status": state, "pid": record["pid"] if running else None,
                                 "ports": record["ports"] if running else {},
                                 "version": record.get("version") if running else None}
            if service in VERSIONED_SERVICES:
                versions[service] = record.get("version") if running else None

        def live(service: str, key: str) -> str | None:
            return urls[key] if services[service]["status"] == "running" else None

        database = sandbox_database.read_record(self.database_file)

        return {
            "state_dir": str(self.state.root),
            "redis": live("redis", "redis"), "api": live("api", "api"), "webhook": live("webhook", "webhook"),
            "otlp": live("telemetry", "otlp"), "query": live("telemetry", "query"),
            "collector_health": live("telemetry", "collector_health"),
            "collector_metrics": live("telemetry", "collector_metrics"),
            "query_token": DASH0_TOKEN, "dataset": DASH0_DATASET,
            "ngrok_api": live("ngrok", "ngrok_api"), "ngrok_binary": str(NGROK_BINARY),
            "ngrok_config": str(self.state.root / "ngrok" / "ngrok.yml"),
            "ngrok_tunnels": ({name: urls_for_tunnel(ports, name) for name in ("api", "webhook", "redis")}
                              if services["ngrok"]["status"] == "running" else {}),
            "monitor": live("monitor", "monitor"), "worker_health": live("worker", "worker_health"),
            "prometheus": live("prometheus", "prometheus"),
            "prometheus_api": (urls["query"] + "/api/prometheus"
                               if services["telemetry"]["status"] == "running" and urls["query"] else None),
            "traffic": live("traffic", "traffic"),
            # the sandbox's own database (null when PostgreSQL was unreachable at `up`: database_error says why)
            "database": database.get("url"), "database_migrations": database.get("migrations") or [],
            "database_error": database.get("error") if database else "no database: the sandbox was not started",
            # the worker machine's pm2 list (its health server, and the pm2 stand-in), ComfyUI and Ollama
            "pm2_jlist": (urls["worker_health"] + "/pm2/jlist"
                          if services["worker"]["status"] == "running" and urls["worker_health"] else None),
            "pm2_binary": str(PM2_BINARY),
            "comfyui": live("worker", "comfyui"), "ollama": live("worker", "ollama"),
            "releases_dir": str(self.state.releases_dir),
            "versions": versions,
            "current_versions": {s: self.current_version(s) for s in VERSIONED_SERVICES},
            "services": services,
        }

    def pm2_jlist(self) -> list[dict[str, Any]]:
        ports = self.state.ports()
        if not self.service_running("worker"):
            raise SandboxError("the worker machine is not running")
        url = f"http://{HOST}:{ports['worker_health']}/pm2/jlist"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SandboxError(f"cannot read {url}: {exc}") from exc


def urls_for_tunnel(ports: dict[str, int], name: str) -> str:
    scheme = "tcp" if name == "redis" else "http"
    return f"{scheme}://{HOST}:{ports[f'ngrok_tunnel_{name}']}"


def catalogue_versions(service: str) -> list[str]:
    directory = CATALOGUE / service
    return sorted(p.name for p in directory.iterdir() if (p / "release.json").is_file()) if directory.is_dir() else []


def tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no output)"


def format_status(status: dict[str, Any]) -> str:
    rows = [f"state dir: {status['state_dir']}"]
    for service, info in status["services"].items():
        detail = ""
        if info["status"] == "running":
            detail = f"pid {info['pid']}, " + ", ".join(f"{k} {v}" for k, v in info["ports"].items())
            if info.get("version"):
                detail += f", version {info['version']}"
        rows.append(f"  {service:<10} {info['status']:<14} {detail}")
    for key in ("redis", "api", "webhook", "otlp", "query", "collector_health", "ngrok_api", "monitor", "prometheus",
                "prometheus_api"):
        if status.get(key):
            rows.append(f"  {key:<17} {status[key]}")
    return "\n".join(rows)


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="The emp.deploy sandbox (EMP stack on loopback).")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="state directory (default $EMP_SANDBOX_STATE or <repo>/.tmp/sandbox)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every service that is not running (idempotent)")
    up.add_argument("--only", default=None, help="comma-separated services to start")
    up.add_argument("--json", action="store_true", help="print the status as JSON afterwards")
    parser.add_argument("--pg-url", default=None,
                        help=f"PostgreSQL server (admin URL) on which `up` creates the sandbox's database and `down` "
                             f"drops it (default ${sandbox_database.ADMIN_URL_ENV} or {sandbox_database.DEFAULT_ADMIN_URL})")
    sub.add_parser("down", help="stop everything (and drop the sandbox's database), verify no process is left")
    stop = sub.add_parser("stop", help="stop one service and leave it stopped (`up --only SERVICE` starts it again)")
    stop.add_argument("service", choices=SERVICES)
    status = sub.add_parser("status", help="show what runs where")
    status.add_argument("--json", action="store_true", help="one JSON object")
    restart = sub.add_parser("restart", help="restart one service on the same ports")
    restart.add_argument("service", choices=SERVICES)
    deploy = sub.add_parser("deploy", help="install a catalogue release, switch current, restart")
    deploy.add_argument("service", choices=VERSIONED_SERVICES)
    deploy.add_argument("version")
    deploy.add_argument("--no-restart", action="store_true", help="only switch the symlink")
    pm2 = sub.add_parser("pm2", help="pm2-style view of the worker machine")
    pm2.add_argument("action", choices=["jlist"])
    sub.add_parser("releases", help="list the release catalogue")
    fault = sub.add_parser("fault", help="inject a runtime fault, `fault clear [NAME]`, `fault list` (JSON)",
                           description="Faults: " + "; ".join(f"{n} ({', '.join(s)})" for n, s in FAULT_SERVICES.items())
                           + ". A restart (or deploy) of a service clears its faults; `down` clears all.")
    fault.add_argument("name", choices=[*FAULT_SERVICES, "clear", "list"])
    fault.add_argument("clear_name", nargs="?", default=None, metavar="NAME", help="with clear: the fault to clear")
    fault.add_argument("--rate", type=float, default=None, help="webhook-failures: share of deliveries that fail "
                                                                "(0 < rate <= 1, default 0.5)")
    fault.add_argument("--mb-per-s", type=float, default=None, help="worker-memory-leak: RSS growth (default 5)")
    fault.add_argument("--timeout", type=float, default=FAULT_ACK_TIMEOUT_S,
                       help="seconds to wait for the running services concerned to take the change up (default %(default)s)")
    fault.add_argument("--ms", type=int, default=None, help="api-latency: delay added to every request (default 300); "
                                                            "ollama-slow: delay of each generate (default 5000)")
    return parser


FAULT_OPTIONS = {"webhook-failures": ("rate", 0.5), "worker-memory-leak": ("mb_per_s", 5.0), "api-latency": ("ms", 300),
                 "ollama-slow": ("ms", 5000)}


def fault_command(sandbox: Sandbox, args: argparse.Namespace) -> Any:
    given = {key: getattr(args, key) for key in ("rate", "mb_per_s", "ms") if getattr(args, key) is not None}
    if not 0 < args.timeout <= 600:
        raise SandboxError(f"--timeout {args.timeout}: must be > 0 and <= 600 seconds")
    if args.name in ("clear", "list"):
        if given:
            raise SandboxError(f"fault {args.name} takes no --{'/--'.join(k.replace('_', '-') for k in given)}")
        if args.name == "list":
            if args.clear_name:
                raise SandboxError("fault list takes no NAME")
            return {"faults": sandbox.faults()}
        if args.clear_name is not None and args.clear_name not in FAULT_SERVICES:
            raise SandboxError(f"unknown fault {args.clear_name!r}; known: {', '.join(FAULT_SERVICES)}")
        cleared = sandbox.clear_faults(args.clear_name)
        return {"cleared": cleared, "faults": sandbox.faults(), "applied_by": sandbox.wait_until_applied(cleared, args.timeout)}
    if args.clear_name is not None:
        raise SandboxError(f"fault {args.name} takes no second name")
    option = FAULT_OPTIONS.get(args.name)
    wrong = [k for k in given if option is None or k != option[0]]
    if wrong:
        raise SandboxError(f"--{wrong[0].replace('_', '-')} does not apply to fault {args.name}")
    params: dict[str, Any] = {}
    if option is not None:
        key, default = option
        value = given.get(key, default)
        if key == "rate" and not 0 < value <= 1:
            raise SandboxError(f"--rate {value}: must be > 0 and <= 1")
        if key != "rate" and not 0 < value <= 100000:
            raise SandboxError(f"--{key.replace('_', '-')} {value}: must be > 0")
        params[key] = value
    faults = sandbox.set_fault(args.name, params)
    return {"faults": faults, "applied_by": sandbox.wait_until_applied([args.name], args.timeout)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sandbox = Sandbox(args.state_dir or default_state_dir(),
                      out=(lambda message: print(message, file=sys.stderr)), pg_url=args.pg_url)
    try:
        if args.command == "up":
            only = [s.strip() for s in args.only.split(",")] if args.only else None
            unknown = [s for s in only or [] if s not in SERVICES]
            if unknown:
                raise SandboxError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}")
            status = sandbox.up(only)
            print(json.dumps(status, indent=2) if args.json else format_status(status))
        elif args.command == "down":
            sandbox.down()
        elif args.command == "status":
            status = sandbox.status()
            print(json.dumps(status) if args.json else format_status(status))
        elif args.command == "restart":
            sandbox.restart(args.service)
        elif args.command == "stop":
            sandbox.stop(args.service)
        elif args.command == "deploy":
            print(json.dumps(sandbox.deploy(args.service, args.version, restart=not args.no_restart)))
        elif args.command == "pm2":
            print(json.dumps(sandbox.pm2_jlist()))
        elif args.command == "fault":
            print(json.dumps(fault_command(sandbox, args), indent=2, sort_keys=True))
        elif args.command == "releases":
            print(json.dumps({s: catalogue_versions(s) for s in VERSIONED_SERVICES}, indent=2))
    except SandboxError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1
    return 0
