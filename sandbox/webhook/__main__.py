"""python -m sandbox.webhook: the sandbox webhook service.

Start order (docs/emp-contracts.md): Redis -> processor -> routes -> 404 handler -> listen.
Release faults honoured: routes_404 (routes registered before the processor existed),
no_redis_client, no_reconnect, no_telemetry.
"""
from __future__ import annotations

import argparse
import logging
import sys

from sandbox._common import StopFlag, load_release, parse_service_args, service_parser, setup_logging, setup_telemetry
from sandbox._metrics import RedisDropper, RuntimeFaults, ServiceMetrics
from sandbox.webhook import CLIENT_NAME, DEFAULT_RETRY, MAX_CONSECUTIVE_FAILURES, TELEMETRY_NAME
from sandbox.webhook.processor import Processor, ProcessorSettings
from sandbox.webhook.receivers import TestReceivers
from sandbox.webhook.redis_link import RedisLink
from sandbox.webhook.server import App, WebhookHTTPServer
from sandbox.webhook.storage import WebhookStore


def build_parser() -> argparse.ArgumentParser:
    parser = service_parser("webhook", "EMP webhook service (sandbox): registry, signed deliveries, retries, "
                                       "test receivers.")
    parser.add_argument("--default-initial-delay-ms", type=int, default=DEFAULT_RETRY["initial_delay_ms"],
                        help="first retry delay of webhooks registered without retry_config (default 1000; "
                             "tests use a few ms)")
    parser.add_argument("--delivery-timeout", type=float, default=30.0,
                        help="seconds one delivery attempt may take (default 30)")
    parser.add_argument("--delivery-workers", type=int, default=8,
                        help="threads delivering events concurrently (default 8)")
    parser.add_argument("--max-consecutive-failures", type=int, default=MAX_CONSECUTIVE_FAILURES,
                        help="permanent failures in a row that disconnect a webhook (default 10)")
    parser.add_argument("--public-url", default=None,
                        help="base URL test receiver URLs are built on (default http://HOST:PORT)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_service_args(build_parser(), argv)
    log = setup_logging("emp-webhook", args.log_file)
    metrics = ServiceMetrics("webhook", http=True, otel=True)
    metrics.count_logs()
    runtime = RuntimeFaults(args.faults_file, "webhook")
    release = load_release(args.release_dir, "webhook")
    faults = set(release.faults)
    log.info("starting webhook service %s (faults: %s)", release.version, sorted(faults) or "none")
    stop = StopFlag()
    telemetry = setup_telemetry(TELEMETRY_NAME, None if "no_telemetry" in faults else args.otlp_endpoint,
                                release.version, blocked=lambda: runtime.active("telemetry-export"),
                                on_failure=metrics.export_failed)

    # 1. Redis
    link = RedisLink(args.redis_url, None if "no_redis_client" in faults else CLIENT_NAME,
                     reconnect="no_reconnect" not in faults)
    if not link.wait_until_ready(lambda: stop.stopped):
        return 0

    store = WebhookStore(link)
    receivers = TestReceivers(args.public_url or "")
    app = App(release, link, receivers, telemetry, metrics)
    if "routes_404" in faults:
        # The initialization-order bug: routes mounted while the processor did not exist yet.
        app.mount_webhook_routes(None)
    settings = ProcessorSettings(
        default_retry={**DEFAULT_RETRY, "initial_delay_ms": args.default_initial_delay_ms},
        delivery_timeout=args.delivery_timeout, workers=args.delivery_workers,
        max_consecutive_failures=args.max_consecutive_failures)
    # 2. processor
    processor = Processor(link, store, telemetry, settings, metrics, runtime)
    processor.start()
    app.processor = processor
    # 3. routes, 4. 404 handler (the router's fallback)
    if "routes_404" not in faults:
        app.mount_webhook_routes(processor)
    # 5. listen
    server = WebhookHTTPServer((args.host, args.port), app)
    host, port = server.server_address[:2]
    if not args.public_url:
        receivers.base_url = f"http://{host}:{port}"
    stop.on_stop(server.shutdown)
    RedisDropper(args.redis_url, runtime, stop.event).start()
    log.info("webhook service %s listening on %s:%d", release.version, host, port)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        processor.stop()
        telemetry.shutdown()
        link.close()
        log.info("webhook service stopped")
        logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
