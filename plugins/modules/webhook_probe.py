#!/usr/bin/python
# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: webhook_probe
short_description: Prove that EMP webhooks are registered, delivered, signed and retried
version_added: 0.1.0
description:
  - End-to-end probe of the EMP webhook service. It starts its own HTTP receiver on the target (or uses
    O(public_url) when the receiver is reached through a tunnel, or the service's built-in test receivers
    with O(use_test_receiver=true)), registers a probe webhook for that URL with a random per-run secret,
    reads it back, triggers deliveries and measures what arrives.
  - "It measures deliveries expected and received, the success rate, duplicates, end-to-end latency
    (p50/p95/max), signature validity for the chosen O(signature_scheme), payload validity against the
    EMP delivery contract (fields C(event_type), C(event_id), C(timestamp), C(webhook_id), C(data) and the
    C(User-Agent), C(X-Webhook-Event), C(X-Webhook-ID), C(X-Event-ID) headers), and every HTTP status the
    service answered on each route."
  - With O(fail_first) the receiver answers 500 to the first attempts of every event and the probe checks
    that the service retried with the same event id and growing gaps.
  - It always deletes its probe webhook and stops its receiver, also when it fails, times out or is given
    bad input, so nothing of it is left in C(webhooks:registry).
  - It changes nothing but its own short-lived probe webhook, so it reports RV(ignore:changed=false). In
    check mode it registers nothing; it reads C(/health) and C(GET /webhooks) (which catches 404 routes)
    and returns in RV(plan) what it would do.
  - A threshold that does not hold is reported in RV(problems) with the figure and fails the task; so does
    a service that cannot be measured (unreachable, answering HTML or 5xx).
  - "Checklist items: Webhook Processing (registration and retrieval, initialization order, delivery to
    actual external endpoints, error handling and retry); External Integration (webhook URLs accessible
    externally, payload validation); post-deployment webhook delivery success rate > 95%; alert webhook
    delivery failures > 5%; phase 3 GO/NO-GO webhooks processing normally, no 404 errors."
  - Uses only the Python standard library and C(ansible.module_utils.urls) on the target.
author:
  - emp.deploy maintainers (@emp-deploy)
extends_documentation_fragment:
  - emp.deploy.webhook
  - emp.deploy.attributes.probe
attributes:
  check_mode:
    support: full
    details: Check mode registers nothing; it only reads C(/health) and C(GET /webhooks) and returns RV(plan).
