"""Sandbox telemetry backend: an OpenTelemetry collector and a Dash0 stand-in in one process.

Run it with ``python -m sandbox.telemetry --help``. The pieces:

- ``codec``: OTLP/HTTP request decoding (protobuf, JSON, gzip) and answers per the OTLP spec.
- ``store``: bounded in-memory storage of spans, data points and log records.
- ``faults``: the fault switchboard (drop, delay, unavailable, throttle, partial, ...).
- ``exposition``: the ingested metrics in Prometheus text format, scraped by the sandbox Prometheus.
- ``server``: the three HTTP listeners (OTLP, query, health/metrics).
"""
from __future__ import annotations

SIGNALS = ("traces", "metrics", "logs")
EXPOSITION_PATH = "/dash0/metrics"  # the ingested metrics in Prometheus text format, scraped by the sandbox Prometheus
