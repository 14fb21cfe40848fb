"""The sandbox's real Prometheus end to end: `up` starts it with the traffic generator; every metric the
services expose (prometheus_client) is in it, read through the Dash0 stand-in's Prometheus API with
the token; each runtime fault (`python -m sandbox fault`) moves its metric the expected way in PromQL
and `fault clear` (or a restart, as a rollback does) stops it; `down` leaves no process behind.

One sandbox for the module; the fault tests run one after the other in it and each waits for its own
condition (a wait returns as soon as PromQL shows the change)."""
from __future__ import annotations

import json
import time

import pytest
from sandbox_fixtures import (
    EVENT_DEADLINE,
    alive,
    cli,
    dash0_promql,
    group_members,
    recorded_processes,
    status,
    wait_until,
)

from sandbox.prometheus import PrometheusEngine

# pylint: disable=redefined-outer-name
pytestmark = pytest.mark.skipif(PrometheusEngine.binary() is None, reason="Debian's prometheus package is missing "
                                "(tools/system-deps installs it)")
MB = 1024 * 1024
# WATCH_SPEC section 1: metric -> the scrape jobs that expose it
METRICS = {
    "http_server_request_duration_seconds_bucket": {"api", "webhook"},
    "http_server_request_duration_seconds_sum": {"api", "webhook"},
    "http_server_request_duration_seconds_count": {"api", "webhook"},
    "emp_webhook_deliveries_total": {"webhook"},
    "emp_jobs_submitted_total": {"api"},
    "emp_jobs_completed_total": {"worker"},
    "emp_job_processing_seconds_bucket": {"worker"},
    "emp_jobs_pending": {"api"},
    "emp_redis_connection_failures_total": {"api", "webhook", "worker", "monitor"},
    "emp_redis_connected": {"api", "webhook", "worker", "monitor"},
    "emp_db_query_errors_total": {"api"},
    "emp_otel_export_failures_total": {"api", "webhook", "worker"},
    "emp_log_messages_total": {"api", "webhook", "worker", "monitor", "telemetry"},
    "process_resident_memory_bytes": {"api", "webhook", "worker", "monitor", "telemetry"},
    "process_start_time_seconds": {"api", "webhook", "worker", "monitor", "telemetry"},
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("sandbox-metrics")
    cli(state_dir, "up")
    yield {"state_dir": state_dir, "status": status(state_dir)}
    cli(state_dir, "down", check=False)


def result(current: dict, expr: str) -> list[dict]:
    answer = dash0_promql(current, expr)
    assert answer.status_code == 200, f"{expr}: {answer.text}"
    return answer.json()["data"]["result"]


def value(current: dict, expr: str) -> float | None:
    """The single sample of an instant query; None when the result is empty."""
    found = result(current, expr)
    assert len(found) <= 1, f"{expr}: more than one series: {found}"
    return float(found[0]["value"][1]) if found else None


def until(current: dict, expr: str, check, message: str) -> float:
    """Waits until ``check(value)`` holds for the query's value (an empty answer never does)."""
    seen: list[float | None] = []

    def holds() -> bool:
        seen.append(value(current, expr))
        return seen[-1] is not None and check(seen[-1])
    wait_until(holds, timeout=EVENT_DEADLINE, interval=0.5, message=f"{message} ({expr}; last value {seen[-1:]})")
    return seen[-1]  # type: ignore[return-value]


def fault(sandbox: dict, *args: str) -> dict:
    return json.loads(cli(sandbox["state_dir"], "fault", *args).stdout)


# --------------------------------------------------------------------------- exposition
def test_status_names_the_engine_and_the_dash0_prometheus_api(sandbox):
    current = sandbox["status"]
    assert current["prometheus"].startswith("http://127.0.0.1:")
    assert current["prometheus_api"] == current["query"] + "/api/prometheus"
    assert current["services"]["prometheus"]["status"] == "running"
    assert current["services"]["traffic"]["status"] == "running"


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_every_metric_is_in_prometheus_through_dash0(sandbox, metric):
    current = sandbox["status"]

    def jobs() -> set[str]:
        return {r["metric"]["job"] for r in result(current, f"count by (job) ({metric})")}
    wait_until(lambda: METRICS[metric] <= jobs(), timeout=EVENT_DEADLINE, interval=0.5,
               message=f"{metric} scraped from {sorted(METRICS[metric])}")


def test_labels_and_buckets_are_the_contract(sandbox):
    current = sandbox["status"]
    buckets = {r["metric"]["le"] for r in result(current, 'count by (le) (http_server_request_duration_seconds_bucket)')}
    assert {"0.05", "0.1", "0.2", "0.5", "1.0"} <= buckets
    routes = result(current, 'count by (job, http_route, http_response_status_code) '
                             '(http_server_request_duration_seconds_count)')
    assert {("api", "/api/jobs", "201"), ("api", "/health", "200")} <= {
        (r["metric"]["job"], r["metric"]["http_route"], r["metric"]["http_response_status_code"]) for r in routes}
    outcomes = {r["metric"]["outcome"] for r in result(current, "emp_webhook_deliveries_total")}
    assert outcomes == {"success", "failure"}  # both exposed from 0
    statuses = {r["metric"]["status"] for r in result(current, "emp_jobs_completed_total")}
    assert statuses == {"completed", "failed"}
    messages = {(r["metric"]["level"], r["metric"]["message"]) for r in result(current, 'emp_log_messages_total{job="api"}')}
    assert ("info", "job %s submitted (%s, priority %s)") in messages  # the template, not the formatted line


def test_traffic_keeps_the_rates_above_zero(sandbox):
    current = sandbox["status"]
    until(current, "sum(rate(emp_jobs_submitted_total[5s]))", lambda v: v > 0, "jobs submitted")
    until(current, 'sum(rate(emp_jobs_completed_total{status="completed"}[5s]))', lambda v: v > 0, "jobs completed")
    until(current, 'sum(rate(emp_webhook_deliveries_total{outcome="success"}[5s]))', lambda v: v > 0, "deliveries")
    until(current, 'sum(rate(http_server_request_duration_seconds_count{job="api"}[5s]))', lambda v: v > 0,
          "API requests")


@pytest.mark.parametrize("headers, code, error_type", [
    ({}, 401, "unauthorized"),
    ({"Authorization": "Bearer wrong"}, 401, "unauthorized"),
    ({"Authorization": "Bearer sandbox-token", "Dash0-Dataset": "ghost"}, 403, "forbidden"),
])
def test_the_prometheus_api_needs_the_token(sandbox, headers, code, error_type):
    answer = dash0_promql(sandbox["status"], "up", headers=headers)
    assert answer.status_code == code
    assert answer.json() == {"status": "error", "errorType": error_type, "error": answer.json()["error"]}


def test_query_range_and_bad_promql_come_from_the_engine(sandbox):
    current = sandbox["status"]
    now = time.time()
    ranged = dash0_promql(current, 'up{job="api"}', path="query_range", start=f"{now - 10:.3f}", end=f"{now:.3f}",
                          step="1")
    assert ranged.status_code == 200, ranged.text
    data = ranged.json()["data"]
    assert data["resultType"] == "matrix" and data["result"][0]["values"][-1][1] == "1"
    bad = dash0_promql(current, "sum(rate(")
    assert bad.status_code == 400 and bad.json()["errorType"] == "bad_data"


# --------------------------------------------------------------------------- faults
def test_webhook_failures(sandbox):
    current = sandbox["status"]
    failed = 'sum(increase(emp_webhook_deliveries_total{outcome="failure"}[4s]))'
    until(current, failed, lambda v: v == 0, "no failed delivery before the fault")
    fault(sandbox, "webhook-failures", "--rate", "0.5")
    until(current, failed, lambda v: v > 0, "failed deliveries under the fault")
    until(current, 'sum(increase(emp_webhook_deliveries_total{outcome="success"}[4s]))', lambda v: v > 0,
          "some deliveries still succeed at rate 0.5")
    assert fault(sandbox, "clear", "webhook-failures")["cleared"] == ["webhook-failures"]
    until(current, failed, lambda v: v == 0, "failures stop once cleared")


def test_worker_memory_leak(sandbox):
    current = sandbox["status"]
    mb_per_s, window = 5, 4
    growth = f'delta(process_resident_memory_bytes{{job="worker"}}[{window}s])'
    fault(sandbox, "worker-memory-leak", "--mb-per-s", str(mb_per_s))
    # at least half the asked growth over the window (scrape timing and allocator noise aside)
    until(current, growth, lambda v: v > mb_per_s * MB * window / 2, "worker RSS grows")
    fault(sandbox, "clear", "worker-memory-leak")
    until(current, growth, lambda v: v < mb_per_s * MB * window / 2, "RSS growth stops once cleared")


def test_api_latency(sandbox):
    current = sandbox["status"]
    ms = 300
    p50 = 'histogram_quantile(0.5, sum by (le) (rate(http_server_request_duration_seconds_bucket{job="api"}[3s])))'
    until(current, p50, lambda v: v < ms / 1000, "API median below the fault's delay before it")
    fault(sandbox, "api-latency", "--ms", str(ms))
    until(current, p50, lambda v: v >= ms / 1000, "API median at least the fault's delay")
    fault(sandbox, "clear", "api-latency")
    until(current, p50, lambda v: v < ms / 1000, "API median back below the delay once cleared")


def test_jobs_stalled(sandbox):
    current = sandbox["status"]
    completed = 'sum(increase(emp_jobs_completed_total{status="completed"}[3s]))'
    until(current, completed, lambda v: v > 0, "jobs complete before the fault")
    fault(sandbox, "jobs-stalled")
    until(current, completed, lambda v: v == 0, "no job completes while stalled")
    until(current, "delta(emp_jobs_pending[3s])", lambda v: v > 0, "the pending queue grows")
    fault(sandbox, "clear")
    until(current, completed, lambda v: v > 0, "jobs complete again once cleared")


def test_redis_drop(sandbox):
    current = sandbox["status"]
    failures = "sum(increase(emp_redis_connection_failures_total[3s]))"
    until(current, failures, lambda v: v == 0, "no Redis failure before the fault")
    fault(sandbox, "redis-drop")
    until(current, failures, lambda v: v > 0, "Redis connection failures under the fault")
    fault(sandbox, "clear", "redis-drop")
    until(current, failures, lambda v: v == 0, "Redis failures stop once cleared")


def test_telemetry_export(sandbox):
    current = sandbox["status"]
    failures = 'sum(increase(emp_otel_export_failures_total{job="api"}[4s]))'
    spans = 'sum(increase(dash0_spans{service_name="emp-api"}[4s]))'  # what reaches the Dash0 stand-in
    until(current, spans, lambda v: v > 0, "API spans reach Dash0 before the fault")
    fault(sandbox, "telemetry-export")
    until(current, failures, lambda v: v > 0, "export failures under the fault")
    until(current, spans, lambda v: v == 0, "no API span reaches Dash0 under the fault")
    fault(sandbox, "clear")
    until(current, failures, lambda v: v == 0, "export failures stop once cleared")
    until(current, spans, lambda v: v > 0, "API spans reach Dash0 again")


def test_restart_and_deploy_clear_the_faults_of_that_service(sandbox):
    fault(sandbox, "api-latency", "--ms", "50")
    fault(sandbox, "jobs-stalled")
    assert set(fault(sandbox, "list")["faults"]) == {"api-latency", "jobs-stalled"}
    cli(sandbox["state_dir"], "deploy", "api", "1.1.0")  # a rollback is a deploy of another release
    assert set(fault(sandbox, "list")["faults"]) == {"jobs-stalled"}
    cli(sandbox["state_dir"], "restart", "worker")
    assert fault(sandbox, "list")["faults"] == {}


@pytest.mark.parametrize("args, message", [
    (["webhook-failures", "--rate", "1.5"], "--rate 1.5: must be > 0 and <= 1"),
    (["api-latency", "--rate", "0.5"], "--rate does not apply to fault api-latency"),
    (["clear", "nonsense"], "unknown fault 'nonsense'"),
    (["list", "--ms", "3"], "fault list takes no --ms"),
])
def test_bad_fault_requests_are_refused(sandbox, args, message):
    proc = cli(sandbox["state_dir"], "fault", *args, check=False)
    assert proc.returncode == 1 and message in proc.stderr


def test_down_leaves_no_prometheus_or_traffic_and_clears_faults(sandbox):
    fault(sandbox, "redis-drop")
    records = recorded_processes(sandbox["state_dir"])
    cli(sandbox["state_dir"], "down")
    for name in ("prometheus", "traffic"):
        assert not alive(records[name]["pid"]) and group_members(records[name]["pgid"]) == [], name
    assert fault(sandbox, "list")["faults"] == {}
