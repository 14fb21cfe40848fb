#!/usr/bin/python
# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: otel_verify
short_description: Prove that traces, metrics and logs reach the telemetry backend, not only the collector
version_added: 0.1.0
description:
  - Sends one canary per requested signal (a span, a gauge data point, a log record) over OTLP/HTTP to
    O(endpoint), tagged with a fresh trace id and a run id (attribute C(emp.canary.run_id)), speaking
    as O(service_name). Then it queries O(backend) until each canary is visible or O(timeout) passes,
    and reports the time-to-visibility of each signal.
  - The collector's answer is read as the OTLP specification says. A 200 whose C(partialSuccess)
    rejects items is a problem; 400 and other 4xx are permanent failures; 429, 502, 503 and 504 are
    retried, honouring C(Retry-After), while O(timeout) allows; a refused connection is retried with
    backoff.
  - Optionally it checks the collector's health endpoint, that the collector's export-failure
    self-metrics (C(otelcol_exporter_send_failed_*), C(otelcol_exporter_enqueue_failed_*), with or
    without C(_total)) do not grow while the check runs, and that named services sent spans within
    O(lookback) seconds (canaries left out).
  - Every check asked for is a threshold. A problem with a signal in O(required_signals), an unhealthy
    collector, growing failure counters or a silent service is reported in RV(problems) with its
    figure and fails the task; so does a backend that cannot be queried (token refused, unknown
    dataset). Problems with other signals are warnings.
  - It writes only its own canary data and changes no configuration, so it reports C(changed=false).
  - The canary is encoded without opentelemetry-proto (a small protobuf writer), so the target needs
    nothing beyond Python.
  - "Checklist items: OTEL Direct Integration (traces in Dash0, metric collection and export, log
    aggregation without FluentBit, performance impact), alert OTEL export failures, phase 2 GO/NO-GO
    traces, metrics and logs appearing in Dash0, hourly verify telemetry data flowing to Dash0."
author:
  - emp.deploy maintainers (@emp-deploy)
extends_documentation_fragment:
  - emp.deploy.otel
  - emp.deploy.attributes.probe
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Check mode runs in full. The canary is the measurement; it is telemetry about the probe itself
        and changes no system state.
