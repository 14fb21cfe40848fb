#!/usr/bin/python
# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: service_probe
short_description: Measure an HTTP endpoint's latency, error rate and JSON body, and hold WebSockets open
version_added: 0.1.0
description:
  - Read-only probe of a health or API endpoint. It sends O(requests) requests at O(concurrency) and
    measures the latency percentiles (p50, p95, p99), the error rate and every status answered; it can
    query each JSON body with JMESPath expressions (O(json_query)) and compare the values (O(expect_json)).
  - With O(websocket_url) it opens O(websocket_connections) WebSocket connections and holds each for
    O(websocket_hold_s) seconds, answering the server's pings, and counts messages, pings and drops
    (a connection the server closed or lost before the hold ended).
  - A threshold that does not hold is reported in RV(problems) with the figure (C(p95 312 ms > 200 ms over
    200 requests)) and fails the task. An endpoint that answered no request at all cannot be measured -
    RV(reachable) is V(false) and the task fails without figures, so M(emp.deploy.gate) counts it as an
    error sample, never as a pass.
  - "Checklist items: Service Health Monitoring (health endpoints, API latency, WebSocket connections
    maintain stability); API SLA p95 < 200 ms; JSON assertions on health bodies."
  - Needs the C(jmespath) Python package on the target only when O(json_query) is given. The WebSocket
    client is built in (standard library), so the target needs no C(websockets) package.
author:
  - emp.deploy maintainers (@emp-deploy)
extends_documentation_fragment:
  - emp.deploy.attributes.probe
requirements:
  - jmespath (only with O(json_query))
