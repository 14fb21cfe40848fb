"""The sandbox telemetry backend (collector + Dash0 + Tempo/Jaeger stand-in) against its contract,
with real clients: the OpenTelemetry SDK exporters, opentelemetry-proto messages, requests."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time

import pytest
import requests
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from conftest import ROOT
from telemetry_harness import TelemetryProcess
from sandbox_fixtures import wait_until

PROTOBUF = {"Content-Type": "application/x-protobuf"}
TIMEOUT = 5


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with TelemetryProcess(tmp_path_factory.mktemp("telemetry"), datasets=["default", "staging"]) as process:
        yield process


@pytest.fixture(autouse=True)
def clean(backend):
    backend.reset()
    yield


# --------------------------------------------------------------------------- helpers
def send_spans(backend, service: str, count: int = 1, name: str = "work") -> list[str]:
    """Spans through the real SDK exporter; returns their trace ids (hex)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{backend.otlp}/v1/traces",
                                                                     timeout=TIMEOUT)))
    tracer = provider.get_tracer("test")
    ids = []
    for dummy in range(count):
        with tracer.start_as_current_span(name) as span:
            ids.append(format(span.get_span_context().trace_id, "032x"))
    provider.shutdown()
    return ids


def query(backend, path: str, body: dict, headers: dict | None = None) -> requests.Response:
    return requests.post(backend.query + path, json=body, headers=headers if headers is not None else backend.auth,
                         timeout=TIMEOUT)


def by_trace(trace_id: str) -> dict:
    return {"timeRange": {"from": "now-15m", "to": "now+1m"},
            "filter": [{"key": "otel.trace.id", "operator": "is", "value": trace_id}]}


def spans_of(answer: dict) -> list[dict]:
    return [span for block in answer.get("resourceSpans", []) for scope in block["scopeSpans"]
            for span in scope["spans"]]


def trace_request(service: str = "raw", spans: int = 1) -> trace_service_pb2.ExportTraceServiceRequest:
    """Spans of trace 000...01 built with opentelemetry-proto itself."""
    now = time.time_ns()
    message = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = message.resource_spans.add()
    attribute = resource_spans.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", service
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "t"
    for i in range(spans):
        span = scope_spans.spans.add()
        span.trace_id, span.span_id = (1).to_bytes(16, "big"), (i + 1).to_bytes(8, "big")
        span.name, span.start_time_unix_nano, span.end_time_unix_nano = f"s{i}", now, now + 1000
    return message


def promql(backend, expr: str, headers: dict | None = None) -> requests.Response:
    return requests.get(backend.query + "/api/prometheus/api/v1/query", params={"query": expr},
                        headers=headers if headers is not None else backend.auth, timeout=TIMEOUT)


def self_metrics(backend) -> dict[str, float]:
    values = {}
    for line in requests.get(backend.metrics_url, timeout=TIMEOUT).text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0]
            values[name] = float(line.rsplit(" ", 1)[1])
    return values


# --------------------------------------------------------------------------- OTLP ingest
def test_sdk_spans_are_found_by_trace_id_and_service(backend):
    trace_id = send_spans(backend, "emp-api")[0]
    answer = query(backend, "/api/spans", by_trace(trace_id))
    assert answer.status_code == 200
    spans = spans_of(answer.json())
    assert [s["traceId"] for s in spans] == [trace_id]
    assert answer.json()["resourceSpans"][0]["resource"]["attributes"][-1]["key"] in (
        "service.name", "telemetry.sdk.version", "service.instance.id")
    by_service = query(backend, "/api/spans", {"timeRange": {"from": "now-5m", "to": "now+1m"},
                                               "filter": [{"key": "service.name", "operator": "is",
                                                           "value": "emp-api"}]}).json()
    assert len(spans_of(by_service)) == 1
    nobody = query(backend, "/api/spans", {"timeRange": {"from": "now-5m", "to": "now+1m"},
                                           "filter": [{"key": "service.name", "operator": "is",
                                                       "value": "emp-worker"}]}).json()
    assert spans_of(nobody) == []


