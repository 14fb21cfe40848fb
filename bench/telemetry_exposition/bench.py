"""One scrape of the Dash0 stand-in's exposition (sandbox/telemetry/exposition.py) with a full store.

The store holds ``--points`` metric data points (default 50,000, the stand-in's bound) of 40 series, as a sandbox
left running for an hour does. Each round stores ``--new`` more points (default 30: a second of the sandbox's
services exporting), then renders the exposition twice: through the backend's ``Exposition``, which folds in only
the points stored since the previous scrape, and through a fresh one, which folds the whole store (the baseline:
what every scrape cost before). The scrape runs every second, so the baseline's time is the share of a CPU core a
sandbox left running spent on it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.metrics.v1.metrics_pb2 import (  # noqa: E402
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource  # noqa: E402

from sandbox.telemetry.exposition import Exposition, render  # noqa: E402
from sandbox.telemetry.store import Store  # noqa: E402

SERVICES = ("emp-api", "emp-webhook", "emp-worker", "emp-monitor")
NAMES = tuple(f"emp.metric.{n}" for n in range(10))


def request(n: int) -> ExportMetricsServiceRequest:
    """One export of one data point, the n-th of a rotation over 40 series."""
    service, name = SERVICES[n % len(SERVICES)], NAMES[(n // len(SERVICES)) % len(NAMES)]
    point = NumberDataPoint(as_double=float(n), time_unix_nano=time.time_ns(),
                            attributes=[KeyValue(key="host", value=AnyValue(string_value="sandbox"))])
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))])
    return ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        resource=resource, scope_metrics=[ScopeMetrics(metrics=[Metric(name=name, gauge=Gauge(data_points=[point]))])])])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--points", type=int, default=50000)
    parser.add_argument("--new", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    store = Store(max_items=args.points)
    for n in range(args.points):
        store.add("metrics", "default", request(n))
    exposition = Exposition(store)
    render(store, "default", exposition)  # the first scrape folds everything once
    incremental, whole = [], []
    counter = args.points
    for _round in range(args.rounds):
        for _point in range(args.new):
            store.add("metrics", "default", request(counter))
            counter += 1
        started = time.perf_counter()
        ours = render(store, "default", exposition)
        incremental.append(time.perf_counter() - started)
        started = time.perf_counter()
        baseline = render(store, "default")
        whole.append(time.perf_counter() - started)
        if ours != baseline:
            raise SystemExit("the incremental exposition differs from the whole-store fold")
    ours_ms, base_ms = statistics.median(incremental) * 1000, statistics.median(whole) * 1000
    print(f"telemetry exposition: {args.points} points stored, {args.new} new per scrape, {args.rounds} rounds (medians)")
    print(f"baseline  fold the whole store:  {base_ms:8.1f} ms per scrape ({base_ms / 10:.1f} % of a core at one scrape a second)")
    print(f"ours      fold the new points:   {ours_ms:8.2f} ms per scrape   ratio {ours_ms / base_ms:.4f} of the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
