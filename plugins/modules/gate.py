# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file only documents the action plugin plugins/action/gate.py (as ansible.builtin.assert does),
# so that ansible-doc emp.deploy.gate renders it.

from __future__ import annotations

DOCUMENTATION = r"""
module: gate
short_description: Decide GO or NO-GO for a deployment step from sampled probe results or evidence
version_added: 0.1.0
description:
  - A GO/NO-GO gate of the deployment checklist. With O(probe), it runs the probe module O(samples)
    times, every O(interval) seconds (or over O(duration) seconds), through Ansible's normal module
    execution, so it works against remote hosts, with delegation and with any module, not only
    this collection's probes. With O(evidence), it evaluates the criteria once against that value.
  - Each sample's outcome is shown as it happens, so a 30 minute soak never looks frozen. Sampling
    stops early once the decision can no longer change.
  - "Sample accounting, after Argo Rollouts' analysis: a sample whose probe failed without returning
    measurements (host unreachable, module crashed, target not reachable) is an B(error) and counts
    towards O(consecutive_error_limit); a sample that measured but whose criteria do not hold, or whose
    probe reports C(healthy: false) or failed with its measurements, is a B(failure) and counts towards
    O(failure_limit). A skipped probe (for example a module without check mode support in a check
    run) or empty evidence has B(no data); O(on_no_data) decides a gate that saw nothing else."
  - The gate says GO only when at least one sample passed and neither limit was exceeded, so a probe
    that errors every time never yields GO.
  - "A gate observes; it never repairs. Each sample runs in check mode unless the probe module's own
    documentation declares it read-only: its C(attributes) give C(check_mode) and C(read_only) both
    C(support: full). A read-only probe runs as the task does (in check mode only in a check run).
    O(probe.check_mode) overrides both. A sample whose probe reports C(changed: true) is an error
    sample (C(the probe changed the target: emp.deploy.ngrok_tunnel ...)); if it really changed the
    target (outside check mode), the gate stops sampling at once and decides NO-GO, because every
    later sample would measure what the probe itself repaired. Make things present in a task before
    the gate."
  - "With C(no_log: true) on the task, the gate shows nothing it measured: its progress lines, its
    message and RV(emp_gate) keep the criteria's text and outcomes, the decision, the counts and the
    timings, but no figure, no probe message and no error text (each reads 'withheld (no_log)' instead), and
    RV(emp_gate.redacted) is V(true)."
  - "Waivers: when the variable C(emp_waivers) (extra vars, or a vars file given with C(-e @waivers.yml)) holds a
    waiver C({gate: NAME, reason: TEXT, by: WHO, expires: ISO-8601}) for this gate's O(name) that has not expired,
    the gate still samples and records all its evidence, but its decision is C(WAIVED) and its NO-GO blocks nothing:
    RV(emp_gate.waiver) keeps the waiver and C(measured_decision), the decision it measured. An expired waiver is
    ignored with a warning; a malformed one fails the gate before any sampling. See the collection's C(docs/waivers.md)."
  - The result, RV(emp_gate), is what the P(emp.deploy.go_no_go#callback) callback records in the run's
    journal; an enforced NO-GO makes it roll the gate's O(component) back.
  - This is an action plugin; it runs on the controller and executes the probe module on the target.
author:
  - emp.deploy maintainers (@emp-deploy)
options:
  name:
    description: Name of the gate, as it appears in the journal, the summary and the GO/NO-GO table.
    type: str
    required: true
  phase:
    description:
      - Deployment phase the gate belongs to, for example C(infrastructure). Usually C("{{ emp_phase }}").
    type: str
  component:
    description:
      - Component the gate decides for, for example C(redis) or C(database). It selects what the
        callback rolls back on an enforced NO-GO. Usually C("{{ emp_component }}").
    type: str
    required: true
  checklist_ref:
    description: The checklist item this gate implements, for example C(Deployment sequence / phase 1 / step 2).
    type: str
  criteria:
    description:
      - Conditionals, written as for the O(ansible.builtin.assert#module:that) option of
        M(ansible.builtin.assert) (bare expressions, no C({{ }})), that must all hold for a sample to pass.
      - Each is evaluated with the sample bound to C(result) (the probe's return values, or the
        evidence) and the first measured sample bound to C(baseline), beside every play variable.
        For example C(result.latency_ms.p95 < 200) or
        C(result.clients.connected - baseline.clients.connected <= 2).
      - Criteria must evaluate to a boolean. The figures each criterion reads (such as
        C(result.latency_ms.p95)) are recorded with every sample and quoted in RV(emp_gate.reason).
    type: list
    elements: raw
    required: true
  probe:
    description:
      - The probe to sample. Mutually exclusive with O(evidence); one of them is required.
    type: dict
    suboptions:
      module:
        description: Fully qualified name of the module to run, for example C(emp.deploy.redis_health).
        type: str
        required: true
      args:
        description:
          - The module's options. The play's C(module_defaults) for the module (and its action groups,
            such as C(group/emp.deploy.probes)) apply underneath them, as for any task of that module.
        type: dict
        default: {}
      check_mode:
        description:
          - Runs the probe in check mode (V(true)) or not (V(false)), whatever the run's mode and the
            module's documentation say, as the task keyword C(check_mode) does for a task.
          - "Unset (the default), the probe runs in check mode unless its documentation declares it
            read-only (C(check_mode) and C(read_only) attributes with C(support: full)); a read-only
            probe follows the run."
          - Modules outside this collection, such as M(ansible.builtin.command) or
            M(ansible.builtin.uri), do not declare it, so they run in check mode, where they skip.
          - Set V(false) for a probe that changes nothing but does not say so, such as a C(SELECT)
            through M(ansible.builtin.command) or a C(GET) through M(ansible.builtin.uri); you vouch that
            it is read-only. A sample that reports C(changed) is still an error, except from
            M(ansible.builtin.command), M(ansible.builtin.shell), M(ansible.builtin.raw) and
            M(ansible.builtin.script), which report C(changed) on every run because they cannot tell.
        type: bool
  evidence:
    description:
      - A value to judge once instead of sampling a probe, for example a registered result or facts
        gathered earlier. A registered result that failed without measurements counts as an error, a
        skipped one or an empty value as no data.
    type: raw
  samples:
    description:
      - How many times to run the probe. Defaults to 1, or is derived from O(duration) and O(interval).
    type: int
  interval:
    description:
      - Seconds between the starts of two samples. Defaults to 10, or is derived from O(duration) and
        O(samples).
    type: float
  duration:
    description:
      - Length of the soak window in seconds. With O(interval), the probe runs at the start and then
        every O(interval) seconds until the window closes; with O(samples), the samples are spread
        evenly over the window. Giving O(samples), O(interval) and O(duration) together is an error.
    type: float
  failure_limit:
    description: Failed samples tolerated; one more is a NO-GO.
    type: int
    default: 0
  consecutive_error_limit:
    description: Consecutive samples where the probe could not measure that are tolerated; one more is a NO-GO.
    type: int
    default: 3
  on_no_data:
    description: Decision of a gate whose samples all had no data.
    type: str
    choices: [fail, pass]
    default: fail
  history:
    description:
      - Compare with how past runs behaved. The criteria may then read C(history.<figure>), for example
        C(result.latency_ms.p95 <= history.latency_ms.p95 * 1.2), where the figure is the aggregate of that figure
        (C(result.latency_ms.p95)) over the last O(history.runs) runs of this gate (same O(name), same environment,
        which is C(emp_environment), default the inventory's name) that decided O(history.decision).
      - A relative threshold is a shorthand for the same, C(result.latency_ms.p95 <=+10%) meaning
        C(result.latency_ms.p95 <= history.latency_ms.p95 * 1.1) (also C(>=-5%), or C(<=+50) in the figure's unit).
      - "The runs come from the history index the P(emp.deploy.go_no_go#callback) callback keeps in its report folder
        (C(.history.<environment>.<gate>.jsonl)): one line per gate of every deploy or predeploy run, with each
        figure's median over that run's measured samples."
      - With fewer runs than O(history.runs), a criterion that reads history is skipped (recorded with its reason in
        RV(emp_gate.criteria) and RV(emp_gate.reason)), or judged against O(history_fallback). It never passes for lack
        of history; a gate whose criteria were all skipped saw no data (O(on_no_data)).
      - Needs the callback (its run folder and environment). A criterion that reads history without this option,
        this option without a criterion that reads history, or a bad value fails before any sampling.
    type: dict
    suboptions:
      runs:
        description: How many past runs, from 1 to 1000.
        type: int
        default: 5
      decision:
        description: The decision of the runs to learn from.
        type: str
        choices: [GO, NO-GO]
        default: GO
      aggregate:
        description: How a figure of those runs becomes one value (V(p90) interpolates between ranks).
        type: str
        choices: [median, p90, max]
        default: median
  history_fallback:
    description:
      - "The value of each history figure when fewer than O(history.runs) runs are recorded, as a mapping of figure to
        number (C({latency_ms.p95: 250})); the gate then judges against these fixed values and records
        C(source: fallback) in RV(emp_gate.history). A figure it lacks leaves its criterion skipped."
    type: dict
  mode:
    description:
      - V(enforce) fails the task on NO-GO, which stops the rollout and makes the callback roll back.
      - V(warn) shows and records a NO-GO but does not fail the task.
      - V(observe) is a dry run for a new gate; it records what the gate would have decided.
    type: str
    choices: [enforce, warn, observe]
    default: enforce
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
  - emp.deploy.attributes.controller_action
attributes:
  check_mode:
    support: full
    details: In a check run the probe runs in check mode too, unless O(probe.check_mode=false); the decision is made as usual.
  delegation:
    support: full
    details: The probe runs on the delegated host.
  become:
    support: full
    details: The probe module runs with the task's privilege escalation.
  connection:
    support: full
    details: The probe module runs through the task's connection.
notes:
  - Bad options (no criteria, both or neither of O(probe) and O(evidence), an unknown O(mode), a
    criterion that does not template, an unknown probe module) fail before any sampling.
  - Probes whose work is done by an action plugin of their own (for example M(ansible.builtin.debug))
    cannot be sampled; modules such as M(ansible.builtin.command) and M(ansible.builtin.uri) can, and
    so can M(ansible.builtin.shell). Their C(cmd) option works on every supported ansible-core (the gate
    passes it as the command and shell actions do).
  - "To declare a module of your own read-only for the gate, add to its DOCUMENTATION
    C(attributes: {check_mode: {support: full}, read_only: {support: full, description: ...}}).
    The gate reads it once per module in the process that runs the gate task."
seealso:
  - module: ansible.builtin.assert
  - module: emp.deploy.redis_health
  - plugin: emp.deploy.go_no_go
    plugin_type: callback
"""