def test_json_and_gzip_are_accepted_with_hex_ids(backend):
    body = json.dumps({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "json-sender"}}]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "j",
            "kind": 2, "startTimeUnixNano": str(time.time_ns()), "endTimeUnixNano": str(time.time_ns()),
            "unknownFieldIsIgnored": True}]}]}]}).encode()
    answer = requests.post(backend.otlp + "/v1/traces", data=gzip.compress(body), timeout=TIMEOUT,
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    assert "partialSuccess" not in answer.json()
    spans = spans_of(query(backend, "/api/spans", by_trace("5b8efff798038103d269b633813fc60c")).json())
    assert [(s["spanId"], s["kind"]) for s in spans] == [("eee19b7ec3c1b174", 2)]


def test_protobuf_success_answer_is_an_empty_export_response(backend):
    answer = requests.post(backend.otlp + "/v1/traces", data=trace_request().SerializeToString(),
                           headers=PROTOBUF, timeout=TIMEOUT)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/x-protobuf"
    parsed = trace_service_pb2.ExportTraceServiceResponse.FromString(answer.content)
    assert not parsed.HasField("partial_success")


@pytest.mark.parametrize("body, headers, status", [
    (b"\xff\xff\xff", PROTOBUF, 400),
    (b"{not json", {"Content-Type": "application/json"}, 400),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
     {"Content-Type": "application/json"}, 400),
    (b"not gzip", {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}, 400),
    (b"hello", {"Content-Type": "text/plain"}, 415),
])
def test_malformed_payloads_get_a_google_rpc_status(backend, body, headers, status):
    answer = requests.post(backend.otlp + "/v1/traces", data=body, headers=headers, timeout=TIMEOUT)
    assert answer.status_code == status
    if answer.headers["Content-Type"] == "application/x-protobuf":
        parsed = status_pb2.Status.FromString(answer.content)
    else:
        parsed = json_format.ParseDict(answer.json(), status_pb2.Status())
    assert parsed.code == 3 and parsed.message


def test_otlp_paths_and_methods(backend):
    assert requests.get(backend.otlp + "/v1/traces", timeout=TIMEOUT).status_code == 405
    assert requests.post(backend.otlp + "/v1/nothing", data=b"", headers=PROTOBUF, timeout=TIMEOUT).status_code == 404


def promql_result(backend, expr: str) -> list[dict]:
    answer = promql(backend, expr)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["result"]


def test_sdk_metrics_are_queryable_by_name_and_counted(backend):
    backend.wait_scraped()
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{backend.otlp}/v1/metrics",
                                                              timeout=TIMEOUT), export_interval_millis=60000)
    provider = MeterProvider(resource=Resource.create({"service.name": "emp-worker"}), metric_readers=[reader])
    counter = provider.get_meter("test").create_counter("emp.jobs.completed")
    counter.add(3, {"job.type": "mock"})
    histogram = provider.get_meter("test").create_histogram("emp.job.seconds")
    for seconds in (2, 30, 300):  # the SDK's default buckets: ... 5, 10, 25, 50, 75, 100, 250, 500 ...
        histogram.record(seconds)
    provider.force_flush()
    provider.shutdown()
    # visible once the Prometheus engine has scraped the stand-in (1 s interval)
    selector = 'emp_jobs_completed{service_name="emp-worker", job_type="mock"}'
    by_name = wait_until(lambda: promql_result(backend, selector), interval=0.2, message="the OTLP counter in PromQL")
    assert [r["value"][1] for r in by_name] == ["3"]
    assert by_name[0]["metric"]["job"] == "dash0"
    buckets = promql_result(backend, 'emp_job_seconds_bucket{service_name="emp-worker"}')
    cumulative = {float(r["metric"]["le"]): r["value"][1] for r in buckets}
    assert (cumulative[5], cumulative[50], cumulative[500], cumulative[float("inf")]) == ("1", "2", "3", "3")
    median = promql_result(backend, 'histogram_quantile(0.5, emp_job_seconds_bucket{service_name="emp-worker"})')
    assert 25 < float(median[0]["value"][1]) <= 50
    datapoints = promql_result(backend, "sum(dash0_metrics_datapoints)")
    assert float(datapoints[0]["value"][1]) >= 1


def test_dash0_span_and_log_counters(backend):
    backend.wait_scraped()  # no series of an earlier test left in PromQL
    send_spans(backend, "emp-api", count=3)
    send_spans(backend, "emp-webhook", count=2)

    def counts() -> dict[str, str]:
        return {r["metric"]["service_name"]: r["value"][1]
                for r in promql_result(backend, "sum by (service_name) (dash0_spans)")}
    wait_until(lambda: counts() == {"emp-api": "3", "emp-webhook": "2"}, message="span counters in PromQL")
    assert promql_result(backend, "sum(dash0_logs)") == []


