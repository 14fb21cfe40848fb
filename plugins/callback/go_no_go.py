# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: go_no_go
type: notification
short_description: Record GO/NO-GO outcomes of a phased deployment and roll back on NO-GO
version_added: 0.1.0
description:
  - Records the run, each deployment phase (a play that sets C(emp_phase) and C(emp_component) in its
    C(vars)), every gate result (an C(emp_gate) in any task result, also in loops and delegated
    tasks, see M(emp.deploy.gate)) and every other failed or unreachable task inside a phase, which
    is a NO-GO for that phase's component ("deployment step failed"). A task that fails outside any
    phase is recorded too; it makes the run's decision NO-GO only if the run failed, and rolls nothing back.
  - "Journal: C(<report_dir>/<run_id>/journal.jsonl), one JSON object per line, flushed and fsynced as
    each record happens, so a killed run still leaves a valid record of everything up to the kill.
    C(summary.json) in the same folder is written atomically at the end of the run."
  - "Fleet rollout: with the extra var C(emp_batch) (a number, a percentage or a non-empty list of them) the phase plays
    run in batches (C(serial)), and C(emp_max_fail_percentage) (0 to 100) says how many of a batch's hosts may say
    NO-GO. Both are checked when the playbook starts; a malformed value stops the run before any host changes (exit
    code 5). Each batch is journaled (C(batch_start), C(batch_end) with its decision from its hosts' evidence: NO-GO
    when more hosts than the percentage said NO-GO or failed a step, or when a host produced no gate evidence) and
    listed in C(batches) of C(summary.json). After a batch without evidence no later batch or phase starts on any
    host. A NO-GO rolls back only the hosts whose release changed in the run, newest batch first (extra vars
    C(emp_rollback_hosts) and C(emp_rollback_batches) for the rollback playbook). A batch's per-host records are
    written at once but fsynced when their task ends. See the collection's C(docs/fleet.md)."
  - Every journal line and C(summary.json) carry C(schema_version); the record types and fields are
    described in the collection's C(docs/records.md).
  - A task result that carries C(emp_release_step) (see M(emp.deploy.release)) is journaled as a
    C(release) record, which says that the component's release step ran in this run.
  - When the run ends with an enforced NO-GO, it runs the rollback playbook inside the same
    ansible-playbook process, with the same inventory, variables, limit and check mode, so its output
    appears in the same stream (and in AWX's job output). It passes C(emp_rollback_components) (in
    reverse order of deployment), C(emp_rollback_reason) and C(emp_run_id) as extra vars, times the
    rollback of each component against its budget and reports a failed or late rollback loudly.
  - When the rollback cannot run inside the process (the running executor is not found or this
    ansible-core's internals differ), or O(rollback_runner=subprocess), the same rollback runs as a child
    C(ansible-playbook) with the same inventory, limit, check mode, vault identities and password files
    and extra vars; C(rollback.runner) in the summary says C(in_process) or C(subprocess). A password
    typed at a prompt cannot be passed to that child.
  - Recording and rolling back are independent. A report folder that cannot be written is reported as
    an error naming the folder (also in the table); the run still decides, rolls back and prints the table.
  - Every option and the run id are validated when the run starts; a malformed value stops the run
    before any task ran, with a message naming the option.
  - "Waivers: the extra var C(emp_waivers) (a list of C({gate, reason, by, expires}), also from a vars file given with
    C(-e @waivers.yml)) is checked when the run starts: a waiver without C(reason) or C(by), with an unknown key or
    a malformed C(expires) (ISO 8601), or naming a gate that no C(emp.deploy.gate) task of the playbook (its plays,
    the collection roles they include, the playbooks it imports) can have, stops the run before any task (exit code
    5). An expired waiver is shown as a warning and ignored. The waivers are journaled in C(run_start); a waived gate
    (see M(emp.deploy.gate)) is recorded with decision C(WAIVED), shown in the table, C(report.html) and C(junit.xml)
    (as skipped, with the reason), and neither fails the run nor rolls back. See the collection's C(docs/waivers.md)."
  - "History index: for every gate record of a deploy or predeploy run (not a check run, a rollback run or a watch) it
    appends one compact line to C(<report_dir>/.history.<environment>.<gate>.jsonl) (run id, release, versions, decision,
    the median of each figure the criteria read), whole and under a lock; a gate's O(emp.deploy.gate#module:history)
    option reads it. The environment is C(emp_environment), default the inventory's name; it is exported as
    E(EMP_DEPLOY_ENVIRONMENT) and journaled in C(run_start). A line that cannot be written is a warning. See the
    collection's C(docs/history.md)."
  - "Resume: the extra var C(emp_resume) (a run id, or C(latest) for the newest deploy run) resumes that run at its
    first step that did not say GO. Before any task, an unknown run id, a run without a summary, a run that said GO
    end to end, a rollback, predeploy, check-mode or refused run, or an inventory whose hosts differ from that run's
    stops the run (exit code 5) with the reason. Otherwise the steps that said GO are skipped, their gates and
    releases are linked into the new run (a C(resume) journal record, C(resumed) in the summary, C(resumed_from) in
    C(run_start), C(phase_end) and the summary), and the plan is exported as E(EMP_DEPLOY_RESUME) (JSON) for the
    preflight play, which refuses to go on when a skipped step's release is no longer current on a host. See the
    collection's C(docs/resume.md)."
  - SIGINT, SIGTERM and SIGHUP (Ctrl-C, a killed or cancelled job) end the run record with
    C(summary.json) saying C(interrupted) (the signal), the running step, and whether a rollback had
    not started, finished or was cut short (C(rollback.state)). The handlers are installed again after
    the rollback's own task queue manager replaces them.
  - The exit code stays non-zero whenever an enforced gate said NO-GO, even after a successful
    rollback (also when a C(block)/C(rescue) handled the failed gate). A rollback never triggers
    another rollback. A gate task with C(ignore_errors) is recorded, but its NO-GO neither fails the
    run nor rolls back (as with O(emp.deploy.gate#module:mode=warn)).
  - "When the run ends it writes the run's reports into the run folder: C(report.html), C(junit.xml), and
    C(incident.md) on NO-GO, and rewrites C(index.html) of the report folder (see M(emp.deploy.report) and the
    collection's C(docs/reports.md)); a report that cannot be written is a record error, never a failed run."
  - "A run whose first play sets C(emp_record: false) in its C(vars) (the collection's report playbook does)
    keeps no record: it renders records, it is not a deployment."
  - "Run kinds: a run whose first play sets the literal C(emp_run_kind: predeploy) in its C(vars) (the collection's
    predeploy playbook does) is recorded like a deploy run, with C(run_kind: predeploy) in C(run_start) and
    C(summary.json) (otherwise C(deploy); any other value stops the run before any task). It never rolls back, not
    even after an enforced NO-GO (the run still fails with the exit code of a NO-GO deploy run), and a watch never
    attaches to it."
  - "A task result that carries C(emp_check_skipped) (C(name), C(checklist_ref), C(reason), also in loop items) is
    journaled as C(check_skipped) and listed under C(skipped_checks) in the summary: a check deliberately not run,
    which a report shows as skipped, never as passed."
  - Prints a compact GO/NO-GO table at the end of every run, with a host column when the rows come
    from more than one host. A gate recorded as C(redacted) (its task has C(no_log)) shows its
    decision, name and timing, never its reason or measured values. A run in which no gate ran and no
    step failed has the decision C(no gate), not GO.
  - It is a notification callback, never a stdout callback, so it works beside the stdout callback
    that AWX or ansible-runner force. Its own errors never break the run; they are shown as warnings.
  - The run id is the extra var C(emp_run_id) if set, else E(EMP_DEPLOY_RUN_ID), else a timestamp with
    a random suffix. It names the run's report folder, so it must be one path segment of letters, digits,
    C(.), C(_) and C(-) (no C(..)); any other value stops the run. The callback exports it as
    E(EMP_DEPLOY_RUN_ID) when the run starts, so every task can read it with
    C(lookup('ansible.builtin.env', 'EMP_DEPLOY_RUN_ID')). An C(ansible-playbook) that a task of the run
    starts inherits that variable but is a run of its own and takes a new run id (E(EMP_DEPLOY_RUN_ID_OWNER)
    tells it the id belongs to another process).
  - It also exports E(EMP_DEPLOY_RUN_DIR), the absolute path of the run's report folder (the watch keeps its
    state there). A nested run that takes a run id of its own exports its own folder; a rollback run sees
    its parent's.
  - A task result may carry several gate records at once, as a list under C(emp_gates) (also in loops and
    per-item results); each is recorded once, like an C(emp_gate).
  - "Watch after GO (attach mode): when the first play's C(vars) hold the literal C(emp_watch_attach: true),
    the invocation starts no run of its own. It attaches to the deploy run named by the extra var
    C(emp_watch_run_id) (a run id as above), else to the newest run in O(report_dir) whose C(summary.json)
    says decision C(GO) and C(rollback_run) false (by its C(started)); when there is none, or the id is
    bad, the run stops before any task (exit code 5) saying what is missing. E(EMP_DEPLOY_RUN_ID) and
    E(EMP_DEPLOY_RUN_DIR) then name that deploy run."
  - An attached invocation appends to the deploy run's journal (C(watch_start), one C(watch_pass) per pass
    result carrying C(emp_watch_pass), as each loop item returns, the C(gate) records of C(emp_gates),
    rollback records and C(watch_end)) and merges a C(watch) section into its C(summary.json) at the end
    (window, passes, checks, alerts, verdict, invocations), its gates appended and, when it rolled back,
    its C(rollback); the deploy's C(decision) is never changed. Its table shows the watch's verdict and
    alerts.
  - An enforced NO-GO gate in an attached invocation (a watch alert) rolls back the gate's component
    (scope C(failed), whatever O(rollback_scope) says) at the end of the invocation, within its budget.
    The extra var C(emp_watch_rollback) (V(auto), V(plan) or V(off)) overrides O(rollback) for it; any
    other value stops the run before any task. A NO-GO in C(warn) mode (a watch's NO-DATA alert) is
    recorded and rolls nothing back.
  - An attached invocation killed outright (SIGKILL) or by a signal ends its own record (C(watch_end) with
    C(interrupted)) and merges the deploy's summary; it never rebuilds the deploy's record.
  - "Notifications: with O(notify_slack_url), O(notify_teams_url) or O(notify_webhook_url) set, it sends a notice
    on NO-GO (when the run decides, before the rollback starts: the reasons, each NO-GO gate's reason and the
    figures of its last failing sample), when a rollback finishes (ok or failed, its duration against the budget),
    on GO at the end of the run, on each watch alert and on the watch's final verdict (V(SUCCESS) or V(FAILED),
    once). Slack gets Block Kit blocks with a C(text) fallback, Teams the Adaptive Card message of a workflow
    webhook, the webhook a JSON event signed the Standard Webhooks way (C(webhook-id), C(webhook-timestamp),
    C(webhook-signature)). O(notify_events) chooses the events per target."
  - "Notices are sent by one background thread per target, so the run and its rollback never wait for them;
    each request is bounded by O(notify_timeout), an answer 429 or 5xx (or a refused connection) is retried up to
    O(notify_retries) times, after the answer's C(Retry-After) when it asks for at most 10 s. At the end of the run
    the callback waits at most O(notify_timeout) (and a quarter second) for notices still pending. Every notice is
    journaled as a C(notify) record (target, event, outcome, sent, status, attempts), so a missing one is visible.
    A notice that cannot be sent is never an error of the run. URLs and the secret appear in no output, record or
    message (they say C(the Slack URL)). See the collection's C(docs/notifications.md)."
  - "Environment lock: a playbook whose first play has the literal C(emp_environment_lock: true) in its C(vars)
    (C(deploy.yml), C(watch.yml), C(rollback.yml)) takes the lock of its environment (the variable C(emp_environment),
    default the inventory's name) when the run starts, before any task: a Redis key when O(lock_redis_url) is set,
    renewed by a thread while the run lives and released by compare-and-delete, else a file lock
    C(<report_dir>/.lock.<environment>). A second run is refused before any task (exit code 5) with a message
    C(locked by run <run_id>) naming the user, host and since when; a run of the same run id (the holder's rollback)
    proceeds. The extra var C(emp_lock=off) runs without the lock, for tests; it is recorded. Every outcome is a C(lock)
    journal record and C(lock) in C(summary.json). See the collection's C(docs/lock-and-verify.md)."
  - "The deployment as a trace: with O(otlp_endpoint) set, a deploy run ends by sending itself as one OpenTelemetry
    trace over OTLP/HTTP (run, phases, gates with their samples as events, the rollback and its plays; attributes for the
    release, component and decision), built from the journal only, so the same journal always gives the same trace
    (the trace id comes from the run id). It is sent once, just before C(run_end) (also when a signal ends the run),
    within O(otlp_timeout) for all attempts together; the outcome is journaled as a C(trace_export) record and shown
    in the table and the reports. An export that fails is never an error of the run. The headers and the token
    appear in no output, record or message. Watch invocations send no trace. See the collection's C(docs/trace.md)."
author:
  - emp.deploy maintainers (@emp-deploy)
requirements:
  - Enable it with C(callbacks_enabled = emp.deploy.go_no_go) in C(ansible.cfg) (the repository's
    C(ansible.cfg) does) or E(ANSIBLE_CALLBACKS_ENABLED).
options:
  report_dir:
    description: Folder that receives one sub-folder per run.
    type: path
    default: ./deploy-reports
    env:
      - name: EMP_DEPLOY_REPORT_DIR
    ini:
      - section: callback_go_no_go
        key: report_dir
  rollback:
    description:
      - V(auto) runs the rollback playbook when the run ends with an enforced NO-GO.
      - V(plan) records and shows the exact command that would roll back, without running it.
      - V(off) only records the NO-GO.
      - Any other value stops the run before any task (the callback checks its options itself, so that a
        typo never leaves a run without its record and rollback).
    type: str
    default: auto
    env:
      - name: EMP_DEPLOY_ROLLBACK
    ini:
      - section: callback_go_no_go
        key: rollback
  rollback_scope:
    description:
      - V(failed) rolls back only the components that said NO-GO; V(run) rolls back every component
        whose release step ran in this run (a task result with C(emp_release_step)), plus the NO-GO ones.
        A phase skipped by tags or C(--start-at-task) is not rolled back.
      - Any other value stops the run before any task.
    type: str
    default: failed
    env:
      - name: EMP_DEPLOY_ROLLBACK_SCOPE
    ini:
      - section: callback_go_no_go
        key: rollback_scope
  rollback_playbook:
    description:
      - The rollback playbook, a path or a collection playbook name. It receives
        C(emp_rollback_components), C(emp_rollback_reason) and C(emp_run_id).
    type: str
    default: emp.deploy.rollback
    env:
      - name: EMP_DEPLOY_ROLLBACK_PLAYBOOK
    ini:
      - section: callback_go_no_go
        key: rollback_playbook
  rollback_budgets:
    description:
      - Time budget of each component's rollback, as C(component=duration) items, where a duration is
        seconds (C(300)) or a number with a unit C(ms), C(s), C(m) or C(h) (C(90s), C(5m), C(1h)).
        Defaults from the checklist; items given here replace those components' defaults only.
    type: list
    elements: str
    default: [redis=300, webhooks=300, telemetry=600, database=900]
    env:
      - name: EMP_DEPLOY_ROLLBACK_BUDGETS
    ini:
      - section: callback_go_no_go
        key: rollback_budgets
  rollback_default_budget:
    description:
      - Budget of a component without an entry in O(rollback_budgets), in seconds or with a unit as there.
    type: str
    default: "300"
    env:
      - name: EMP_DEPLOY_ROLLBACK_DEFAULT_BUDGET
    ini:
      - section: callback_go_no_go
        key: rollback_default_budget
  rollback_runner:
    description:
      - V(auto) runs the rollback inside the running ansible-playbook process and falls back to a child
        C(ansible-playbook) process when that is not possible.
      - V(subprocess) always runs the rollback as a child C(ansible-playbook) process.
      - Any other value stops the run before any task.
    type: str
    default: auto
    env:
      - name: EMP_DEPLOY_ROLLBACK_RUNNER
    ini:
      - section: callback_go_no_go
        key: rollback_runner
  notify_slack_url:
    description:
      - A Slack incoming webhook URL; notices are posted to it as Block Kit messages. Never printed.
      - An http or https URL with a host; anything else stops the run before any task (the message does not show
        the URL).
    type: str
    env:
      - name: EMP_DEPLOY_NOTIFY_SLACK_URL
    ini:
      - section: callback_go_no_go
        key: notify_slack_url
  notify_teams_url:
    description:
      - A Microsoft Teams workflow webhook URL (the "post to a channel when a webhook request is received"
        workflow); notices are posted to it as Adaptive Cards. Never printed. Checked as O(notify_slack_url).
    type: str
    env:
      - name: EMP_DEPLOY_NOTIFY_TEAMS_URL
    ini:
      - section: callback_go_no_go
        key: notify_teams_url
  notify_webhook_url:
    description:
      - A URL that receives every notice as a JSON event (C(type), C(timestamp), C(data)) signed the Standard
        Webhooks way with O(notify_webhook_secret), for PagerDuty or Opsgenie bridges or anything else. Never
        printed. Checked as O(notify_slack_url).
    type: str
    env:
      - name: EMP_DEPLOY_NOTIFY_WEBHOOK_URL
    ini:
      - section: callback_go_no_go
        key: notify_webhook_url
  notify_webhook_secret:
    description:
      - The Standard Webhooks secret of O(notify_webhook_url), C(whsec_) followed by a base64 key. Required with
        O(notify_webhook_url) and refused without it; a malformed secret stops the run before any task. Never printed.
    type: str
    env:
      - name: EMP_DEPLOY_NOTIFY_WEBHOOK_SECRET
    ini:
      - section: callback_go_no_go
        key: notify_webhook_secret
  notify_events:
    description:
      - Which events each target receives. Events are V(nogo), V(rollback), V(go), V(watch_alert), V(watch_verdict)
        and V(all). Items C(target=event,event) are separated by C(;) or blanks, for example
        C(slack=nogo,rollback;teams=all;webhook=nogo,rollback,watch_alert); an item without C(target=) applies to
        every target that no item names (C(nogo,rollback) alone filters every target).
      - Unset, every configured target receives every event. An unknown target or event, a target named twice or a
        target whose URL is not set stops the run before any task.
      - In C(ansible.cfg), C(;) starts a comment, so separate the items with blanks there.
    type: str
    env:
      - name: EMP_DEPLOY_NOTIFY_EVENTS
    ini:
      - section: callback_go_no_go
        key: notify_events
  notify_timeout:
    description:
      - Deadline of each notification request (connect, send, answer), in seconds or with a unit as in
        O(rollback_budgets), more than 0 and at most 60 s. A request that runs out of it is journaled as
        C(timeout) and not retried; the end of the run waits at most this long for pending notices.
    type: str
    default: "5"
    env:
      - name: EMP_DEPLOY_NOTIFY_TIMEOUT
    ini:
      - section: callback_go_no_go
        key: notify_timeout
  lock_redis_url:
    description:
      - The Redis that holds the environment locks, C(redis://[[user]:password@]host[:port][/db]) (or C(rediss://)).
        Unset, the lock is a file beside the reports. Never printed. A malformed URL stops the run before any task;
        a Redis that does not answer refuses the run (it never runs unguarded).
    type: str
    env:
      - name: EMP_DEPLOY_LOCK_REDIS_URL
    ini:
      - section: callback_go_no_go
        key: lock_redis_url
  lock_ttl:
    description:
      - Time to live of the Redis lock key, in seconds or with a unit as in O(rollback_budgets), at least 0.2 s; a thread
        renews it every third of it while the run lives, so a run that died frees the environment within this time.
    type: str
    default: "30s"
    env:
      - name: EMP_DEPLOY_LOCK_TTL
    ini:
      - section: callback_go_no_go
        key: lock_ttl
  notify_retries:
    description:
      - How many times a notice is sent again after an answer 429 or 5xx or a refused connection, from 0 to 5.
        The wait before a retry is the answer's C(Retry-After) (a notice that is asked to wait more than 10 s is
        given up and journaled), else 1 s, 2 s, then 4 s.
    type: str
    default: "2"
    env:
      - name: EMP_DEPLOY_NOTIFY_RETRIES
    ini:
      - section: callback_go_no_go
        key: notify_retries
  otlp_endpoint:
    description:
      - OTLP/HTTP base URL that receives the run as one trace (an OpenTelemetry collector, or Dash0's ingress), for
        example C(http://127.0.0.1:4318); C(/v1/traces) is appended unless the URL ends with it. Unset, no trace
        is sent.
      - An http or https URL with a host; anything else stops the run before any task (the message does not show
        the URL). Records and messages name its host and port only.
    type: str
    env:
      - name: EMP_DEPLOY_OTLP_ENDPOINT
    ini:
      - section: callback_go_no_go
        key: otlp_endpoint
  otlp_headers:
    description:
      - HTTP headers of the export, C(name=value) items separated by C(,) with percent-encoded values, as
        E(OTEL_EXPORTER_OTLP_HEADERS), for example C(Dash0-Dataset=production). Never printed.
      - A malformed item stops the run before any task (the message names the header, never its value).
    type: str
    env:
      - name: EMP_DEPLOY_OTLP_HEADERS
    ini:
      - section: callback_go_no_go
        key: otlp_headers
  otlp_token:
    description:
      - "A bearer token, sent as C(Authorization: Bearer <token>) (Dash0's auth token). Never printed. Refused
        together with an C(Authorization) item in O(otlp_headers)."
    type: str
    env:
      - name: EMP_DEPLOY_OTLP_TOKEN
    ini:
      - section: callback_go_no_go
        key: otlp_token
  otlp_protocol:
    description:
      - OTLP/HTTP encoding of the trace, V(http/protobuf) or V(http/json). Any other value stops the run before any task.
    type: str
    default: http/protobuf
    env:
      - name: EMP_DEPLOY_OTLP_PROTOCOL
    ini:
      - section: callback_go_no_go
        key: otlp_protocol
  otlp_timeout:
    description:
      - Deadline of the whole export, every attempt and wait included, in seconds or with a unit as in
        O(rollback_budgets), more than 0 and at most 60 s. An answer 429, 502, 503 or 504 or a refused connection is
        tried again (after its C(Retry-After)) while the deadline lasts; a timeout is not, so the end of the run
        waits at most this long.
    type: str
    default: "5"
    env:
      - name: EMP_DEPLOY_OTLP_TIMEOUT
    ini:
      - section: callback_go_no_go
        key: otlp_timeout
  otlp_service_name:
    description:
      - C(service.name) of the trace's resource, the service the deployment appears as next to the services' own
        telemetry.
    type: str
    default: emp.deploy
    env:
      - name: EMP_DEPLOY_OTLP_SERVICE_NAME
    ini:
      - section: callback_go_no_go
        key: otlp_service_name
"""

import os
import signal
import sys
import traceback
import typing as t
from datetime import datetime, timezone
from functools import wraps
from pathlib import Path

from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.callback import CallbackBase

from ansible_collections.emp.deploy.plugins.plugin_utils import _env_lock as envlock
from ansible_collections.emp.deploy.plugins.plugin_utils import _executor_adapter as adapter
from ansible_collections.emp.deploy.plugins.plugin_utils import _fleet as fleet
from ansible_collections.emp.deploy.plugins.plugin_utils import _go_no_go_table as table
from ansible_collections.emp.deploy.plugins.plugin_utils import _history as history
from ansible_collections.emp.deploy.plugins.plugin_utils import _notify as notify
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils import _resume as resume
from ansible_collections.emp.deploy.plugins.plugin_utils import _rollback_runner as runner
from ansible_collections.emp.deploy.plugins.plugin_utils import _trace as trace
from ansible_collections.emp.deploy.plugins.plugin_utils import _waivers as waivers
from ansible_collections.emp.deploy.plugins.plugin_utils import _watch_recorder as watch
from ansible_collections.emp.deploy.plugins.plugin_utils._run_recorder import (
    OptionError, RunRecorder, first_line, gates_in, now, releases_in, resolve_run_id, run_id_from_environment,
    run_user, validate_options,
)

_RUN_FAILED_HOSTS = 2
_BAD_OPTIONS = 5  # ansible-playbook's own exit code for bad options
_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)
_OPTION_NAMES = ("report_dir", "rollback", "rollback_scope", "rollback_playbook", "rollback_budgets",
                 "rollback_default_budget", "rollback_runner") + notify.OPTION_NAMES + envlock.OPTION_NAMES + trace.OPTION_NAMES
_GATE_ACTIONS = ("emp.deploy.gate", "gate")
# the collection's roles, read for the gate names a waiver may name
_ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
_RECORD_KEYS = (R.GATE_RESULT_KEY, R.GATES_RESULT_KEY, R.RELEASE_RESULT_KEY, R.WATCH_PASS_RESULT_KEY,
                R.WATCH_RESULT_KEY, R.CHECK_SKIPPED_RESULT_KEY, "results", "censored")


def _never_break(method: t.Callable) -> t.Callable:
    """The callback's own errors become a warning; the deployment goes on."""

    @wraps(method)
    def wrapper(self: CallbackModule, *args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._warn_once(method.__name__, exc)
            return None

    return wrapper


class CallbackModule(CallbackBase):
    """Thin adapter: Ansible's events to the run recorder, the rollback runner and the table."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "emp.deploy.go_no_go"
    CALLBACK_NEEDS_ENABLED = True

    # The recorder of the run whose rollback runs in this process right now; the rollback's own
    # instance of this callback reports into it instead of starting a run (and a rollback) of its own.
    _rollback_parent: t.ClassVar[RunRecorder | None] = None

    def __init__(self, display: t.Any = None) -> None:
        super().__init__(display=display)
        self._sink: runner.RollbackSink | None = CallbackModule._rollback_parent
        if self._sink is None and os.environ.get(runner.EVENTS_ENV):
            self._sink = runner.EventWriter(os.environ[runner.EVENTS_ENV])
        self._is_child = self._sink is not None or bool(os.environ.get(runner.CHILD_ENV))
        self._recorder: RunRecorder | None = None
        self._notices: notify.RunNotices | None = None
        self._trace: trace.RunTrace | None = None
        self._runner: runner.RollbackRunner | None = None
        self._playbooks: list[str] = []
        self._warned: set[str] = set()
        self._task_started: tuple[str, str] = ("", "")
        self._previous_handlers: dict[int, t.Any] = {}
        self._signal_pid = 0
        self._lock: envlock.RunLock | None = None
        self._environment: str | None = None
        self._play_id: str | None = None  # the running play's id: a play started again is its next batch

    # --- plumbing ---------------------------------------------------------------------------------

    def _warn_once(self, where: str, exc: BaseException) -> None:
        key = f"{where}:{type(exc).__name__}"
        if key in self._warned:
            return
        self._warned.add(key)
        self._display.warning(f"emp.deploy.go_no_go: {where} failed ({type(exc).__name__}: {exc}); "
                              f"the deployment continues without this record")
        self._display.vvv(traceback.format_exc())

    def _raw_options(self) -> dict[str, t.Any]:
        raw = {}
        for name in _OPTION_NAMES:
            try:
                raw[name] = self.get_option(name)
            except KeyError:
                raw[name] = None
        return raw

    def _stop_run(self, message: str) -> t.NoReturn:
        self._display.error(f"emp.deploy.go_no_go: {message}. The run stops before any task ran.")
        raise SystemExit(_BAD_OPTIONS)

    def _notify(self, moment: str, *args: t.Any) -> None:
        """Hands one moment of the run to the notifications; they never block or break the run."""
        if self._notices is None:
            return
        try:
            getattr(self._notices, moment)(*args)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._warn_once(f"notify {moment}", exc)

    # --- run and phases ---------------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook: t.Any) -> None:
        self._playbook_start(playbook)
        if not self._is_child and not self._playbooks[1:]:
            self._check_fleet_vars(playbook)  # a bad emp_batch stops the run (SystemExit passes)

    @_never_break
    def _playbook_start(self, playbook: t.Any) -> None:
        name = getattr(playbook, "_file_name", None) or str(playbook)
        self._playbooks.append(to_text(name))

    def _check_fleet_vars(self, playbook: t.Any) -> None:
        """emp_batch and emp_max_fail_percentage, before Ansible splits any play into batches (docs/fleet.md)."""
        try:
            extra_vars = adapter.playbook_extra_vars(playbook)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # Ansible reports bad extra vars itself
            self._warn_once("reading the extra vars", exc)
            return
        try:
            if extra_vars.get(R.BATCH_VAR) is not None:
                fleet.parse_batch(extra_vars[R.BATCH_VAR])
            if extra_vars.get(R.MAX_FAIL_VAR) is not None:
                fleet.parse_max_fail_percentage(extra_vars[R.MAX_FAIL_VAR])
        except fleet.FleetOptionError as exc:
            self._stop_run(str(exc))

    def v2_playbook_on_play_start(self, play: t.Any) -> None:
        if self._recorder is None and not self._is_child:
            try:
                self._start_run(play)  # a bad option or run id stops the run (SystemExit passes)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                self._warn_once("v2_playbook_on_play_start", exc)
        self._play_start(play)

    @_never_break
    def _play_start(self, play: t.Any) -> None:
        phase, component = adapter.play_phase(play)
        if self._is_child:
            if self._sink is not None:
                self._sink.rb_play_start(to_text(play.get_name()), component)
            return
        if self._recorder is None:
            return
        play_id = to_text(getattr(play, "_uuid", "")) or None
        next_batch = play_id is not None and play_id == self._play_id and self._recorder.batch is not None
        self._play_id = play_id
        if next_batch:
            self._recorder.end_batch()
        stopped = self._recorder.rollout_stopped()
        if stopped is not None:  # no host of a later batch or phase may change after a batch that was not GO
            adapter.run_no_host(play)
            self._display.warning(f"emp.deploy.go_no_go: the rollout stopped: {stopped}; "
                                  f"{to_text(play.get_name())} runs on no host")
            return
        if not next_batch:
            self._recorder.start_phase(phase, component, to_text(play.get_name()))
        if component is not None and fleet.is_fleet_serial(getattr(play, "serial", None)):
            max_fail = getattr(play, "max_fail_percentage", None)
            self._recorder.start_batch(adapter.batch_hosts(play), int(max_fail) if max_fail is not None else 0)

    def _start_run(self, play: t.Any) -> None:
        extra_vars = adapter.extra_vars_of(play)
        if (play.vars or {}).get(R.RECORD_VAR) is False or _is_true(extra_vars.get(R.PLAN_VAR)):
            self._is_child = True  # inert, as a rollback child without a sink: a run that only renders records
            return  # or only prints its plan
        attach = watch.attach_requested(play.vars)
        try:
            raw = self._raw_options()
            options = validate_options(raw)
            notify_options = notify.parse_options(raw)
            run_kind = run_kind_of(play.vars)
            trace_options = trace.parse_options(raw)
            if attach:  # a watch after GO: it records into the deploy run it watches
                options = watch.attach_options(options, extra_vars.get(R.WATCH_ROLLBACK_VAR))
                run_id = watch.find_deploy_run(options.report_dir, extra_vars.get(R.WATCH_RUN_ID_VAR))
            else:
                run_id = resolve_run_id(extra_vars.get(R.RUN_ID_VAR), run_id_from_environment(os.environ, os.getpid()))
            lock = envlock.plan(play.vars, extra_vars, raw, options.report_dir,
                                lambda name: adapter.run_var(play, extra_vars, name), adapter.cli_args().get("inventory"))
            run_waivers = [] if attach else self._checked_waivers(play, extra_vars)
            resume_plan = None if attach else self._resume_plan(play, extra_vars, options.report_dir, run_kind)
            environment = lock.environment if lock is not None else envlock.run_environment(
                lambda name: adapter.run_var(play, extra_vars, name), adapter.cli_args().get("inventory"), strict=False)
        except (OptionError, envlock.LockOptionError, waivers.WaiverError, resume.ResumeError) as exc:
            self._stop_run(str(exc))
        recorder = watch.WatchRecorder(options, run_id) if attach else RunRecorder(options, run_id)
        refused = self._take_lock(lock, recorder, run_id, attach)
        os.environ[R.RUN_ID_ENV] = run_id  # every task of the run can read it (env lookup)
        os.environ[R.RUN_DIR_ENV] = str(recorder.run_dir)  # absolute: the watch keeps its state there
        os.environ[R.RUN_ID_OWNER_ENV] = f"{os.getpid()}:{run_id}"  # a nested ansible-playbook knows it is not this run
        os.environ[R.ENVIRONMENT_ENV] = environment  # the gates' history index is kept per environment
        if resume_plan is not None:  # the preflight check and the phase plays read it (docs/resume.md)
            os.environ[resume.RESUME_ENV] = resume_plan.for_tasks()
        else:
            os.environ.pop(resume.RESUME_ENV, None)
        self._environment = environment
        self._recorder = recorder
        self._notices = notify.RunNotices(notify_options, recorder, watch=attach)
        if trace_options is not None and not attach:  # a watch invocation has no run of its own to trace
            self._trace = trace.RunTrace(trace_options, recorder)
            recorder.before_end = self._trace.before_end
        cli = adapter.cli_args()
        common = {"playbook": self._playbooks[0] if self._playbooks else None, "playbooks": list(self._playbooks),
                  "check_mode": bool(cli.get("check", False)), "limit": cli.get("subset")}
        if attach:
            recorder.start(**common, mode=watch.mode_hint(extra_vars, play.vars))
        else:
            recorder.start(**common, emp_release=adapter.release_label(play, extra_vars),
                           rollback_run=R.ROLLBACK_COMPONENTS_VAR in extra_vars, run_kind=run_kind,
                           waivers=run_waivers, environment=environment,
                           resumed_from=resume_plan.resumed_from if resume_plan is not None else None)
            if resume_plan is not None:
                recorder.resume(resume_plan.as_record())
        for error in recorder.record_errors:
            self._display.error(f"emp.deploy.go_no_go: NO RUN RECORD: {error}")
        if recorder.lock is not None:
            recorder.record(R.LOCK, **recorder.lock)
        if refused is not None:
            recorder.finish(R.REFUSED, [str(refused)], {})
            self._stop_run(f"REFUSED: {refused}")
        self._install_signal_handlers()
        recorder.watch()

    def _checked_waivers(self, play: t.Any, extra_vars: t.Mapping[str, t.Any]) -> list[dict[str, t.Any]]:
        """emp_waivers checked before any task: well formed, each naming a gate of the playbook (a misspelt
        waiver must not waive nothing silently); an expired one is a warning. Returns them for run_start."""
        value = extra_vars.get(R.WAIVERS_VAR, (play.vars or {}).get(R.WAIVERS_VAR))
        parsed = waivers.parse_waivers(value)
        if not parsed or not self._playbooks:
            return []
        loader = play.get_loader()
        playbook = Path(self._playbooks[0]).resolve()
        names = waivers.playbook_gate_names(lambda path: loader.load_from_file(str(path)), playbook, _ROLES_DIR)
        patterns = [waivers.name_pattern(n.template, n.variables, lambda var: adapter.run_var(play, extra_vars, var))
                    for n in names]
        unknown = waivers.unknown_gates(parsed, patterns)
        if unknown:
            raise waivers.WaiverError(
                f"{R.WAIVERS_VAR}: no gate named {', '.join(unknown)} in {playbook.name} (its gates: "
                f"{waivers.known_names_text(patterns)}); a misspelt waiver would waive nothing")
        at = datetime.now(timezone.utc)
        for waiver in parsed:
            if waiver.expired(at):
                self._display.warning(f"emp.deploy.go_no_go: {waivers.expired_warning(waiver)}")
        return [dict(w.as_record(), expired=w.expired(at)) for w in parsed]

    @staticmethod
    def _resume_plan(play: t.Any, extra_vars: t.Mapping[str, t.Any], report_dir: Path,
                     run_kind: str) -> resume.ResumePlan | None:
        """-e emp_resume: the earlier run's steps that said GO, checked before any task (ResumeError refuses).
        A rollback run (it inherits the deploy's extra vars) resumes nothing."""
        if resume.RESUME_VAR not in extra_vars or R.ROLLBACK_COMPONENTS_VAR in extra_vars:
            return None
        if run_kind != R.RUN_KIND_DEPLOY:
            raise resume.ResumeError(f"-e {resume.RESUME_VAR}: only a deploy run can resume, not a {run_kind} run")
        hosts = adapter.inventory_hosts(play)
        return resume.plan_resume(report_dir, extra_vars[resume.RESUME_VAR], hosts)

    def _take_lock(self, lock: envlock.LockPlan | None, recorder: RunRecorder, run_id: str,
                   attach: bool) -> envlock.LockRefused | None:
        """The environment lock, before the record starts and before any task; the refusal, if refused."""
        if lock is None:
            return None
        if lock.backend is None:  # emp_lock=off
            recorder.lock = lock.off_record()
            return None
        self._lock = envlock.RunLock(lock.backend, lock.ttl_s, record=lambda entry: recorder.record(R.LOCK, **entry),
                                     warn=lambda text: self._display.warning(f"emp.deploy.go_no_go: {text}"))
        try:
            recorder.lock = self._lock.acquire(envlock.new_holder(run_id, run_user(), now()))
            return None
        except envlock.LockRefused as exc:
            self._lock = None
            recorder.lock = lock.refused_record(exc)
            if attach:  # a refused watch invocation leaves one lock record in the deploy's journal, nothing more
                recorder.open()
                recorder.record(R.LOCK, **recorder.lock)
                recorder.finished = True
                recorder._close_journal()  # pylint: disable=protected-access
                self._stop_run(f"REFUSED: {exc}")
            return exc

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is None or self._recorder is None:
            return
        entry = lock.release()
        if entry is not None:
            self._recorder.lock = entry
            self._recorder.record(R.LOCK, **entry)

    @_never_break
    def v2_playbook_on_task_start(self, task: t.Any, is_conditional: bool) -> None:
        name = to_text(task.get_name())
        self._task_started = (name, now())
        if self._is_child:
            if self._sink is not None:
                self._sink.rb_task(name)
        elif self._recorder is not None:
            self._recorder.step_started(name)

    @_never_break
    def v2_playbook_on_no_hosts_matched(self) -> None:
        if self._sink is not None:
            self._sink.rb_no_hosts()

    # --- task results -----------------------------------------------------------------------------

    @_never_break
    def v2_runner_on_ok(self, result: t.Any) -> None:
        self._collect(result)

    @_never_break
    def v2_runner_item_on_ok(self, result: t.Any) -> None:
        self._collect(result, item=True)

    @_never_break
    def v2_runner_item_on_failed(self, result: t.Any) -> None:
        task = adapter.task_of(result)
        self._collect(result, ignored=bool(getattr(task, "ignore_errors", False)), failed=True, item=True)

    @_never_break
    def v2_runner_on_failed(self, result: t.Any, ignore_errors: bool = False) -> None:
        found = self._collect(result, ignored=ignore_errors, failed=True)
        if not ignore_errors and not found:
            self._step_failed(result, unreachable=False)

    @_never_break
    def v2_runner_on_skipped(self, result: t.Any) -> None:
        task = adapter.task_of(result)
        if self._is_child or self._recorder is None or to_text(getattr(task, "action", "")) not in _GATE_ACTIONS:
            return
        self._recorder.add_skipped_gate(adapter.skipped_gate(task, adapter.task_result(result)),
                                        adapter.host_name(result))

    @_never_break
    def v2_runner_on_unreachable(self, result: t.Any) -> None:
        self._step_failed(result, unreachable=True)

    def _collect(self, result: t.Any, ignored: bool = False, failed: bool = False, item: bool = False) -> int:
        """Records the watch passes, gates and release steps in a result; returns how many gates it held."""
        data = adapter.task_result(result)
        if not any(key in data for key in _RECORD_KEYS):
            return 0  # the common case, kept cheap
        if isinstance(self._recorder, watch.WatchRecorder) and self._sink is None:
            self._recorder.add_watch_results(data, item)
        gates = gates_in(data) or self._censored_gate(result, data, failed)
        host = adapter.host_name(result)
        for gate in gates:
            if self._sink is not None:
                self._sink.rb_gate(gate)
            elif self._recorder is not None:
                if self._recorder.add_gate(gate, host, ignored=ignored, delegated_to=adapter.delegated_host(data)):
                    self._notify("gate", gate)
                    self._add_to_history(gate)
        if self._recorder is not None and not self._is_child:
            for step in releases_in(data):
                self._recorder.add_release(step, host)
            for check in skipped_checks_in(data):
                self._recorder.add_skipped_check(check, host)
        return len(gates)

    def _add_to_history(self, gate: t.Mapping[str, t.Any]) -> None:
        """One line in the history index per gate of a deploy or predeploy run (not a check run, a rollback
        run or a watch), for the baselines of later runs (docs/history.md). Its failure is a warning only."""
        recorder = self._recorder
        if (recorder is None or self._environment is None or isinstance(recorder, watch.WatchRecorder)
                or recorder.run.get("check_mode") or recorder.run.get("rollback_run")):
            return
        versions = sorted({str(r.get("version")) for r in recorder.releases
                           if r.get("component") == gate.get("component") and r.get("version") is not None})
        try:
            history.append_entry(history.gate_file(recorder.options.report_dir, self._environment, str(gate.get("name"))),
                                 history.entry_of(gate, recorder.run_id, recorder.run.get("emp_release"), versions))
        except OSError as exc:
            self._warn_once("history index", exc)

    def _censored_gate(self, result: t.Any, data: t.Mapping[str, t.Any], failed: bool) -> list[dict[str, t.Any]]:
        """A gate task under no_log reaches callbacks censored: keep its decision, name and timing."""
        task = adapter.task_of(result)
        if "censored" not in data or to_text(getattr(task, "action", "")) not in _GATE_ACTIONS:
            return []
        name, started = self._task_started
        failed = failed or bool(data.get("failed"))
        phase = self._recorder.phase if self._recorder is not None else None
        return [{"id": f"{to_text(getattr(task, '_uuid', name))}:{adapter.host_name(result)}", "name": name,
                 "component": phase["component"] if phase else None, "decision": R.NO_GO if failed else R.GO,
                 "mode": R.ENFORCE if failed else None, "enforced": failed or None, "started": started, "ended": now(),
                 "redacted": True}]

    def _step_failed(self, result: t.Any, unreachable: bool) -> None:
        data = adapter.task_result(result)
        task = adapter.task_of(result)
        task_name = to_text(task.get_name()) if task is not None else None
        msg = first_line(data.get("msg") or data.get("stderr") or data.get("module_stderr")
                         or ("host unreachable" if unreachable else "task failed"))
        host = adapter.host_name(result)
        if self._sink is not None:
            self._sink.rb_failure(f"{task_name or 'task'} on {host}: {msg}", unreachable)
        elif self._recorder is not None and not self._is_child:
            action = to_text(getattr(task, "action", "")) if task is not None else None
            self._recorder.add_failure(host, task_name, action, msg, unreachable)

    # --- end of run -------------------------------------------------------------------------------

    @_never_break
    def v2_playbook_on_stats(self, stats: t.Any) -> None:
        if self._is_child:
            if self._sink is not None:
                self._sink.rb_play_end()
            return
        recorder = self._recorder
        if recorder is None or recorder.finished:
            return
        recorder.end_phase()
        recorder.phase = None
        hosts = _host_stats(stats)
        failed_hosts = {h for h, s in hosts.items() if s.get("failures") or s.get("unreachable")}
        if any(R.is_enforced_nogo(g) for g in recorder.gates) or recorder.batch_nogo():
            # the gate task failed the run already; keep it failed even if a rescue handled it
            _keep_exit_code_nonzero()
        decision, reasons = recorder.decision(failed_hosts)
        self._notify("decided", decision, reasons)  # a NO-GO goes out before the rollback starts
        try:
            self._roll_back_if_needed(recorder)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # still record and print
            self._display.error(f"emp.deploy.go_no_go: ROLLBACK PROBLEM: the rollback could not run: "
                                f"{type(exc).__name__}: {exc}")
        self._notify("rolled_back")
        if isinstance(recorder, watch.WatchRecorder):
            self._notify("watch_ending", recorder.state)
        self._notify("drain")  # bounded: the last notices go out (or are journaled as not sent) before run_end
        for line in self._notices.unsent() if self._notices is not None else []:
            self._display.display(f"emp.deploy.go_no_go: {line}", color="bright purple")
        self._release_lock()
        summary = recorder.finish(decision, reasons, hosts)
        report = str(recorder.run_dir / "summary.json")
        if isinstance(recorder, watch.WatchRecorder):
            text, color = table.render_watch(summary, recorder.entry, recorder.gates, recorder.rollback, report)
        else:
            text, color = table.render(summary, report)
        text += table.told_lines(self._notices.records() if self._notices is not None else [],
                                 self._trace.record if self._trace is not None else None)
        self._display.display(text, color=color)

    def _roll_back_if_needed(self, recorder: RunRecorder) -> None:
        if not recorder.enforced_nogo():
            return
        components = recorder.rollback_components()
        if recorder.run.get("rollback_run"):
            recorder.rollback = recorder.no_rollback("a rollback run never rolls back itself")
            return
        if recorder.run_kind == R.RUN_KIND_PREDEPLOY:
            recorder.rollback = recorder.no_rollback("a predeploy run never rolls back: it released nothing")
            return
        if not components:
            recorder.rollback = recorder.no_rollback(recorder.why_no_rollback())
            return
        options = recorder.options
        extra_vars: dict[str, t.Any] = {R.ROLLBACK_COMPONENTS_VAR: components,
                                        R.ROLLBACK_REASON_VAR: recorder.rollback_reason(), R.RUN_ID_VAR: recorder.run_id}
        fleet_hosts, fleet_batches = recorder.fleet_rollback_targets(components)
        if fleet_hosts:  # a component run in batches rolls back only its released hosts, newest batch first
            components = [c for c in components if fleet_hosts.get(c, True)]
            if not components:
                recorder.rollback = recorder.no_rollback("nothing changed: no host of the batches was released")
                return
            extra_vars.update({R.ROLLBACK_COMPONENTS_VAR: components, R.ROLLBACK_HOSTS_VAR: fleet_hosts,
                               R.ROLLBACK_BATCHES_VAR: fleet_batches})
        cli = adapter.cli_args()
        recorder.plan_rollback(components, runner.plan_command(cli, options.rollback_playbook, extra_vars),
                               hosts=fleet_hosts or None)
        if options.rollback == "off":
            return
        if options.rollback == "plan":
            self._display.display(f"emp.deploy.go_no_go: NO-GO; rollback planned, not run. To roll back "
                                  f"{', '.join(components)}:\n  {recorder.rollback['command']}",  # type: ignore[index]
                                  color="bright purple")
            return
        cause = " after a watch alert" if isinstance(recorder, watch.WatchRecorder) else ""
        self._display.banner(f"EMP ROLLBACK [{', '.join(components)}] (run {recorder.run_id}{cause})")
        self._runner = runner.RollbackRunner(recorder, cli, warn=self._display.warning,
                                             on_executor_ready=self._install_signal_handlers)
        CallbackModule._rollback_parent = recorder
        try:
            problems = self._runner.run(options.rollback_playbook, extra_vars,
                                        force_subprocess=options.runner == R.RUNNER_SUBPROCESS)
        finally:
            CallbackModule._rollback_parent = None
        for problem in problems:
            self._display.error(f"emp.deploy.go_no_go: ROLLBACK PROBLEM: {problem}")

    # --- interruptions: every signal that ends the run still ends its record ----------------------

    def _install_signal_handlers(self) -> None:
        """(Re-)installs ours in front of whatever handles the signal now (the rollback's task queue
        manager replaces the process's handlers when it starts)."""
        self._signal_pid = os.getpid()
        for signum in _SIGNALS:
            try:
                current = signal.getsignal(signum)
                if current == self._on_signal:  # pylint: disable=comparison-with-callable
                    continue
                self._previous_handlers[signum] = current
                signal.signal(signum, self._on_signal)
            except (ValueError, OSError):  # not the main thread: the journal stays valid without this
                continue

    def _on_signal(self, signum: int, frame: t.Any) -> None:
        recorder = self._recorder
        if os.getpid() == self._signal_pid and recorder is not None and not recorder.finished:
            try:
                if self._runner is not None:
                    self._runner.interrupted(signum)
                self._release_lock()
                reasons = recorder.enforced_nogo()
                recorder.finish(R.NO_GO if reasons else R.INTERRUPTED, reasons, {},
                                interrupted=signal.Signals(signum).name)
                os.write(2, f"\nemp.deploy.go_no_go: run {recorder.run_id} interrupted by "
                            f"{signal.Signals(signum).name}; record: {recorder.run_dir / 'summary.json'}\n".encode())
            except Exception:  # pylint: disable=broad-exception-caught  # the signal must still end the run
                pass
        previous = self._previous_handlers.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            # the default action: die of the signal, as the run would have without this handler
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def _is_true(value: t.Any) -> bool:
    return str(value).strip().lower() in ("true", "yes", "on", "1") if value is not None else False


def run_kind_of(play_vars: t.Mapping[str, t.Any] | None) -> str:
    """deploy, or predeploy when the first play says `emp_run_kind: predeploy` literally; anything else stops the run."""
    value = (play_vars or {}).get(R.RUN_KIND_VAR, R.RUN_KIND_DEPLOY)
    if value not in R.RUN_KINDS:
        raise OptionError(f"{R.RUN_KIND_VAR}: {value!r} is not one of {', '.join(R.RUN_KINDS)} (a literal in the "
                          f"first play's vars)")
    return str(value)


def skipped_checks_in(data: t.Mapping[str, t.Any]) -> list[dict[str, t.Any]]:
    """Every emp_check_skipped in a result, including the per-item results of a loop."""
    found = [dict(data[R.CHECK_SKIPPED_RESULT_KEY])] if isinstance(data.get(R.CHECK_SKIPPED_RESULT_KEY), t.Mapping) else []
    for item in data.get("results") or []:
        if isinstance(item, t.Mapping):
            found.extend(skipped_checks_in(item))
    return found


def _host_stats(stats: t.Any) -> dict[str, t.Any]:
    hosts = {}
    for host in sorted(getattr(stats, "processed", {}) or {}):
        try:
            hosts[host] = dict(stats.summarize(host))
        except Exception:  # pylint: disable=broad-exception-caught
            continue
    return hosts


def _keep_exit_code_nonzero() -> None:
    """An enforced NO-GO is a failed run even if the play rescued the gate and rolled back fine."""
    original = sys.exit
    if getattr(original, "_emp_go_no_go", False):
        return

    def exit_nonzero(code: t.Any = 0) -> t.NoReturn:
        original(_RUN_FAILED_HOSTS if code in (0, None) else code)

    exit_nonzero._emp_go_no_go = True  # type: ignore[attr-defined]  # marks our wrapper so it is installed once
    sys.exit = exit_nonzero
