# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file only documents the action plugin plugins/action/watch.py (as ansible.builtin.assert does),
# so that ansible-doc emp.deploy.watch renders it.

from __future__ import annotations

DOCUMENTATION = r"""
module: watch
short_description: Watch a deployment after GO - metric checks on a schedule, alerts, and the success verdict
version_added: 0.2.0
description:
  - The post-deployment watch of the production checklist (first 24 hours), one step per task. The role
    P(emp.deploy.watch#role) and C(playbooks/watch.yml) run it; see C(docs/watch.md).
  - O(step=baseline) runs O(baseline_queries) over the O(window) before now (range queries reduced to one
    figure) and writes them to C(<run_dir>/baseline.json). A query that fails is recorded there with its
    error; the task does not fail for it, so a baseline never stops a deploy.
  - O(step=validate) sends every check's query once (instant) and fails at once, naming the check, when
    one is bad PromQL or the credentials are refused. A backend that cannot answer right now is a warning.
  - "O(step=pass) runs every layer that is due: the C(alert) checks every O(alert_interval) from the start
    of the window, the C(hourly) checks every O(hourly_interval) after it, the C(final) checks once at
    the end. The window (started, ends) is recorded in C(<run_dir>/watch.json) by the first pass and
    never restarted: a later pass, after a kill or from a scheduler, resumes it, runs only what is due
    (slots missed meanwhile run once, not in a burst), and after the end returns the verdict at once."
  - Each check is judged as M(emp.deploy.gate) judges one sample, with the query's answer (as
    M(emp.deploy.metric_query) returns it) bound to C(result) and the check's baseline figure bound to
    C(baseline). A query that cannot answer, returns no series, NaN/Inf or several series is V(NO-DATA)
    (could not measure), never V(GO); a criterion that reads C(baseline) without a captured baseline
    figure is V(NO-DATA) too.
  - "Alerts: an C(alert) or C(hourly) check that says NO-GO raises a breach alert, a gate record in
    RV(emp_gates) in the check's O(checks[].mode) (V(enforce) by default, so the task fails and the
    P(emp.deploy.go_no_go#callback) callback rolls the check's component back) and the watch is done. A
    check that could not measure in more than its O(checks[].consecutive_error_limit) consecutive passes
    raises a NO-DATA alert, a V(warn) gate record (recorded, no rollback); the watch goes on. Each check
    alerts once per streak."
  - "The verdict: V(FAILED) after any alert or a final check that is not V(GO) (a final check that could
    not measure is a V(warn) NO-GO), V(SUCCESS) only when the window completed with every final check
    V(GO) and no alert, V(IN_PROGRESS) until then."
  - Queries run in the controller process (no module per check); a check may name a O(checks[].probe)
    module instead (for example M(emp.deploy.otel_verify)), run through Ansible as the gate runs its probe.
  - This is an action plugin; it runs on the controller.
author:
  - emp.deploy maintainers (@emp-deploy)
options:
  step:
    description: V(baseline), V(validate) or V(pass), as described above.
    type: str
    required: true
    choices: [baseline, validate, pass]
  run_dir:
    description:
      - The deploy run's report folder, where C(watch.json) and C(baseline.json) live.
      - Default the environment variable E(EMP_DEPLOY_RUN_DIR), which the P(emp.deploy.go_no_go#callback)
        callback exports in every run (and which points at the attached run in a watch).
    type: path
  prometheus:
    description: The Prometheus HTTP API to query (Prometheus, Thanos, Mimir, VictoriaMetrics, Dash0).
    type: dict
    required: true
    suboptions:
      url:
        description: The API root, for example C(http://127.0.0.1:9090) or Dash0's C(https://.../api/prometheus).
        type: str
        required: true
      headers:
        description: Extra request headers. Their values never appear in any output.
        type: dict
        default: {}
      bearer_token:
        description: "Sent as C(Authorization: Bearer ...). Never in any output, result or state file."
        type: str
      dataset:
        description: Dash0's dataset, sent as the C(Dash0-Dataset) header.
        type: str
      timeout:
        description: Seconds one query may take, the whole request included.
        type: float
        default: 10.0
      validate_certs:
        description: Whether to verify the server's TLS certificate.
        type: bool
        default: true
      ca_path:
        description: A CA bundle to verify the server's certificate with.
        type: path
  window:
    description:
      - How long the watch lasts from its first pass (C(24h), C(90m), C(180s) or seconds). Also the range
        of O(step=baseline) and of a check whose O(checks[].range) is V(window).
      - A resumed watch keeps the window it recorded.
    type: raw
    default: 24h
  alert_interval:
    description: Seconds (or a duration) between two runs of the C(alert) layer.
    type: raw
    default: 60s
  hourly_interval:
    description: Seconds (or a duration) between two runs of the C(hourly) layer.
    type: raw
    default: 1h
  checks:
    description: The watched checks (required for O(step=validate) and O(step=pass)).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Unique name; the gate record's name and the key of its counters in C(watch.json).
        type: str
        required: true
      layer:
        description: When it runs.
        type: str
        choices: [alert, hourly, final]
        default: alert
      component:
        description: The component an alert of this check rolls back (C(redis), C(database), C(telemetry), C(webhooks), C(workers)).
        type: str
        required: true
      checklist_ref:
        description: The checklist line this check automates.
        type: str
      query:
        description: PromQL whose answer must be one figure (aggregate it). Exactly one of O(checks[].query) and O(checks[].probe).
        type: str
      range:
        description:
          - Evaluate the query as a range query over this duration before now (or V(window)) and reduce it
            with O(checks[].reduce), instead of one instant query.
        type: str
      reduce:
        description: How a range becomes one figure.
        type: str
        choices: [last, min, max, avg, sum, increase]
        default: last
      probe:
        description: A module to run instead of a query, C({module, args, check_mode}) as in M(emp.deploy.gate).
        type: dict
      criteria:
        description:
          - Conditionals (bare expressions, as in M(ansible.builtin.assert)) that must all hold, with C(result)
            and C(baseline) bound as described above, for example C(result.value < 0.05) or
            C(result.value >= baseline.value * 0.95).
          - Name thresholds as bare variables (C(result.value <= watch_webhook_failure_rate_max)), as in
            M(ansible.builtin.assert); a criterion templated before the watch evaluates it (C({{ limit }}) inside
            it) is not a trusted expression on ansible-core 2.19 and later, and fails.
        type: list
        elements: raw
        required: true
      consecutive_error_limit:
        description: Passes that could not measure, in a row, before a NO-DATA alert (more than this many). Default O(consecutive_error_limit).
        type: int
      mode:
        description: The mode of this check's gate records (see M(emp.deploy.gate)). A NO-DATA alert is V(warn) at most.
        type: str
        choices: [enforce, warn, observe]
        default: enforce
      baseline:
        description: The name of the C(baseline.json) figure bound to C(baseline). Default the check's name.
        type: str
  baseline_queries:
    description:
      - For O(step=baseline), name -> C({query, reduce}) (or just the query). C(reduce) (default V(avg))
        makes the range over O(window) one figure; the labels of each series are kept too, so a criterion
        can compare label sets (for example error messages seen before the deploy).
    type: dict
    default: {}
  consecutive_error_limit:
    description: Default of O(checks[].consecutive_error_limit).
    type: int
    default: 3
  wait:
    description:
      - For O(step=pass), sleep until the next layer is due before running it (follow mode, one pass per loop
        item). Without it, run what is due now, possibly nothing (once mode, for cron or an AWX schedule).
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
  - emp.deploy.attributes.controller_action
attributes:
  check_mode:
    support: full
    details: The watch only reads the metrics; it records its state and baseline in the run folder in a check run too.
  delegation:
    support: none
  become:
    support: none
  connection:
    support: none
    details: Queries go from the controller. A probe check's module runs through the task's connection.
notes:
  - Run it on one host (the controller, C(localhost)); two hosts would share one state file.
  - The state file C(watch.json) is written atomically after every pass; kill the watch at any moment and
    start it again.
seealso:
  - module: emp.deploy.gate
  - module: emp.deploy.metric_query
  - plugin: emp.deploy.go_no_go
    plugin_type: callback
"""