def test_odd_attribute_values_survive_the_exposition(backend):
    backend.wait_scraped()
    odd = 'a "quoted" \\ back\nslash'
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{backend.otlp}/v1/metrics",
                                                              timeout=TIMEOUT), export_interval_millis=60000)
    provider = MeterProvider(resource=Resource.create({"service.name": "odd", "service.version": "1.0"}),
                             metric_readers=[reader])
    provider.get_meter("test").create_up_down_counter("emp.odd").add(-2, {"note": odd, "9lives": "yes"})
    provider.force_flush()
    provider.shutdown()
    found = wait_until(lambda: promql_result(backend, 'emp_odd{service_name="odd"}'), interval=0.2, message="emp_odd")
    assert found[0]["metric"]["note"] == odd and found[0]["metric"]["_9lives"] == "yes"
    assert found[0]["metric"]["service_version"] == "1.0" and found[0]["value"][1] == "-2"


def test_query_range_is_forwarded(backend):
    backend.wait_scraped()
    send_spans(backend, "emp-api", count=2)
    wait_until(lambda: promql_result(backend, 'dash0_spans{service_name="emp-api"}'), message="span counter")
    now = time.time()
    answer = requests.post(backend.query + "/api/prometheus/api/v1/query_range", headers=backend.auth, timeout=TIMEOUT,
                           data={"query": 'dash0_spans{service_name="emp-api"}', "start": now - 30, "end": now,
                                 "step": "1"})
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["resultType"] == "matrix"
    assert data["result"][0]["values"][-1][1] == "2"


@pytest.mark.parametrize("expr", ["sum(", "rate(dash0_spans)", "foo{", ""])
def test_promql_errors_are_bad_data(backend, expr):
    answer = promql(backend, expr)
    assert answer.status_code == 400
    assert answer.json()["status"] == "error" and answer.json()["errorType"] == "bad_data"


def test_promql_without_an_engine_is_unavailable(tmp_path):
    with TelemetryProcess(tmp_path, prometheus=False) as process:
        answer = promql(process, "up")
    assert answer.status_code == 503
    assert answer.json()["errorType"] == "unavailable" and "--prometheus-url" in answer.json()["error"]


def test_promql_with_the_engine_down_is_unavailable(tmp_path):
    with TelemetryProcess(tmp_path) as process:
        assert promql(process, "up").status_code == 200
        process.engine.stop()
        answer = promql(process, "up")
    assert answer.status_code == 503
    assert answer.json()["errorType"] == "unavailable" and "did not answer" in answer.json()["error"]


def test_sdk_logs_are_found_by_trace_id(backend):
    provider = LoggerProvider(resource=Resource.create({"service.name": "emp-worker"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{backend.otlp}/v1/logs",
                                                                               timeout=TIMEOUT)))
    tracer_provider = TracerProvider()
    with tracer_provider.get_tracer("t").start_as_current_span("with-log") as span:
        provider.get_logger("sdk-log-test").emit(body="job finished", severity_number=SeverityNumber.WARN,
                                                 severity_text="WARN")
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    answer = query(backend, "/api/logs", by_trace(trace_id))
    assert answer.status_code == 200
    records = [r for block in answer.json()["resourceLogs"] for scope in block["scopeLogs"] for r in scope["logRecords"]]
    assert [r["body"]["stringValue"] for r in records] == ["job finished"]
    assert records[0]["traceId"] == trace_id