options:
  url:
    description:
      - The http:// or https:// URL to request, for example C(http://api.internal:3331/health).
      - At least one of O(url) and O(websocket_url) is required.
    type: str
  method:
    description:
      - HTTP method. Only the safe methods of RFC 9110 are offered, so the probe cannot change its target.
    type: str
    choices: [GET, HEAD, OPTIONS]
    default: GET
  headers:
    description:
      - Extra request headers (also sent with the WebSocket handshake). Put a bearer token in O(api_token),
        not here, so that it is never shown.
    type: dict
    default: {}
  api_token:
    description:
      - Bearer token sent as C(Authorization) with every request, and with the WebSocket handshake both as
        C(Authorization) and as the C(auth-token) header the EMP API reads there.
      - It never appears in results, messages or problems.
    type: str
  requests:
    description: Number of requests to send.
    type: int
    default: 10
  concurrency:
    description: Requests in flight at once (one thread each), from 1 to O(requests) and at most 64.
    type: int
    default: 1
  expect_status:
    description: Statuses that count as a success; any other answer, and any request without an answer, is an error.
    type: list
    elements: int
    default: [200]
  json_query:
    description:
      - "Values to read from every successful answer's JSON body: a name and a JMESPath expression each, for
        example C({not_ok: \"services[?status!='ok'] | length(@)\", redis: \"redis.connected\"})."
      - RV(json) returns the values of the last answer; a successful answer whose body is not JSON is a problem.
      - Needs the C(jmespath) package on the target.
    type: dict
  expect_json:
    description:
      - "Expected values of O(json_query) names, for example C({not_ok: 0, redis: true}). Every successful
        answer must give exactly that value; each name must be in O(json_query)."
    type: dict
  max_latency_p95_ms:
    description: Highest acceptable 95th percentile of the request latency in milliseconds (the API SLA is 200).
    type: float
  max_error_rate:
    description: Highest acceptable share of requests that failed or answered a status outside O(expect_status) (0 to 1).
    type: float
    default: 0.0
  timeout:
    description:
      - Seconds one request may take as a whole (connect, headers and body), however slowly its bytes
        arrive; a request that runs out of it is an error. Also bounds each WebSocket handshake.
    type: float
    default: 10.0
  validate_certs:
    description: Verify the TLS certificate of an https:// O(url) or wss:// O(websocket_url).
    type: bool
    default: true
  ca_path:
    description: CA bundle (PEM) to verify the server certificate with.
    type: path
  websocket_url:
    description:
      - The ws:// or wss:// URL to hold open, for example C(ws://api.internal:3331/ws/monitor/emp-deploy-probe).
      - Its query (which often carries a C(?token=)) is never shown in results or messages.
    type: str
  websocket_hold_s:
    description: Seconds each WebSocket connection is held open once the handshake is done.
    type: float
    default: 10.0
  websocket_connections:
    description: WebSocket connections held at the same time.
    type: int
    default: 1
  max_websocket_drops:
    description: Highest acceptable number of WebSocket connections that failed to open or were dropped before the hold ended.
    type: int
    default: 0
notes:
  - Latency figures cover the requests that got an answer (whatever its status); requests without one count
    in RV(error_rate) and RV(failures) instead.
  - The probe's whole run takes at most about O(requests) / O(concurrency) times O(timeout), plus O(websocket_hold_s)
    (the WebSocket connections are held while the requests run).
seealso:
  - module: emp.deploy.gate
    description: Samples this probe over a soak window and decides GO or NO-GO.
  - name: JMESPath specification
    description: The query language of O(json_query).
    link: https://jmespath.org/specification.html
"""

EXAMPLES = r"""
- name: API SLA - p95 under 200 ms over 200 requests at 10 in flight, no errors
  emp.deploy.service_probe:
    url: http://api.internal:3331/health
    requests: 200
    concurrency: 10
    max_latency_p95_ms: 200

- name: Every service on the health page says ok
  emp.deploy.service_probe:
    url: http://monitor.internal:3333/health
    json_query:
      not_ok: "services[?status!='ok'] | length(@)"
    expect_json:
      not_ok: 0

- name: WebSocket connections maintain stability for a minute
  emp.deploy.service_probe:
    websocket_url: ws://api.internal:3331/ws/monitor/emp-deploy-probe
    websocket_hold_s: 60
    websocket_connections: 3

- name: Sample the API SLA during a soak window
  emp.deploy.gate:
    name: api-sla
    component: api
    checklist_ref: "Success criteria / API p95 < 200 ms"
    probe:
      module: emp.deploy.service_probe
      args:
        url: http://api.internal:3331/health
        requests: 50
        concurrency: 5
    samples: 5
    interval: 30
    criteria:
      - result.latency_ms.p95 < 200
      - result.error_rate == 0
"""

RETURN = r"""
reachable:
  description: Whether the endpoint answered at least one request (or, without O(url), whether a WebSocket opened).
  returned: always
  type: bool
target:
  description: host:port/path of O(url) (or of O(websocket_url)), without credentials or query.
  returned: always
  type: str
  sample: 127.0.0.1:3331/health
healthy:
  description: True when every threshold and expectation holds.
  returned: always
  type: bool
problems:
  description: One sentence per threshold that does not hold, or per failure to measure, with the figure.
  returned: always
  type: list
  elements: str
  sample: ["p95 312 ms > 200 ms over 200 requests", "error rate 0.05 (10 of 200 requests) > 0.0"]
error:
  description: Why the endpoint could not be measured.
  returned: when not reachable
  type: str
requests:
  description: Requests sent, answered (any status), succeeded (a status in O(expect_status)) and concurrency.
  returned: when O(url) is given and reachable
  type: dict
  sample: {sent: 200, answered: 200, succeeded: 200, concurrency: 10}
latency_ms:
  description: Latency of the answered requests in milliseconds (samples, min, p50, p95, p99, max, mean).
  returned: when O(url) is given and reachable
  type: dict
  sample: {samples: 200, min: 1.2, p50: 2.0, p95: 4.1, p99: 6.3, max: 7.0, mean: 2.3}
error_rate:
  description: Share of requests that got no answer or a status outside O(expect_status).
  returned: when O(url) is given and reachable
  type: float
  sample: 0.0
status:
  description: Answers per HTTP status.
  returned: when O(url) is given and reachable
  type: dict
  sample: {"200": 198, "503": 2}
failures:
  description:
    - Requests without an answer, per kind (V(timeout), V(unreachable), V(truncated), V(not_http), V(tls),
      V(bad_encoding)), and C(examples) with up to 3 of their sentences.
  returned: when O(url) is given and reachable
  type: dict
  sample: {timeout: 2, examples: ["the service at 127.0.0.1:3331 did not answer GET /health within 1.0 s"]}
json:
  description: The O(json_query) values of the last successful answer with a JSON body (name to value).
  returned: when O(json_query) is given and reachable
  type: dict
  sample: {not_ok: 0}
json_checks:
  description:
    - C(checked) successful answers, C(not_json) of them without a JSON body, and C(mismatches) per
      O(expect_json) name (answers whose value differed) with C(seen), the distinct values that differed.
  returned: when O(json_query) is given and reachable
  type: dict
  sample: {checked: 10, not_json: 0, mismatches: {not_ok: 0}, seen: {not_ok: []}}
websocket:
  description:
    - C(connections) attempted, C(opened), C(held_s) (the shortest hold), C(messages) and C(pings) received,
      C(pongs) received, C(drops) (connections that failed to open or were lost before the hold ended),
      C(handshake_ms) (the slowest) and C(errors) (the sentences).
  returned: when O(websocket_url) is given
  type: dict
  sample: {target: "127.0.0.1:3331/ws/monitor/probe", connections: 1, opened: 1, held_s: 10.0, messages: 1,
           pings: 2, pongs: 0, drops: 0, handshake_ms: 1.9, errors: []}
duration_ms:
  description: Time the probe spent, in milliseconds.
  returned: always
  type: float
"""

import json
import threading
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.emp.deploy.plugins.module_utils._http import (
    HttpClient,
    HttpFailure,
    url_problem,
    where,
)
from ansible_collections.emp.deploy.plugins.module_utils._stats import summarize
from ansible_collections.emp.deploy.plugins.module_utils._websocket import (
    Hold,
    WebSocketClient,
    ws_url_problem,
    ws_where,
)

try:
    import jmespath
except ImportError:
    HAS_JMESPATH = False
    JMESPATH_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_JMESPATH = True
    JMESPATH_IMPORT_ERROR = None

MAX_CONCURRENCY = 64
MAX_REQUESTS = 100000
MAX_WEBSOCKETS = 64
EXAMPLES_KEPT = 3
BODY_LIMIT = 4 * 1024 * 1024

ARGUMENT_SPEC: dict = dict(
    url=dict(type="str"),
    method=dict(type="str", choices=["GET", "HEAD", "OPTIONS"], default="GET"),
    headers=dict(type="dict", default={}),
    api_token=dict(type="str", no_log=True),
    requests=dict(type="int", default=10),
    concurrency=dict(type="int", default=1),
    expect_status=dict(type="list", elements="int", default=[200]),
    json_query=dict(type="dict"),
    expect_json=dict(type="dict"),
    max_latency_p95_ms=dict(type="float"),
    max_error_rate=dict(type="float", default=0.0),
    timeout=dict(type="float", default=10.0),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    websocket_url=dict(type="str"),
    websocket_hold_s=dict(type="float", default=10.0),
    websocket_connections=dict(type="int", default=1),
    max_websocket_drops=dict(type="int", default=0),
)


# --- bad input -----------------------------------------------------------------------------------

def _number_problems(params: dict) -> list[str]:
    problems = []
    if not 1 <= params["requests"] <= MAX_REQUESTS:
        problems.append(f"requests must be between 1 and {MAX_REQUESTS}, got {params['requests']}")
    elif not 1 <= params["concurrency"] <= min(params["requests"], MAX_CONCURRENCY):
        problems.append(f"concurrency must be between 1 and requests ({params['requests']}) and at most "
                        f"{MAX_CONCURRENCY}, got {params['concurrency']}")
    if params["timeout"] <= 0:
        problems.append(f"timeout must be greater than 0, got {params['timeout']}")
    if not 0 <= params["max_error_rate"] <= 1:
        problems.append(f"max_error_rate must be between 0 and 1, got {params['max_error_rate']}")
    if params["max_latency_p95_ms"] is not None and params["max_latency_p95_ms"] <= 0:
        problems.append(f"max_latency_p95_ms must be greater than 0, got {params['max_latency_p95_ms']}")
    bad = [code for code in params["expect_status"] if not 100 <= code <= 599]
    if bad or not params["expect_status"]:
        problems.append(f"expect_status must list HTTP statuses (100 to 599), got {params['expect_status']}")
    return problems


def _websocket_problems(params: dict) -> list[str]:
    if not params["websocket_url"]:
        return []
    problems = []
    problem = ws_url_problem(params["websocket_url"])
    if problem:
        problems.append(f"websocket_url {ws_where(params['websocket_url'])}: {problem}")
    if params["websocket_hold_s"] <= 0:
        problems.append(f"websocket_hold_s must be greater than 0, got {params['websocket_hold_s']}")
    if not 1 <= params["websocket_connections"] <= MAX_WEBSOCKETS:
        problems.append(f"websocket_connections must be between 1 and {MAX_WEBSOCKETS}, "
                        f"got {params['websocket_connections']}")
    if params["max_websocket_drops"] < 0:
        problems.append(f"max_websocket_drops must not be negative, got {params['max_websocket_drops']}")
    return problems


def _json_problems(params: dict) -> list[str]:
    queries = params["json_query"] or {}
    problems = []
    for name, expression in queries.items():
        if not isinstance(expression, str) or not expression.strip():
            problems.append(f"json_query '{name}' must be a JMESPath expression (a string), got {expression!r}")
    unknown = [name for name in (params["expect_json"] or {}) if name not in queries]
    if unknown:
        problems.append(f"expect_json names {', '.join(map(str, unknown))} that json_query does not define")
    if (params["json_query"] or params["expect_json"]) and params["method"] != "GET":
        problems.append(f"json_query reads answer bodies, which {params['method']} does not have; use method GET")
    return problems


def bad_input_problems(params: dict) -> list[str]:
    """Sentences about every invalid option (nothing is sent when there is one)."""
    problems = []
    if not params["url"] and not params["websocket_url"]:
        problems.append("give url, websocket_url or both")
    if params["url"]:
        problem = url_problem(params["url"])
        if problem:
            problems.append(f"url {where(params['url'])}: {problem}")
    return problems + _number_problems(params) + _websocket_problems(params) + _json_problems(params)


def compile_queries(queries: dict | None) -> tuple[dict, list[str]]:
    """Compiled JMESPath expressions by name, and a sentence per expression that does not parse."""
    compiled, problems = {}, []
    for name, expression in (queries or {}).items():
        try:
            compiled[str(name)] = jmespath.compile(expression)
        except jmespath.exceptions.JMESPathError as exc:
            detail = " ".join(str(exc).split())
            problems.append(f"json_query '{name}' is not valid JMESPath: {detail}")
    return compiled, problems


# --- HTTP requests --------------------------------------------------------------------------------

class Tally:
    """What the requests saw; threads add to it under a lock."""

    def __init__(self, params: dict, queries: dict) -> None:
        self.params = params
        self.queries = queries
        self.expected = set(params["expect_status"])
        self.expect_json = params["expect_json"] or {}
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.status: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.examples: list[str] = []
        self.succeeded = 0
        self.not_json = 0
        self.checked = 0
        self.json: dict | None = None
        self.mismatches = {name: 0 for name in self.expect_json}
        self.seen: dict[str, list] = {name: [] for name in self.expect_json}

    def answer(self, status: int, elapsed_ms: float, body: bytes) -> None:
        values = self.query(body) if status in self.expected and self.queries else None
        with self.lock:
            self.latencies.append(elapsed_ms)
            self.status[str(status)] = self.status.get(str(status), 0) + 1
            if status not in self.expected:
                return
            self.succeeded += 1
            if not self.queries:
                return
            self.checked += 1
            if values is None:
                self.not_json += 1
                return
            self.json = values
            for name, wanted in self.expect_json.items():
                if values.get(name) != wanted:
                    self.mismatches[name] += 1
                    if values.get(name) not in self.seen[name] and len(self.seen[name]) < EXAMPLES_KEPT:
                        self.seen[name].append(values.get(name))

    def query(self, body: bytes) -> dict | None:
        """The query values of a JSON body, or None when it is not JSON."""
        try:
            document = json.loads(body.decode("utf-8"))
        except ValueError:
            return None
        return {name: expression.search(document) for name, expression in self.queries.items()}

    def failure(self, exc: HttpFailure) -> None:
        with self.lock:
            self.failures[exc.kind] = self.failures.get(exc.kind, 0) + 1
            sentence = exc.sentence("the endpoint")
            if len(self.examples) < EXAMPLES_KEPT and sentence not in self.examples:
                self.examples.append(sentence)


def send_requests(params: dict, tally: Tally) -> None:
    """``requests`` requests from ``concurrency`` threads, each request under its own deadline."""
    client = HttpClient(validate_certs=params["validate_certs"], ca_path=params["ca_path"],
                        user_agent="emp.deploy.service_probe")
    headers = {str(name): str(value) for name, value in params["headers"].items()}
    if params["api_token"]:
        headers["Authorization"] = f"Bearer {params['api_token']}"
    remaining = [params["requests"]]
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            started = time.perf_counter()
            try:
                answer = client.request(params["method"], params["url"], deadline=params["timeout"],
                                        headers=headers, body_limit=BODY_LIMIT)
            except HttpFailure as exc:
                tally.failure(exc)
                continue
            tally.answer(answer.status, (time.perf_counter() - started) * 1000.0, answer.body)

    threads = [threading.Thread(target=worker, name=f"emp-service-probe-{index}", daemon=True)
               for index in range(params["concurrency"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def request_figures(params: dict, tally: Tally) -> dict:
    sent = params["requests"]
    answered = len(tally.latencies)
    failures: dict = dict(sorted(tally.failures.items()))
    failures["examples"] = list(tally.examples)
    figures = {
        "requests": {"sent": sent, "answered": answered, "succeeded": tally.succeeded,
                     "concurrency": params["concurrency"]},
        "latency_ms": summarize(tally.latencies, digits=3),
        "error_rate": round((sent - tally.succeeded) / sent, 6),
        "status": dict(sorted(tally.status.items())),
        "failures": failures,
    }
    if tally.queries:
        figures["json"] = tally.json
        figures["json_checks"] = {"checked": tally.checked, "not_json": tally.not_json,
                                  "mismatches": dict(tally.mismatches), "seen": dict(tally.seen)}
    return figures


def request_problems(params: dict, figures: dict) -> list[str]:
    """One sentence, with the figure, per threshold that does not hold."""
    problems = []
    latency, requests = figures["latency_ms"], figures["requests"]
    limit = params["max_latency_p95_ms"]
    if limit is not None and latency["p95"] is not None and latency["p95"] > limit:
        p95 = latency["p95"]
        shown = f"{p95:.0f}" if p95 >= 100 else f"{p95:.1f}"  # "p95 312 ms", "p95 4.2 ms"
        problems.append(f"p95 {shown} ms > {limit:g} ms over {latency['samples']} requests")
    if figures["error_rate"] > params["max_error_rate"]:
        failed = requests["sent"] - requests["succeeded"]
        others = {code: count for code, count in figures["status"].items()
                  if int(code) not in params["expect_status"]}
        kinds = {kind: count for kind, count in figures["failures"].items() if kind != "examples"}
        detail = ", ".join([f"HTTP {code}: {count}" for code, count in others.items()]
                           + [f"{kind}: {count}" for kind, count in kinds.items()])
        problems.append(f"error rate {figures['error_rate']:.3f} ({failed} of {requests['sent']} requests: {detail}) "
                        f"> {params['max_error_rate']:g}")
    checks = figures.get("json_checks")
    if checks is not None:
        if checks["not_json"]:
            problems.append(f"{checks['not_json']} of {checks['checked']} successful answers had no JSON body "
                            f"for json_query")
        elif checks["checked"] == 0:
            problems.append("no successful answer to query with json_query")
        for name, count in checks["mismatches"].items():
            if count:
                seen = ", ".join(json.dumps(value) for value in checks["seen"][name])
                problems.append(f"json '{name}' was {seen} in {count} of {checks['checked']} answers, "
                                f"expected {json.dumps(params['expect_json'][name])}")
    return problems


# --- WebSockets -----------------------------------------------------------------------------------

def hold_websockets(params: dict) -> list[Hold]:
    headers = {str(name): str(value) for name, value in params["headers"].items()}
    if params["api_token"]:
        # EMP's WebSocket routes read the auth-token header (or ?token=), its HTTP routes the bearer token
        headers["Authorization"] = f"Bearer {params['api_token']}"
        headers["auth-token"] = params["api_token"]
    holds: list[Hold] = [Hold() for _index in range(params["websocket_connections"])]

    def hold(index: int) -> None:
        client = WebSocketClient(params["websocket_url"], headers=headers, validate_certs=params["validate_certs"],
                                 ca_path=params["ca_path"])
        holds[index] = client.hold(time.monotonic() + params["timeout"], params["websocket_hold_s"])

    threads = [threading.Thread(target=hold, args=(index,), name=f"emp-service-probe-ws-{index}", daemon=True)
               for index in range(len(holds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return holds


def websocket_figures(params: dict, holds: list[Hold]) -> dict:
    opened = [h for h in holds if h.connected]
    handshakes = [h.handshake_ms for h in opened if h.handshake_ms is not None]
    return {
        "target": ws_where(params["websocket_url"]),
        "connections": len(holds),
        "opened": len(opened),
        "held_s": min((h.held_s for h in opened), default=0.0),
        "messages": sum(h.messages for h in holds),
        "pings": sum(h.pings for h in holds),
        "pongs": sum(h.pongs for h in holds),
        "drops": sum(1 for h in holds if not h.connected or h.dropped),
        "handshake_ms": max(handshakes) if handshakes else None,
        "errors": list(dict.fromkeys(h.error for h in holds if h.error))[:EXAMPLES_KEPT],
    }


def websocket_problems(params: dict, figures: dict) -> list[str]:
    if figures["drops"] <= params["max_websocket_drops"]:
        return []
    return [f"{figures['drops']} of {figures['connections']} WebSocket connections to {figures['target']} "
            f"dropped within {params['websocket_hold_s']:g} s > {params['max_websocket_drops']}: "
            f"{figures['errors'][0] if figures['errors'] else 'no reason given'}"]


# --- the run --------------------------------------------------------------------------------------

def run_probe(params: dict, queries: dict) -> dict:
    started = time.perf_counter()
    target = where(params["url"]) if params["url"] else ws_where(params["websocket_url"])
    result: dict = {"changed": False, "target": target}
    holds: list[Hold] = []
    ws_thread = None
    if params["websocket_url"]:
        # held while the requests run, so a long hold does not add their time to the probe's
        ws_thread = threading.Thread(target=lambda: holds.extend(hold_websockets(params)), daemon=True)
        ws_thread.start()
    tally = Tally(params, queries)
    if params["url"]:
        send_requests(params, tally)
    if ws_thread is not None:
        ws_thread.join()
    problems: list[str] = []
    reachable = True
    if params["url"]:
        figures = request_figures(params, tally)
        if figures["requests"]["answered"] == 0:
            reachable = False
            examples = figures["failures"]["examples"]
            result["error"] = (f"the endpoint at {target} answered none of {params['requests']} requests: "
                               f"{examples[0] if examples else 'no answer'}")
            problems.append(result["error"])
        else:
            result.update(figures)
            problems += request_problems(params, figures)
    if params["websocket_url"]:
        ws = websocket_figures(params, holds)
        result["websocket"] = ws
        if not params["url"] and ws["opened"] == 0:
            reachable = False
            result["error"] = f"no WebSocket connection to {ws['target']} opened: {ws['errors'][0] if ws['errors'] else 'no reason'}"
            problems.append(result["error"])
        elif reachable:
            problems += websocket_problems(params, ws)
    result["reachable"] = reachable
    result["healthy"] = not problems
    result["problems"] = problems
    result["duration_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = dict(module.params)
    problems = bad_input_problems(params)
    if problems:
        module.fail_json(msg="bad input: " + "; ".join(problems), changed=False)
    queries: dict = {}
    if params["json_query"]:
        if not HAS_JMESPATH:
            module.fail_json(msg=missing_required_lib("jmespath", reason="for json_query"),
                             exception=JMESPATH_IMPORT_ERROR, changed=False)
        queries, problems = compile_queries(params["json_query"])
        if problems:
            module.fail_json(msg="bad input: " + "; ".join(problems), changed=False)
    # the probe only reads: check mode measures exactly as a normal run does
    result = run_probe(params, queries)
    if result["problems"]:
        module.fail_json(msg="; ".join(result["problems"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