EXAMPLES = r"""
- name: Baseline figures of the window before the deploy
  emp.deploy.watch:
    step: baseline
    prometheus: {url: "http://127.0.0.1:9090"}
    window: 24h
    baseline_queries:
      job_rate: {query: 'sum(rate(emp_jobs_completed_total{status="completed"}[5m]))', reduce: avg}

- name: One pass of whatever is due (cron, AWX schedule)
  emp.deploy.watch:
    step: pass
    prometheus:
      url: "https://api.eu-west-1.aws.dash0.com/api/prometheus"
      bearer_token: "{{ dash0_token }}"
      dataset: default
    checks:
      - name: webhook_failures
        layer: alert
        component: webhooks
        checklist_ref: Post-deployment monitoring / Immediate alerts / Webhook delivery failures > 5%
        query: >-
          (sum(increase(emp_webhook_deliveries_total{outcome="failure"}[5m])) or vector(0))
          / sum(increase(emp_webhook_deliveries_total[5m]))
        criteria: result.value <= 0.05
      - name: job_rate
        layer: final
        component: workers
        query: sum(rate(emp_jobs_completed_total{status="completed"}[24h]))
        criteria: result.value >= baseline.value * 0.95
"""

RETURN = r"""
emp_watch:
  description: The watch as recorded after this task.
  returned: when step is pass (and validate, once a watch was started)
  type: dict
  contains:
    run_id:
      description: The watched run.
      type: str
    window_s:
      description: Length of the window in seconds.
      type: float
    started:
      description: Start of the window (its first pass), ISO 8601 UTC.
      type: str
    ends:
      description: End of the window, ISO 8601 UTC.
      type: str
    passes:
      description: Passes that ran something, over every invocation.
      type: int
    checks:
      description: Per check - C(runs), C(go), C(no_go), C(no_data), C(consecutive_errors), C(alerted), C(last).
      type: dict
    alerts:
      description:
        - Every alert so far - C(check), C(component), C(layer), C(kind) (V(breach) or V(no_data)), C(reason),
          C(at), C(enforced).
      type: list
      elements: dict
    verdict:
      description: V(IN_PROGRESS), V(SUCCESS) or V(FAILED).
      type: str
    done:
      description: Whether the watch has nothing left to run (the final layer ran, or an enforced alert).
      type: bool
    next_due:
      description: When the next layer is due, ISO 8601 UTC; null once done.
      type: str
    intervals:
      description: The alert and hourly intervals in seconds.
      type: dict
emp_watch_pass:
  description:
    - What this pass ran - C(at), C(layers), and C(results) (C(check), C(layer), C(component), C(checklist_ref),
      C(decision) V(GO)/V(NO-GO)/V(NO-DATA), C(value), C(reason)).
  returned: when step is pass
  type: dict
emp_gates:
  description:
    - The gate records of this pass, in the shape of M(emp.deploy.gate)'s C(emp_gate) (phase V(watch), source
      V(probe), C(probe_module) V(emp.deploy.metric_query) for a query check) - alerts (NO-GO) and the final
      checks (GO or NO-GO) only.
  returned: when step is pass
  type: list
  elements: dict
emp_watch_validate:
  description: C(checks) validated and C(unverified) (check name -> why it could not be sent now).
  returned: when step is validate
  type: dict
emp_watch_baseline:
  description:
    - What C(baseline.json) holds - C(captured), C(window_s), C(start), C(end), C(figures) (name -> C(query),
      C(reduce), C(value), C(empty), C(special), C(labels), C(error)) - and its C(path).
  returned: when step is baseline
  type: dict
msg:
  description: One line about the pass (or, on failure, the enforced NO-GO alerts).
  returned: always
  type: str
"""