EXAMPLES = r"""
- name: GO/NO-GO · services reconnected to Redis, no client growth, latency over a 5 minute soak
  emp.deploy.gate:
    name: redis-reconnect
    phase: "{{ emp_phase }}"
    component: redis
    checklist_ref: Deployment sequence / phase 1 / step 2
    probe:
      module: emp.deploy.redis_health
      args:
        url: "{{ redis_url }}"
        expected_client_names: {emp-api: 1, emp-webhook: 1, emp-monitor: 1}
    duration: 300
    interval: 30
    failure_limit: 1
    criteria:
      - result.healthy
      - result.latency_ms.p95 < 200
      - result.clients.connected - baseline.clients.connected <= 2

- name: Gate on evidence measured by an earlier task
  emp.deploy.gate:
    name: database-migrations
    component: database
    evidence: "{{ migrations }}"
    criteria:
      - result.rc == 0
      - result.stdout | int == 0

- name: Try a new gate without enforcing it yet
  emp.deploy.gate:
    name: webhook-latency
    component: webhooks
    mode: observe
    probe:
      module: ansible.builtin.uri
      args:
        url: http://127.0.0.1:3332/health
        timeout: 5
      # a GET changes nothing, but uri does not declare itself read-only (it would skip in check mode)
      check_mode: false
    samples: 5
    interval: 2
    criteria:
      - result.status == 200
      - result.elapsed < 1

- name: Gate on a query whose output holds a secret; show no measured value anywhere
  emp.deploy.gate:
    name: database-queries
    component: database
    probe:
      module: ansible.builtin.command
      args:
        cmd: psql --no-psqlrc --tuples-only --command "SELECT count(*) FROM failed_jobs"
      check_mode: false
    samples: 3
    interval: 10
    criteria:
      - result.rc == 0
      - result.stdout | trim | int == 0
  no_log: true
"""