# --------------------------------------------------------------------------- query API
def test_paging_is_complete_without_repeats(backend):
    message = trace_request("pager")
    template = message.resource_spans[0].scope_spans[0].spans[0]
    spans = message.resource_spans[0].scope_spans[0].spans
    del spans[:]
    base = time.time_ns()
    for i in range(450):
        span = spans.add()
        span.CopyFrom(template)
        span.span_id = (i + 1).to_bytes(8, "big")
        span.start_time_unix_nano = base - i * 1000
    assert requests.post(backend.otlp + "/v1/traces", data=message.SerializeToString(), headers=PROTOBUF,
                         timeout=TIMEOUT).status_code == 200
    body = {"timeRange": {"from": "now-5m", "to": "now+1m"},
            "filter": [{"key": "service.name", "operator": "is", "value": "pager"}], "pagination": {"limit": 500}}
    seen, pages = [], []
    while True:
        answer = query(backend, "/api/spans", body).json()
        page = spans_of(answer)
        pages.append(len(page))
        seen += [s["spanId"] for s in page]
        cursor = answer.get("cursors", {}).get("after")
        if not cursor:
            break
        body["pagination"] = {"limit": 500, "cursor": cursor}
    assert pages == [200, 200, 50]
    assert len(set(seen)) == 450
    assert seen[0] == format(1, "016x")  # newest first
    bad = query(backend, "/api/spans", dict(body, pagination={"cursor": "garbage"}))
    assert bad.status_code == 400


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"Authorization": "Bearer wrong"}, 401),
    ({"Authorization": "Basic c2FuZGJveA=="}, 401),
    ({"Authorization": "Bearer sandbox-token", "Dash0-Dataset": "nope"}, 403),
])
def test_query_auth_and_dataset_checks(backend, headers, status):
    assert query(backend, "/api/spans", by_trace("0" * 32), headers=headers).status_code == status
    answer = promql(backend, "dash0_spans", headers=headers)
    assert answer.status_code == status
    assert answer.json()["status"] == "error" and answer.json()["errorType"] in ("unauthorized", "forbidden")


def test_datasets_are_separate(backend):
    message = trace_request("staged")
    answer = requests.post(backend.otlp + "/v1/traces", data=message.SerializeToString(),
                           headers={**PROTOBUF, "Dash0-Dataset": "staging"}, timeout=TIMEOUT)
    assert answer.status_code == 200
    trace_id = "00000000000000000000000000000001"
    assert spans_of(query(backend, "/api/spans", by_trace(trace_id)).json()) == []
    assert len(spans_of(query(backend, "/api/spans", dict(by_trace(trace_id), dataset="staging")).json())) == 1
    staged = query(backend, "/api/spans", by_trace(trace_id), headers={**backend.auth, "Dash0-Dataset": "staging"})
    assert len(spans_of(staged.json())) == 1
    unknown = requests.post(backend.otlp + "/v1/traces", data=message.SerializeToString(),
                            headers={**PROTOBUF, "Dash0-Dataset": "ghost"}, timeout=TIMEOUT)
    assert unknown.status_code == 403


@pytest.mark.parametrize("body", [
    {"filter": []},
    {"timeRange": {"from": "yesterday", "to": "now"}},
    {"timeRange": {"from": "now", "to": "now-1h"}},
    {"timeRange": {"from": "now-1h", "to": "now"}, "filter": [{"key": "service.name", "operator": "contains",
                                                               "value": "x"}]},
    {"timeRange": {"from": "now-1h", "to": "now"}, "filter": "service.name"},
])
def test_bad_query_bodies_are_400(backend, body):
    answer = query(backend, "/api/spans", body)
    assert answer.status_code == 400 and answer.json()["error"]


def test_time_range_is_honoured(backend):
    trace_id = send_spans(backend, "emp-api")[0]
    old = {"timeRange": {"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"},
           "filter": [{"key": "otel.trace.id", "operator": "is", "value": trace_id}]}
    assert spans_of(query(backend, "/api/spans", old).json()) == []


def test_tempo_and_jaeger_trace_lookups(backend):
    trace_id = send_spans(backend, "emp-api", name="lookup")[0]
    tempo = requests.get(f"{backend.query}/api/traces/{trace_id}", timeout=TIMEOUT)
    assert tempo.status_code == 200
    assert spans_of({"resourceSpans": tempo.json()["batches"]})[0]["name"] == "lookup"
    v2 = requests.get(f"{backend.query}/api/v2/traces/{trace_id}", timeout=TIMEOUT).json()
    assert spans_of(v2["trace"])[0]["traceId"] == trace_id
    assert requests.get(f"{backend.query}/api/traces/{'1' * 32}", timeout=TIMEOUT).status_code == 404
    assert requests.get(f"{backend.query}/api/traces/xyz", timeout=TIMEOUT).status_code == 400
    jaeger = requests.get(f"{backend.query}/api/v3/traces/{trace_id}", timeout=TIMEOUT)
    assert spans_of(jaeger.json()["result"])[0]["spanId"]
    missing = requests.get(f"{backend.query}/api/v3/traces/{'2' * 32}", timeout=TIMEOUT)
    assert missing.status_code == 404 and missing.json()["error"]["httpCode"] == 404
    search = requests.get(f"{backend.query}/api/search", params={"tags": "service.name=emp-api"}, timeout=TIMEOUT)
    assert [t["traceID"] for t in search.json()["traces"]] == [trace_id]
    found = requests.get(f"{backend.query}/api/v3/traces", params={"query.service_name": "emp-api"}, timeout=TIMEOUT)
    assert len(spans_of(found.json()["result"])) == 1


