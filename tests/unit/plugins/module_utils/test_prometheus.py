"""The Prometheus API client: durations, reducers, the API's envelope, and every failure class.

Answers come from real HTTP servers on loopback (tests/misbehaving_http.py) that send the API's
envelopes as Prometheus writes them; the real engine is exercised in
tests/integration/test_metric_query_playbooks.py.
"""
from __future__ import annotations

import json
import math
import threading
import time
from urllib.parse import parse_qs

import pytest

from ansible_collections.emp.deploy.plugins.module_utils import _prometheus as prom
from misbehaving_http import MisbehavingServer, answer, drip_headers
from servers import LOAD_MARGIN_S, free_port

TOKEN = "tok-5e1f0a9d7c3b"  # noqa: S105  # a made-up credential the messages must never show


# --- parse_duration --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("5m", 300), ("24h", 86400), ("1h30m", 5400), ("500ms", 0.5), ("1d", 86400),
    ("1w", 604800), ("1.5h", 5400), (300, 300), (2.5, 2.5), ("300", 300), (" 10m ", 600),
])
def test_durations_in_seconds_or_prometheus_units(text, seconds):
    assert prom.parse_duration(text) == seconds


@pytest.mark.parametrize("text, words", [
    ("", "invalid duration"), ("5 minutes", "invalid duration"), ("m5", "invalid duration"),
    ("5mm", "invalid duration"), ("-5m", "invalid duration"), (0, "greater than 0"), ("0s", "greater than 0"),
    (-1, "greater than 0"), (True, "not bool"), (None, "not NoneType"), ([5], "not list"),
    (float("inf"), "greater than 0"),
])
def test_bad_durations_are_refused_with_a_sentence(text, words):
    with pytest.raises(ValueError, match=words):
        prom.parse_duration(text)


# --- reduce_values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("how, values, expected", [
    ("last", [1, 5, 3], 3), ("min", [4, 2, 9], 2), ("max", [4, 2, 9], 9), ("avg", [1, 2, 6], 3),
    ("sum", [1, 2, 6], 9), ("increase", [10, 12, 15], 5),
    ("increase", [10, 12, 3, 5], 7),  # 10->12 (+2), reset to 3 (+3), 3->5 (+2)
    ("max", [1, "+Inf"], math.inf), ("min", ["-Inf", 3], -math.inf), ("sum", [1, "+Inf"], math.inf),
    ("last", ["NaN", 2.0], 2.0),
])
def test_reducers(how, values, expected):
    assert prom.reduce_values(values, how) == expected


@pytest.mark.parametrize("how", ["min", "max", "avg", "sum", "increase"])
def test_a_nan_in_the_range_makes_the_figure_nan_never_a_number(how):
    assert math.isnan(prom.reduce_values([1.0, "NaN", 3.0], how))


def test_opposite_infinities_sum_to_nan_and_an_infinite_counter_has_no_increase():
    assert math.isnan(prom.reduce_values(["+Inf", "-Inf"], "sum"))
    assert math.isnan(prom.reduce_values([1, "+Inf"], "increase"))


def test_nothing_to_reduce_is_none_and_an_unknown_reducer_is_refused():
    assert prom.reduce_values([], "max") is None
    with pytest.raises(ValueError, match="reduce must be one of last, min, max, avg, sum, increase, not 'median'"):
        prom.reduce_values([1], "median")


# --- the API's envelope ----------------------------------------------------------------------------

def envelope(result_type: str, result, warnings=None) -> dict:
    body = {"status": "success", "data": {"resultType": result_type, "result": result}}
    if warnings:
        body["warnings"] = warnings
    return body


def test_an_instant_vector_with_one_series_is_its_value():
    result = prom.build_result(envelope("vector", [{"metric": {"job": "api"}, "value": [1700000000.5, "0.25"]}]))
    assert (result.result_type, result.empty, result.value, result.special) == ("vector", False, 0.25, None)
    assert result.series == [{"labels": {"job": "api"}, "values": [[1700000000.5, 0.25]]}]


def test_no_series_is_empty_never_zero():
    result = prom.build_result(envelope("vector", []))
    assert result.empty and result.value is None and result.special is None and result.series == []


@pytest.mark.parametrize("wire, special", [("NaN", "NaN"), ("+Inf", "+Inf"), ("-Inf", "-Inf")])
def test_values_that_are_not_finite_are_named(wire, special):
    result = prom.build_result(envelope("vector", [{"metric": {}, "value": [1.0, wire]}]))
    assert result.value is None and result.special == special and not result.empty
    assert result.series[0]["values"] == [[1.0, special]]