options:
  endpoint:
    description:
      - OTLP/HTTP base URL of the collector (or of Dash0's ingress), for example C(http://127.0.0.1:4318).
        C(/v1/traces), C(/v1/metrics) and C(/v1/logs) are appended.
    type: str
    required: true
  protocol:
    description: OTLP/HTTP encoding of the canaries.
    type: str
    choices: [http/protobuf, http/json]
    default: http/protobuf
  compression:
    description: Compress the canary requests (C(Content-Encoding)).
    type: str
    choices: [none, gzip]
    default: none
  headers:
    description:
      - HTTP headers sent with every export, for example C(Authorization) and C(Dash0-Dataset) when
        sending to Dash0's ingress directly. Secrets, never logged or returned.
    type: dict
    default: {}
  signals:
    description: Signals to send a canary for.
    type: list
    elements: str
    choices: [traces, metrics, logs]
    default: [traces, metrics, logs]
  required_signals:
    description:
      - Signals whose canary must be accepted and become visible (and meet O(max_visibility_s)); a
        failure with another signal is only a warning. Defaults to O(signals).
    type: list
    elements: str
    choices: [traces, metrics, logs]
  service_name:
    description: C(service.name) of the canaries, for example C(emp-api) to speak as the API.
    type: str
    default: emp-deploy-canary
  resource_attributes:
    description:
      - 'Extra resource attributes of the canaries, for example C({deployment.environment: production}).
        Values are strings, numbers, booleans or lists of them.'
    type: dict
    default: {}
  timeout:
    description:
      - Seconds the whole check may take, sending, retries and polling for visibility together. A peer
        that answers one byte at a time cannot stretch it.
      - The reads that close the check (the self-metrics of O(metrics_url) after the canaries, and
        O(expect_services)) share at most 1 s more.
    type: float
    default: 30.0
  poll_interval:
    description:
      - Longest pause between two visibility queries. Polling starts at 0.2 s and backs off up to this.
    type: float
    default: 1.0
  max_visibility_s:
    description:
      - 'Longest acceptable time-to-visibility per signal in seconds, from the collector accepting the
        canary to the backend showing it, for example C({traces: 10, logs: 10, metrics: 30}).'
    type: dict
    default: {}
  metric_name:
    description: Name of the canary gauge.
    type: str
    default: emp_deploy_canary
  metric_query:
    description:
      - PromQL that finds the canary data point (O(backend=dash0)); C({run_id}) is replaced by the run id.
        The default selects O(metric_name) with label C(emp_canary_run_id), the Prometheus spelling of
        the attribute C(emp.canary.run_id).
    type: str
  run_id:
    description:
      - Run id put on the canaries (letters, digits, C(.), C(_), C(-); at most 64). Generated when absent.
    type: str
  health_url:
    description:
      - URL of the collector's health_check extension, for example C(http://127.0.0.1:13133/). It must
        answer 200.
    type: str
  metrics_url:
    description:
      - URL of the collector's self-metrics, for example C(http://127.0.0.1:8888/metrics). The export
        failure counters must not grow between the first and last read of the check.
    type: str
  expect_services:
    description:
      - Services (C(service.name)) that must have sent spans within the last O(lookback) seconds, the
        services themselves and not the canary, for example C([emp-api, emp-webhook, emp-worker]).
        Needs a query backend.
    type: list
    elements: str
    default: []
  lookback:
    description: Seconds back O(expect_services) looks for spans. Ignored when O(since) is set.
    type: int
    default: 300
  since:
    description:
      - A moment (seconds since the epoch, on the clock of the host the module runs on) from which
        O(expect_services) looks for spans, instead of a fixed O(lookback), for example when the
        traffic meant to produce them began. The window then grows with the time the checks take,
        so a slow sample does not lose the spans it is looking for, and spans from before that
        moment (a previous release) never count.
    type: float
seealso:
  - module: emp.deploy.gate
    description: Samples this probe over a soak window and decides GO or NO-GO.
  - name: OTLP specification, OTLP/HTTP
    description: Request and response encoding, partial success, retryable status codes.
    link: https://opentelemetry.io/docs/specs/otlp/#otlphttp
  - name: Dash0 API, query spans
    description: The query API the O(backend=dash0) mode uses.
    link: https://www.dash0.com/docs/api-reference/operations/post/api/spans
"""

EXAMPLES = r"""
- name: Traces, metrics and logs reach Dash0 through the collector within 30 s
  emp.deploy.otel_verify:
    endpoint: http://otel-collector.internal:4318
    service_name: emp-api
    resource_attributes:
      deployment.environment: production
    backend: dash0
    query_url: https://api.eu-west-1.aws.dash0.com
    query_headers:
      Authorization: "Bearer {{ vault_dash0_api_token }}"
      Dash0-Dataset: production
    max_visibility_s: {traces: 30, metrics: 60, logs: 30}
    health_url: http://otel-collector.internal:13133/
    metrics_url: http://otel-collector.internal:8888/metrics
    expect_services: [emp-api, emp-webhook, emp-worker]
    lookback: 600
    timeout: 90
  register: telemetry

- name: Phase 2 gate - telemetry flows, sampled five times over the soak window
  emp.deploy.gate:
    name: telemetry-flowing
    phase: telemetry
    component: otel
    checklist_ref: "Phase 2 GO/NO-GO: Traces, metrics, and logs appearing in Dash0"
    probe:
      module: emp.deploy.otel_verify
      args:
        endpoint: "{{ otlp_endpoint }}"
        query_url: "{{ dash0_api_url }}"
        query_headers: {Authorization: "Bearer {{ vault_dash0_api_token }}"}
    samples: 5
    interval: 60
    criteria:
      - result.healthy
      - result.visibility_s.traces < 30

- name: Traces only, JSON and gzip, proven in Tempo
  emp.deploy.otel_verify:
    endpoint: http://127.0.0.1:4318
    protocol: http/json
    compression: gzip
    signals: [traces]
    backend: tempo
    query_url: http://tempo.internal:3200

- name: Ingest only (the collector accepts), no backend query
  emp.deploy.otel_verify:
    endpoint: http://127.0.0.1:4318
    backend: none
    metrics_url: http://127.0.0.1:8888/metrics
"""

RETURN = r"""
healthy:
  description: True when every check asked for holds.
  returned: always
  type: bool
problems:
  description: One sentence per check that does not hold, or per failure to measure, with the figure.
  returned: always
  type: list
  elements: str
  sample: ["traces canary accepted by 127.0.0.1:4318 but not visible in dash0 at 127.0.0.1:8081 after 5.0 s (9 queries)"]
run_id:
  description: Run id carried by every canary (attribute C(emp.canary.run_id)).
  returned: always
  type: str
  sample: 3f0c9a6e2b1d4c8f
trace_id:
  description: Trace id of the canary span; the log record carries it too.
  returned: always
  type: str
  sample: 5b8efff798038103d269b633813fc60c
backend:
  description: The backend arrival was proven in, with its host:port.
  returned: always
  type: str
  sample: dash0 at 127.0.0.1:8081
signals:
  description:
    - Per signal sent. C(accepted) is the collector's 2xx without rejection; C(status) the last HTTP status
      (null when no answer); C(attempts) and C(retries) (status, Retry-After and wait of each retry);
      C(rejected) and C(error_message) from C(partialSuccess); C(send_s) from the first attempt to
      acceptance; C(checked) whether the backend can show this signal; C(visible); C(visibility_s) from
      acceptance to the first query that saw it; C(round_trip_s) from the first attempt to that query;
      C(queries); C(required).
  returned: always
  type: dict
  sample:
    traces: {accepted: true, status: 200, attempts: 1, retries: [], rejected: 0, error_message: "",
             send_s: 0.004, checked: true, visible: true, visibility_s: 0.21, round_trip_s: 0.214,
             queries: 2, required: true}
visibility_s:
  description: Time-to-visibility per signal (null when not visible or not checked), for gate criteria.
  returned: always
  type: dict
  sample: {traces: 0.21, metrics: 0.43, logs: 0.21}
collector:
  description:
    - C(health) (url, http_status, status, healthy, error) when O(health_url) is set; C(self_metrics) with
      before, after and growth of each export-failure counter family (suffix dropped) when O(metrics_url)
      is set.
  returned: always
  type: dict
  sample:
    health: {url: "127.0.0.1:13133/", http_status: 200, status: Server available, healthy: true, error: null}
    self_metrics: {otelcol_exporter_send_failed_spans: {before: 0, after: 0, growth: 0}}
services:
  description: Per service of O(expect_services) whether it sent spans within O(lookback) (or since O(since)), how many were read, and the age of the newest.
  returned: always
  type: dict
  sample: {emp-api: {seen: true, spans: 12, latest_age_s: 1.4, error: null}}
duration_ms:
  description: Time the probe spent, in milliseconds.
  returned: always
  type: float
"""

import gzip
import re
import threading
import time
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.emp.deploy.plugins.module_utils._otel_backends import (
    BACKENDS,
    OTEL_BACKEND_ARGSPEC,
    OTEL_BACKEND_REQUIRED_IF,
    Canary,
    QueryError,
)
from ansible_collections.emp.deploy.plugins.module_utils._otel_collector import (
    CollectorError,
    check_health,
    counter_growth,
    read_failure_counters,
)
from ansible_collections.emp.deploy.plugins.module_utils._http import (
    Deadline,
    HttpClient,
    HttpFailure,
    hostport,
    retry_after_seconds,
)
from ansible_collections.emp.deploy.plugins.module_utils._otlp import (
    ITEM_UNIT,
    SIGNAL_PATHS,
    SIGNALS,
    ProtobufError,
    build_canary,
    describe_error_body,
    encode_canary,
    new_span_id,
    new_trace_id,
    parse_export_answer,
)

RETRYABLE_STATUSES = (429, 502, 503, 504)
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 5.0
FIRST_POLL_S = 0.2
# The reads that close the check (self-metrics after, expect_services) share this much time past the timeout.
CLOSING_GRACE_S = 1.0
USER_AGENT = "emp.deploy.otel_verify"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
METRIC_NAME_PATTERN = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:.]*$")

ARGUMENT_SPEC: dict = dict(
    endpoint=dict(type="str", required=True),
    protocol=dict(type="str", default="http/protobuf", choices=["http/protobuf", "http/json"]),
    compression=dict(type="str", default="none", choices=["none", "gzip"]),
    headers=dict(type="dict", default={}, no_log=True),
    signals=dict(type="list", elements="str", default=list(SIGNALS), choices=list(SIGNALS)),
    required_signals=dict(type="list", elements="str", choices=list(SIGNALS)),
    service_name=dict(type="str", default="emp-deploy-canary"),
    resource_attributes=dict(type="dict", default={}),
    timeout=dict(type="float", default=30.0),
    poll_interval=dict(type="float", default=1.0),
    max_visibility_s=dict(type="dict", default={}),
    metric_name=dict(type="str", default="emp_deploy_canary"),
    metric_query=dict(type="str"),
    run_id=dict(type="str"),
    health_url=dict(type="str"),
    metrics_url=dict(type="str"),
    expect_services=dict(type="list", elements="str", default=[]),
    lookback=dict(type="int", default=300),
    since=dict(type="float"),
)
ARGUMENT_SPEC.update(OTEL_BACKEND_ARGSPEC)
REQUIRED_IF = OTEL_BACKEND_REQUIRED_IF


# --- option validation ---------------------------------------------------------------------------
def _http_url_problem(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{name} must be an http:// or https:// URL with a host, got {value!r}"
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError:
        return f"{name} has an invalid port: {value!r}"
    return None


def _attribute_value_ok(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(item, (str, int, float, bool)) for item in value)
    return isinstance(value, (str, int, float, bool))


def validate_options(params: dict) -> str | None:
    """The first option problem as a sentence, or None."""
    for name in ("timeout", "poll_interval", "request_timeout"):
        if params[name] <= 0:
            return f"{name} must be greater than 0, got {params[name]}"
    if params["lookback"] <= 0:
        return f"lookback must be a positive number of seconds, got {params['lookback']}"
    if params["since"] is not None and params["since"] <= 0:
        return f"since must be a positive number of seconds since the epoch, got {params['since']}"
    for name in ("endpoint", "query_url", "health_url", "metrics_url"):
        problem = _http_url_problem(name, params.get(name))
        if problem:
            return problem
    signals = params["signals"]
    if not signals:
        return "signals must name at least one of traces, metrics, logs"
    stray = [s for s in params.get("required_signals") or [] if s not in signals]
    if stray:
        return f"required_signals {stray} are not in signals {signals}"
    for signal, limit in (params.get("max_visibility_s") or {}).items():
        if signal not in signals:
            return f"max_visibility_s names {signal!r}, which is not in signals {signals}"
        try:
            if isinstance(limit, bool):
                raise TypeError("a boolean is not a duration")
            limit = float(limit)
        except (TypeError, ValueError):
            return f"max_visibility_s[{signal!r}] must be a number of seconds, got {limit!r}"
        if limit <= 0:
            return f"max_visibility_s[{signal!r}] must be greater than 0, got {limit}"
    if params["expect_services"] and params["backend"] == "none":
        return "expect_services needs a query backend (dash0, tempo or jaeger), not backend=none"
    if params.get("run_id") is not None and not RUN_ID_PATTERN.match(params["run_id"]):
        return f"run_id must be 1-64 letters, digits, '.', '_' or '-', got {params['run_id']!r}"
    if not METRIC_NAME_PATTERN.match(params["metric_name"]):
        return f"metric_name {params['metric_name']!r} is not a valid metric name"
    for key, value in (params.get("resource_attributes") or {}).items():
        if not _attribute_value_ok(value):
            return f"resource_attributes[{key!r}] must be a string, number, boolean or a list of them, got {value!r}"
    if not params["service_name"].strip():
        return "service_name must not be empty"
    return None


def default_metric_query(metric_name: str) -> str:
    """PromQL for the canary gauge; Prometheus spells dots in names and labels as underscores."""
    return re.sub(r"[^A-Za-z0-9_:]", "_", metric_name) + '{emp_canary_run_id="{run_id}"}'


# --- the probe -----------------------------------------------------------------------------------
def send_canary(http: HttpClient, url: str, body: bytes, headers: dict, deadline: Deadline,
                request_timeout: float, signal: str) -> dict:
    """POSTs one canary with OTLP retry rules; returns the signal's send report."""
    report: dict = {"accepted": False, "status": None, "attempts": 0, "retries": [], "rejected": 0,
                    "error_message": "", "send_s": None, "problem": None}
    started = time.monotonic()
    backoff = FIRST_BACKOFF_S
    target = f"{hostport(url)}{urlsplit(url).path}"
    while True:
        report["attempts"] += 1
        wait = None
        try:
            answer = http.request("POST", url, deadline=deadline.within(request_timeout), body=body, headers=headers)
        except HttpFailure as exc:
            report["status"] = None
            why = exc.sentence("the collector")
            wait = backoff
        else:
            report["status"] = answer.status
            if answer.ok:
                return _accepted(report, answer, signal, target, started)
            said = describe_error_body(answer.body, answer.header("content-type"))
            why = f"HTTP {answer.status}" + (f" ({said})" if said else "")
            if answer.status not in RETRYABLE_STATUSES:
                report["problem"] = (f"{signal} canary to {target}: {why}, a permanent failure "
                                     "(not retried, as OTLP prescribes)")
                return report
            asked = retry_after_seconds(answer.header("retry-after"))
            wait = asked if asked is not None else backoff
            report["retries"].append({"status": answer.status, "retry_after_s": asked, "wait_s": round(wait, 3)})
        remaining = deadline.remaining()
        if wait >= remaining:
            report["problem"] = (f"{signal} canary to {target}: {why} after {report['attempts']} attempt(s) in "
                                 f"{time.monotonic() - started:.1f} s; the next retry in {wait:.1f} s does not fit "
                                 f"in the {remaining:.1f} s left of the {deadline.total:g} s timeout")
            return report
        time.sleep(wait)
        backoff = min(backoff * 2, MAX_BACKOFF_S)


def _accepted(report: dict, answer, signal: str, target: str, started: float) -> dict:
    report["send_s"] = round(time.monotonic() - started, 4)
    try:
        rejected, message = parse_export_answer(signal, answer.body, answer.header("content-type"))
    except (ProtobufError, ValueError, UnicodeDecodeError) as exc:
        report["problem"] = f"{signal} canary to {target}: HTTP {answer.status} with an unreadable body ({exc})"
        return report
    report["rejected"], report["error_message"] = rejected, message
    if rejected > 0:
        report["problem"] = (f"{signal} canary to {target}: HTTP {answer.status} but partialSuccess rejected "
                             f"{rejected} {ITEM_UNIT[signal]}(s) of 1" + (f": {message}" if message else ""))
        return report
    report["accepted"] = True
    return report


class Verification:
    """One signal's canary: send it, then query until it is visible. Runs in its own thread so a
    signal that waits on Retry-After does not inflate another signal's time-to-visibility."""

    def __init__(self, signal: str, url: str, body: bytes, headers: dict, backend, canary: Canary,
                 deadline: Deadline, params: dict, stop: threading.Event, required: bool):
        self.signal, self.url, self.body, self.headers = signal, url, body, headers
        self.backend, self.canary, self.deadline, self.params = backend, canary, deadline, params
        self.stop = stop
        self.fatal: str | None = None
        self.report: dict = {"checked": bool(backend and signal in backend.signals), "visible": None,
                             "visibility_s": None, "round_trip_s": None, "queries": 0, "required": required}

    def run(self, http: HttpClient) -> None:
        try:
            self._send_then_poll(http)
        except Exception as exc:  # pylint: disable=broad-except  # a thread must report, not vanish
            self.report.setdefault("accepted", False)
            self.report["problem"] = f"{self.signal} check crashed: {type(exc).__name__}: {exc}"

    def _send_then_poll(self, http: HttpClient) -> None:
        first_attempt_at = time.monotonic()
        self.report.update(send_canary(http, self.url, self.body, self.headers, self.deadline,
                                       self.params["request_timeout"], self.signal))
        if not (self.report["accepted"] and self.report["checked"]):
            return
        accepted_at = time.monotonic()
        self.report["visible"] = False
        pause = FIRST_POLL_S
        while not self.stop.is_set():
            remaining = self.deadline.remaining()
            if remaining <= 0:
                return
            self.report["queries"] += 1
            try:
                found = self.backend.find(self.signal, self.canary, self.deadline.within(self.params["request_timeout"]))
            except QueryError as exc:
                self.fatal = str(exc)
                if exc.everyone:
                    self.stop.set()  # the other signals would meet the same refusal
                return
            if found:
                now = time.monotonic()
                self.report.update(visible=True, visibility_s=round(now - accepted_at, 3),
                                   round_trip_s=round(now - first_attempt_at, 3))
                return
            self.stop.wait(min(pause, self.deadline.remaining()))
            pause = min(pause * 1.5, self.params["poll_interval"])


def span_lookback(params: dict) -> float:
    """Seconds back to look for the expected services' spans: from O(since) up to now, or O(lookback)."""
    if params["since"] is None:
        return float(params["lookback"])
    return max(1.0, time.time() - params["since"])  # unrounded: rounding down would lose the first spans


def span_window_text(params: dict, lookback: float) -> str:
    if params["since"] is None:
        return f"in the last {params['lookback']} s"
    moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(params["since"]))
    return f"since {moment} ({lookback:.1f} s ago)"


