"""metric_query's option handling and result shape (the real engine: tests/integration/test_metric_query_playbooks.py)."""
from __future__ import annotations

import json

import pytest
from doc_spec_check import assert_documentation_matches

from ansible_collections.emp.deploy.plugins.doc_fragments.prometheus import ModuleDocFragment
from ansible_collections.emp.deploy.plugins.module_utils._prometheus import PROM_CONNECTION_ARGSPEC, PromError
from ansible_collections.emp.deploy.plugins.modules import metric_query as module
from misbehaving_http import MisbehavingServer
from servers import free_port

NOW = 1_800_000_000.0


def params(**given) -> dict:
    base = {name: spec.get("default") for name, spec in module.ARGUMENT_SPEC.items()}
    base.update({"url": "http://127.0.0.1:9090", "query": "up"})
    base.update(given)
    return base


def test_the_documentation_matches_the_argument_spec():
    assert_documentation_matches(module.DOCUMENTATION, ModuleDocFragment.DOCUMENTATION, PROM_CONNECTION_ARGSPEC,
                                 module.ARGUMENT_SPEC)


def test_an_instant_query_has_no_window():
    assert module.plan_window(params(), NOW) is None


def test_a_range_ends_now_with_a_default_step():
    window = module.plan_window(params(range="24h"), NOW)
    assert window == {"start": NOW - 86400, "end": NOW, "step": 346.0}


def test_start_and_end_as_epoch_or_rfc3339():
    window = module.plan_window(params(start="2027-01-15T08:00:00Z", end="2027-01-15T10:00:00+01:00", step="1m"), NOW)
    assert window == {"start": NOW, "end": NOW + 3600, "step": 60.0}
    assert module.parse_time("start", "2027-01-15T08:00:00Z") == 1800000000.0
    assert module.parse_time("end", "2027-01-15T09:00:00+01:00") == 1800000000.0
    assert module.parse_time("start", 1234.5) == 1234.5 and module.parse_time("start", "1234.5") == 1234.5
    assert module.plan_window(params(start=NOW - 600), NOW) == {"start": NOW - 600, "end": NOW, "step": 3.0}


@pytest.mark.parametrize("given, words", [
    ({"step": "1m"}, "step applies to a range query only"),
    ({"range": "soon"}, "range: invalid duration 'soon'"),
    ({"range": True}, "range: a duration must be"),
    ({"range": "1h", "step": 0}, "step: a duration must be greater than 0"),
    ({"start": NOW, "end": NOW - 1}, "must be after start"),
    ({"start": [1]}, "start must be seconds since the epoch or an RFC 3339 time, not list"),
    ({"start": -5}, "start must be a time after the epoch"),
    ({"start": "2027-01-15T08:00:00"}, "has no time zone"),
    ({"range": "400d", "step": "1m"}, "Prometheus answers at most 11000"),
])
def test_windows_that_cannot_be_asked_for_are_refused(given, words):
    with pytest.raises(module.OptionError, match=words.replace("(", r"\(")):
        module.plan_window(params(**given), NOW)


@pytest.mark.parametrize("seconds, text", [(86400, "1d"), (7200, "2h"), (90, "90s"), (300, "5m"), (0.5, "0.5s")])
def test_spans_are_written_short(seconds, text):
    assert module.span_text(seconds) == text


def test_option_problems_fail_before_any_request():
    ok, result = module.run_query(params(query="", timeout=5.0), NOW)
    assert not ok and result["msg"] == "query must be a PromQL expression, not an empty string"
    ok, result = module.run_query(params(url="http://127.0.0.1:port/"), NOW)
    assert not ok and "invalid port" in result["msg"]


def test_not_measured_failures_carry_no_measurement_and_refusals_carry_their_kind():
    not_measured = module.failure(PromError("timeout", "the Prometheus API at h:1 did not answer"), "h:1/")
    assert set(not_measured) == {"msg", "healthy", "error", "target"}
    refused = module.failure(PromError("bad_query", "bad PromQL: x", status=400), "h:1/")
    assert refused["error_kind"] == "bad_query" and refused["status"] == 400 and refused["healthy"] is False


def test_a_served_answer_becomes_the_modules_result():
    body = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"job": "w"}, "values": [[1.0, "3"], [2.0, "8"]]}]}, "warnings": ["partial data"]}
    with MisbehavingServer([("POST", "/api/v1/query_range", (200, "application/json", json.dumps(body).encode()))]) as server:
        ok, result = module.run_query(params(url=server.url, range="2s", step=1, reduce="max"), NOW)
    assert ok and result["value"] == 8.0 and result["healthy"] is True and result["query_warnings"] == ["partial data"]
    assert result["msg"] == f"range 2s step 1s reduced by max at {server.where}/: value 8 (1 series, 2 samples)"


def test_a_refused_connection_is_not_measured():
    ok, result = module.run_query(params(url=f"http://127.0.0.1:{free_port()}", timeout=2.0), NOW)
    assert not ok and "cannot reach the Prometheus API" in result["msg"] and "error_kind" not in result
