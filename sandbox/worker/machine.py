"""A sandbox worker machine: worker threads, heartbeats, the machine health server (port 9090
in production) and a ``pm2 jlist``-shaped view of the apps it runs.

Faults from release.json: ``leak_memory`` (RSS grows steadily), ``no_reconnect``,
``no_redis_client``, ``no_telemetry``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import Histogram

from sandbox._common import (
    JsonHandler,
    StopFlag,
    load_release,
    parse_service_args,
    service_parser,
    setup_logging,
    setup_telemetry,
)
from sandbox._metrics import RedisDropper, RuntimeFaults, ServiceMetrics, send_metrics
from sandbox.worker.runner import SERVICES_BY_TYPE, Worker, WorkerSettings, iso_now
from sandbox.worker.standins import DEFAULT_CUSTOM_NODES, DEFAULT_MODELS, StandIns

SERVICE = "emp-worker"
log = logging.getLogger(SERVICE)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_rss_bytes(pid: int | None = None) -> int:
    with open(f"/proc/{pid or 'self'}/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE


def process_cpu_seconds(pid: int | None = None) -> float:
    with open(f"/proc/{pid or 'self'}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


class CpuSampler:
    """CPU percent since the previous sample (what pm2's monit.cpu shows)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = (time.monotonic(), process_cpu_seconds())

    def percent(self) -> float:
        with self._lock:
            now, cpu = time.monotonic(), process_cpu_seconds()
            last_time, last_cpu = self._last
            if now - last_time < 0.2:
                return getattr(self, "_value", 0.0)
            self._last = (now, cpu)
            self._value = round(100.0 * (cpu - last_cpu) / (now - last_time), 1)
            return self._value


class MemoryLeak(threading.Thread):
    """The leak_memory fault: keeps allocating (and touching) memory at a steady rate."""

    def __init__(self, mb_per_s: float, cap_mb: int, stop: threading.Event):
        super().__init__(name="leak", daemon=True)
        self.mb_per_s, self.cap_mb, self.stop = mb_per_s, cap_mb, stop
        self.hoard: list[bytes] = []

    def run(self) -> None:
        chunk = 256 * 1024
        interval = chunk / (self.mb_per_s * 1024 * 1024)
        while not self.stop.wait(interval) and len(self.hoard) * chunk < self.cap_mb * 1024 * 1024:
            self.hoard.append(os.urandom(16) * (chunk // 16))  # written, so it counts in RSS


class Machine:
    def __init__(self, args: argparse.Namespace, release, telemetry, stop: StopFlag, metrics: ServiceMetrics,
                 faults: RuntimeFaults):
        self.args = args
        self.metrics = metrics
        self.faults = faults
        self.jobs_completed = metrics.counter("emp_jobs_completed", "Jobs finished by the workers, by status",
                                              {"status": ("completed", "failed")})
        self.job_seconds = Histogram("emp_job_processing_seconds", "Job processing time (claim to completion)",
                                     registry=metrics.registry)
        self.runtime_leak: MemoryLeak | None = None
        self.release = release
        self.telemetry = telemetry
        self.stop = stop
        self.started = time.time()
        self.cpu = CpuSampler()
        settings = WorkerSettings(
            redis_url=args.redis_url, machine_id=args.machine_id, poll_interval=args.poll_interval,
            heartbeat_ttl=args.heartbeat_ttl, max_scan=args.max_scan, job_duration_ms=args.job_duration_ms,
            asset_dir=Path(args.asset_dir) if args.asset_dir else None,
            client_named=not release.has_fault("no_redis_client"),
            reconnect=not release.has_fault("no_reconnect"), backoff_cap=args.redis_backoff_cap,
            stalled=lambda: faults.active("jobs-stalled"), on_job=self.job_done,
            attest=lambda: not faults.active("attestation-missing"),
            asset_storage_down=lambda: faults.active("asset-save-fails"),
            ollama_url=f"http://{args.host}:{args.ollama_port}" if args.ollama_port else None)
        self.workers = [Worker(worker_type, index, settings, stop.event, telemetry, release.version)
                        for worker_type, count in parse_worker_spec(args.workers) for index in range(count)]
        self.leak = (MemoryLeak(args.leak_mb_per_s, args.leak_cap_mb, stop.event)
                     if release.has_fault("leak_memory") else None)
        self.server: ThreadingHTTPServer | None = None
        self.standins = StandIns(args.custom_nodes, args.ollama_models, faults)

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> int:
        self.server = ThreadingHTTPServer((self.args.host, self.args.port), self._handler_class())
        self.server.daemon_threads = True
        self.args.port = self.server.server_address[1]
        log.info("%s %s machine %s: health server on %s:%d, workers %s (faults: %s)", SERVICE,
                 self.release.version, self.args.machine_id, self.args.host, self.server.server_address[1],
                 ", ".join(w.worker_id for w in self.workers), ",".join(self.release.faults) or "none")
        http_thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="health-server", daemon=True)
        http_thread.start()
        if self.args.comfyui_port is not None and self.args.ollama_port is not None:
            self.standins.start(self.args.host, self.args.comfyui_port, self.args.ollama_port)
        for worker in self.workers:
            worker.start()
        if self.leak:
            self.leak.start()
        heartbeat = threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True)
        heartbeat.start()
        threading.Thread(target=self.leak_fault_loop, name="leak-fault", daemon=True).start()
        RedisDropper(self.args.redis_url, self.faults, self.stop.event).start()
        self.stop.event.wait()
        log.info("shutting down")
        for worker in self.workers:
            worker.join(timeout=5)
        self.server.shutdown()
        self.server.server_close()
        self.standins.stop()
        self.telemetry.shutdown(2.0)
        return 0

    def job_done(self, status: str, seconds: float) -> None:
        self.jobs_completed.labels(status).inc()
        self.job_seconds.observe(seconds)

    def leak_fault_loop(self) -> None:
        """The worker-memory-leak runtime fault: a leak thread while it is active (freed once cleared)."""
        while not self.stop.event.wait(0.5):
            fault = self.faults.get("worker-memory-leak")
            if fault is not None and self.runtime_leak is None:
                self.runtime_leak = MemoryLeak(float(fault.get("mb_per_s", 5.0)), self.args.leak_cap_mb,
                                               threading.Event())
                self.runtime_leak.start()
            elif fault is None and self.runtime_leak is not None:
                self.runtime_leak.stop.set()
                self.runtime_leak = None

    def heartbeat_loop(self) -> None:
        while not self.stop.event.wait(self.args.heartbeat_interval):
            for worker in self.workers:
                worker.heartbeat()
            self.machine_info()

    def machine_info(self) -> None:
        for worker in self.workers:  # any connected worker's client will do
            if worker.stats.redis_connected and not worker.stats.gave_up_redis:
                try:
                    key = f"machine:{self.args.machine_id}:info"
                    with worker.redis.pipeline(transaction=True) as pipe:
                        pipe.hset(key, mapping={"machine_id": self.args.machine_id, "version": self.release.version,
                                                "workers": json.dumps([w.worker_id for w in self.workers]),
                                                "last_update": iso_now(), "health_port": str(self.args.port)})
                        pipe.expire(key, 120)
                        pipe.execute()
                except Exception as exc:  # noqa: BLE001  # pylint: disable=broad-except  # informational key only
                    log.debug("machine info not written: %s", exc)
                return

    # ------------------------------------------------------------------ views
    def pm2_jlist(self) -> list[dict[str, Any]]:
        """What ``pm2 jlist`` shows on a worker machine: health-server + one app per worker."""
        rss = process_rss_bytes()
        cpu = self.cpu.percent()
        pid = os.getpid()
        uptime_ms = int(self.started * 1000)
        crashloop = self.faults.get("worker-crashloop")

        def app(pm_id: int, name: str, status: str, extra: dict[str, Any], crashing: bool = False) -> dict[str, Any]:
            restarts = self.args.restart_count
            if crashing and crashloop is not None:
                # the worker-crashloop fault: pm2 restarts the app each second and it dies again at once
                restarts += 1 + int(time.time() - float(crashloop.get("since", time.time())))
                status = "errored" if int(time.time() * 2) % 2 else "launching"
            return {"pid": pid if status == "online" else 0, "name": name, "pm_id": pm_id,
                    "monit": {"memory": rss if status == "online" else 0, "cpu": cpu if status == "online" else 0},
                    "pm2_env": {"status": status, "restart_time": restarts,
                                "unstable_restarts": restarts - self.args.restart_count,
                                "pm_uptime": uptime_ms, "created_at": uptime_ms, "exec_mode": "fork_mode",
                                "instances": 1, "version": self.release.version, "namespace": "default",
                                "env": extra}}

        apps = [app(0, "health-server", "online" if not self.stop.stopped else "stopping",
                    {"MACHINE_ID": self.args.machine_id})]
        for pm_id, worker in enumerate(self.workers, start=1):
            apps.append(app(pm_id, worker.app_name, pm2_status(worker),
                            {"WORKER_ID": worker.worker_id, "CONNECTOR": worker.worker_type},
                            crashing=pm_id == len(self.workers)))
        return apps

    def status(self) -> dict[str, Any]:
        return {
            "machine_id": self.args.machine_id, "version": self.release.version,
            "faults": list(self.release.faults), "uptime_s": round(time.time() - self.started, 1),
            "memory": {"rss_bytes": process_rss_bytes()}, "redis": self.redis_summary(),
            "workers": [{"worker_id": w.worker_id, "type": w.worker_type, "status": w.status,
                         "current_job_id": w.stats.current_job_id, "jobs_completed": w.stats.jobs_completed,
                         "jobs_failed": w.stats.jobs_failed, "last_heartbeat": w.stats.last_heartbeat,
                         "redis_connected": w.stats.redis_connected, "gave_up_redis": w.stats.gave_up_redis}
                        for w in self.workers],
            "timestamp": iso_now(),
        }

    def redis_summary(self) -> dict[str, Any]:
        connected = [w.stats.redis_connected for w in self.workers]
        return {"connected": bool(connected) and all(connected),
                "gave_up": any(w.stats.gave_up_redis for w in self.workers)}

    def services(self) -> list[dict[str, Any]]:
        services = [{"name": "health-server", "status": "online", "healthy": True}]
        for worker in self.workers:
            status = pm2_status(worker)
            services.append({"name": worker.app_name, "worker_id": worker.worker_id, "status": status,
                             "healthy": worker_healthy(worker), "worker_status": worker.status})
        return services

    def healthy(self) -> bool:
        return all(worker_healthy(w) for w in self.workers)

    def _handler_class(self):
        machine = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].rstrip("/") or "/"
                if path == "/health":
                    healthy = machine.healthy()
                    self.send_json(200 if healthy else 503, {
                        "status": "healthy" if healthy else "unhealthy", "machine_id": machine.args.machine_id,
                        "version": machine.release.version, "redis": machine.redis_summary(),
                        "workers": {w.worker_id: w.status for w in machine.workers}, "timestamp": iso_now()})
                elif path == "/ready":
                    ready = all(w.registered for w in machine.workers) and machine.healthy()
                    self.send_json(200 if ready else 503, {"ready": ready})
                elif path == "/status":
                    self.send_json(200, machine.status())
                elif path == "/services":
                    self.send_json(200, {"services": machine.services()})
                elif path == "/metrics":
                    machine.metrics.set_redis_connected(machine.redis_summary()["connected"])
                    send_metrics(self, machine.metrics)
                elif path in ("/pm2/jlist", "/jlist"):
                    self.send_json(200, machine.pm2_jlist())
                elif re.fullmatch(r"/services/[^/]+/health", path):
                    name = path.split("/")[2]
                    found = [s for s in machine.services() if s["name"] == name]
                    if not found:
                        self.send_json(404, {"error": f"no service named {name}"})
                    else:
                        self.send_json(200 if found[0]["healthy"] else 503, found[0])
                else:
                    self.send_json(404, {"error": f"not found: {path}"})

            do_HEAD = do_GET

        return Handler