def run_probe(params: dict, http: HttpClient | None = None) -> dict:
    """Sends the canaries, proves arrival and runs the collector and service checks."""
    deadline = Deadline(params["timeout"])
    http = http or HttpClient(validate_certs=params["validate_certs"], ca_path=params.get("ca_path"),
                              user_agent=USER_AGENT, follow_redirects="safe")
    signals = [s for s in SIGNALS if s in params["signals"]]
    required = set(params.get("required_signals") or signals)
    run_id = params.get("run_id") or new_trace_id()[:16]
    trace_id, span_id = new_trace_id(), new_span_id()
    metric_query = (params.get("metric_query") or default_metric_query(params["metric_name"])).replace(
        "{run_id}", run_id)
    backend = None
    if params["backend"] != "none":
        query_headers = {str(name): str(value) for name, value in (params.get("query_headers") or {}).items()}
        backend = BACKENDS[params["backend"]](http, params["query_url"], query_headers)
    problems: list[str] = []
    warnings: list[str] = []
    collector: dict = {}
    request_timeout = params["request_timeout"]

    if params.get("health_url"):
        collector["health"] = check_health(http, params["health_url"], deadline.within(request_timeout))
        health = collector["health"]
        if not health["healthy"]:
            said = health["error"] or f"HTTP {health['http_status']}" + (
                f" ({health['status']})" if health["status"] else "")
            problems.append(f"collector health at {health['url']} is not OK: {said}")
    counters_before = None
    if params.get("metrics_url"):
        try:
            counters_before = read_failure_counters(http, params["metrics_url"], deadline.within(request_timeout))
        except CollectorError as exc:
            problems.append(str(exc))

    base = params["endpoint"].rstrip("/")
    time_ns = time.time_ns()
    canary = Canary(run_id, trace_id, span_id, time_ns, metric_query)
    stop = threading.Event()
    verifications = []
    for signal in signals:
        body, content_type = encode_canary(signal, build_canary(
            signal, params["service_name"], params.get("resource_attributes") or {}, run_id, trace_id, span_id,
            time_ns, params["metric_name"]), params["protocol"])
        headers = {str(name): str(value) for name, value in (params.get("headers") or {}).items()}
        headers["Content-Type"] = content_type
        if params["compression"] == "gzip":
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        verifications.append(Verification(signal, base + SIGNAL_PATHS[signal], body, headers, backend, canary,
                                          deadline, params, stop, signal in required))
    threads = [threading.Thread(target=v.run, args=(http,), name=f"otel-verify-{v.signal}") for v in verifications]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reports = {v.signal: v.report for v in verifications}
    for fatal in dict.fromkeys(v.fatal for v in verifications if v.fatal):
        problems.append(f"cannot prove arrival: {fatal}")

    for verification in verifications:
        signal, report = verification.signal, verification.report
        cut_short = verification.fatal is not None or (stop.is_set() and not report["visible"])
        found, cautions = signal_findings(signal, report, params, backend, cut_short, base)
        (problems if report["required"] else warnings).extend(found)
        warnings.extend(cautions)

    closing = Deadline(deadline.remaining() + CLOSING_GRACE_S)
    if counters_before is not None:
        try:
            after = read_failure_counters(http, params["metrics_url"], closing.within(request_timeout))
        except CollectorError as exc:
            problems.append(str(exc))
        else:
            collector["self_metrics"] = counter_growth(counters_before, after)
            for family, figures in collector["self_metrics"].items():
                if figures["growth"] > 0:
                    problems.append(f"collector self-metric {family} grew by {figures['growth']} "
                                    f"({figures['before']} -> {figures['after']}) during the check")

    services = {}
    if backend is not None and not stop.is_set():
        for service in params["expect_services"]:
            lookback = span_lookback(params)
            try:
                activity = backend.service_activity(service, lookback, closing.within(request_timeout))
            except QueryError as exc:
                problems.append(f"cannot check service {service!r}: {exc}")
                break
            services[service] = activity
            if activity["seen"] is None:
                problems.append(f"cannot check service {service!r} in {backend.target}: {activity['error']}")
            elif not activity["seen"]:
                problems.append(f"service {service!r} sent no spans {span_window_text(params, lookback)} "
                                f"({backend.target})")

    for report in reports.values():
        report.pop("problem", None)
    return {
        "changed": False,
        "healthy": not problems,
        "problems": problems,
        "warnings_found": warnings,
        "run_id": run_id,
        "trace_id": trace_id,
        "backend": backend.target if backend else "none",
        "signals": reports,
        "visibility_s": {s: r["visibility_s"] for s, r in reports.items()},
        "collector": collector,
        "services": services,
        "duration_ms": round(deadline.elapsed() * 1000, 1),
    }