# --------------------------------------------------------------------------- faults
def test_drop_answers_200_stores_nothing_and_counts_send_failed(backend):
    backend.fault(mode="drop", signals=["traces"])
    before = self_metrics(backend)
    trace_id = send_spans(backend, "emp-api")[0]
    assert spans_of(query(backend, "/api/spans", by_trace(trace_id)).json()) == []
    after = self_metrics(backend)
    assert after["otelcol_exporter_send_failed_spans"] == before["otelcol_exporter_send_failed_spans"] + 1
    assert after["otelcol_receiver_accepted_spans"] == before["otelcol_receiver_accepted_spans"] + 1


def test_queue_full_counts_enqueue_failed(backend):
    backend.fault(mode="queue_full", signals=["traces"])
    send_spans(backend, "emp-api", count=2)
    assert self_metrics(backend)["otelcol_exporter_enqueue_failed_spans"] == 2


def test_delay_makes_data_visible_later(backend):
    # a delay long enough that the first query surely lands inside it, even on a loaded box; the
    # span must then appear, and not before the delay is over
    delay_s = 10.0
    backend.fault(mode="delay", delay_s=delay_s, signals=["traces"])
    before_send = time.monotonic()
    trace_id = send_spans(backend, "emp-api")[0]
    assert spans_of(query(backend, "/api/spans", by_trace(trace_id)).json()) == []
    assert time.monotonic() - before_send < delay_s, "the first query came too late to see the delay"
    wait_until(lambda: spans_of(query(backend, "/api/spans", by_trace(trace_id)).json()), interval=0.1,
               message="delayed span visible")
    assert time.monotonic() - before_send >= delay_s


@pytest.mark.parametrize("mode, status, rpc_code", [("unavailable", 503, 14), ("throttle", 429, 8)])
def test_retryable_faults_carry_retry_after_and_count_down(backend, mode, status, rpc_code):
    backend.fault(mode=mode, retry_after=7, times=2, signals=["traces"])
    payload = trace_request().SerializeToString()
    for dummy in range(2):
        answer = requests.post(backend.otlp + "/v1/traces", data=payload, headers=PROTOBUF, timeout=TIMEOUT)
        assert answer.status_code == status
        assert answer.headers["Retry-After"] == "7"
        assert status_pb2.Status.FromString(answer.content).code == rpc_code
    assert requests.post(backend.otlp + "/v1/traces", data=payload, headers=PROTOBUF,
                         timeout=TIMEOUT).status_code == 200
    assert self_metrics(backend)["otelcol_receiver_refused_spans"] == 2


def test_partial_rejection_reports_rejected_counts(backend):
    backend.fault(mode="partial", rejected=2, signals=["traces"])
    answer = requests.post(backend.otlp + "/v1/traces", data=trace_request("partial", spans=3).SerializeToString(),
                           headers=PROTOBUF, timeout=TIMEOUT)
    assert answer.status_code == 200
    parsed = trace_service_pb2.ExportTraceServiceResponse.FromString(answer.content)
    assert parsed.partial_success.rejected_spans == 2 and parsed.partial_success.error_message
    stored = spans_of(query(backend, "/api/spans", by_trace("00000000000000000000000000000001")).json())
    assert len(stored) == 1
    backend.fault(mode="partial", rejected=1, signals=["metrics", "logs"])
    metric = metrics_service_pb2.ExportMetricsServiceRequest()
    json_format.ParseDict({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "m", "gauge": {
        "dataPoints": [{"asInt": "1", "timeUnixNano": str(time.time_ns())}]}}]}]}]}, metric)
    answer = requests.post(backend.otlp + "/v1/metrics", data=json_format.MessageToJson(metric),
                           headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert answer.json()["partialSuccess"]["rejectedDataPoints"] == "1"
    logs = logs_service_pb2.ExportLogsServiceRequest()
    json_format.ParseDict({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "x"}}]}]}]}, logs)
    answer = requests.post(backend.otlp + "/v1/logs", data=logs.SerializeToString(), headers=PROTOBUF, timeout=TIMEOUT)
    assert logs_service_pb2.ExportLogsServiceResponse.FromString(answer.content).partial_success.rejected_log_records == 1


