"""The Dash0 stand-in's exposition folds new data points in at each scrape instead of reading the whole store.

A sandbox left running once spent a CPU core re-reading up to 50,000 stored data points every second for the
Prometheus scrape. These tests drive the real Store and Exposition with real OTLP protobuf requests
(opentelemetry-proto) and check that the incremental fold exposes exactly what a fold of the whole store does,
that the newest arrival wins even when an older point turns visible later (the delay fault), that a cleared
store starts over, and that a scrape reads only the points stored since the one before.
"""
from __future__ import annotations

import time

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from sandbox.telemetry.exposition import Exposition, render
from sandbox.telemetry.store import Store

DATASET = "default"


def gauge(service: str, name: str, value: float, **attributes: str) -> ExportMetricsServiceRequest:
    point = NumberDataPoint(as_double=value, time_unix_nano=time.time_ns(),
                            attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attributes.items()])
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))])
    metric = Metric(name=name, gauge=Gauge(data_points=[point]))
    return ExportMetricsServiceRequest(resource_metrics=[
        ResourceMetrics(resource=resource, scope_metrics=[ScopeMetrics(metrics=[metric])])])


def value_of(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_incremental_fold_exposes_what_a_fold_of_the_whole_store_does():
    store = Store()
    exposition = Exposition(store)
    for round_ in range(5):
        for worker in ("w1", "w2", "w3"):
            store.add("metrics", DATASET, gauge("emp-worker", "emp.jobs.active", round_ * 10 + len(worker), worker=worker))
        store.add("metrics", "other", gauge("emp-api", "emp.jobs.active", 99.0))
        assert render(store, DATASET, exposition) == render(store, DATASET)  # a fresh fold reads the whole store
    text = render(store, DATASET, exposition)
    assert value_of(text, 'emp_jobs_active{service_name="emp-worker",worker="w3"}') == 42.0
    assert "emp-api" not in text  # another dataset's series stay out


def test_a_scrape_reads_only_the_points_stored_since_the_last_one():
    store = Store()
    exposition = Exposition(store)
    for n in range(200):
        store.add("metrics", DATASET, gauge("emp-api", "emp.requests", float(n)))
    exposition.latest(DATASET)
    read: list[int] = []
    original = store.since

    def counting_since(signal: str, after_seq: int):
        generation, fresh = original(signal, after_seq)
        read.append(len(fresh))
        return generation, fresh

    store.since = counting_since  # type: ignore[method-assign]
    store.add("metrics", DATASET, gauge("emp-api", "emp.requests", 500.0))
    latest = exposition.latest(DATASET)
    assert read == [1]
    assert latest[("emp_requests", (("service_name", "emp-api"),))] == 500.0


def test_the_newest_arrival_wins_even_when_an_older_point_turns_visible_later():
    store = Store()
    exposition = Exposition(store)
    now = time.time()
    store.add("metrics", DATASET, gauge("emp-api", "emp.queue.depth", 1.0), visible_at=now + 60)  # delayed
    store.add("metrics", DATASET, gauge("emp-api", "emp.queue.depth", 2.0))
    key = ("emp_queue_depth", (("service_name", "emp-api"),))
    assert exposition.latest(DATASET, now=now + 1)[key] == 2.0
    assert exposition.latest(DATASET, now=now + 61)[key] == 2.0  # the delayed point is older by arrival

    store.add("metrics", DATASET, gauge("emp-api", "emp.delayed.only", 7.0), visible_at=now + 120)
    assert ("emp_delayed_only", (("service_name", "emp-api"),)) not in exposition.latest(DATASET, now=now + 61)
    assert exposition.latest(DATASET, now=now + 121)[("emp_delayed_only", (("service_name", "emp-api"),))] == 7.0


def test_a_cleared_store_starts_the_exposition_over():
    store = Store()
    exposition = Exposition(store)
    store.add("metrics", DATASET, gauge("emp-api", "emp.requests", 3.0))
    assert exposition.latest(DATASET)
    store.clear()
    assert exposition.latest(DATASET) == {}
    store.add("metrics", DATASET, gauge("emp-api", "emp.other", 4.0))
    assert list(exposition.latest(DATASET)) == [("emp_other", (("service_name", "emp-api"),))]


def test_a_series_stays_after_the_bounded_store_dropped_its_points():
    store = Store(max_items=3)
    exposition = Exposition(store)
    store.add("metrics", DATASET, gauge("emp-api", "emp.first", 1.0))
    exposition.latest(DATASET)
    for n in range(5):
        store.add("metrics", DATASET, gauge("emp-api", "emp.later", float(n)))
    latest = exposition.latest(DATASET)
    assert latest[("emp_first", (("service_name", "emp-api"),))] == 1.0
    assert latest[("emp_later", (("service_name", "emp-api"),))] == 4.0