def signal_findings(signal: str, report: dict, params: dict, backend, cut_short: bool, base: str) -> tuple:
    """(problems, warnings) about one signal: its send failure, invisibility or a slow arrival."""
    if report.get("problem"):
        return [report["problem"]], []
    warnings = []
    if report["error_message"]:
        # partialSuccess with nothing rejected carries a warning from the server (OTLP spec).
        warnings.append(f"{signal} canary accepted by {hostport(base)} with a warning: {report['error_message']}")
    if not report["checked"] or cut_short:  # a query refusal is already reported once
        return [], warnings
    if not report["visible"]:
        hint = f"; last query error: {backend.last_error}" if backend.last_error else ""
        return [f"{signal} canary accepted by {hostport(base)} but not visible in {backend.target} after "
                f"{params['timeout']:g} s ({report['queries']} queries){hint}"], warnings
    limit = (params.get("max_visibility_s") or {}).get(signal)
    if limit is not None and report["visibility_s"] > float(limit):
        return [f"{signal} became visible in {backend.target} after {report['visibility_s']:.2f} s "
                f"> max_visibility_s {float(limit):g} s"], warnings
    return [], warnings


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True)
    params = dict(module.params)
    invalid = validate_options(params)
    if invalid:
        module.fail_json(msg=invalid, changed=False)
    result = run_probe(params)
    for warning in result.pop("warnings_found"):
        module.warn(warning)
    if result["problems"]:
        module.fail_json(msg="; ".join(result["problems"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
