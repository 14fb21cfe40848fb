"""Unit tests of emp.deploy.webhook_probe: its receiver, signature checks, analysis and input checks.

Signatures are made by independent implementations: the standardwebhooks library for Standard
Webhooks, Python's hmac for the EMP and GitHub schemes. Deliveries go through real sockets to the
probe's real receiver.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from doc_spec_check import assert_documentation_matches
from servers import LOAD_MARGIN_S
import requests
from standardwebhooks import Webhook as StandardWebhook

from ansible_collections.emp.deploy.plugins.module_utils import _webhook_signatures as signatures
from ansible_collections.emp.deploy.plugins.module_utils._webhook_analysis import (
    Analysis, Expectation, fulfilled, payload_errors,
)
from ansible_collections.emp.deploy.plugins.module_utils._webhook_client import JsonClient, ServiceError
from ansible_collections.emp.deploy.plugins.module_utils._webhook_receiver import (
    Delivery, ProbeReceiver, ReceiverError,
)
from ansible_collections.emp.deploy.plugins.modules import webhook_probe as module

WEBHOOK_ID = "wh_1_probe"
RETRY = {"max_attempts": 3, "initial_delay_ms": 200, "backoff_multiplier": 2.0, "max_delay_ms": 2000}


def emp_body(event_id: str, event_type: str = "complete_job", job_id: str = "job-1") -> bytes:
    return json.dumps({"event_type": event_type, "event_id": event_id, "timestamp": int(time.time() * 1000),
                       "webhook_id": WEBHOOK_ID, "data": {"job_id": job_id, "workflow_id": None}}).encode()


def emp_headers(body: bytes, secret: str | None) -> dict:
    parsed = json.loads(body)
    headers = {"Content-Type": "application/json", "User-Agent": "EMP-Job-Queue-Webhook/1.0",
               "X-Webhook-Event": parsed["event_type"], "X-Webhook-ID": parsed["webhook_id"],
               "X-Event-ID": parsed["event_id"]}
    if secret is not None:
        headers["X-Webhook-Signature"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return headers


@pytest.fixture
def http():
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


@pytest.fixture
def receiver():
    started: list[ProbeReceiver] = []

    def start(fail_first: int = 0, path: str = "/emp-webhook-probe/test") -> ProbeReceiver:
        started.append(ProbeReceiver("127.0.0.1", 0, path, fail_first).start())
        return started[-1]
    yield start
    for item in started:
        item.stop()


def params(**overrides) -> dict:
    base = {key: spec.get("default") for key, spec in module.ARGUMENT_SPEC.items()}
    base["retry_config"] = dict(RETRY)
    base["service_url"] = "http://127.0.0.1:1"
    base.update(overrides)
    return base


# ---------------------------------------------------------------------------- receiver + signatures
def test_emp_signatures_made_with_python_hmac(receiver, http):
    probe = receiver()
    secret = signatures.new_secret("emp")
    good = emp_body("evt-good")
    http.post(probe.url, data=good, headers=emp_headers(good, secret), timeout=5)
    forged = emp_body("evt-forged")
    http.post(probe.url, data=forged, headers=emp_headers(forged, "not-the-secret"), timeout=5)
    unsigned = emp_body("evt-unsigned")
    http.post(probe.url, data=unsigned, headers=emp_headers(unsigned, None), timeout=5)
    deliveries = probe.snapshot()
    figures = Analysis(deliveries, Expectation("none", ["complete_job"], 3), WEBHOOK_ID, "emp", secret, 0,
                       RETRY).signature_figures()
    assert (figures["checked"], figures["valid"], figures["invalid"], figures["missing"]) == (3, 1, 1, 1)
    assert [d.event_id for d in deliveries] == ["evt-good", "evt-forged", "evt-unsigned"]


def test_github_signatures_made_with_python_hmac(receiver, http):
    probe = receiver()
    body = emp_body("evt-gh")
    header = "sha256=" + hmac.new(b"gh-secret", body, hashlib.sha256).hexdigest()
    http.post(probe.url, data=body, headers={**emp_headers(body, None), "X-Hub-Signature-256": header}, timeout=5)
    delivery = probe.snapshot()[0]
    assert signatures.verify("github", "gh-secret", delivery.headers, delivery.body)[0] == "valid"
    assert signatures.verify("github", "other", delivery.headers, delivery.body)[0] == "invalid"
    assert signatures.verify("emp", "gh-secret", delivery.headers, delivery.body)[0] == "missing"


def test_standard_webhooks_signatures_made_by_the_library(receiver, http):
    probe = receiver()
    secret = signatures.new_secret("standard-webhooks")  # our generated secret must suit the library
    signer = StandardWebhook(secret)
    now = datetime.now(tz=timezone.utc)

    def send(msg_id: str, body: bytes, stamp: datetime, tamper: bool = False) -> None:
        signature = signer.sign(msg_id, stamp, body.decode())
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())),
                   "webhook-signature": "v1,bm90LWl0 " + signature, "Content-Type": "application/json"}
        http.post(probe.url, data=body + (b" " if tamper else b""), headers=headers, timeout=5)

    send("msg_good", b'{"event_type":"complete_job"}', now)
    send("msg_tampered", b'{"event_type":"complete_job"}', now, tamper=True)
    send("msg_old", b'{"event_type":"complete_job"}', now - timedelta(minutes=10))
    http.post(probe.url, data=b"{}", headers={"Content-Type": "application/json"}, timeout=5)
    outcomes = [signatures.verify("standard-webhooks", secret, d.headers, d.body) for d in probe.snapshot()]
    assert [o[0] for o in outcomes] == ["valid", "invalid", "invalid", "missing"]
    assert "away from now" in outcomes[2][1]
    # The event id of a Standard Webhooks delivery is its webhook-id header.
    assert [d.event_id for d in probe.snapshot()][:3] == ["msg_good", "msg_tampered", "msg_old"]
    # And the library agrees with our verdict on the good one.
    good = probe.snapshot()[0]
    assert signer.verify(good.body, good.headers) == {"event_type": "complete_job"}


def test_fail_first_refuses_the_first_attempts_of_each_event(receiver, http):
    probe = receiver(fail_first=2)
    statuses = []
    for event_id in ("a", "a", "b", "a", "b", "b", "a"):
        body = emp_body(event_id)
        statuses.append(http.post(probe.url, data=body, headers=emp_headers(body, "s"), timeout=5).status_code)
    assert statuses == [500, 500, 500, 200, 500, 200, 200]
    assert [d.attempt for d in probe.snapshot()] == [1, 2, 1, 3, 2, 3, 4]


def test_stray_requests_are_refused_and_counted(receiver, http):
    probe = receiver()
    assert http.post(probe.url.replace("/emp-webhook-probe/test", "/other"), data=b"{}", timeout=5).status_code == 404
    assert http.get(probe.url, timeout=5).status_code == 404
    assert probe.stray_requests == 2 and probe.snapshot() == []


def test_taken_port_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ReceiverError, match=r"receiver port 127\.0\.0\.1:%d is taken" % port):
            ProbeReceiver("127.0.0.1", port, "/x").start()


def test_stop_frees_the_port(receiver):
    probe = receiver()
    port = probe.port
    assert probe.stop() is True
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # would raise if something still listened


def test_wait_returns_as_soon_as_done(receiver, http):
    probe = receiver()
    expectation = Expectation("test", ["complete_job"], 1)
    expectation.trigger_times.append(time.monotonic())
    threading.Timer(0.2, lambda: http.post(probe.url, data=emp_body("e1"), headers=emp_headers(emp_body("e1"), "s"),
                                           timeout=5)).start()
    started = time.monotonic()
    assert probe.wait(lambda d: fulfilled(d, expectation) >= 1, time.monotonic() + 30)
    assert time.monotonic() - started < LOAD_MARGIN_S  # at the POST, not at the deadline
    assert probe.wait(lambda d: fulfilled(d, expectation) >= 2, time.monotonic() + 0.3) is False


# ---------------------------------------------------------------------------- secrets and input
@pytest.mark.parametrize("scheme, secret, message", [
    ("emp", "", "signature_scheme=emp needs a secret, but secret is empty"),
    ("github", None, "signature_scheme=github needs a secret, but secret is empty"),
    ("standard-webhooks", "plain-text", "needs a secret of the form whsec_<base64 key>"),
    ("standard-webhooks", "whsec_", "needs a secret of the form whsec_<base64 key>"),
])
def test_schemes_needing_a_secret(scheme, secret, message):
    assert message in signatures.secret_problem(scheme, secret)


def test_generated_secrets_suit_their_scheme():
    for scheme in ("emp", "github", "standard-webhooks"):
        assert signatures.secret_problem(scheme, signatures.new_secret(scheme)) is None
    assert signatures.secret_problem("none", "") is None
    assert signatures.new_secret("emp") != signatures.new_secret("emp")


@pytest.mark.parametrize("overrides, message", [
    ({"count": 0}, "count must be at least 1, got 0"),
    ({"fail_first": 3}, "fail_first=3 needs retry_config.max_attempts above it (it is 3)"),
    ({"require_signature": True, "signature_scheme": "none"}, "require_signature=true needs a signature_scheme"),
    ({"use_test_receiver": True, "fail_first": 1}, "fail_first needs the probe's own receiver"),
    ({"use_test_receiver": True, "count": 60, "events": ["complete_job", "job_failed"]},
     "use_test_receiver keeps at most 100 requests; 120 deliveries are expected"),
    ({"trigger": "job", "api_url": None}, "trigger=job needs api_url"),
    ({"trigger": "job", "api_url": "http://x", "events": ["worker_status"]}, "trigger=job needs events to include"),
    ({"receiver_host": "0.0.0.0"}, "receiver_host '0.0.0.0' is not an address the service can reach"),
    ({"min_success_rate": 1.5}, "min_success_rate must be between 0 and 1"),
    ({"receiver_port": 70000}, "receiver_port must be between 0 and 65535"),
    ({"use_test_receiver": True, "public_url": "http://tunnel"}, "use_test_receiver and public_url exclude each other"),
    ({"service_url": "ftp://127.0.0.1/"}, "service_url 'ftp://127.0.0.1/' cannot be used: the URL scheme is 'ftp'"),
    ({"api_url": "127.0.0.1:3331"}, "api_url '127.0.0.1:3331' cannot be used"),
])
def test_bad_input_is_named(overrides, message):
    problems = module.bad_input_problems(params(**overrides), "secret")
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize("overrides", [
    {},
    {"use_test_receiver": False, "public_url": "https://7f3a.ngrok-free.app"},
    {"receiver_host": "0.0.0.0", "public_url": "https://7f3a.ngrok-free.app"},
    {"trigger": "job", "api_url": "http://api.internal:3331"},
    {"use_test_receiver": True, "public_url": None},
])
def test_good_input_has_no_problems(overrides):
    assert module.bad_input_problems(params(**overrides), "secret") == []


def test_roundtrip_mismatches_never_echo_the_secret():
    sent = {"url": "http://a/x", "events": ["complete_job"], "retry_config": RETRY, "filters": {"job_types": ["m"]}}
    got = {"url": "http://a/y", "events": ["complete_job"], "active": True,
           "retry_config": {**RETRY, "max_attempts": 5}, "filters": {"job_types": ["m"]}, "secret": "their-secret"}
    mismatches = module.roundtrip_mismatches(sent, got, "our-secret")
    assert len(mismatches) == 3
    assert not any("our-secret" in m or "their-secret" in m for m in mismatches)
    assert module.roundtrip_mismatches(sent, {**got, "url": "http://a/x", "retry_config": RETRY,
                                              "secret": "****"}, "our-secret") == []


# ---------------------------------------------------------------------------- analysis
def delivery(event_id: str, arrived: float, ok: bool = True, attempt: int = 1, body: bytes | None = None,
             headers: dict | None = None) -> Delivery:
    body = body if body is not None else emp_body(event_id)
    raw_headers = headers if headers is not None else emp_headers(body, "s")
    return Delivery(arrived, time.time(), "/p", {k.lower(): v for k, v in raw_headers.items()}, body, event_id,
                    attempt, 200 if ok else 500)


def test_payload_validation_names_each_fault():
    good = delivery("e1", 0.0)
    assert payload_errors(good, WEBHOOK_ID, ["complete_job"]) == []
    body = json.dumps({"event_type": "job_failed", "event_id": "e2", "webhook_id": "wh_other", "data": []}).encode()
    bad = delivery("e2", 0.0, body=body, headers={"User-Agent": "curl", "X-Event-ID": "e3"})
    errors = payload_errors(bad, WEBHOOK_ID, ["complete_job"])
    assert "missing field(s) timestamp" in errors
    assert any("event_type 'job_failed' is not one of the subscribed events" in e for e in errors)
    assert any("webhook_id 'wh_other' is not the probe webhook" in e for e in errors)
    assert "data is not an object" in errors
    assert any(e.startswith("User-Agent 'curl'") for e in errors)
    assert any(e.startswith("x-event-id header 'e3' differs") for e in errors)
    assert payload_errors(delivery("e4", 0.0, body=b"<html>", headers={}), WEBHOOK_ID, ["complete_job"]) == [
        "the body is not a JSON object"]


def test_retry_analysis_sees_same_id_and_growing_gaps():
    deliveries = [delivery("e1", 0.0, ok=False, attempt=1), delivery("e1", 0.2, ok=False, attempt=2),
                  delivery("e1", 0.6, attempt=3)]
    analysis = Analysis(deliveries, Expectation("test", ["complete_job"], 1), WEBHOOK_ID, "emp", "s", 2, RETRY)
    figures = analysis.retry_figures()
    assert figures["events_recovered"] == 1 and figures["same_event_id"] is True
    assert figures["gaps_ms"] == [200.0, 400.0] and figures["expected_gaps_ms"] == [200.0, 400.0]
    assert figures["growing"] is True and analysis.retry_problems(figures) == []
    assert analysis.delivery_figures()["success_rate"] == 1.0


def test_retry_analysis_flags_new_event_ids_and_flat_gaps():
    # A service that retries under a new event id never gets past the refusals.
    renamed = [delivery("e1", 0.0, ok=False), delivery("e1b", 0.2, ok=False)]
    analysis = Analysis(renamed, Expectation("test", ["complete_job"], 1), WEBHOOK_ID, "emp", "s", 2, RETRY)
    figures = analysis.retry_figures()
    assert figures["same_event_id"] is False
    assert "were not redelivered with the same event id" in analysis.retry_problems(figures)[0]
    flat = [delivery("e1", 0.0, ok=False, attempt=1), delivery("e1", 0.2, ok=False, attempt=2),
            delivery("e1", 0.4, attempt=3)]
    analysis = Analysis(flat, Expectation("test", ["complete_job"], 1), WEBHOOK_ID, "emp", "s", 2, RETRY)
    problems = analysis.retry_problems(analysis.retry_figures())
    assert any("retry gaps do not grow (200 then 200 ms)" in p for p in problems)
    assert any("retry gap 2 was 200 ms, shorter than the configured 400 ms" in p for p in problems)


def test_duplicates_latency_and_success_rate():
    expectation = Expectation("test", ["complete_job"], 3)
    expectation.trigger_times = [0.0, 1.0, 2.0]
    deliveries = [delivery("e1", 0.010), delivery("e1", 0.020, attempt=2), delivery("e2", 1.030)]
    analysis = Analysis(deliveries, expectation, WEBHOOK_ID, "emp", "s", 0, RETRY)
    figures = analysis.delivery_figures()
    assert figures["deliveries_expected"] == 3 and figures["deliveries_succeeded"] == 2
    assert figures["duplicates"] == 1 and figures["success_rate"] == round(2 / 3, 4)
    assert [round(v) for v in analysis.latencies_ms()] == [10, 30]


def test_job_trigger_counts_only_its_jobs():
    expectation = Expectation("job", ["job_submitted", "complete_job"], 2)
    expectation.jobs = {"j1": 0.0, "j2": 0.0}
    bodies = [("a", "job_submitted", "j1"), ("b", "complete_job", "j1"), ("c", "job_submitted", "j2"),
              ("d", "complete_job", "someone-else"), ("e", "complete_job", "j1")]
    deliveries = [delivery(eid, 0.1 * i, body=emp_body(eid, etype, job)) for i, (eid, etype, job) in enumerate(bodies)]
    analysis = Analysis(deliveries, expectation, WEBHOOK_ID, "emp", "s", 0, RETRY)
    figures = analysis.delivery_figures()
    assert figures["deliveries_expected"] == 4 and figures["deliveries_succeeded"] == 3
    assert figures["unrelated_events"] == 1 and figures["duplicates"] == 1  # "e" repeats j1's completion
    assert fulfilled(deliveries, expectation) == 3


# ---------------------------------------------------------------------------- service client
class _FakeService:
    def __init__(self, status: int, body: bytes, content_type: str):
        outer = self
        self.status, self.body, self.content_type = status, body, content_type

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(outer.status)
                self.send_header("Content-Type", outer.content_type)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status, body, content_type, message", [
    (502, b"<html><body>Bad Gateway</body></html>", "text/html", "answered GET /health with HTTP 502 and HTML"),
    (200, b"not json", "text/plain", "with HTTP 200 and no JSON instead of JSON: not json"),
])
def test_client_refuses_non_json(status, body, content_type, message):
    fake = _FakeService(status, body, content_type)
    try:
        client = JsonClient(fake.url, "webhook service", 2.0)
        with pytest.raises(ServiceError, match=message):
            client.call("GET", "/health", "/health")
        assert client.statuses == {"GET /health": {str(status): 1}}
    finally:
        fake.close()


def test_client_names_host_port_when_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = JsonClient("http://127.0.0.1:%d" % port, "webhook service", 2.0)
    with pytest.raises(ServiceError, match=r"cannot reach webhook service at 127\.0\.0\.1:%d \(GET /webhooks\)" % port):
        client.call("GET", "/webhooks", "/webhooks")
    assert client.statuses == {"GET /webhooks": {"unreachable": 1}}


def test_client_records_404_routes_unless_expected():
    fake = _FakeService(404, b'{"success": false, "error": "Endpoint not found"}', "application/json")
    try:
        client = JsonClient(fake.url, "webhook service", 2.0)
        answer = client.call("GET", "/webhooks", "/webhooks")
        client.call("GET", "/webhooks/x", "/webhooks/:id", missing_ok=True)
        assert answer.status == 404 and client.not_found == ["GET /webhooks"]
        with pytest.raises(ServiceError, match="answered GET /webhooks with HTTP 404: Endpoint not found"):
            client.expect(answer, "GET /webhooks", (200,))
    finally:
        fake.close()


def test_documentation_matches_the_argument_spec():
    from ansible_collections.emp.deploy.plugins.doc_fragments.webhook import ModuleDocFragment
    from ansible_collections.emp.deploy.plugins.module_utils._webhook_client import WEBHOOK_SERVICE_ARGSPEC

    assert_documentation_matches(module.DOCUMENTATION, ModuleDocFragment.DOCUMENTATION, WEBHOOK_SERVICE_ARGSPEC,
                                 module.ARGUMENT_SPEC)


def test_a_failed_stats_read_is_a_warning_not_a_problem():
    """The service's counters only add to what the probe measured: a slow read must not fail a healthy probe."""

    class Service:
        def call(self, method, route, label, timeout=None):
            raise ServiceError("the webhook service at 127.0.0.1:1 did not answer GET /webhooks/:id/stats within 0.7 s")

    class Module:
        def __init__(self) -> None:
            self.warnings: list[str] = []

        def warn(self, text: str) -> None:
            self.warnings.append(text)

    probe = module.WebhookProbe.__new__(module.WebhookProbe)
    probe.service, probe.module, probe.webhook_id = Service(), Module(), "wh-1"
    probe.result, probe.problems = {}, []
    probe.read_service_stats(0.7)
    assert probe.problems == []
    assert "within 0.7 s" in probe.result["service_stats_error"]
    assert probe.module.warnings and "stats of the probe webhook" in probe.module.warnings[0]
