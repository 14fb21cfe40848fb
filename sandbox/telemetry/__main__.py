"""python -m sandbox.telemetry: the OTel collector + Dash0 + Tempo/Jaeger stand-in.

Prints nothing on stdout. Once listening it writes ``<state-dir>/telemetry.json``
(pid, bound ports and base URLs; ports given as 0 are chosen by the OS) and logs to
``--log-file`` (stderr when absent). SIGTERM / SIGINT stop it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from sandbox._common import StopFlag, setup_logging
from sandbox._metrics import ServiceMetrics

from . import SIGNALS
from .faults import FaultError, MODES
from .server import Backend, bound_ports, serve

DEFAULT_TOKEN = "sandbox-token"  # a sandbox-only bearer token, not a secret


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.telemetry",
        description="Telemetry backend for the sandbox: OTLP/HTTP receiver (collector), collector "
                    "health and self-metrics, the Dash0 query API, Tempo and Jaeger api/v3 trace "
                    "lookups, with faults on demand (POST /_control/faults).",
        epilog="Ports may be collapsed: give two roles the same port and one listener serves both. "
               "Fault modes: " + ", ".join(MODES) + ".")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only)")
    parser.add_argument("--otlp-port", type=int, default=0, help="OTLP/HTTP receiver port (0 = free port)")
    parser.add_argument("--query-port", type=int, default=0,
                        help="Dash0 query API / Tempo / Jaeger port (0 = free port)")
    parser.add_argument("--health-port", type=int, default=0,
                        help="collector health (GET /) and self-metrics (GET /metrics) port (0 = free port)")
    parser.add_argument("--token", default=os.environ.get("EMP_SANDBOX_DASH0_TOKEN", DEFAULT_TOKEN),
                        help="Bearer token the query API accepts (default $EMP_SANDBOX_DASH0_TOKEN or "
                             f"{DEFAULT_TOKEN!r})")
    parser.add_argument("--dataset", action="append", default=None,
                        help="dataset name the backend knows (repeatable; the first is the default; "
                             "default: 'default')")
    parser.add_argument("--max-items", type=int, default=50000,
                        help="items kept per signal in memory (oldest dropped first)")
    parser.add_argument("--metrics-suffix", choices=("none", "total"), default="none",
                        help="self-metric counter names without (collector < 0.106) or with the _total suffix")
    parser.add_argument("--fault", choices=MODES, default="none", help="fault active from the start")
    parser.add_argument("--fault-signals", default=",".join(SIGNALS),
                        help="comma-separated signals the starting fault applies to")
    parser.add_argument("--fault-delay-s", type=float, default=5.0, help="delay fault: seconds until visible")
    parser.add_argument("--fault-retry-after", type=int, default=1,
                        help="unavailable/throttle faults: Retry-After seconds")
    parser.add_argument("--fault-rejected", type=int, default=1, help="partial fault: items rejected per request")
    parser.add_argument("--state-dir", default=os.environ.get("EMP_SANDBOX_STATE"),
                        help="directory for telemetry.json (default $EMP_SANDBOX_STATE; none = not written)")
    parser.add_argument("--prometheus-url", default=None,
                        help="Prometheus engine the PromQL API forwards to, e.g. http://127.0.0.1:9090 (it "
                             "scrapes GET /dash0/metrics of the query port); without it PromQL answers 503")
    parser.add_argument("--log-file", default=None, help="log file (stderr when absent)")
    return parser


def write_ready_file(state_dir: str, ports: dict[str, int], host: str) -> Path:
    path = Path(state_dir) / "telemetry.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    base = {role: f"http://{host}:{port}" for role, port in ports.items()}
    info = {"pid": os.getpid(), "ports": ports, "otlp": base["otlp"], "query": base["query"],
            "collector_health": base["health"] + "/", "collector_metrics": base["health"] + "/metrics"}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error(f"--host {args.host}: the sandbox binds loopback only")
    log = setup_logging("telemetry", args.log_file)
    service_metrics = ServiceMetrics("telemetry", redis_client=False)
    service_metrics.count_logs()
    backend = Backend(args.token, args.dataset or ["default"], args.max_items,
                      "_total" if args.metrics_suffix == "total" else "", args.prometheus_url, service_metrics)
    if args.fault != "none":
        try:
            backend.faults.apply({"mode": args.fault, "signals": args.fault_signals.split(","),
                                  "delay_s": args.fault_delay_s, "retry_after": args.fault_retry_after,
                                  "rejected": args.fault_rejected})
        except FaultError as exc:
            parser.error(str(exc))
    stop = StopFlag()
    try:
        servers = serve(backend, args.host, {"otlp": args.otlp_port, "query": args.query_port,
                                             "health": args.health_port})
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        print(f"sandbox.telemetry: cannot listen: {exc}", file=sys.stderr)
        return 1
    ports = bound_ports(servers)
    for server in servers:
        stop.on_stop(server.shutdown)
    if args.state_dir:
        write_ready_file(args.state_dir, ports, args.host)
    log.info("listening on %s (otlp=%d query=%d health=%d), datasets %s",
             args.host, ports["otlp"], ports["query"], ports["health"], backend.datasets)
    while not stop.wait(0.5):
        pass
    time.sleep(0.1)
    for server in servers:
        server.server_close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
