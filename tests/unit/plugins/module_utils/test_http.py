"""The shared HTTP helper against real misbehaving servers on loopback: every exchange ends by its
deadline, and every broken answer becomes an HttpFailure naming host:port, never a traceback."""
from __future__ import annotations

import gzip
import json
import time

import pytest

from ansible_collections.emp.deploy.plugins.module_utils import _http
from misbehaving_http import (
    MisbehavingServer,
    answer,
    bad_gzip,
    drip,
    drip_headers,
    not_http,
    truncated,
    truncated_chunked,
)
from servers import LOAD_MARGIN_S, free_port

MARGIN_S = LOAD_MARGIN_S  # a drip would take minutes


@pytest.fixture
def client() -> _http.HttpClient:
    return _http.HttpClient(user_agent="emp.deploy.test")


def failure_of(client: _http.HttpClient, url: str, seconds: float = 5.0, **kwargs) -> tuple[_http.HttpFailure, float]:
    started = time.monotonic()
    with pytest.raises(_http.HttpFailure) as caught:
        client.request("GET", url, deadline=seconds, **kwargs)
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize("fault, answered", [(drip(), True), (drip_headers(), False)])
def test_a_dripping_answer_ends_at_the_deadline(client, fault, answered):
    with MisbehavingServer([("GET", "/slow", fault)]) as server:
        failure, took = failure_of(client, server.url + "/slow", seconds=2.0)
    assert failure.kind == _http.TIMEOUT and took < 2.0 + MARGIN_S
    assert str(failure).startswith(f"the service at {server.where} did not answer GET /slow within 2.0 s")
    assert ("body bytes arrived in time" in str(failure)) is answered


def test_a_shared_deadline_bounds_the_sum_of_requests(client):
    deadline = _http.Deadline(2.0)
    with MisbehavingServer([("GET", "/slow", drip())]) as server:
        started = time.monotonic()
        for dummy in range(3):
            with pytest.raises(_http.HttpFailure):
                client.request("GET", server.url + "/slow", deadline=deadline)
    assert time.monotonic() - started < 2.0 + 3 * _http.MIN_REQUEST_S + MARGIN_S


@pytest.mark.parametrize("fault, kind, words", [
    (truncated(), _http.TRUNCATED, "sent a truncated body to GET /x (13 of 100 bytes, then the connection closed)"),
    (truncated_chunked(), _http.TRUNCATED, "sent a truncated body to GET /x"),
    (bad_gzip(), _http.BAD_ENCODING, "sent a broken gzip body to GET /x"),
    (not_http(), _http.NOT_HTTP, "did not answer GET /x with HTTP"),
])
def test_broken_answers_are_named(client, fault, kind, words):
    with MisbehavingServer([("GET", "/x", fault)]) as server:
        failure, _took = failure_of(client, server.url + "/x")
    assert failure.kind == kind
    assert str(failure).startswith(f"the service at {server.where} {words}")


@pytest.mark.parametrize("url, words", [
    ("ftp://127.0.0.1:21/file", "the URL scheme is 'ftp', not http:// or https://"),
    ("webhook.internal:3332/health", "not http:// or https://"),
    ("http://127.0.0.1:port/", "the URL has an invalid port"),
])
def test_urls_that_are_not_http_are_refused_before_connecting(client, url, words):
    failure, _took = failure_of(client, url)
    assert failure.kind == _http.BAD_URL and words in str(failure)


def test_refused_connection(client):
    port = free_port()
    failure, _took = failure_of(client, f"http://127.0.0.1:{port}/health")
    assert failure.kind == _http.UNREACHABLE
    assert str(failure) == f"cannot reach the service at 127.0.0.1:{port} (GET /health): [Errno 111] Connection refused"


def test_error_statuses_are_answers_and_gzip_bodies_are_decoded(client):
    packed = gzip.compress(json.dumps({"status": "ok"}).encode())

    def gzipped(handler, stop):
        handler.send_response(200)
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(packed)))
        handler.end_headers()
        handler.wfile.write(packed)

    with MisbehavingServer([("GET", "/down", (503, "text/html", b"<h1>down</h1>")), ("GET", "/gz", gzipped)]) as server:
        down = client.request("GET", server.url + "/down", deadline=5)
        packed_answer = client.request("GET", server.url + "/gz", deadline=5)
        limited = client.request("GET", server.url + "/down", deadline=5, body_limit=4)
    assert (down.status, down.ok, down.content_type, down.body) == (503, False, "text/html", b"<h1>down</h1>")
    assert json.loads(packed_answer.body) == {"status": "ok"} and packed_answer.ok
    assert limited.body == b"<h1>"


def test_messages_use_brackets_for_ipv6_and_never_credentials():
    assert _http.hostport("http://[::1]:4318/v1/traces") == "[::1]:4318"
    assert _http.where("https://user:pw@example.com/api?token=x") == "example.com:443/api"
    failure = _http.HttpFailure(_http.UNREACHABLE, "[::1]:1", "GET /", "refused")
    assert str(failure) == "cannot reach the service at [::1]:1 (GET /): refused"
    assert failure.sentence("the EMP API") == "cannot reach the EMP API at [::1]:1 (GET /): refused"


def test_a_deadline_never_outlives_its_parent():
    parent = _http.Deadline(1.0)
    assert parent.within(10).remaining() <= 1.0
    assert _http.as_deadline(3).total == 3.0 and _http.as_deadline(parent) is parent


def test_well_formed_answers_still_pass(client):
    with MisbehavingServer([("GET", "/ok", answer(200, "application/json", b'{"a": 1}'))]) as server:
        got = client.request("GET", server.url + "/ok", deadline=5)
    assert got.status == 200 and json.loads(got.body) == {"a": 1} and got.elapsed_s < 5


def test_head_answers_have_no_body_whatever_content_length_says(client):
    def head_only(handler, stop):
        handler.send_response(200)
        handler.send_header("Content-Length", "512")
        handler.end_headers()

    with MisbehavingServer([("HEAD", "/h", head_only)]) as server:
        got = client.request("HEAD", server.url + "/h", deadline=5)
    assert got.status == 200 and got.body == b""