def test_a_scalar_is_one_series_without_labels():
    result = prom.build_result(envelope("scalar", [1700000000, "42"]))
    assert result.value == 42.0 and result.series == [{"labels": {}, "values": [[1700000000.0, 42.0]]}]
    nan = prom.build_result(envelope("scalar", [1700000000, "NaN"]))
    assert nan.value is None and nan.special == "NaN"


def test_a_string_result_keeps_its_text_and_has_no_value():
    result = prom.build_result(envelope("string", [1.0, "hello"]))
    assert result.value is None and result.series[0]["values"] == [[1.0, "hello"]]
    assert "string" in result.no_value_reason


def test_a_range_is_reduced_and_without_reduce_has_no_value():
    matrix = [{"metric": {"job": "worker"}, "values": [[1.0, "10"], [2.0, "14"], [3.0, "13"]]}]
    assert prom.build_result(envelope("matrix", matrix), "max").value == 14.0
    # 10->14 is +4; 14->13 is a counter reset, so +13
    assert prom.build_result(envelope("matrix", matrix), "increase").value == 17.0
    plain = prom.build_result(envelope("matrix", matrix))
    assert plain.value is None and "set reduce" in plain.no_value_reason and plain.samples == 3


def test_a_range_whose_figure_is_not_finite_is_named():
    matrix = [{"metric": {}, "values": [[1.0, "1"], [2.0, "NaN"]]}]
    result = prom.build_result(envelope("matrix", matrix), "avg")
    assert result.value is None and result.special == "NaN"


def test_several_series_have_no_single_value_and_say_why():
    vector = [{"metric": {"job": "a"}, "value": [1.0, "1"]}, {"metric": {"job": "b"}, "value": [1.0, "2"]}]
    result = prom.build_result(envelope("vector", vector, warnings=["partial"]))
    assert result.value is None and len(result.series) == 2 and "2 series came back" in result.no_value_reason
    assert result.warnings == ["partial"]


@pytest.mark.parametrize("body", [
    {"status": "success"},
    {"status": "success", "data": {"resultType": "vector", "result": {"a": 1}}},
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "abc"]}]}},
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.0]}]}},
    {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}}]}},
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "histogram": [1, {}]}]}},
    {"status": "success", "data": {"resultType": "table", "result": []}},
    {"status": "success", "data": {"resultType": "scalar", "result": [1.0]}},
])
def test_other_shapes_are_refused(body):
    with pytest.raises((ValueError, TypeError, KeyError)):
        prom.build_result(body)


def test_range_checks():
    prom.check_range(0, 3600, 60)
    for start, end, step, words in [(10, 5, 1, "must be after start"), (0, 10, 0, "step must be greater than 0"),
                                    (0, 86400 * 30, 1, "use a step of at least 236 s"),
                                    (0, float("nan"), 1, "end must be a number")]:
        with pytest.raises(ValueError, match=words):
            prom.check_range(start, end, step)
    assert prom.default_step(0, 60) == 1.0 and prom.default_step(0, 86400) == 346.0


# --- the client against real HTTP servers -----------------------------------------------------------

class Recorder:
    """A route that records each request (headers, form) and answers a fixed JSON body."""

    def __init__(self, status: int, body: dict | bytes, content_type: str = "application/json") -> None:
        self.requests: list[tuple[dict, dict]] = []
        self.payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.status = status
        self.content_type = content_type

    def __call__(self, handler, stop: threading.Event) -> None:
        form = parse_qs(handler.request_body.decode())
        self.requests.append(({k.lower(): v for k, v in handler.headers.items()}, form))
        answer(self.status, self.content_type, self.payload)(handler, stop)


def serve(route: str, fault) -> MisbehavingServer:
    return MisbehavingServer([("POST", route, fault)])


def test_an_instant_query_is_a_form_post_with_the_credentials_and_the_dataset():
    recorder = Recorder(200, envelope("vector", [{"metric": {}, "value": [1.0, "3"]}]))
    with serve("/api/prometheus/api/v1/query", recorder) as server:
        client = prom.PromClient(server.url + "/api/prometheus/", bearer_token=TOKEN, dataset="prod",
                                 headers={"X-Scope-OrgID": "tenant-1"}, timeout=5)
        result = client.query("up", at=1700000000.25)
    assert result.value == 3.0
    headers, form = recorder.requests[0]
    assert headers["authorization"] == f"Bearer {TOKEN}" and headers["dash0-dataset"] == "prod"
    assert headers["x-scope-orgid"] == "tenant-1"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert form["query"] == ["up"] and form["time"] == ["1700000000.25"] and float(form["timeout"][0]) < 5