RETURN = r"""
emp_gate:
  description: The gate's decision with every sample and every criterion's outcome.
  returned: always
  type: dict
  contains:
    id:
      description: Unique id of this evaluation (the callback uses it to record each gate once).
      type: str
      sample: 3f2a9c1e0b4d4e8f9a6b7c5d4e3f2a1b
    name:
      description: O(name).
      type: str
      sample: redis-reconnect
    phase:
      description: O(phase).
      type: str
      sample: infrastructure
    component:
      description: O(component).
      type: str
      sample: redis
    checklist_ref:
      description: O(checklist_ref).
      type: str
      sample: Deployment sequence / phase 1 / step 2
    mode:
      description: O(mode).
      type: str
      sample: enforce
    enforced:
      description: Whether a NO-GO fails the task (O(mode=enforce)).
      type: bool
      sample: true
    decision:
      description:
        - V(GO) or V(NO-GO). In O(mode=observe), what the gate would have decided.
        - V(WAIVED) when a waiver in C(emp_waivers) applied to this gate (RV(emp_gate.waiver) says what it measured).
      type: str
      sample: NO-GO
    reason:
      description: A sentence a person can act on, with the figures that decided.
      type: str
      sample: >-
        result.latency_ms.p95 < 200 did not hold in 3 of 5 measured samples
        (result.latency_ms.p95 was 312, 290, 305) (failure_limit 0)
    host:
      description: Inventory host the gate ran for.
      type: str
      sample: sandbox
    source:
      description: V(probe) or V(evidence).
      type: str
      sample: probe
    probe_module:
      description: O(probe.module), or null with evidence.
      type: str
      sample: emp.deploy.redis_health
    criteria:
      description: Each criterion's outcome over the samples.
      type: list
      elements: dict
      sample:
        - {criterion: "result.latency_ms.p95 < 200", outcome: failed, held: 2, failed: 3, errors: 0, evaluated: 5}
    samples:
      description:
        - Every sample - C(index), C(time), C(ok), C(outcome) (V(passed), V(failed), V(error), V(no_data)),
          C(error), C(figures) (each figure the criteria read; empty when RV(emp_gate.redacted)),
          C(criteria) (each one's result), C(duration_ms) and, for a probe, C(check_mode) (whether the
          sample ran in check mode).
      type: list
      elements: dict
      sample:
        - index: 1
          time: "2025-09-27T10:00:00.000Z"
          ok: false
          outcome: failed
          error: null
          figures: {result.latency_ms.p95: 312.0}
          criteria: [{criterion: "result.latency_ms.p95 < 200", held: false}]
          duration_ms: 15.2
          check_mode: true
    counts:
      description: Samples planned, taken, passed, failed, with errors and without data.
      type: dict
      sample: {planned: 5, taken: 5, passed: 2, failed: 3, errors: 0, no_data: 0}
    limits:
      description: O(failure_limit), O(consecutive_error_limit) and O(on_no_data) as applied.
      type: dict
      sample: {failure_limit: 0, consecutive_error_limit: 3, on_no_data: fail}
    interval_s:
      description: Seconds between the starts of two samples.
      type: float
      sample: 10.0
    stopped_early:
      description: Whether sampling stopped before O(samples) because the decision could no longer change.
      type: bool
      sample: true
    started:
      description: Start time, ISO 8601 UTC.
      type: str
      sample: "2025-09-27T10:00:00.000Z"
    ended:
      description: End time, ISO 8601 UTC.
      type: str
      sample: "2025-09-27T10:00:41.200Z"
    duration_s:
      description: Seconds the gate took.
      type: float
      sample: 41.2
    redacted:
      description:
        - Whether the task had C(no_log), so that figures, probe messages and error texts were withheld
          from RV(emp_gate), the message and the progress lines.
      type: bool
      sample: false
    history:
      description:
        - With O(history) only. C(runs), C(decision), C(aggregate) as asked; C(found) (runs found), C(run_ids) (the runs
          used, newest first), C(figures) (the value of each history figure used), C(source) (V(history), V(fallback),
          or V(none) when too few runs and no fallback) and C(reason) (why the history was not used).
      type: dict
      returned: with O(history)
      sample: {runs: 5, decision: GO, aggregate: median, found: 5, run_ids: [r5, r4, r3, r2, r1],
               figures: {latency_ms.p95: 41.5}, source: history, reason: null}
    waiver:
      description:
        - The waiver in force for this gate (C(gate), C(reason), C(by), C(expires)) and C(measured_decision), the
          decision the gate measured (V(GO) or V(NO-GO)). Only when a waiver applied (the decision is then V(WAIVED)).
      type: dict
      returned: when a waiver applied
      sample: {gate: redis-connections, reason: "known slow replica, INC-42", by: alice, expires: "2026-12-31T00:00:00Z",
               measured_decision: NO-GO}
msg:
  description: The decision and its reason.
  returned: always
  type: str
  sample: "NO-GO: result.clients.by_name['emp-toy'] >= 1 did not hold in 1 of 1 measured sample"
"""