options:
  timeout:
    description:
      - Seconds the whole probe may take, from reading C(/health) through triggering to the last expected
        delivery (retries included). Every request shares this deadline as a whole (connect, headers and
        body), so a service that answers one byte at a time cannot hold the probe longer.
      - When it passes, whatever arrived is measured; missing deliveries lower RV(success_rate).
      - Deleting the probe webhook afterwards gets at most 3 s (and at most O(request_timeout)) more.
    type: float
    default: 30.0
  receiver_host:
    description:
      - Address the probe's receiver listens on; the registered URL uses it unless O(public_url) is set.
      - An unspecified address such as C(0.0.0.0) needs O(public_url), because the service cannot reach it.
    type: str
    default: 127.0.0.1
  receiver_port:
    description: TCP port of the probe's receiver; V(0) picks a free port.
    type: int
    default: 0
  public_url:
    description:
      - URL through which the service reaches the receiver (not with O(use_test_receiver=true)), for example the public URL
        M(emp.deploy.ngrok_tunnel) returns for a tunnel to O(receiver_port). The probe appends its own
        path C(/emp-webhook-probe/<run id>).
      - This is how a playbook proves that webhook URLs are accessible externally.
    type: str
  use_test_receiver:
    description:
      - Register one of the service's built-in test receivers (C(POST /test-receivers)) instead of starting
        a receiver, and read what it recorded from C(GET /test-receivers/:id/requests).
      - Test receivers keep at most 100 requests and always answer 200, so O(fail_first) cannot be used and
        O(count) times the number of O(events) must stay within 100. Latency uses the service's clock.
      - The webhook is registered at C(<service_url>/test-receivers/<id>/webhook), not at the C(url) the service
        answers, which the EMP service always writes as C(http://localhost:3332/...).
      - O(public_url) cannot be used with it; V(false) goes with O(public_url) as with any other option.
    type: bool
    default: false
  events:
    description:
      - Event types the probe webhook subscribes to.
      - "O(trigger=test): the service sends one test event per subscribed type per trigger.
        O(trigger=job): each probe job must produce one delivery of each subscribed type among
        C(job_submitted), C(update_job_progress) and C(complete_job)."
    type: list
    elements: str
    default: [complete_job]
    choices: [job_submitted, update_job_progress, complete_job, job_failed, cancel_job, worker_status,
              machine_status, workflow_submitted, workflow_completed, workflow_failed]
  trigger:
    description:
      - V(test) calls C(POST /webhooks/:id/test) O(count) times.
      - V(job) submits O(count) probe jobs of type O(job_type) through O(api_url) and waits for their events;
        it needs workers that serve O(job_type).
      - V(none) only listens, for O(count) deliveries of real traffic.
    type: str
    choices: [test, job, none]
    default: test
  count:
    description: Number of triggers (test calls, probe jobs, or deliveries to wait for with O(trigger=none)).
    type: int
    default: 1
  job_type:
    description: C(service_required) of the probe jobs O(trigger=job) submits.
    type: str
    default: mock
  filters:
    description:
      - C(filters) of the probe webhook (C(job_types), C(priorities), C(machine_ids), C(worker_ids)).
      - By default O(trigger=test) registers filters no real event matches, so production traffic does not
        reach the probe, and O(trigger=job) filters on O(job_type).
    type: dict
  secret:
    description:
      - Webhook secret. By default the probe generates a random one per run (C(whsec_<base64>) for
        O(signature_scheme=standard-webhooks)), which is never returned.
      - An empty string registers the webhook without a secret; that is bad input unless
        O(signature_scheme=none).
    type: str
  signature_scheme:
    description:
      - How deliveries are signed and verified. V(emp) is C(X-Webhook-Signature
        sha256=<hex HMAC-SHA256 of the raw body>), what the EMP webhook service sends; V(standard-webhooks)
        is the Standard Webhooks C(webhook-id)/C(webhook-timestamp)/C(webhook-signature v1,<base64>)
        scheme; V(github) is C(X-Hub-Signature-256 sha256=<hex>); V(none) verifies nothing.
    type: str
    choices: [emp, standard-webhooks, github, none]
    default: emp
  require_signature:
    description: Every delivery must carry a valid signature of O(signature_scheme).
    type: bool
    default: true
  retry_config:
    description:
      - C(retry_config) of the probe webhook. The default is fast so that O(fail_first) finishes in seconds.
    type: dict
    default: {}
    suboptions:
      max_attempts:
        description: Attempts per event, the first included.
        type: int
        default: 3
      initial_delay_ms:
        description: Delay before the first retry, in milliseconds.
        type: int
        default: 200
      backoff_multiplier:
        description: Factor between two consecutive retry delays.
        type: float
        default: 2.0
      max_delay_ms:
        description: Upper bound of one retry delay, in milliseconds.
        type: int
        default: 2000
  fail_first:
    description:
      - The receiver answers 500 to the first O(fail_first) attempts of every event. The probe then checks
        that every event was redelivered with the same event id, that the gaps follow O(retry_config) and
        that they grow. Two gaps are needed to see growth, so V(2) is the useful value.
      - Must be lower than O(retry_config.max_attempts).
    type: int
    default: 0
  expect_no_404:
    description: Any 404 from a webhook route is a problem (the initialization-order bug).
    type: bool
    default: true
  min_success_rate:
    description: Lowest acceptable share of expected deliveries that arrived and were accepted (0 to 1).
    type: float
    default: 0.95
  max_latency_p95_ms:
    description: Highest acceptable 95th percentile of the end-to-end delivery latency, in milliseconds.
    type: float
  max_duplicates:
    description: Highest acceptable number of duplicate deliveries (an event delivered again after a 2xx).
    type: int
notes:
  - "Latency is measured from the trigger to the first arrival of each event: from the C(POST /webhooks/:id/test)
    call (deliveries are matched to calls in arrival order), from the job submission, or, with O(trigger=none),
    from the delivery's C(timestamp)."
  - With O(use_test_receiver=true) the test receiver is emptied at the end; the service expires it after 24 h.
seealso:
  - module: emp.deploy.gate
    description: Samples this probe over a soak window and decides GO or NO-GO.
  - module: emp.deploy.ngrok_tunnel
    description: Gives the public URL to pass as O(public_url).
  - name: Standard Webhooks specification
    description: The signature scheme of O(signature_scheme=standard-webhooks).
    link: https://www.standardwebhooks.com/
"""

EXAMPLES = r"""
- name: Phase 3 GO/NO-GO - webhooks processing normally, no 404 errors
  emp.deploy.webhook_probe:
    service_url: http://webhook.internal:3332
    count: 20
    min_success_rate: 0.95
    max_latency_p95_ms: 2000

- name: Error handling and retry - the service retries with the same event id and growing gaps
  emp.deploy.webhook_probe:
    service_url: http://webhook.internal:3332
    fail_first: 2
    retry_config:
      max_attempts: 3
      initial_delay_ms: 200

- name: Webhook URLs are accessible externally - deliver through an ngrok tunnel to the receiver
  emp.deploy.webhook_probe:
    service_url: https://webhook.example.com
    receiver_port: 9876
    public_url: "{{ tunnel.public_url }}"
    timeout: 60

- name: Deliveries of a real job, from submission to completion
  emp.deploy.webhook_probe:
    service_url: http://webhook.internal:3332
    api_url: http://api.internal:3331
    api_token: "{{ vault_emp_api_token }}"
    trigger: job
    job_type: mock
    events: [job_submitted, complete_job]
    count: 3
    timeout: 120
  register: webhook_delivery

- name: Sample the probe during a soak window
  emp.deploy.gate:
    name: webhooks
    phase: application
    component: webhook
    checklist_ref: "Phase 3 / GO-NO-GO: webhooks processing normally, no 404 errors"
    probe:
      module: emp.deploy.webhook_probe
      args:
        service_url: http://webhook.internal:3332
        count: 5
    samples: 3
    interval: 10
    criteria:
      - result.success_rate >= 0.95
      - result.not_found_routes | length == 0
"""

RETURN = r"""
healthy:
  description: True when every check and threshold holds.
  returned: always
  type: bool
problems:
  description: One sentence per check or threshold that does not hold, or per failure to measure, with the figure.
  returned: always
  type: list
  elements: str
  sample: ["webhook delivery success rate 0.80 (8 of 10) < 0.95",
           "the service answered 404 on POST /webhooks: webhook routes are missing (initialization-order bug)"]
run_id:
  description: Random id of this run; part of the receiver path.
  returned: always
  type: str
service:
  description: The webhook service as C(/health) described it; C(reachable) is null when it was not contacted.
  returned: always
  type: dict
  sample: {url: "http://127.0.0.1:3332", reachable: true, health_status: 200, status: ok,
           version: 1.1.0, redis_connected: true}
plan:
  description: What the probe would do; only in check mode.
  returned: in check mode
  type: list
  elements: str
receiver:
  description:
    - C(kind) is V(own), V(public_url) or V(test_receiver); C(url) the URL registered with the service,
      C(listen) where the own receiver listened, C(stray_requests) requests to another path.
  returned: when the receiver was started
  type: dict
  sample: {kind: own, url: "http://127.0.0.1:40111/emp-webhook-probe/3f2a9c1b", listen: "127.0.0.1:40111",
           stray_requests: 0}
webhook_id:
  description: Id of the probe webhook (deleted again).
  returned: when the webhook was registered
  type: str
registration:
  description: Whether the webhook read back as registered and whether C(GET /webhooks) listed it.
  returned: when the webhook was registered
  type: dict
  sample: {status: 201, listed: true, roundtrip_ok: true, mismatches: [], filters: {job_types: [mock]}}
trigger:
  description: The trigger used and how long triggering took.
  returned: when the probe got as far as triggering deliveries
  type: dict
  sample: {kind: test, count: 5, calls: 5, seconds: 0.04, job_ids: []}
deliveries_expected:
  description: Deliveries the trigger should produce.
  returned: when the probe got as far as triggering deliveries
  type: int
deliveries_received:
  description: Expected deliveries that arrived at all.
  returned: when the probe got as far as triggering deliveries
  type: int
deliveries_succeeded:
  description: Expected deliveries that arrived and were answered 2xx (after the O(fail_first) refusals).
  returned: when the probe got as far as triggering deliveries
  type: int
attempts_received:
  description: Every request the receiver got for the probe webhook, retries and duplicates included.
  returned: when the probe got as far as triggering deliveries
  type: int
success_rate:
  description: RV(deliveries_succeeded) / RV(deliveries_expected).
  returned: when the probe got as far as triggering deliveries
  type: float
duplicates:
  description: Deliveries of an event after it had already been accepted.
  returned: when the probe got as far as triggering deliveries
  type: int
unrelated_events:
  description: Events that reached the probe webhook but do not belong to this run's trigger.
  returned: when the probe got as far as triggering deliveries
  type: int
latency_ms:
  description: End-to-end delivery latency in milliseconds (samples, min, p50, p95, p99, max, mean).
  returned: when the probe got as far as triggering deliveries
  type: dict
  sample: {samples: 5, min: 2.1, p50: 2.6, p95: 4.0, p99: 4.1, max: 4.1, mean: 2.9}
signatures:
  description: Signature checks over every attempt (scheme, checked, valid, invalid, missing, reasons).
  returned: when the probe got as far as triggering deliveries
  type: dict
  sample: {scheme: emp, checked: 5, valid: 5, invalid: 0, missing: 0, reasons: []}
payload:
  description: Payload and header validation over every attempt (checked, valid, invalid, first errors).
  returned: when the probe got as far as triggering deliveries
  type: dict
  sample: {checked: 5, valid: 5, invalid: 0, errors: []}
retries:
  description:
    - With O(fail_first), how many events were redelivered with the same event id after being refused
      (C(events_recovered) of C(events_checked)), the median gap before each retry (C(gaps_ms)) next to the
      configured one (C(expected_gaps_ms)), and whether the gaps grow (C(growing), null when fewer than two).
  returned: when the probe got as far as triggering deliveries
  type: dict
  sample: {fail_first: 2, events_checked: 3, events_recovered: 3, events_not_retried: 0, same_event_id: true,
           gaps_ms: [203.1, 402.7], expected_gaps_ms: [200.0, 400.0], growing: true}
http_statuses:
  description: Every HTTP status the service (and the API) answered, per route, with counts.
  returned: always
  type: dict
  sample: {"GET /health": {"200": 1}, "POST /webhooks": {"201": 1}, "POST /webhooks/:id/test": {"200": 5},
           "DELETE /webhooks/:id": {"200": 1}, "GET /webhooks/:id": {"200": 1, "404": 1}}
not_found_routes:
  description: Webhook routes that answered 404 although they should exist.
  returned: always
  type: list
  elements: str
service_stats:
  description: The service's own counters for the probe webhook (C(GET /webhooks/:id/stats)), read before deleting it.
  returned: when the webhook was registered
  type: dict
service_stats_error:
  description:
    - Why the service's counters could not be read (also given as a warning). The counters only add to what the
      probe measured itself, so this is not a problem and does not make the probe unhealthy.
  returned: when the stats read failed
  type: str
cleanup:
  description: Whether the probe webhook was deleted (and reads back as gone) and the receiver stopped.
  returned: always
  type: dict
  sample: {webhook_deleted: true, webhook_gone: true, receiver_stopped: true, test_receiver_cleared: null}
elapsed_s:
  description: Wall time of the whole probe, in seconds.
  returned: always
  type: float
"""

import json
import secrets
import time
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.emp.deploy.plugins.module_utils._stats import summarize
from ansible_collections.emp.deploy.plugins.module_utils._webhook_analysis import (
    PER_JOB_EVENTS, Analysis, Expectation, fulfilled,
)
from ansible_collections.emp.deploy.plugins.module_utils._http import Deadline, url_problem
from ansible_collections.emp.deploy.plugins.module_utils._webhook_client import (
    WEBHOOK_SERVICE_ARGSPEC, JsonClient, ServiceError,
)
from ansible_collections.emp.deploy.plugins.module_utils._webhook_receiver import (
    Delivery, ProbeReceiver, ReceiverError, event_id_of,
)
from ansible_collections.emp.deploy.plugins.module_utils._webhook_signatures import (
    SCHEMES, new_secret, secret_problem,
)

EVENT_TYPES = ["job_submitted", "update_job_progress", "complete_job", "job_failed", "cancel_job", "worker_status",
               "machine_status", "workflow_submitted", "workflow_completed", "workflow_failed"]
TEST_RECEIVER_CAPACITY = 100
SETTLE_S = 0.3            # after the last expected delivery: time for duplicates to show up
POLL_S = 0.25             # test receiver polling interval
CLEANUP_S = 3.0           # at most this long (and request_timeout) for deleting the webhook after the timeout
UNSPECIFIED_HOSTS = ("0.0.0.0", "::", "")

PROBE_ARGSPEC: dict = dict(
    timeout=dict(type="float", default=30.0),
    receiver_host=dict(type="str", default="127.0.0.1"),
    receiver_port=dict(type="int", default=0),
    public_url=dict(type="str"),
    use_test_receiver=dict(type="bool", default=False),
    events=dict(type="list", elements="str", default=["complete_job"], choices=EVENT_TYPES),
    trigger=dict(type="str", choices=["test", "job", "none"], default="test"),
    count=dict(type="int", default=1),
    job_type=dict(type="str", default="mock"),
    filters=dict(type="dict"),
    secret=dict(type="str", no_log=True),
    signature_scheme=dict(type="str", choices=list(SCHEMES), default="emp"),
    require_signature=dict(type="bool", default=True),
    retry_config=dict(type="dict", default={}, options=dict(
        max_attempts=dict(type="int", default=3),
        initial_delay_ms=dict(type="int", default=200),
        backoff_multiplier=dict(type="float", default=2.0),
        max_delay_ms=dict(type="int", default=2000),
    )),
    fail_first=dict(type="int", default=0),
    expect_no_404=dict(type="bool", default=True),
    min_success_rate=dict(type="float", default=0.95),
    max_latency_p95_ms=dict(type="float"),
    max_duplicates=dict(type="int"),
)
ARGUMENT_SPEC: dict = dict(WEBHOOK_SERVICE_ARGSPEC, **PROBE_ARGSPEC)


class ProbeError(Exception):
    """Bad input or a service that cannot be measured; cleanup still runs."""


def bad_input_problems(params: dict, secret: str) -> list:
    """Every reason the options cannot work together, before anything is started."""
    problems = []
    retry = params["retry_config"]
    events = params["events"]
    for name in ("service_url", "api_url", "public_url"):
        problem = url_problem(params[name]) if params[name] is not None else None
        if problem:
            problems.append("%s %r cannot be used: %s" % (name, params[name], problem))
    if not events:
        problems.append("events must name at least one event type")
    if params["count"] < 1:
        problems.append("count must be at least 1, got %d" % params["count"])
    if params["timeout"] <= 0 or params["request_timeout"] <= 0:
        problems.append("timeout and request_timeout must be positive")
    if not 0 <= params["receiver_port"] <= 65535:
        problems.append("receiver_port must be between 0 and 65535, got %d" % params["receiver_port"])
    if not 0.0 <= params["min_success_rate"] <= 1.0:
        problems.append("min_success_rate must be between 0 and 1, got %s" % params["min_success_rate"])
    if retry["max_attempts"] < 1 or retry["initial_delay_ms"] < 0 or retry["max_delay_ms"] < 0 \
            or retry["backoff_multiplier"] < 1:
        problems.append("retry_config needs max_attempts >= 1, delays >= 0 and backoff_multiplier >= 1")
    if params["fail_first"] < 0:
        problems.append("fail_first must not be negative")
    elif params["fail_first"] >= retry["max_attempts"]:
        problems.append("fail_first=%d needs retry_config.max_attempts above it (it is %d): otherwise no event "
                        "can ever be accepted" % (params["fail_first"], retry["max_attempts"]))
    problem = secret_problem(params["signature_scheme"], secret)
    if problem:
        problems.append(problem)
    if params["require_signature"] and params["signature_scheme"] == "none":
        problems.append("require_signature=true needs a signature_scheme other than none")
    if params["use_test_receiver"]:
        if params["fail_first"]:
            problems.append("fail_first needs the probe's own receiver: the service's test receivers always answer 200")
        if params["public_url"]:
            problems.append("use_test_receiver and public_url exclude each other")
        expected = params["count"] * (len(events) if params["trigger"] == "test" else 1)
        if expected > TEST_RECEIVER_CAPACITY:
            problems.append("use_test_receiver keeps at most %d requests; %d deliveries are expected"
                            % (TEST_RECEIVER_CAPACITY, expected))
    elif params["receiver_host"] in UNSPECIFIED_HOSTS and not params["public_url"]:
        problems.append("receiver_host %r is not an address the service can reach; set public_url"
                        % params["receiver_host"])
    if params["trigger"] == "job":
        if not params["api_url"]:
            problems.append("trigger=job needs api_url to submit probe jobs")
        if not [e for e in events if e in PER_JOB_EVENTS]:
            problems.append("trigger=job needs events to include %s" % ", ".join(PER_JOB_EVENTS))
    return problems


def isolation_filters(params: dict, marker: str):
    """Filters of the probe webhook: the user's, or ones that keep unrelated traffic away."""
    if params["filters"] is not None:
        return params["filters"]
    if params["trigger"] == "test":
        # EMP filters drop events that carry a non-matching field; test events bypass filters.
        return {"job_types": [marker], "worker_ids": [marker], "machine_ids": [marker]}
    if params["trigger"] == "job":
        return {"job_types": [params["job_type"]]}
    return {}


def roundtrip_mismatches(sent: dict, got: dict, secret: str) -> list:
    mismatches = []
    if got.get("url") != sent["url"]:
        mismatches.append("url %r read back, %r registered" % (got.get("url"), sent["url"]))
    if sorted(got.get("events") or []) != sorted(sent["events"]):
        mismatches.append("events %s read back, %s registered" % (got.get("events"), sent["events"]))
    if got.get("active") is not True:
        mismatches.append("active is %r, expected true" % (got.get("active"),))
    retry = got.get("retry_config") or {}
    for key, value in sent["retry_config"].items():
        if not isinstance(retry.get(key), (int, float)) or float(retry[key]) != float(value):
            mismatches.append("retry_config.%s %r read back, %r registered" % (key, retry.get(key), value))
    if sent.get("filters") and got.get("filters") != sent["filters"]:
        mismatches.append("filters %s read back, %s registered" % (got.get("filters"), sent["filters"]))
    returned_secret = got.get("secret")
    # A service may hide the secret; when it returns one it must be ours (never echoed in messages).
    if secret and isinstance(returned_secret, str) and "*" not in returned_secret and returned_secret != secret:
        mismatches.append("the secret read back differs from the one registered")
    return mismatches


class WebhookProbe:
    def __init__(self, module: AnsibleModule):
        self.module = module
        self.params = params = module.params
        self.run_id = secrets.token_hex(4)
        self.secret = params["secret"] if params["secret"] is not None else new_secret(params["signature_scheme"])
        if self.secret:
            module.no_log_values.add(self.secret)
        self.retry = dict(params["retry_config"])
        self.service = JsonClient(params["service_url"], "webhook service", params["request_timeout"],
                                  params["validate_certs"])
        self.api: JsonClient | None = None
        if params["api_url"]:
            headers = {"Authorization": "Bearer %s" % params["api_token"]} if params["api_token"] else None
            self.api = JsonClient(params["api_url"], "EMP API", params["request_timeout"], params["validate_certs"],
                                  headers)
        self.deadline = Deadline(params["timeout"])  # the whole probe; cleanup gets CLEANUP_S more
        for client in (self.service, self.api):
            if client is not None:
                client.deadline = self.deadline
        self.path = "/emp-webhook-probe/%s" % self.run_id
        self.expectation = Expectation(params["trigger"], params["events"], params["count"])
        self.receiver: ProbeReceiver | None = None
        self.test_receiver_id: str | None = None
        self.registered_url: str | None = None
        self.webhook_id: str | None = None
        self.deliveries: list[Delivery] = []
        self.failure: str | None = None
        self.problems: list[str] = []
        self.result: dict = {"changed": False, "run_id": self.run_id,
                             "service": {"url": self.service.base_url, "reachable": None},
                             "cleanup": {"webhook_deleted": None, "webhook_gone": None, "receiver_stopped": None,
                                         "test_receiver_cleared": None}}
        self.started = time.monotonic()

    # ------------------------------------------------------------------ steps
    def read_health(self) -> None:
        info = self.result["service"]
        info["reachable"] = False
        answer = self.service.call("GET", "/health", "/health", missing_ok=True)
        info["reachable"] = True
        info["health_status"] = answer.status
        if isinstance(answer.data, dict):
            redis: dict = answer.data["redis"] if isinstance(answer.data.get("redis"), dict) else {}
            info.update(status=answer.data.get("status"), version=answer.data.get("version"),
                        redis_connected=redis.get("connected"))

    def start_receiver(self) -> None:
        params = self.params
        if params["use_test_receiver"]:
            answer = self.service.call("POST", "/test-receivers", "/test-receivers", body={})
            data = self.service.expect(answer, "POST /test-receivers", (200, 201)).get("data") or {}
            if not data.get("id") or not data.get("url"):
                raise ProbeError("POST /test-receivers answered without data.id and data.url")
            self.test_receiver_id = data["id"]
            # the EMP service writes http://localhost:3332/... into data.url whatever its own address: the
            # receiver is reached through the service URL this probe uses
            self.registered_url = "%s/test-receivers/%s/webhook" % (self.service.base_url, quote(str(data["id"]), safe=""))
            self.result["receiver"] = {"kind": "test_receiver", "url": self.registered_url, "listen": None,
                                       "stray_requests": 0}
            return
        self.receiver = ProbeReceiver(params["receiver_host"], params["receiver_port"], self.path,
                                      params["fail_first"])
        try:
            self.receiver.start()
        except ReceiverError as exc:
            self.receiver = None
            raise ProbeError(str(exc)) from exc
        if params["public_url"]:
            self.registered_url = params["public_url"].rstrip("/") + self.path
        else:
            self.registered_url = self.receiver.url
        self.result["receiver"] = {"kind": "public_url" if params["public_url"] else "own", "url": self.registered_url,
                                   "listen": "%s:%d" % (params["receiver_host"], self.receiver.port),
                                   "stray_requests": 0}

    def register(self) -> None:
        sent = {"url": self.registered_url, "events": list(self.params["events"]), "active": True,
                "retry_config": self.retry,
                "filters": isolation_filters(self.params, "emp-deploy-probe-%s" % self.run_id)}
        if self.secret:
            sent["secret"] = self.secret
        answer = self.service.call("POST", "/webhooks", "/webhooks", body=sent)
        data = self.service.expect(answer, "POST /webhooks", (200, 201)).get("data")
        if not isinstance(data, dict) or not data.get("id"):
            raise ProbeError("webhook service at %s answered POST /webhooks without data.id" % self.service.where)
        self.webhook_id = str(data["id"])
        registration = {"status": answer.status, "listed": None, "roundtrip_ok": None, "mismatches": [],
                        "filters": sent["filters"]}
        self.result["webhook_id"] = self.webhook_id
        self.result["registration"] = registration
        if answer.status != 201:
            self.problems.append("POST /webhooks answered %d, the contract says 201" % answer.status)
        self.read_back(sent, registration)

    def read_back(self, sent: dict, registration: dict) -> None:
        route = "/webhooks/%s" % quote(str(self.webhook_id), safe="")
        got = self.service.expect(self.service.call("GET", route, "/webhooks/:id"), "GET /webhooks/:id", (200,))
        mismatches = roundtrip_mismatches(sent, got.get("data") or {}, self.secret)
        listing = self.service.expect(self.service.call("GET", "/webhooks", "/webhooks"), "GET /webhooks", (200,))
        listed = any(isinstance(w, dict) and str(w.get("id")) == self.webhook_id for w in listing.get("data") or [])
        registration.update(listed=listed, roundtrip_ok=not mismatches, mismatches=mismatches)
        if mismatches:
            self.problems.append("the probe webhook read back differently from what was registered: %s"
                                 % "; ".join(mismatches))
        if not listed:
            self.problems.append("GET /webhooks does not list the probe webhook %s" % self.webhook_id)

    def fire(self) -> None:
        params = self.params
        started = time.monotonic()
        info = {"kind": params["trigger"], "count": params["count"], "calls": 0, "seconds": None, "job_ids": []}
        self.result["trigger"] = info
        route = "/webhooks/%s/test" % quote(str(self.webhook_id), safe="")
        for index in range(params["count"]):
            if params["trigger"] == "test":
                self.expectation.trigger_times.append(time.monotonic())
                answer = self.service.call("POST", route, "/webhooks/:id/test", body={})
                data = self.service.expect(answer, "POST /webhooks/:id/test", (200,))
                if data.get("success") is False:
                    raise ProbeError("POST /webhooks/:id/test answered success=false: %s" % answer.error_text())
            elif params["trigger"] == "job":
                submitted = time.monotonic()
                body = {"service_required": params["job_type"], "priority": 50, "customer_id": "emp-deploy-probe",
                        "payload": {"probe": "emp.deploy.webhook_probe", "run_id": self.run_id, "index": index}}
                api = self.api
                if api is None:  # bad_input_problems refuses trigger=job without api_url
                    raise ProbeError("trigger=job needs api_url to submit probe jobs")
                answer = api.call("POST", "/api/jobs", "/api/jobs", body=body)
                data = api.expect(answer, "POST /api/jobs", (200, 201))
                job_id = data.get("job_id") or (data.get("data") or {}).get("job_id")
                if not job_id:
                    raise ProbeError("EMP API at %s answered POST /api/jobs without job_id" % api.where)
                self.expectation.jobs[str(job_id)] = submitted
                info["job_ids"].append(str(job_id))
            else:
                break
            info["calls"] += 1
        info["seconds"] = round(time.monotonic() - started, 3)

    def wait(self) -> None:
        deadline = self.deadline.ends
        expected = self.expectation.expected
        waited = time.monotonic()
        if self.receiver is not None:
            done = self.receiver.wait(lambda d: fulfilled(d, self.expectation) >= expected, deadline)
            if done:
                time.sleep(max(0.0, min(SETTLE_S, deadline - time.monotonic())))
            self.deliveries = self.receiver.snapshot()
        else:
            while True:
                self.deliveries = self.read_test_receiver()
                # Stop while a last read still fits: a read after the deadline would not be sent.
                if fulfilled(self.deliveries, self.expectation) >= expected or time.monotonic() + POLL_S >= deadline:
                    break
                time.sleep(POLL_S)
        self.result["wait_s"] = round(time.monotonic() - waited, 3)

    def read_test_receiver(self) -> list:
        route = "/test-receivers/%s/requests?limit=%d" % (quote(str(self.test_receiver_id), safe=""), TEST_RECEIVER_CAPACITY)
        data = self.service.expect(self.service.call("GET", route, "/test-receivers/:id/requests"),
                                   "GET /test-receivers/:id/requests", (200,)).get("data") or {}
        records = [r for r in data.get("requests") or [] if isinstance(r, dict)]
        offset = time.time() - time.monotonic()  # the service clock's ms -> this process' monotonic clock
        deliveries: list[Delivery] = []
        attempts: dict[str, int] = {}
        for record in sorted(records, key=lambda r: r.get("timestamp") or 0):
            headers = dict((str(k).lower(), str(v)) for k, v in (record.get("headers") or {}).items())
            raw = record.get("raw_body")
            if not isinstance(raw, str):
                body = record.get("body")
                raw = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
            body_bytes = raw.encode("utf-8")
            event_id = event_id_of(headers, body_bytes)
            attempts[event_id] = attempts.get(event_id, 0) + 1
            wall = float(record.get("timestamp") or 0) / 1000.0
            deliveries.append(Delivery(wall - offset, wall, self.path, headers, body_bytes, event_id,
                                       attempts[event_id], 200))
        return deliveries

    def read_service_stats(self, seconds: float) -> None:
        """The service's counters, read before the webhook is deleted, in at most ``seconds``."""
        route = "/webhooks/%s/stats" % quote(str(self.webhook_id), safe="")
        try:
            answer = self.service.call("GET", route, "/webhooks/:id/stats", timeout=seconds)
        except ServiceError as exc:
            # the service's own counters only add to what the probe measured itself: a slow stats read
            # (cleanup gives it little time) must not turn a healthy deployment into a NO-GO
            self.result["service_stats_error"] = str(exc)
            self.module.warn("could not read the service's stats of the probe webhook: %s" % exc)
            return
        if answer.status == 200 and isinstance(answer.data, dict):
            self.result["service_stats"] = answer.data.get("data")

    # ------------------------------------------------------------------ cleanup
    def cleanup(self) -> None:
        cleanup = self.result["cleanup"]
        # Cleanup runs even when the timeout has passed, within its own short deadline.
        budget = Deadline(min(self.params["request_timeout"], CLEANUP_S))
        self.service.deadline = budget
        if self.webhook_id is not None:
            route = "/webhooks/%s" % quote(str(self.webhook_id), safe="")
            self.read_service_stats(budget.remaining() / 4)  # the DELETE matters more
            try:
                answer = self.service.call("DELETE", route, "/webhooks/:id")
            except ServiceError as exc:
                cleanup["webhook_deleted"] = False
                self.problems.append("could not delete the probe webhook %s, delete it by hand: %s"
                                     % (self.webhook_id, exc))
            else:
                cleanup["webhook_deleted"] = answer.status == 200
                if answer.status != 200:
                    self.problems.append("DELETE of the probe webhook %s answered HTTP %s: %s, delete it by hand"
                                         % (self.webhook_id, answer.status, answer.error_text()))
                try:
                    gone = self.service.call("GET", route, "/webhooks/:id", missing_ok=True)
                    cleanup["webhook_gone"] = gone.status == 404
                except ServiceError:
                    cleanup["webhook_gone"] = None  # cannot tell; the failure that got us here is reported
                if cleanup["webhook_gone"] is False:
                    self.problems.append("the probe webhook %s still reads back after DELETE" % self.webhook_id)
        if self.test_receiver_id is not None:
            route = "/test-receivers/%s/requests" % quote(str(self.test_receiver_id), safe="")
            try:
                answer = self.service.call("DELETE", route, "/test-receivers/:id/requests", missing_ok=True)
                cleanup["test_receiver_cleared"] = answer.status == 200
            except ServiceError:
                cleanup["test_receiver_cleared"] = False
        if self.receiver is not None:
            if self.result.get("receiver"):
                self.result["receiver"]["stray_requests"] = self.receiver.stray_requests
            cleanup["receiver_stopped"] = self.receiver.stop()

    # ------------------------------------------------------------------ figures
    def analyse(self) -> None:
        if "trigger" not in self.result:
            return  # nothing was triggered: no delivery figures rather than misleading zeros
        params = self.params
        analysis = Analysis(self.deliveries, self.expectation, self.webhook_id or "", params["signature_scheme"],
                            self.secret or "", params["fail_first"], self.retry)
        figures = analysis.delivery_figures()
        self.result.update(figures)
        latency = summarize(analysis.latencies_ms(), digits=1)
        signatures = analysis.signature_figures()
        payload = analysis.payload_figures()
        retries = analysis.retry_figures()
        self.result.update(latency_ms=latency, signatures=signatures, payload=payload, retries=retries)
        if self.failure is not None:
            return  # the failure says it all; figures of a half-run would only add noise
        problems = self.problems
        rate = figures["success_rate"]
        if rate is not None and rate < params["min_success_rate"]:
            problems.append("webhook delivery success rate %.2f (%d of %d) < %s within %.0f s" % (
                rate, figures["deliveries_succeeded"], figures["deliveries_expected"], params["min_success_rate"],
                params["timeout"]))
        p95 = latency["p95"]
        if params["max_latency_p95_ms"] is not None and p95 is not None and p95 > params["max_latency_p95_ms"]:
            problems.append("p95 delivery latency %.1f ms > %s ms over %d deliveries" % (
                p95, params["max_latency_p95_ms"], latency["samples"]))
        if params["require_signature"] and signatures["checked"]:
            header = {"emp": "X-Webhook-Signature", "github": "X-Hub-Signature-256",
                      "standard-webhooks": "webhook-signature"}[params["signature_scheme"]]
            if signatures["missing"]:
                problems.append("%d of %d deliveries carried no %s signature (signature_scheme=%s)" % (
                    signatures["missing"], signatures["checked"], header, params["signature_scheme"]))
            if signatures["invalid"]:
                problems.append("%d of %d deliveries carried an invalid signature: %s" % (
                    signatures["invalid"], signatures["checked"], "; ".join(signatures["reasons"])))
        if payload["invalid"]:
            problems.append("%d of %d deliveries failed payload validation: %s" % (
                payload["invalid"], payload["checked"], "; ".join(payload["errors"])))
        if params["max_duplicates"] is not None and figures["duplicates"] > params["max_duplicates"]:
            problems.append("%d duplicate deliveries > %d" % (figures["duplicates"], params["max_duplicates"]))
        problems.extend(analysis.retry_problems(retries))

    def not_found_problems(self) -> list:
        routes = list(dict.fromkeys(self.service.not_found))
        self.result["not_found_routes"] = routes
        if not routes or not self.params["expect_no_404"]:
            return []
        return ["the service answered 404 on %s: webhook routes are missing (initialization-order bug)"
                % ", ".join(routes)]

    def finish(self) -> dict:
        statuses = dict(self.service.statuses)
        if self.api is not None:
            statuses.update(self.api.statuses)
        self.result["http_statuses"] = statuses
        problems = self.not_found_problems()
        if self.failure is not None:
            problems.append(self.failure)
        problems.extend(p for p in self.problems if p not in problems)
        self.result["problems"] = problems
        self.result["healthy"] = not problems
        self.result["elapsed_s"] = round(time.monotonic() - self.started, 3)
        return self.result

    # ------------------------------------------------------------------ runs
    def plan(self) -> list:
        params = self.params
        if params["use_test_receiver"]:
            receiver = "create a test receiver with POST /test-receivers"
        else:
            receiver = "start a receiver on %s:%s" % (params["receiver_host"], params["receiver_port"] or "<free port>")
            if params["public_url"]:
                receiver += " reached through %s" % params["public_url"]
        trigger = {"test": "call POST /webhooks/:id/test %d time(s)" % params["count"],
                   "job": "submit %d %s job(s) through %s" % (params["count"], params["job_type"], params["api_url"]),
                   "none": "listen for %d delivery(ies)" % params["count"]}[params["trigger"]]
        return [receiver,
                "register a webhook for %s with a random secret and retry_config %s" % (
                    ", ".join(params["events"]), self.retry),
                "read it back with GET /webhooks/:id and GET /webhooks",
                trigger + (", refusing the first %d attempt(s) of each event" % params["fail_first"]
                           if params["fail_first"] else ""),
                "wait up to %s s and measure success rate, latency, signatures (%s) and payloads" % (
                    params["timeout"], params["signature_scheme"]),
                "delete the webhook and stop the receiver"]

    def run_check_mode(self) -> dict:
        try:
            problems = bad_input_problems(self.params, self.secret)
            if problems:
                raise ProbeError("bad input: " + "; ".join(problems))
            self.read_health()
            self.service.expect(self.service.call("GET", "/webhooks", "/webhooks"), "GET /webhooks", (200,))
        except (ProbeError, ServiceError) as exc:
            self.failure = str(exc)
        self.result["plan"] = self.plan()
        return self.finish()

    def run(self) -> dict:
        try:
            problems = bad_input_problems(self.params, self.secret)
            if problems:
                raise ProbeError("bad input: " + "; ".join(problems))
            self.read_health()
            self.start_receiver()
            self.register()
            self.fire()
            self.wait()
        except (ProbeError, ServiceError) as exc:
            self.failure = str(exc)
        finally:
            if self.receiver is not None and not self.deliveries:
                self.deliveries = self.receiver.snapshot()
            self.cleanup()
        self.analyse()
        return self.finish()


def main() -> None:
    # No mutually_exclusive or required_if: they judge presence before defaults (refusing
    # use_test_receiver=false with public_url); bad_input_problems is the one validation path.
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    probe = WebhookProbe(module)
    result = probe.run_check_mode() if module.check_mode else probe.run()
    if result["problems"]:
        module.fail_json(msg="webhook probe: " + "; ".join(result["problems"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
