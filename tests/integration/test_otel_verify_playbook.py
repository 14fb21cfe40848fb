"""emp.deploy.otel_verify through real ansible-playbook runs against the sandbox telemetry backend,
with the real OpenTelemetry SDK exporter speaking as the EMP services."""
from __future__ import annotations

import json
import re
import subprocess

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from ansible_collections.emp.deploy.plugins.modules.otel_verify import CLOSING_GRACE_S
from conftest import BIN, ROOT, run_playbook, write_playbook
from misbehaving_http import MisbehavingServer, bad_gzip, drip, not_http, truncated
from servers import LOAD_MARGIN_S
from telemetry_harness import TelemetryProcess

SECRET = "tok-" + "q" * 12  # a recognisable stand-in token that must never be printed


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with TelemetryProcess(tmp_path_factory.mktemp("otel-playbook"), token=SECRET) as process:
        yield process


@pytest.fixture(autouse=True)
def clean(backend):
    backend.reset()
    yield


def send_spans(backend, service: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{backend.otlp}/v1/traces", timeout=5)))
    with provider.get_tracer("emp").start_as_current_span("job.process"):
        pass
    provider.shutdown()


def verify_many(tmp_path, runs: list[dict], *, check: bool = False, verbosity: list[str] | None = None,
                preamble: str = "") -> tuple[list[dict], subprocess.CompletedProcess]:
    """One playbook, one otel_verify task per argument dict (failures ignored); each task's result."""
    tasks = []
    for index, args in enumerate(runs):
        out = tmp_path / f"result-{index}.json"
        tasks.append(f"""
- name: Verify telemetry ({index})
  emp.deploy.otel_verify: {json.dumps(args)}
  register: otel
  ignore_errors: true
- name: Save the result ({index})
  ansible.builtin.copy:
    content: "{{{{ otel | to_json }}}}"
    dest: "{out}"
    mode: "0600"
  check_mode: false
""")
    playbook = write_playbook(tmp_path, "".join(tasks))
    if preamble:
        text = playbook.read_text().replace("  tasks:\n", preamble + "  tasks:\n", 1)
        playbook.write_text(text)
    proc = run_playbook(playbook, check=check, args=verbosity)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # failures are ignored, anything else is not
    return [json.loads((tmp_path / f"result-{i}.json").read_text()) for i in range(len(runs))], proc


def verify(tmp_path, args: dict, **kwargs) -> tuple[dict, subprocess.CompletedProcess]:
    (result,), proc = verify_many(tmp_path, [args], **kwargs)
    return result, proc


def base_args(backend, **extra) -> dict:
    args = {"endpoint": backend.otlp, "query_url": backend.query,
            "query_headers": {"Authorization": f"Bearer {SECRET}", "Dash0-Dataset": "default"},
            "health_url": backend.health_url, "metrics_url": backend.metrics_url, "timeout": 5}
    args.update(extra)
    return args


def test_go_path_with_the_services_sending(tmp_path, backend):
    for service in ("emp-api", "emp-webhook", "emp-worker"):
        send_spans(backend, service)
    result, proc = verify(tmp_path, base_args(backend, service_name="emp-api",
                                              resource_attributes={"deployment.environment": "sandbox"},
                                              expect_services=["emp-api", "emp-webhook", "emp-worker"],
                                              max_visibility_s={"traces": 4, "metrics": 4, "logs": 4}))
    assert proc.returncode == 0, proc.stdout
    assert result["failed"] is False and result["changed"] is False and result["healthy"] is True
    assert all(result["visibility_s"][s] is not None for s in ("traces", "metrics", "logs"))
    assert {name: seen["seen"] for name, seen in result["services"].items()} == {
        "emp-api": True, "emp-webhook": True, "emp-worker": True}


def test_no_go_when_the_backend_drops_traces(tmp_path, backend):
    backend.fault(mode="drop", signals=["traces"])
    result, proc = verify(tmp_path, base_args(backend, timeout=2))
    assert result["failed"] is True and result["healthy"] is False
    assert result["signals"]["traces"]["visible"] is False
    assert "otelcol_exporter_send_failed_spans grew by 1" in result["msg"]
    assert "not visible in dash0" in proc.stdout  # the failure message is what people read in the log


def test_check_mode_runs_the_probe(tmp_path, backend):
    result, proc = verify(tmp_path, base_args(backend, signals=["traces"]), check=True)
    assert proc.returncode == 0, proc.stdout
    assert result["healthy"] is True and result["signals"]["traces"]["visible"] is True
    assert backend.stats()["stored"]["traces"] == 1


def test_secrets_never_reach_the_output(tmp_path, backend):
    backend.fault(mode="wrong_token")
    result, proc = verify(tmp_path, base_args(backend, signals=["traces"], headers={"Authorization": f"Bearer {SECRET}"}),
                          verbosity=["-vvv"])
    assert result["failed"] is True and "answered 401" in result["msg"]
    assert SECRET not in proc.stdout + proc.stderr
    assert SECRET not in json.dumps(result)


def test_probes_group_defaults_apply(tmp_path, backend):
    preamble = ("  module_defaults:\n    group/emp.deploy.probes:\n"
                f"      query_headers: {{Authorization: 'Bearer {SECRET}'}}\n      timeout: 4\n")
    result, proc = verify(tmp_path, {"endpoint": backend.otlp, "query_url": backend.query, "signals": ["logs"]},
                          preamble=preamble)
    assert proc.returncode == 0, proc.stdout
    assert result["signals"]["logs"]["visible"] is True


@pytest.mark.parametrize("args, message", [
    ({"endpoint": "http://127.0.0.1:1", "backend": "none", "colour": "red"}, "Unsupported parameters"),
    ({"endpoint": "http://127.0.0.1:1", "backend": "none", "lookback": "a while"}, "lookback"),
    ({"endpoint": "http://127.0.0.1:1"}, "missing: query_url"),
])
def test_bad_input_fails_the_task(tmp_path, args, message):
    result, proc = verify(tmp_path, args)
    assert result["failed"] is True and message in result["msg"]
    # ignore_errors lets the play go on; the recap must still count the task as failed (and ignored).
    assert re.search(r"sandbox\s*:.* failed=0 .* ignored=1", proc.stdout), proc.stdout


# Thread start-up and scheduling on a loaded machine; a drip of the old kind would take two minutes.
MARGIN_S = LOAD_MARGIN_S
PROMQL = "/api/prometheus/api/v1/query"


def test_dripping_endpoints_are_bounded_by_the_timeout(tmp_path, backend):
    with MisbehavingServer([("GET", "/health", drip()), ("GET", PROMQL, drip())], upstream=backend.query) as slow:
        (health, query), _proc = verify_many(tmp_path, [
            base_args(backend, health_url=slow.url + "/health", timeout=3, request_timeout=60, signals=["traces"]),
            base_args(backend, query_url=slow.url, timeout=3, request_timeout=60, signals=["traces", "metrics"]),
        ])
    assert health["failed"] is True and health["duration_ms"] < (3 + CLOSING_GRACE_S + MARGIN_S) * 1000
    assert health["collector"]["health"]["error"].startswith(
        f"the collector at {slow.where} did not answer GET /health within 3.0 s")
    assert query["failed"] is True and query["duration_ms"] < (3 + CLOSING_GRACE_S + MARGIN_S) * 1000
    assert query["signals"]["traces"]["visible"] is True  # the other queries went through the same front
    assert query["signals"]["metrics"]["visible"] is False
    assert f"last query error: dash0 at {slow.where} did not answer GET {PROMQL} within" in query["msg"]


def test_broken_collector_answers_are_named_with_the_structured_result(tmp_path, backend):
    rules = [("GET", "/cut/health", truncated()), ("GET", "/gzip/metrics", bad_gzip("text/plain")),
             ("GET", "/nothttp/health", not_http())]
    with MisbehavingServer(rules) as broken:
        cut, gzipped, other = verify_many(tmp_path, [
            base_args(backend, health_url=broken.url + "/cut/health", signals=["traces"]),
            base_args(backend, metrics_url=broken.url + "/gzip/metrics", signals=["traces"]),
            base_args(backend, health_url=broken.url + "/nothttp/health", signals=["traces"]),
        ])[0]
    for result in (cut, gzipped, other):
        assert result["failed"] is True and result["healthy"] is False
        assert result["signals"]["traces"]["visible"] is True  # measured all the same
    assert (f"collector health at {broken.where}/cut/health is not OK: the collector at {broken.where} sent a "
            "truncated body to GET /cut/health (13 of 100 bytes, then the connection closed)") in cut["problems"]
    assert cut["collector"]["health"]["http_status"] is None
    assert (f"collector self-metrics unreadable: the collector at {broken.where} sent a broken gzip body to "
            "GET /gzip/metrics") in gzipped["msg"]
    assert f"the collector at {broken.where} did not answer GET /nothttp/health with HTTP" in other["msg"]


def test_html_from_the_query_api_is_named(tmp_path, backend):
    login = b"<html><body>Sign in to continue</body></html>"
    with MisbehavingServer([("GET", PROMQL, (200, "text/html; charset=utf-8", login))],
                           upstream=backend.query) as front:
        result, _proc = verify(tmp_path, base_args(backend, query_url=front.url, signals=["traces", "metrics"]))
    assert result["failed"] is True and result["signals"]["traces"]["visible"] is True
    assert (f"cannot prove arrival: dash0 at {front.where} answered GET {PROMQL} with HTTP 200 text/html, "
            "not the Prometheus API JSON: <html><body>Sign in to continue</body></html>") in result["problems"]
    assert "failed: null" not in result["msg"]


def test_documentation_renders():
    proc = subprocess.run([str(BIN / "ansible-doc"), "emp.deploy.otel_verify"], capture_output=True, text=True, check=False,
                          timeout=120, cwd=str(ROOT), env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                                                           "PATH": str(BIN), "HOME": str(ROOT / ".tmp")})
    assert proc.returncode == 0, proc.stderr
    for option in ("endpoint", "max_visibility_s", "expect_services", "query_headers", "backend"):
        assert option in proc.stdout