def pm2_status(worker: Worker) -> str:
    if worker.status == "errored":
        return "errored"
    if worker.status == "stopped":
        return "stopped"
    return "online"


def worker_healthy(worker: Worker) -> bool:
    return worker.is_alive() and worker.stats.redis_connected and not worker.stats.gave_up_redis


def parse_worker_spec(spec: str) -> list[tuple[str, int]]:
    """'mock:1,ollama-sim:2' -> [('mock', 1), ('ollama-sim', 2)]."""
    result = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _sep, count = item.partition(":")
        if name not in SERVICES_BY_TYPE:
            raise argparse.ArgumentTypeError(f"unknown worker type {name!r}; known: {', '.join(SERVICES_BY_TYPE)}")
        result.append((name, int(count or 1)))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = service_parser("worker", "Sandbox EMP worker machine: workers + machine health server (--port).")
    parser.add_argument("--machine-id", default="sandbox-machine", help="MACHINE_ID (worker ids derive from it)")
    parser.add_argument("--workers", default="mock:1,ollama-sim:1", help="types and counts, e.g. mock:1,ollama-sim:1")
    parser.add_argument("--heartbeat-interval", type=float, default=30.0, help="seconds between heartbeats (30)")
    parser.add_argument("--heartbeat-ttl", type=int, default=60, help="TTL of worker:{id}:heartbeat in seconds (60)")
    parser.add_argument("--poll-interval", type=float, default=0.25, help="seconds between empty claims (0.25)")
    parser.add_argument("--max-scan", type=int, default=100, help="max_scan passed to findMatchingJob (100)")
    parser.add_argument("--job-duration-ms", type=int, default=200,
                        help="default simulated job time; payload.duration_ms overrides (200)")
    parser.add_argument("--asset-dir", default=None, help="where ollama-sim saves assets")
    parser.add_argument("--restart-count", type=int, default=0, help="shown as pm2_env.restart_time")
    parser.add_argument("--comfyui-port", type=int, default=None,
                        help="port of the ComfyUI stand-in (8188 in production); none started without it")
    parser.add_argument("--ollama-port", type=int, default=None,
                        help="port of the Ollama stand-in (11434 in production); none started without it")
    parser.add_argument("--custom-nodes", default=DEFAULT_CUSTOM_NODES,
                        help="custom nodes /object_info lists, Package:NodeClass,... (a bare name is its own package)")
    parser.add_argument("--ollama-models", default=DEFAULT_MODELS, help="models /api/tags lists, comma-separated")
    parser.add_argument("--leak-mb-per-s", type=float, default=4.0, help="leak_memory fault rate (4 MB/s)")
    parser.add_argument("--leak-cap-mb", type=int, default=256, help="leak_memory fault ceiling (256 MB)")
    parser.add_argument("--redis-backoff-cap", type=float, default=2.0, help="reconnect backoff cap in seconds (2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_service_args(parser, argv)
    try:
        parse_worker_spec(args.workers)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(f"--workers: {exc}")
    setup_logging(SERVICE, args.log_file)
    metrics = ServiceMetrics("worker", otel=True)
    metrics.count_logs()
    faults = RuntimeFaults(args.faults_file, "worker")
    stop = StopFlag()
    release = load_release(args.release_dir, "worker")
    endpoint = None if release.has_fault("no_telemetry") else args.otlp_endpoint
    telemetry = setup_telemetry(SERVICE, endpoint, release.version,
                                blocked=lambda: faults.active("telemetry-export"), on_failure=metrics.export_failed)
    return Machine(args, release, telemetry, stop, metrics, faults).run()
