#!/usr/bin/python
# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: metric_query
short_description: Measure a PromQL query on Prometheus, Dash0 or any Prometheus-compatible API
version_added: 0.2.0
description:
  - The generic metric probe, as the Prometheus providers of Argo Rollouts and Flagger are. It sends one
    PromQL query to the Prometheus HTTP API at O(url) and returns the raw RV(series) and, when the answer
    is one figure, RV(value). Dash0 (C(/api/prometheus)), Prometheus, Thanos, VictoriaMetrics and Mimir all
    answer it.
  - An instant query (C(/api/v1/query)) by default; a range query (C(/api/v1/query_range)) with O(range)
    (the window ending now) or O(start) and O(end), every O(step).
  - RV(value) is the one sample of an instant query with one series (or a scalar), or the one series of a
    range query reduced by O(reduce). A result without series is RV(empty), never a silent 0, and
    RV(value) is then null. Values are strings on the wire because NaN and +/-Inf exist; such a value is
    named in RV(special) (V(NaN), V(+Inf), V(-Inf)) and RV(value) is null, so no criterion compares it
    as a number.
  - "Failures are told apart, as M(emp.deploy.gate) counts them. A query the API refuses (HTTP 400 or 422,
    C(bad PromQL: <the API's error>)) or refused credentials (401, 403) fail at once, are not retried,
    and carry RV(error_kind), so a gate counts a B(failure) and says NO-GO without waiting. A backend that
    cannot answer (refused connection, 5xx, 503, O(timeout) passed, an answer that is not the API's JSON)
    fails without measurements: the gate counts a B(could not measure) error sample, and never GO from it."
  - With O(reduce) set, a result of several series is an error (aggregate them in PromQL, with C(sum),
    C(max) or C(avg)); without it, several series are returned in RV(series) and RV(value) is null.
  - It reads only, so it reports C(changed=false) and runs in check mode as in a normal run.
  - Credentials (O(bearer_token), the values of O(headers)) never appear in any output or message.
author:
  - emp.deploy maintainers (@emp-deploy)
extends_documentation_fragment:
  - emp.deploy.prometheus
  - emp.deploy.attributes.probe
options:
  query:
    description: The PromQL expression (see the examples).
    type: str
    required: true
  range:
    description:
      - Makes it a range query over the window of this length that ends now, for example V(24h), V(90s),
        V(1h30m) or a number of seconds. Mutually exclusive with O(start) and O(end).
    type: raw
  start:
    description:
      - Start of a range query, as seconds since the epoch or an RFC 3339 time with its offset
        (V(2026-12-03T10:00:00Z)).
    type: raw
  end:
    description: End of a range query (as O(start)); now when omitted. Needs O(start).
    type: raw
  step:
    description:
      - Resolution of a range query, a duration as O(range) (V(15s), V(1m)). By default the range divided
        into about 250 points, at least 1 s. At most 11,000 points per series, as Prometheus allows.
    type: raw
  reduce:
    description:
      - How the samples of a range query's one series become RV(value), oldest first. V(last), V(min), V(max),
        V(avg), V(sum), or V(increase) (the counter's growth, counting a drop as a reset, without
        extrapolation). A NaN in the range makes the figure NaN (named in RV(special)).
      - An instant query's one sample is its value whatever O(reduce) says.
    type: str
    choices: [last, min, max, avg, sum, increase]
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: It only reads; check mode queries exactly as a normal run does.
notes:
  - The query runs on the host the task targets (usually C(localhost)); O(range) ends at that host's clock.
  - The post-deployment watch (C(emp.deploy.watch)) queries with the same client in-process on the
    controller, with no module execution per check.
seealso:
  - module: emp.deploy.gate
    description: Samples this probe over a soak window and decides GO or NO-GO.
  - name: Prometheus HTTP API
    description: The query and query_range endpoints, the answer's envelope and its error types.
    link: https://prometheus.io/docs/prometheus/latest/querying/api/
"""

EXAMPLES = r"""
- name: API p95 latency over the last 5 minutes, from Dash0
  emp.deploy.metric_query:
    url: https://api.eu-west-1.aws.dash0.com/api/prometheus
    bearer_token: "{{ vault_dash0_api_token }}"
    dataset: production
    query: >-
      histogram_quantile(0.95, sum by (le) (rate(http_server_request_duration_seconds_bucket{job="api"}[5m])))
  register: p95

- name: Jobs completed in the last 24 hours (a counter's increase over a range)
  emp.deploy.metric_query:
    url: http://prometheus.internal:9090
    query: sum(emp_jobs_completed_total{status="completed"})
    range: 24h
    step: 5m
    reduce: increase
  register: jobs_24h

- name: Gate - webhook success above 95 % and no worse than the first sample by more than 10 %
  emp.deploy.gate:
    name: webhook-success-rate
    phase: "{{ emp_phase }}"
    component: webhook
    checklist_ref: "Success criteria: webhook delivery success rate > 95%"
    probe:
      module: emp.deploy.metric_query
      args:
        url: "{{ prometheus_url }}"
        query: >-
          sum(rate(emp_webhook_deliveries_total{outcome="success"}[5m]))
          / sum(rate(emp_webhook_deliveries_total[5m]))
    samples: 5
    interval: 60
    criteria:
      - not result.empty
      - result.value > 0.95
      - result.value >= baseline.value * 0.90

- name: Memory at most 10 % above the figure captured before the deploy
  emp.deploy.gate:
    name: worker-memory
    component: worker
    probe:
      module: emp.deploy.metric_query
      args:
        url: "{{ prometheus_url }}"
        query: max(process_resident_memory_bytes{job="worker"})
    criteria:
      - result.value <= pre_deploy_memory.value * 1.10
"""

RETURN = r"""
healthy:
  description: True when the query was answered (even with no series); false when it failed.
  returned: always
  type: bool
value:
  description:
    - The one figure of the answer (a single sample, or the one series of a range reduced by O(reduce)).
      Null when RV(empty), when the figure is not finite (see RV(special)), or when there is not one
      figure (see RV(no_value_reason)).
  returned: when the query was answered
  type: float
  sample: 0.0421
special:
  description: V(NaN), V(+Inf) or V(-Inf) when the figure is not a finite number, else null.
  returned: when the query was answered
  type: str
  sample: NaN
empty:
  description: True when the result has no series (the metric does not exist, or nothing matched).
  returned: when the query was answered
  type: bool
series:
  description:
    - Every series of the answer, its C(labels) and C(values), a list of [timestamp, value] pairs, value a float or
      V(NaN), V(+Inf), V(-Inf). An instant vector's sample is its one pair; a scalar is one series without labels.
  returned: when the query was answered
  type: list
  elements: dict
  sample: [{labels: {job: api}, values: [[1764756000.0, 0.0421]]}]
result_type:
  description: The API's C(resultType), V(vector), V(matrix), V(scalar) or V(string).
  returned: when the query was answered
  type: str
  sample: vector
reduce:
  description: O(reduce) as applied (null for none).
  returned: when the query was answered
  type: str
samples:
  description: Number of samples in all RV(series).
  returned: when the query was answered
  type: int
no_value_reason:
  description: Why RV(value) is null although series came back (several series, a range without O(reduce)), else null.
  returned: when the query was answered
  type: str
query_warnings:
  description: Warnings the API sent with its answer (they are also shown as task warnings).
  returned: when the query was answered
  type: list
  elements: str
window:
  description: The range query's C(start), C(end) and C(step), in seconds (epoch for start and end); null for an instant query.
  returned: when the query was answered
  type: dict
  sample: {start: 1764669600.0, end: 1764756000.0, step: 346.0}
error_kind:
  description:
    - V(bad_query) (the API refused the query, HTTP 400 or 422), V(unauthorized) (401, 403) or V(ambiguous)
      (O(reduce) set but several series came back). Failures that are not worth retrying.
    - A backend that could not answer (unavailable, timeout, not the API's JSON) returns no RV(error_kind) and no
      measurement, so M(emp.deploy.gate) counts a could-not-measure error sample.
  returned: on those failures
  type: str
  sample: bad_query
status:
  description: HTTP status of a refused query.
  returned: with RV(error_kind) V(bad_query) or V(unauthorized)
  type: int
  sample: 400
error:
  description: Why nothing was measured, the same sentence as C(msg).
  returned: when the backend could not answer
  type: str
target:
  description: host:port/path of O(url), without credentials.
  returned: always
  type: str
  sample: 127.0.0.1:9090/
duration_ms:
  description: Time the query took, in milliseconds.
  returned: always
  type: float
"""

import math
import time
from datetime import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.emp.deploy.plugins.module_utils._http import where
from ansible_collections.emp.deploy.plugins.module_utils._prometheus import (
    BAD_QUERY,
    PROM_CONNECTION_ARGSPEC,
    REDUCERS,
    UNAUTHORIZED,
    PromError,
    PromResult,
    check_range,
    client_from,
    default_step,
    parse_duration,
)

USER_AGENT = "emp.deploy.metric_query"
AMBIGUOUS = "ambiguous"

ARGUMENT_SPEC: dict = dict(
    query=dict(type="str", required=True),
    range=dict(type="raw"),
    start=dict(type="raw"),
    end=dict(type="raw"),
    step=dict(type="raw"),
    reduce=dict(type="str", choices=list(REDUCERS)),
)
ARGUMENT_SPEC.update(PROM_CONNECTION_ARGSPEC)
MUTUALLY_EXCLUSIVE = [("range", "start"), ("range", "end")]
REQUIRED_BY = {"end": "start"}


class OptionError(ValueError):
    """An option that cannot be used, as a sentence."""


def parse_time(name: str, value) -> float:
    """Seconds since the epoch from a number or an RFC 3339 time with an offset."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise OptionError(f"{name} must be seconds since the epoch or an RFC 3339 time, not {type(value).__name__}")
    if isinstance(value, str):
        text = value.strip()
        try:
            return _finite(name, float(text))
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise OptionError(f"{name} {value!r} is neither seconds since the epoch nor an RFC 3339 time "
                              "(2026-12-03T10:00:00Z)") from None
        if moment.tzinfo is None:
            raise OptionError(f"{name} {value!r} has no time zone: add Z or an offset such as +01:00")
        return moment.timestamp()
    return _finite(name, float(value))


def _finite(name: str, seconds: float) -> float:
    if not math.isfinite(seconds) or seconds < 0:
        raise OptionError(f"{name} must be a time after the epoch, not {seconds}")
    return seconds


def duration_option(name: str, value) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise OptionError(f"{name}: {exc}") from None


def plan_window(params: dict, now: float) -> dict | None:
    """{start, end, step} of a range query, None for an instant query; raises OptionError."""
    if params["range"] is None and params["start"] is None:
        if params["step"] is not None:
            raise OptionError("step applies to a range query only: set range (or start and end) too")
        return None
    if params["range"] is not None:
        end = now
        start = end - duration_option("range", params["range"])
    else:
        start = parse_time("start", params["start"])
        end = now if params["end"] is None else parse_time("end", params["end"])
    step = default_step(start, end) if params["step"] is None else duration_option("step", params["step"])
    try:
        check_range(start, end, step)
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    return {"start": start, "end": end, "step": step}


def check_options(params: dict) -> None:
    if not params["query"].strip():
        raise OptionError("query must be a PromQL expression, not an empty string")
    if params["timeout"] <= 0 or not math.isfinite(params["timeout"]):
        raise OptionError(f"timeout must be a number of seconds greater than 0, not {params['timeout']}")
    for name, value in (params["headers"] or {}).items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise OptionError(f"headers[{name!r}] must be a string, not {type(value).__name__}")


def span_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def figure_text(result: PromResult) -> str:
    if result.empty:
        return "empty (no series)"
    if result.special:
        return f"{result.special} (not a finite number)"
    if result.value is not None:
        return f"value {result.value:g}"
    return f"no single value: {result.no_value_reason}"


def measured(result: PromResult, window: dict | None, target: str) -> dict:
    """The module's answer for a query the API answered."""
    return {
        "healthy": True,
        "value": result.value,
        "special": result.special,
        "empty": result.empty,
        "series": result.series,
        "result_type": result.result_type,
        "reduce": result.reduce,
        "samples": result.samples,
        "no_value_reason": result.no_value_reason,
        "query_warnings": result.warnings,
        "window": window,
        "target": target,
    }


def describe(result: PromResult, window: dict | None, target: str) -> str:
    if window is None:
        how = "instant query"
    else:
        how = f"range {span_text(window['end'] - window['start'])} step {span_text(window['step'])}"
        if result.reduce:
            how += f" reduced by {result.reduce}"
    count = len(result.series)
    return f"{how} at {target}: {figure_text(result)} ({count} series, {result.samples} samples)"


def run_query(params: dict, now: float) -> tuple[bool, dict]:
    """(ok, result) for the module: ok False means fail_json with that result."""
    target = where(params["url"])
    try:
        check_options(params)
        window = plan_window(params, now)
        client = client_from(params, user_agent=USER_AGENT)
    except (OptionError, ValueError) as exc:
        return False, {"msg": str(exc), "target": target}
    try:
        if window is None:
            result = client.query(params["query"], reduce=params["reduce"])
        else:
            result = client.query_range(params["query"], reduce=params["reduce"], **window)
    except PromError as exc:
        return False, failure(exc, target)
    answer = measured(result, window, target)
    answer["msg"] = describe(result, window, target)
    if params["reduce"] and len(result.series) > 1:
        answer.update(healthy=False, error_kind=AMBIGUOUS,
                      msg=f"reduce {params['reduce']} needs one series, but the query returned {len(result.series)} "
                          "series: aggregate them in PromQL (sum(), max(), avg() ...)")
        return False, answer
    return True, answer


def failure(exc: PromError, target: str) -> dict:
    """A refused query or credentials carry error_kind (a failed measurement: the gate decides at once);
    a backend that could not answer returns no measurement, so the gate counts an error sample."""
    if exc.kind in (BAD_QUERY, UNAUTHORIZED):
        return {"msg": str(exc), "healthy": False, "error_kind": exc.kind, "status": exc.status, "target": target}
    return {"msg": str(exc), "healthy": False, "error": str(exc), "target": target}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE,
                           required_by=REQUIRED_BY, supports_check_mode=True)
    started = time.monotonic()
    ok, result = run_query(dict(module.params), time.time())
    result["duration_ms"] = round((time.monotonic() - started) * 1000.0, 1)
    for warning in result.get("query_warnings") or []:
        module.warn(f"the Prometheus API warns: {warning}")
    if not ok:
        module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
