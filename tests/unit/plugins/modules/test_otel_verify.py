"""emp.deploy.otel_verify against a real sandbox telemetry backend (one process per test module),
with each fault the issue names, and the canary bytes decoded by opentelemetry-proto."""
from __future__ import annotations

import base64
import contextlib
import gzip
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from doc_spec_check import assert_documentation_matches

from ansible.module_utils import basic

from ansible_collections.emp.deploy.plugins.modules import otel_verify as module

pytest.importorskip("opentelemetry.proto", reason="the sandbox telemetry backend decodes with opentelemetry-proto")

from google.protobuf import json_format  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2  # noqa: E402
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402

from telemetry_harness import TelemetryProcess  # noqa: E402
from servers import LOAD_MARGIN_S  # noqa: E402

DEFAULTS = {key: spec.get("default") for key, spec in module.ARGUMENT_SPEC.items()}
REQUESTS = {"traces": trace_service_pb2.ExportTraceServiceRequest,
            "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
            "logs": logs_service_pb2.ExportLogsServiceRequest}


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with TelemetryProcess(tmp_path_factory.mktemp("otel-verify")) as process:
        yield process


@pytest.fixture(autouse=True)
def clean(backend):
    backend.reset()
    yield


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def params(sandbox=None, **overrides) -> dict:
    merged = dict(DEFAULTS)
    if sandbox is not None:
        merged.update(endpoint=sandbox.otlp, query_url=sandbox.query, query_headers=sandbox.auth, timeout=5.0)
    merged.update(overrides)
    assert module.validate_options(merged) is None
    return merged


def probe(sandbox=None, **overrides) -> dict:
    return module.run_probe(params(sandbox, **overrides))


def send_spans(backend, service: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{backend.otlp}/v1/traces", timeout=5)))
    with provider.get_tracer("test").start_as_current_span("job.process"):
        pass
    provider.shutdown()


# --------------------------------------------------------------------------- GO path
@pytest.mark.parametrize("protocol, compression", [("http/protobuf", "none"), ("http/json", "gzip")])
def test_every_signal_reaches_the_backend(backend, protocol, compression):
    result = probe(backend, protocol=protocol, compression=compression, health_url=backend.health_url,
                   metrics_url=backend.metrics_url)
    assert result["healthy"] is True, result["problems"]
    for signal in ("traces", "metrics", "logs"):
        report = result["signals"][signal]
        assert report["accepted"] and report["visible"] and report["status"] == 200 and report["attempts"] == 1
        assert 0 < report["visibility_s"] and report["round_trip_s"] >= report["visibility_s"]
    assert result["visibility_s"] == {s: result["signals"][s]["visibility_s"] for s in ("traces", "metrics", "logs")}
    assert result["collector"]["health"]["status"] == "Server available"
    assert result["collector"]["self_metrics"]  # read twice, so the next line has something to judge
    assert all(f["growth"] == 0 for f in result["collector"]["self_metrics"].values())
    assert result["changed"] is False and result["backend"].startswith("dash0 at 127.0.0.1:")
    assert backend.stats()["stored"] == {"traces": 1, "metrics": 1, "logs": 1}  # only its own canaries


class CaptureHandler(BaseHTTPRequestHandler):
    """Keeps every request's raw bytes and answers like a collector that accepts everything."""
    captured: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.captured.append((self.path, dict(self.headers), body))
        answer = b"{}" if self.headers["Content-Type"] == "application/json" else b""
        self.send_response(200)
        self.send_header("Content-Type", self.headers["Content-Type"])
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def capture():
    CaptureHandler.captured = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), CaptureHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, CaptureHandler.captured
    server.shutdown()
    server.server_close()