def test_bad_request_fault_is_a_400(backend):
    backend.fault(mode="bad_request", signals=["logs"])
    answer = requests.post(backend.otlp + "/v1/logs", data=b"", headers=PROTOBUF, timeout=TIMEOUT)
    assert answer.status_code == 400
    assert requests.post(backend.otlp + "/v1/traces", data=b"", headers=PROTOBUF, timeout=TIMEOUT).status_code == 200


def test_wrong_token_refuses_the_configured_token(backend):
    backend.fault(mode="wrong_token")
    assert query(backend, "/api/spans", by_trace("0" * 32)).status_code == 401
    assert requests.get(f"{backend.query}/api/traces/{'1' * 32}", headers=backend.auth, timeout=TIMEOUT).status_code == 401
    backend.fault(mode="none")
    assert query(backend, "/api/spans", by_trace("0" * 32)).status_code == 200


@pytest.mark.parametrize("request_body", [{"mode": "explode"}, {"mode": "drop", "signals": ["profiles"]},
                                          {"mode": "delay", "delay_s": -1}])
def test_bad_fault_requests_are_400(backend, request_body):
    answer = requests.post(backend.query + "/_control/faults", json=request_body, timeout=TIMEOUT)
    assert answer.status_code == 400


# --------------------------------------------------------------------------- health, metrics, CLI
def test_health_endpoint(backend):
    answer = requests.get(backend.health_url, timeout=TIMEOUT)
    assert answer.status_code == 200 and answer.json()["status"] == "Server available"
    backend.fault(mode="unhealthy")
    answer = requests.get(backend.health_url, timeout=TIMEOUT)
    assert answer.status_code == 503 and answer.json()["status"] == "Server not available"


def test_self_metrics_exposition(backend):
    text = requests.get(backend.metrics_url, timeout=TIMEOUT).text
    for family in ("otelcol_exporter_send_failed", "otelcol_exporter_enqueue_failed", "otelcol_receiver_accepted"):
        for unit in ("spans", "metric_points", "log_records"):
            assert f"# TYPE {family}_{unit} counter" in text


def test_total_suffix_and_collapsed_ports(tmp_path):
    with TelemetryProcess(tmp_path, metrics_suffix="total") as process:
        text = requests.get(process.metrics_url, timeout=TIMEOUT).text
        assert "otelcol_exporter_send_failed_spans_total{" in text
        assert "\notelcol_exporter_send_failed_spans{" not in text
    from conftest import free_port
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.telemetry", "--otlp-port", str(port), "--query-port",
                             str(port), "--health-port", str(port)], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        from conftest import wait_for_port
        wait_for_port(port)
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).status_code == 200
        assert requests.post(f"http://127.0.0.1:{port}/v1/traces", data=b"", headers=PROTOBUF,
                             timeout=TIMEOUT).status_code == 200
        assert requests.post(f"http://127.0.0.1:{port}/api/spans", json={}, timeout=TIMEOUT).status_code == 401
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    assert proc.stdout.read() == b""  # nothing on stdout, as the sandbox contract asks
    proc.stdout.close()


def test_cli_refuses_non_loopback_and_documents_flags():
    refused = subprocess.run([sys.executable, "-m", "sandbox.telemetry", "--host", "0.0.0.0"], cwd=str(ROOT), check=False,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "loopback" in refused.stderr
    usage = subprocess.run([sys.executable, "-m", "sandbox.telemetry", "--help"], cwd=str(ROOT), check=False,
                           capture_output=True, text=True, timeout=30).stdout
    for flag in ("--host", "--otlp-port", "--query-port", "--health-port", "--token", "--dataset",
                 "--state-dir", "--log-file", "--fault"):
        assert flag in usage


def test_start_fault_flag_and_bounded_store(tmp_path):
    with TelemetryProcess(tmp_path, extra_args=["--fault", "unavailable", "--fault-signals", "logs",
                                                "--fault-retry-after", "3", "--max-items", "5"]) as process:
        answer = requests.post(process.otlp + "/v1/logs", data=b"", headers=PROTOBUF, timeout=TIMEOUT)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "3"
        requests.post(process.otlp + "/v1/traces", data=trace_request("bounded", spans=8).SerializeToString(),
                      headers=PROTOBUF, timeout=TIMEOUT)
        assert process.stats()["stored"]["traces"] == 5