def test_a_range_query_sends_start_end_step_and_reduces():
    matrix = [{"metric": {}, "values": [[100.0, "1"], [160.0, "4"], [220.0, "2"]]}]
    recorder = Recorder(200, envelope("matrix", matrix))
    with serve("/api/v1/query_range", recorder) as server:
        result = prom.PromClient(server.url, timeout=5).query_range("x", start=100, end=220, step=60, reduce="max")
    assert result.value == 4.0 and result.reduce == "max"
    form = recorder.requests[0][1]
    assert (form["start"], form["end"], form["step"]) == (["100"], ["220"], ["60"])


def failure(server_url: str, timeout: float = 5.0, **kwargs) -> prom.PromError:
    client = prom.PromClient(server_url, bearer_token=TOKEN, timeout=timeout, **kwargs)
    with pytest.raises(prom.PromError) as caught:
        client.query("rate(x[5m]")
    assert TOKEN not in str(caught.value)
    return caught.value


@pytest.mark.parametrize("status", [400, 422])
def test_a_bad_query_is_named_with_the_apis_message_and_not_retryable(status):
    body = {"status": "error", "errorType": "bad_data", "error": "1:11: parse error: unclosed left parenthesis"}
    with serve("/api/v1/query", Recorder(status, body)) as server:
        error = failure(server.url)
    assert (error.kind, error.status, error.retryable, error.not_measured) == ("bad_query", status, False, False)
    assert str(error) == "bad PromQL: 1:11: parse error: unclosed left parenthesis"


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_unauthorized(status):
    with serve("/api/v1/query", Recorder(status, b"Unauthorized " + TOKEN.encode(), "text/plain")) as server:
        error = failure(server.url)
    assert error.kind == "unauthorized" and not error.retryable and f"HTTP {status}" in str(error)


@pytest.mark.parametrize("status, body, kind, words", [
    (503, {"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"},
     "timeout", "gave up on the query (timeout: query timed out"),
    (503, {"status": "error", "errorType": "unavailable", "error": "not ready"}, "unavailable", "unavailable"),
    (502, b"<html>Bad Gateway</html>", "unavailable", "HTTP 502"),
    (500, b"internal error near " + TOKEN.encode(), "unavailable", "internal error near ********"),
    (200, b"<html>login page</html>", "bad_response", "did not answer POST /api/v1/query with the API's JSON"),
    (200, {"status": "success", "data": {"resultType": "nope", "result": []}}, "bad_response", "unknown resultType"),
    (404, b"404 page not found", "bad_response", "is the url the API root"),
])
def test_answers_that_are_not_a_figure_are_classified(status, body, kind, words):
    content_type = "application/json" if isinstance(body, dict) else "text/html"
    with serve("/api/v1/query", Recorder(status, body, content_type)) as server:
        error = failure(server.url)
    assert error.kind == kind and words in str(error)
    assert error.retryable and error.not_measured


def test_a_refused_connection_is_unavailable():
    error = failure(f"http://127.0.0.1:{free_port()}")
    assert error.kind == "unavailable" and error.not_measured and "cannot reach the Prometheus API" in str(error)


def test_a_stalled_listener_is_a_timeout_at_the_deadline():
    with serve("/api/v1/query", drip_headers()) as server:
        started = time.monotonic()
        error = failure(server.url, timeout=1.5)
        took = time.monotonic() - started
    assert error.kind == "timeout" and "within 1.5 s" in str(error)
    assert took < 1.5 + LOAD_MARGIN_S


def test_header_values_never_appear_in_messages():
    with serve("/api/v1/query", Recorder(500, b"echo secret-api-key-123", "text/plain")) as server:
        error = failure(server.url, headers={"X-Api-Key": "secret-api-key-123"})
    assert "secret-api-key-123" not in str(error)


@pytest.mark.parametrize("kwargs, words", [
    ({"url": "ftp://host/x"}, "not http:// or https://"), ({"url": ""}, "scheme is none"),
    ({"url": "http://127.0.0.1:9090", "timeout": 0}, "timeout must be"),
])
def test_bad_settings_are_refused_before_any_request(kwargs, words):
    with pytest.raises(ValueError, match=words):
        prom.PromClient(**kwargs)


def test_bad_query_arguments_are_refused_before_any_request():
    client = prom.PromClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ValueError, match="query must be a non-empty PromQL string"):
        client.query("  ")
    with pytest.raises(ValueError, match="reduce must be one of"):
        client.query("up", reduce="median")
    with pytest.raises(ValueError, match="must be after start"):
        client.query_range("up", start=10, end=5, step=1)


def test_messages_name_the_whole_request_path():
    with serve("/api/prometheus/api/v1/query", Recorder(404, b"no such dataset", "text/plain")) as server:
        error = failure(server.url + "/api/prometheus")
    assert "HTTP 404 for POST /api/prometheus/api/v1/query: is the url the API root" in str(error)