def hex_ids_to_base64(node):
    """OTLP JSON writes ids in hex; protobuf's own JSON parser wants base64."""
    if isinstance(node, dict):
        return {k: base64.b64encode(bytes.fromhex(v)).decode() if k in ("traceId", "spanId") else hex_ids_to_base64(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [hex_ids_to_base64(v) for v in node]
    return node


@pytest.mark.parametrize("protocol, compression", [("http/protobuf", "none"), ("http/protobuf", "gzip"),
                                                   ("http/json", "none"), ("http/json", "gzip")])
def test_canary_bytes_are_valid_otlp(capture, protocol, compression):
    server, captured = capture
    result = probe(endpoint=f"http://127.0.0.1:{server.server_address[1]}/otlp", backend="none", protocol=protocol,
                   compression=compression, service_name="emp-worker", headers={"Dash0-Dataset": "prod"},
                   resource_attributes={"deployment.environment": "sandbox"})
    assert result["healthy"], result["problems"]
    assert sorted(request[0] for request in captured) == ["/otlp/v1/logs", "/otlp/v1/metrics", "/otlp/v1/traces"]
    for path, headers, body in captured:
        signal = path.rsplit("/", 1)[1]
        assert headers["Dash0-Dataset"] == "prod"
        if compression == "gzip":
            assert headers["Content-Encoding"] == "gzip"
            body = gzip.decompress(body)
        if protocol == "http/protobuf":
            assert headers["Content-Type"] == "application/x-protobuf"
            message = REQUESTS[signal].FromString(body)
        else:
            assert headers["Content-Type"] == "application/json"
            message = json_format.ParseDict(hex_ids_to_base64(json.loads(body)), REQUESTS[signal]())
        resource = next(iter(message.ListFields()))[1][0].resource
        attributes = {kv.key: kv.value.string_value for kv in resource.attributes}
        assert attributes == {"service.name": "emp-worker", "deployment.environment": "sandbox"}
        assert result["run_id"] in json.dumps(json_format.MessageToDict(message))
        if signal == "traces":
            assert message.resource_spans[0].scope_spans[0].spans[0].trace_id.hex() == result["trace_id"]
        if signal == "logs":
            assert message.resource_logs[0].scope_logs[0].log_records[0].trace_id.hex() == result["trace_id"]


# --------------------------------------------------------------------------- faults
def test_drop_is_caught_by_visibility_and_self_metrics(backend):
    backend.fault(mode="drop", signals=["traces"])
    result = probe(backend, timeout=2.0, metrics_url=backend.metrics_url)
    assert result["healthy"] is False
    assert result["signals"]["traces"]["accepted"] is True and result["signals"]["traces"]["visible"] is False
    assert result["signals"]["logs"]["visible"] is True
    assert any("traces canary accepted by" in p and "not visible in dash0" in p for p in result["problems"])
    assert "collector self-metric otelcol_exporter_send_failed_spans grew by 1 (0 -> 1) during the check" \
        in result["problems"]


def test_delay_beyond_the_timeout_is_not_visible(backend):
    backend.fault(mode="delay", delay_s=10, signals=["logs"])
    started = time.monotonic()
    result = probe(backend, timeout=1.5, signals=["logs"])
    assert time.monotonic() - started < 1.5 + module.CLOSING_GRACE_S + LOAD_MARGIN_S  # not the delay of 10 s
    assert result["signals"]["logs"]["visible"] is False and result["signals"]["logs"]["queries"] >= 3
    assert result["problems"] == [result["problems"][0]] and "after 1.5 s" in result["problems"][0]


def test_delay_within_the_timeout_is_measured_and_checked_against_the_threshold(backend):
    backend.fault(mode="delay", delay_s=3, signals=["traces"])
    result = probe(backend, timeout=15.0, max_visibility_s={"traces": 0.5, "logs": 3})
    traces = result["signals"]["traces"]
    assert traces["visible"] is True and 3 <= traces["visibility_s"]
    assert result["signals"]["logs"]["visibility_s"] < 3  # one signal's delay does not inflate another's
    assert result["problems"] == [f"traces became visible in {result['backend']} after {traces['visibility_s']:.2f} s"
                                  " > max_visibility_s 0.5 s"]


def test_503_with_retry_after_is_retried_and_honoured(backend):
    backend.fault(mode="unavailable", retry_after=1, times=2, signals=["metrics"])
    result = probe(backend, timeout=6.0, signals=["metrics"])
    metrics = result["signals"]["metrics"]
    assert result["healthy"] is True, result["problems"]
    assert metrics["attempts"] == 3 and metrics["status"] == 200
    assert metrics["retries"] == [{"status": 503, "retry_after_s": 1.0, "wait_s": 1.0}] * 2
    assert metrics["send_s"] >= 2.0


def test_429_is_retried(backend):
    backend.fault(mode="throttle", retry_after=1, times=1, signals=["traces"])
    result = probe(backend, timeout=5.0, signals=["traces"])
    assert result["healthy"] is True
    assert [r["status"] for r in result["signals"]["traces"]["retries"]] == [429]


def test_retry_after_longer_than_the_timeout_gives_up_at_once(backend):
    backend.fault(mode="unavailable", retry_after=30, signals=["traces"])
    started = time.monotonic()
    result = probe(backend, timeout=20.0, signals=["traces"])
    assert time.monotonic() - started < LOAD_MARGIN_S  # it does not sleep into a wait it cannot finish
    assert result["signals"]["traces"]["attempts"] == 1 and result["signals"]["traces"]["accepted"] is False
    assert "HTTP 503 (backend unavailable, retry after 30s)" in result["problems"][0]
    assert "the next retry in 30.0 s does not fit" in result["problems"][0]


def test_partial_rejection_is_a_problem(backend):
    backend.fault(mode="partial", signals=["logs"])
    result = probe(backend, signals=["logs", "traces"])
    logs = result["signals"]["logs"]
    assert logs["accepted"] is False and logs["rejected"] == 1 and logs["visible"] is None
    assert result["problems"] == [
        f"logs canary to {backend.otlp[7:]}/v1/logs: HTTP 200 but partialSuccess rejected 1 log record(s) of 1: "
        "1 log records rejected by the sandbox's partial fault"]


def test_400_is_permanent_and_not_retried(backend):
    backend.fault(mode="bad_request", signals=["traces"])
    result = probe(backend, signals=["traces"])
    assert result["signals"]["traces"]["attempts"] == 1
    assert "HTTP 400 (request rejected by the sandbox's bad_request fault), a permanent failure" in result["problems"][0]


def test_wrong_token_cannot_prove_arrival(backend):
    backend.fault(mode="wrong_token")
    started = time.monotonic()
    result = probe(backend, timeout=20.0)
    assert time.monotonic() - started < LOAD_MARGIN_S  # waiting cannot fix a refused token
    assert result["healthy"] is False
    assert result["problems"][0].startswith(f"cannot prove arrival: dash0 at {backend.query[7:]} answered 401")
    assert "Bearer" not in json.dumps(result).replace("Authorization: Bearer <token>", "")


def test_a_bad_metric_query_only_costs_the_metrics_signal(backend):
    result = probe(backend, metric_query='emp_deploy_canary{emp_canary_run_id="{run_id}"')
    assert result["signals"]["traces"]["visible"] is True and result["signals"]["logs"]["visible"] is True
    assert result["signals"]["metrics"]["visible"] is False
    assert result["problems"] == [f"cannot prove arrival: dash0 at {backend.query[7:]} answered 400 to GET "
                                  "/api/prometheus/api/v1/query: " + result["problems"][0].split("query: ", 1)[1]]
    assert "bad_data" in result["problems"][0]


def test_unknown_dataset_is_refused(backend):
    result = probe(backend, query_headers={**backend.auth, "Dash0-Dataset": "nope"}, signals=["logs"])
    assert "answered 403 to POST /api/logs" in result["problems"][0]


def test_unreachable_endpoint_is_retried_then_reported():
    port = free_port()
    result = probe(endpoint=f"http://127.0.0.1:{port}", backend="none", timeout=2.0, signals=["traces"])
    traces = result["signals"]["traces"]
    assert traces["accepted"] is False and traces["status"] is None and traces["attempts"] >= 2
    assert f"127.0.0.1:{port}/v1/traces" in result["problems"][0]
    assert f"cannot reach the collector at 127.0.0.1:{port}" in result["problems"][0]


def test_unreachable_query_api_is_named(backend):
    port = free_port()
    result = probe(backend, query_url=f"http://127.0.0.1:{port}", timeout=1.5, signals=["traces"])
    assert f"not visible in dash0 at 127.0.0.1:{port}" in result["problems"][0]
    assert f"last query error: cannot reach dash0 at 127.0.0.1:{port} (POST /api/spans)" in result["problems"][0]


def test_unhealthy_collector_is_a_problem(backend):
    backend.fault(mode="unhealthy")
    result = probe(backend, signals=["traces"], health_url=backend.health_url)
    assert result["problems"] == [f"collector health at {backend.health_url[7:]} is not OK: HTTP 503 "
                                  "(Server not available)"]


def test_metrics_url_that_is_not_a_collector(backend):
    result = probe(backend, signals=["traces"], metrics_url=backend.health_url)
    assert "shows no otelcol_* series" in result["problems"][0]


def test_enqueue_failed_total_suffix_growth(tmp_path):
    with TelemetryProcess(tmp_path, metrics_suffix="total") as process:
        process.fault(mode="queue_full", signals=["logs"])
        result = probe(process, timeout=1.5, signals=["traces", "logs"], metrics_url=process.metrics_url,
                       required_signals=["traces"])
    assert result["problems"] == ["collector self-metric otelcol_exporter_enqueue_failed_log_records grew by 1 "
                                  "(0 -> 1) during the check"]
    assert any(w.startswith("logs canary accepted") for w in result["warnings_found"])


# --------------------------------------------------------------------------- services, signals, backends
def test_expect_services_sees_real_sdk_senders_and_not_the_canary(backend):
    send_spans(backend, "emp-api")
    send_spans(backend, "emp-worker")
    result = probe(backend, signals=["traces"], service_name="emp-webhook",
                   expect_services=["emp-api", "emp-worker", "emp-webhook"], lookback=60)
    services = result["services"]
    assert services["emp-api"]["seen"] and services["emp-api"]["spans"] == 1
    assert 0 <= services["emp-worker"]["latest_age_s"] < 30
    assert services["emp-webhook"] == {"seen": False, "spans": 0, "latest_age_s": None, "error": None}
    assert result["problems"] == [f"service 'emp-webhook' sent no spans in the last 60 s ({result['backend']})"]


def test_since_counts_the_spans_from_that_moment_on_however_long_ago(backend):
    send_spans(backend, "emp-worker")  # before the moment: a previous release's spans
    time.sleep(2.5)  # orders the moment after those spans by more than the one-second floor
    since = time.time()
    send_spans(backend, "emp-api")
    time.sleep(1.5)  # the moment lies further back than nothing: the window grows with the wait
    result = probe(backend, signals=["traces"], expect_services=["emp-api", "emp-worker"], lookback=1, since=since)
    assert result["services"]["emp-api"]["seen"] is True, result
    assert result["services"]["emp-worker"]["seen"] is False
    assert len(result["problems"]) == 1
    moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    assert result["problems"][0].startswith(f"service 'emp-worker' sent no spans since {moment} (")


def test_non_required_signal_failures_are_warnings(backend):
    backend.fault(mode="drop", signals=["logs"])
    result = probe(backend, timeout=1.5, required_signals=["traces", "metrics"])
    assert result["healthy"] is True
    assert result["signals"]["logs"]["required"] is False and result["signals"]["logs"]["visible"] is False
    assert len(result["warnings_found"]) == 1 and "logs canary accepted" in result["warnings_found"][0]


@pytest.mark.parametrize("kind", ["tempo", "jaeger"])
def test_trace_backends_prove_traces_and_find_services(backend, kind):
    send_spans(backend, "emp-api")
    result = probe(backend, backend=kind, query_headers={}, expect_services=["emp-api", "emp-worker"])
    assert result["signals"]["traces"]["visible"] is True
    assert result["signals"]["metrics"]["checked"] is False and result["signals"]["metrics"]["visible"] is None
    assert result["services"]["emp-api"]["seen"] is True, result
    assert result["problems"] == [f"service 'emp-worker' sent no spans in the last 300 s ({kind} at "
                                  f"{backend.query[7:]})"]


def test_backend_none_checks_ingest_only(backend):
    backend.fault(mode="drop")
    result = probe(backend, backend="none")
    assert result["healthy"] is True and result["backend"] == "none"
    assert all(r["accepted"] and r["visible"] is None and not r["checked"] for r in result["signals"].values())


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("overrides, message", [
    ({"timeout": 0}, "timeout must be greater than 0, got 0"),
    ({"lookback": -5}, "lookback must be a positive number of seconds, got -5"),
    ({"since": 0.0}, "since must be a positive number of seconds since the epoch, got 0.0"),
    ({"endpoint": "127.0.0.1:4318"}, "endpoint must be an http:// or https:// URL with a host, got '127.0.0.1:4318'"),
    ({"endpoint": "http://127.0.0.1:port"}, "endpoint has an invalid port: 'http://127.0.0.1:port'"),
    ({"query_url": "ftp://x"}, "query_url must be an http:// or https:// URL with a host, got 'ftp://x'"),
    ({"signals": []}, "signals must name at least one of traces, metrics, logs"),
    ({"signals": ["traces"], "required_signals": ["logs"]}, "required_signals ['logs'] are not in signals ['traces']"),
    ({"max_visibility_s": {"profiles": 1}}, "max_visibility_s names 'profiles', which is not in signals"),
    ({"max_visibility_s": {"traces": "soon"}}, "max_visibility_s['traces'] must be a number of seconds, got 'soon'"),
    ({"max_visibility_s": {"traces": 0}}, "max_visibility_s['traces'] must be greater than 0, got 0"),
    ({"max_visibility_s": {"traces": True}}, "max_visibility_s['traces'] must be a number of seconds, got True"),
    ({"backend": "none", "expect_services": ["emp-api"]}, "expect_services needs a query backend"),
    ({"run_id": "has space"}, "run_id must be 1-64 letters"),
    ({"metric_name": "9bad"}, "metric_name '9bad' is not a valid metric name"),
    ({"resource_attributes": {"x": {"nested": 1}}}, "resource_attributes['x'] must be a string"),
    ({"service_name": " "}, "service_name must not be empty"),
])
def test_bad_options_are_named(overrides, message):
    merged = dict(DEFAULTS, endpoint="http://127.0.0.1:4318", query_url="http://127.0.0.1:1")
    merged.update(overrides)
    assert message in module.validate_options(merged)


@contextlib.contextmanager
def module_args(args: dict):
    try:
        from ansible.module_utils.testing import patch_module_args
    except ImportError:  # ansible-core < 2.19
        with mock.patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()):
            yield
        return
    with patch_module_args(args):
        yield


def run_main(args: dict, capsys) -> dict:
    with module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("args, message", [
    ({"endpoint": "http://127.0.0.1:1", "backend": "none", "colour": "red"}, "Unsupported parameters"),
    ({"endpoint": "http://127.0.0.1:1", "backend": "none", "timeout": "soon"}, "timeout"),
    ({"endpoint": "http://127.0.0.1:1", "backend": "none", "signals": ["profiles"]}, "signals"),
    ({"endpoint": "http://127.0.0.1:1"}, "backend is dash0 but all of the following are missing: query_url"),
    ({"backend": "none"}, "missing required arguments: endpoint"),
    ({"endpoint": "http://127.0.0.1:1", "backend": "none", "protocol": "grpc"}, "protocol"),
])
def test_argument_spec_rejects_bad_input(args, message, capsys):
    result = run_main(args, capsys)
    assert result["failed"] is True and message in result["msg"]


def test_main_in_check_mode_hides_secrets(backend, capsys):
    secret_token = "tok-" + "x" * 12
    backend.fault(mode="wrong_token")
    result = run_main({"endpoint": backend.otlp, "query_url": backend.query, "timeout": 3, "signals": ["traces"],
                       "headers": {"Authorization": f"Bearer {secret_token}"},
                       "query_headers": {"Authorization": f"Bearer {secret_token}"},
                       "_ansible_check_mode": True}, capsys)
    assert result["failed"] is True and result["changed"] is False and result["healthy"] is False
    assert "HTTP 401 (invalid authorization token), a permanent failure" in result["msg"]
    assert secret_token not in json.dumps(result)
    backend.fault(mode="none")
    ok = run_main({"endpoint": backend.otlp, "query_url": backend.query, "timeout": 3, "signals": ["traces"],
                   "query_headers": backend.auth, "_ansible_check_mode": True}, capsys)
    assert ok.get("failed") is not True and ok["healthy"] is True and ok["signals"]["traces"]["visible"] is True


def test_documentation_matches_the_argument_spec():
    from ansible_collections.emp.deploy.plugins.doc_fragments.otel import ModuleDocFragment
    from ansible_collections.emp.deploy.plugins.module_utils._otel_backends import OTEL_BACKEND_ARGSPEC

    assert_documentation_matches(module.DOCUMENTATION, ModuleDocFragment.DOCUMENTATION, OTEL_BACKEND_ARGSPEC,
                                 module.ARGUMENT_SPEC)
