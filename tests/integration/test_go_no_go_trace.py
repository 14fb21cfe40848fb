"""The deployment as an OTLP trace: real ansible-playbook runs of the go_no_go callback export to the
sandbox's telemetry service (the Dash0 stand-in, started by tests/telemetry_harness.py) and the trace is
read back through its query API (POST /api/spans). Endpoints that are down, answer 500 or never answer
are real servers on loopback ports (tests/misbehaving_http.py, tests/notify_receiver.py).

The deploy and rollback playbooks are those of test_go_no_go_runs.py: a database phase that says GO (three
gates), a redis phase whose gate says NO-GO (312 against < 200), then the rollback of redis.
"""
from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from ansible_collections.emp.deploy.plugins.plugin_utils import _trace
from misbehaving_http import MisbehavingServer, drip_headers
from notify_receiver import Receiver
from telemetry_harness import TelemetryProcess
from test_go_no_go_notify import GO_DEPLOY
from test_go_no_go_runs import deploy

SECRET = "tok-" + "z" * 14  # the stand-in's token: the trace is refused (401) without it, never printed


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with TelemetryProcess(tmp_path_factory.mktemp("trace"), token=SECRET, prometheus=False) as process:
        yield process


def spans_of(backend: TelemetryProcess, trace_id: str) -> list[dict]:
    """The trace's spans as the Dash0 query API answers them (every page)."""
    spans, cursor = [], None
    while True:
        query = {"timeRange": {"from": "now-1h", "to": "now+1h"},
                 "filter": [{"key": "otel.trace.id", "operator": "is", "value": trace_id}],
                 "pagination": {"limit": 200, **({"cursor": cursor} if cursor else {})}}
        request = urllib.request.Request(backend.query + "/api/spans", data=json.dumps(query).encode(), method="POST",
                                         headers={**backend.auth, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310  # loopback only
            page = json.loads(answer.read())
        for block in page["resourceSpans"]:
            for scope in block["scopeSpans"]:
                spans += [dict(s, resource=block["resource"]) for s in scope["spans"]]
        cursor = (page.get("cursors") or {}).get("after")
        if not cursor:
            return spans


def attrs(item: dict) -> dict:
    return {kv["key"]: next(iter(kv["value"].values())) for kv in item.get("attributes") or []}


def exports(run) -> list[dict]:
    return [r for r in run.journal if r["type"] == "trace_export"]


def env_for(backend: TelemetryProcess, **more: str) -> dict:
    return {"EMP_DEPLOY_OTLP_ENDPOINT": backend.otlp, "EMP_DEPLOY_OTLP_TOKEN": SECRET,
            "EMP_DEPLOY_OTLP_HEADERS": "Dash0-Dataset=default", **more}


def assert_secret_hidden(run) -> None:
    texts = [run.stdout, run.proc.stderr] + [p.read_text() for p in run.dir.iterdir() if p.is_file()]
    assert all(SECRET not in text for text in texts)


def test_a_nogo_run_is_one_trace_with_phases_gates_samples_and_the_rollback(tmp_path, backend):
    run = deploy(tmp_path, env=env_for(backend), args=["-vvv"])
    assert run.proc.returncode == 2, run.stdout[-3000:]
    assert run.summary["rollback"]["ok"] is True

    # journaled once, just before run_end, and shown in the table
    (record,) = exports(run)
    assert run.kinds[-2:] == ["trace_export", "run_end"]
    assert (record["sent"], record["outcome"], record["status"], record["attempts"]) == (True, "sent", 200, 1)
    assert record["trace_id"] == _trace.trace_id_of(run.summary["run_id"])
    assert record["endpoint"] == backend.otlp.split("//", 1)[1] and record["protocol"] == "http/protobuf"
    assert f"trace {record['trace_id']} sent to {record['endpoint']}: {record['spans']} spans" in run.stdout

    spans = spans_of(backend, record["trace_id"])
    assert len(spans) == record["spans"]
    assert sum(len(s.get("events") or []) for s in spans) == record["events"]
    by_name = {s["name"]: s for s in spans}
    (root,) = [s for s in spans if not s.get("parentSpanId")]
    assert attrs(root)["emp.decision"] == "NO-GO" and attrs(root)["emp.run_id"] == run.summary["run_id"]
    assert attrs(root)["emp.release"] == run.summary["emp_release"] and root["status"]["code"] == 2
    assert attrs(root["resource"])["service.name"] == "emp.deploy"
    # the tree: run -> phases -> gates; run -> rollback -> its play
    children = {s["name"] for s in spans if s.get("parentSpanId") == root["spanId"]}
    assert children == {"phase infrastructure · database", "phase infrastructure · redis", "rollback redis"}
    db_phase, redis_phase = by_name["phase infrastructure · database"], by_name["phase infrastructure · redis"]
    assert {s["name"] for s in spans if s.get("parentSpanId") == db_phase["spanId"]} == {
        "gate db-gate", "gate db-loop-1", "gate db-loop-2"}
    gate = by_name["gate redis-gate"]
    assert gate["parentSpanId"] == redis_phase["spanId"] and gate["status"]["code"] == 2
    assert {k: attrs(gate)[k] for k in ("emp.component", "emp.decision", "emp.gate.mode")} == {
        "emp.component": "redis", "emp.decision": "NO-GO", "emp.gate.mode": "enforce"}
    (sample,) = gate["events"]
    assert sample["name"] == "sample" and attrs(sample)["emp.figure.result.stdout"] == "312"
    assert attrs(sample)["emp.sample.outcome"] == "failed"
    assert attrs(redis_phase)["emp.decision"] == "NO-GO" and attrs(db_phase)["emp.decision"] == "GO"
    rollback = by_name["rollback redis"]
    assert attrs(rollback)["emp.rollback.ok"] is True and rollback["status"]["code"] == 1
    plays = [s for s in spans if s["name"].startswith("rollback play")]
    assert plays and {s["parentSpanId"] for s in plays} == {rollback["spanId"]}
    # span timing is the journal's: the run span holds every other span
    for span in spans:
        assert int(root["startTimeUnixNano"]) <= int(span["startTimeUnixNano"]) <= int(span["endTimeUnixNano"])
        assert int(span["endTimeUnixNano"]) <= int(root["endTimeUnixNano"])
    # the journal alone rebuilds the same trace: same ids, same names
    rebuilt = _trace.build_trace(run.journal)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert {(s["spanId"], s.get("parentSpanId"), s["name"]) for s in rebuilt} == {
        (s["spanId"], s.get("parentSpanId"), s["name"]) for s in spans}
    # the reports show it; the token is nowhere (the stand-in refuses the trace without it)
    assert record["trace_id"] in (run.dir / "report.html").read_text()
    assert record["trace_id"] in (run.dir / "incident.md").read_text()
    assert_secret_hidden(run)


def test_a_go_run_over_json_with_its_own_service_name(tmp_path, backend):
    env = env_for(backend, EMP_DEPLOY_OTLP_PROTOCOL="http/json", EMP_DEPLOY_OTLP_SERVICE_NAME="emp-deployments")
    run = deploy(tmp_path, playbook=GO_DEPLOY, env=env)
    assert run.proc.returncode == 0, run.stdout[-3000:]
    (record,) = exports(run)
    assert record["sent"] and record["protocol"] == "http/json"
    spans = spans_of(backend, record["trace_id"])
    release = run.summary["emp_release"]
    root_name = f"deploy {release}" if release else f"deploy run {run.summary['run_id']}"
    assert sorted(s["name"] for s in spans) == sorted([root_name, "gate db-gate", "phase infrastructure · database"])
    (root,) = [s for s in spans if not s.get("parentSpanId")]
    assert attrs(root)["emp.decision"] == "GO" and root["status"]["code"] == 1
    assert attrs(root["resource"])["service.name"] == "emp-deployments"
    assert not (run.dir / "incident.md").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("case", ["down", "http_500", "never_answers"])
def test_an_endpoint_that_fails_costs_at_most_the_timeout_and_is_recorded(tmp_path, case):
    timeout = 1.5
    env = {"EMP_DEPLOY_OTLP_TOKEN": SECRET, "EMP_DEPLOY_OTLP_TIMEOUT": str(timeout)}
    if case == "down":
        run = deploy(tmp_path, env=dict(env, EMP_DEPLOY_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}"))
    else:
        fault = (500, "text/plain", b"collector exploded") if case == "http_500" else drip_headers(interval=1.0)
        with MisbehavingServer([("POST", "/v1/traces", fault)]) as server:
            run = deploy(tmp_path, env=dict(env, EMP_DEPLOY_OTLP_ENDPOINT=server.url))
            assert server.paths == ["/v1/traces"]  # asked once: a 500 or a timeout is never sent again
    assert run.proc.returncode == 2, run.stdout[-3000:]
    assert run.summary["rollback"]["ok"] is True and run.kinds[-2:] == ["trace_export", "run_end"]
    (record,) = exports(run)
    expected = {"down": "unreachable", "http_500": "http_error", "never_answers": "timeout"}[case]
    assert (record["sent"], record["outcome"]) == (False, expected)
    assert record["duration_s"] <= timeout + 0.5  # every attempt and wait within the one deadline
    if case == "down":
        assert record["attempts"] > 1  # a refused connection is retried while the deadline lasts
    if case == "http_500":
        assert record["status"] == 500 and "answered HTTP 500: collector exploded" in record["error"]
    assert f"trace NOT exported to {record['endpoint']} ({expected})" in run.stdout
    assert "trace NOT exported" in (run.dir / "report.html").read_text()
    assert_secret_hidden(run)


def test_a_503_is_retried_within_the_deadline(tmp_path, backend):
    with Receiver({"/v1/traces": [(503, {"Retry-After": "0"})]}) as receiver:
        run = deploy(tmp_path, env={"EMP_DEPLOY_OTLP_ENDPOINT": receiver.url(""), "EMP_DEPLOY_OTLP_TIMEOUT": "3"})
        bodies = [r.body for r in receiver.at("/v1/traces")]
    (record,) = exports(run)
    assert (record["sent"], record["statuses"], record["attempts"]) == (True, [503, 200], 2)
    assert bodies[0] == bodies[1]  # the same trace, sent again


def test_a_wrong_token_is_a_refused_export_and_stays_hidden(tmp_path, backend):
    wrong = "tok-" + "w" * 14
    run = deploy(tmp_path, env={"EMP_DEPLOY_OTLP_ENDPOINT": backend.otlp, "EMP_DEPLOY_OTLP_TOKEN": wrong})
    (record,) = exports(run)
    assert (record["sent"], record["status"], record["attempts"]) == (False, 401, 1)
    assert spans_of(backend, record["trace_id"]) == []
    texts = [run.stdout, run.proc.stderr] + [p.read_text() for p in run.dir.iterdir() if p.is_file()]
    assert all(wrong not in text for text in texts)


@pytest.mark.parametrize(("env", "expected"), [
    ({"EMP_DEPLOY_OTLP_ENDPOINT": "ftp://collector.invalid/SECRETPART"},
     "otlp_endpoint (EMP_DEPLOY_OTLP_ENDPOINT): the OTLP endpoint cannot be used"),
    ({"EMP_DEPLOY_OTLP_ENDPOINT": "http://127.0.0.1:4318", "EMP_DEPLOY_OTLP_PROTOCOL": "grpc"},
     "otlp_protocol (EMP_DEPLOY_OTLP_PROTOCOL): 'grpc' is not one of http/protobuf, http/json"),
    ({"EMP_DEPLOY_OTLP_TOKEN": "SECRETPART"},
     "otlp_token (EMP_DEPLOY_OTLP_TOKEN) is set, but otlp_endpoint (EMP_DEPLOY_OTLP_ENDPOINT) is not"),
])
def test_a_bad_option_stops_the_run_before_any_task_without_showing_secrets(tmp_path, env, expected):
    from conftest import run_playbook
    (tmp_path / "deploy.yml").write_text(GO_DEPLOY)
    proc = run_playbook(tmp_path / "deploy.yml", env=dict(env, EMP_DEPLOY_REPORT_DIR=str(tmp_path / "reports")))
    assert proc.returncode == 5
    out = proc.stdout + proc.stderr
    assert expected in out and "SECRETPART" not in out
    assert "Database gate" not in out


def test_a_run_ended_by_a_signal_still_exports_its_trace(tmp_path, backend):
    import signal

    from test_go_no_go_reliability import SLOW_ROLLBACK, SOAK, interrupt, read_record
    soak = SOAK.replace("__FAIL_OR_PASS__", "1")
    rc, out = interrupt(tmp_path, soak, SLOW_ROLLBACK, lambda out: "sample 3/240: ok" in out, signal.SIGTERM,
                        extra_env=env_for(backend))
    assert rc != 0
    journal, summary = read_record(tmp_path)
    assert [r["type"] for r in journal][-3:] == ["run_interrupted", "trace_export", "run_end"]
    record = journal[-2]
    assert record["sent"] is True, record
    spans = spans_of(backend, record["trace_id"])
    (root,) = [s for s in spans if not s.get("parentSpanId")]
    assert attrs(root)["emp.decision"] == "interrupted" and attrs(root)["emp.interrupted"] == "SIGTERM"
    assert root["status"]["code"] == 2 and [e["name"] for e in root["events"]] == ["interrupted"]
    (phase,) = [s for s in spans if s["name"].startswith("phase ")]
    assert attrs(phase)["emp.decision"] == "interrupted" and phase["parentSpanId"] == root["spanId"]
    assert SECRET not in out
