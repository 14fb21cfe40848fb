# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The run record contract: the gate record, the journal's record types and the summary.

One definition, used by the gate action (which builds ``emp_gate``), the go_no_go callback (which
writes ``journal.jsonl`` and ``summary.json``) and every reader (reports, history, AWX). The
formats are described for users in docs/records.md; a change that a reader could notice bumps
SCHEMA_VERSION.
"""

from __future__ import annotations

import json
import re
import typing as t
from pathlib import Path

# Written into every journal line and into summary.json. Readers refuse a major version they do
# not know instead of guessing.
SCHEMA_VERSION = 1

# --- decisions and modes ----------------------------------------------------------------------------

GO = "GO"
NO_GO = "NO-GO"
# A run (or phase) in which no gate ran: neither a GO nor a NO-GO, and shown as such.
NO_GATE = "no gate"
# A run cut short by a signal before it could decide.
INTERRUPTED = "interrupted"
# A run refused before any task because another run held the environment lock.
REFUSED = "refused"
RUN_DECISIONS = (GO, NO_GO, NO_GATE, INTERRUPTED, REFUSED)
# A gate decision: the gate sampled and recorded its evidence, but a waiver (emp_waivers, docs/waivers.md) said
# its verdict does not block; what it measured is kept in the record's `waiver.measured_decision`.
WAIVED = "WAIVED"
GATE_DECISIONS = (GO, NO_GO, WAIVED)

ENFORCE = "enforce"
WARN = "warn"
OBSERVE = "observe"
MODES = (ENFORCE, WARN, OBSERVE)

# --- journal record types (the "type" of each journal.jsonl line) -----------------------------------

RUN_START = "run_start"
# A resumed run (-e emp_resume, docs/resume.md): the earlier run's steps that said GO, skipped and linked.
RESUME = "resume"
PHASE_START = "phase_start"
PHASE_END = "phase_end"
GATE = "gate"
STEP_FAILED = "step_failed"
RELEASE = "release"
ROLLBACK_START = "rollback_start"
ROLLBACK_PLAY_START = "rollback_play_start"
ROLLBACK_PLAY_END = "rollback_play_end"
ROLLBACK_GATE = "rollback_gate"
ROLLBACK_STEP_FAILED = "rollback_step_failed"
ROLLBACK_END = "rollback_end"
ROLLBACK_PLANNED = "rollback_planned"
ROLLBACK_SKIPPED = "rollback_skipped"
RUN_INTERRUPTED = "run_interrupted"
RECORDER_FAILED = "recorder_failed"
RUN_END = "run_end"
# A watch invocation attached to a deploy run (see WATCH_* below) appends these to that run's journal.
WATCH_START = "watch_start"
WATCH_PASS = "watch_pass"
WATCH_END = "watch_end"
# One notification (Slack, Teams or the signed webhook), sent or not; written by the sender thread.
NOTIFY = "notify"
# The run exported as one OTLP trace (sent or not), written just before run_end (_trace.py).
TRACE_EXPORT = "trace_export"
# A gate task that did not run (its `when` was false, e.g. a disruptive check not allowed): no decision, so
# the checklist line it names is never counted as passed (the coverage report, docs/coverage.md).
GATE_SKIPPED = "gate_skipped"
# The environment lock (_env_lock.py): taken, refused, released, lost, or switched off for a test.
LOCK = "lock"
# A check that was deliberately not run (a predeploy's disruptive check on a target not marked disposable):
# recorded so that a coverage report shows it as skipped, never as passed.
CHECK_SKIPPED = "check_skipped"
# Fleet rollout (docs/fleet.md): one batch of a phase play run with serial (emp_batch) started and ended;
# batch_end carries the batch's decision from its hosts' evidence.
BATCH_START = "batch_start"
BATCH_END = "batch_end"
JOURNAL_TYPES = (RUN_START, PHASE_START, PHASE_END, GATE, STEP_FAILED, RELEASE, ROLLBACK_START,
                 ROLLBACK_PLAY_START, ROLLBACK_PLAY_END, ROLLBACK_GATE, ROLLBACK_STEP_FAILED, ROLLBACK_END,
                 ROLLBACK_PLANNED, ROLLBACK_SKIPPED, RUN_INTERRUPTED, RECORDER_FAILED, RUN_END,
                 WATCH_START, WATCH_PASS, WATCH_END, NOTIFY, GATE_SKIPPED, LOCK, CHECK_SKIPPED, TRACE_EXPORT,
                 BATCH_START, BATCH_END, RESUME)

# How the rollback playbook ran: inside the running ansible-playbook process, or as a child process.
RUNNER_IN_PROCESS = "in_process"
RUNNER_SUBPROCESS = "subprocess"

# --- keys of task results that carry records ---------------------------------------------------------

# The gate action returns its record under this key.
GATE_RESULT_KEY = "emp_gate"
# A release step (emp.deploy.release) returns what it switched under this key, so the callback
# knows which components this run really changed (rollback_scope=run rolls back only those).
RELEASE_RESULT_KEY = "emp_release_step"
# A task may return several gate records at once under this key (a list), as the watch does for its
# alerts and final criteria; each is recorded once, like an emp_gate.
GATES_RESULT_KEY = "emp_gates"
# The watch's state after a pass, and what one pass measured (emp.deploy.watch).
WATCH_RESULT_KEY = "emp_watch"
WATCH_PASS_RESULT_KEY = "emp_watch_pass"
# A task result (or loop item) that says a check was skipped on purpose: {name, checklist_ref, reason, component}.
CHECK_SKIPPED_RESULT_KEY = "emp_check_skipped"

# Environment variable that carries the run id to every task of the run (the callback sets it
# when the run starts; roles read it with the env lookup) and to a rollback child process.
RUN_ID_ENV = "EMP_DEPLOY_RUN_ID"
# "<pid>:<run id>" of the run that exported RUN_ID_ENV. An ansible-playbook started by a task of that run
# inherits both; seeing another pid with the same id, it knows the id is not its own and takes a new one
# (a task that sets its own EMP_DEPLOY_RUN_ID for the nested run is obeyed).
RUN_ID_OWNER_ENV = "EMP_DEPLOY_RUN_ID_OWNER"
# Absolute path of the run's report folder, exported beside RUN_ID_ENV (the watch keeps its state there).
RUN_DIR_ENV = "EMP_DEPLOY_RUN_DIR"
# The environment the run deploys to (emp_environment, default the inventory's name), exported beside RUN_ID_ENV:
# the gates' history index is kept per environment (docs/history.md).
ENVIRONMENT_ENV = "EMP_DEPLOY_ENVIRONMENT"
# A run id is one path segment: it names the run's report folder.
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def valid_run_id(value: str) -> bool:
    """True for a run id that is safe as one folder name (no separators, no '..', no leading dot)."""
    return bool(RUN_ID_PATTERN.match(value)) and ".." not in value


def read_summary(run_dir: Path) -> dict[str, t.Any] | None:
    """A run folder's summary.json, or None when it is missing, unreadable or not a JSON object."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def newest_run(report_dir: Path, accept: t.Callable[[t.Mapping[str, t.Any]], bool]) -> str | None:
    """The run id of the newest run in report_dir (by its summary's ``started``) whose summary ``accept``s."""
    candidates = []
    if report_dir.is_dir():
        for child in report_dir.iterdir():
            summary = read_summary(child) if valid_run_id(child.name) else None
            if summary is not None and accept(summary) and isinstance(summary.get("started"), str):
                candidates.append((summary["started"], child.name))
    return max(candidates)[1] if candidates else None


# --- the records --------------------------------------------------------------------------------------


class GateCounts(t.TypedDict):
    planned: int
    taken: int
    passed: int
    failed: int
    errors: int
    no_data: int


class GateLimits(t.TypedDict):
    failure_limit: int
    consecutive_error_limit: int
    on_no_data: str


class GateRecord(t.TypedDict, total=False):
    """``emp_gate``: what one gate decided and the evidence behind it."""

    id: str
    name: str
    phase: str | None
    component: str | None
    checklist_ref: str | None
    mode: str  # one of MODES
    enforced: bool
    decision: str  # one of GATE_DECISIONS
    reason: str
    host: str
    source: str  # "probe" or "evidence"
    probe_module: str | None
    criteria: list[dict[str, t.Any]]
    samples: list[dict[str, t.Any]]
    counts: GateCounts
    limits: GateLimits
    interval_s: float
    stopped_early: bool
    started: str
    ended: str
    duration_s: float
    # set by the gate when the task has no_log: figures and values were withheld from every output
    redacted: bool
    # set by the gate with the history option: runs, decision, aggregate, found, run_ids, figures, source, reason
    history: dict[str, t.Any]
    # set by the gate when a waiver applied: gate, reason, by, expires, measured_decision (GO or NO-GO)
    waiver: dict[str, t.Any]
    # set by the callback
    ignored: bool
    delegated_to: str | None


# The gate fields that the summary (and the GO/NO-GO table) keep of each gate.
GATE_SUMMARY_KEYS = ("id", "name", "phase", "component", "checklist_ref", "mode", "enforced", "decision",
                     "reason", "host", "delegated_to", "started", "ended", "duration_s", "counts", "ignored",
                     "redacted", "waiver")


class ReleaseStep(t.TypedDict, total=False):
    """``emp_release_step``: one component's release switch on one host."""

    component: str
    version: str
    previous: str | None
    changed: bool
    run_id: str
    host: str


# The gates the release role records when emp.deploy.rollback_ready says a release cannot be rolled back:
# a NO-GO before anything changed (docs/safety.md). Named rollback-ready-<service>.
READINESS_GATE_PREFIX = "rollback-ready-"


def is_readiness_gate(gate: t.Mapping[str, t.Any]) -> bool:
    return str(gate.get("name") or "").startswith(READINESS_GATE_PREFIX)


def is_enforced_nogo(gate: t.Mapping[str, t.Any]) -> bool:
    """A NO-GO that stops the run and rolls back: enforced, and not under ignore_errors."""
    return gate.get("decision") == NO_GO and gate.get("mode") == ENFORCE and not gate.get("ignored")


# --- the rollback and the summary ----------------------------------------------------------------------

# Where the rollback got to; an interruption records which of these it cut.
ROLLBACK_NOT_STARTED = "not_started"
ROLLBACK_RUNNING = "running"
ROLLBACK_FINISHED = "finished"
ROLLBACK_CUT_SHORT = "cut_short"
ROLLBACK_STATES = (ROLLBACK_NOT_STARTED, ROLLBACK_RUNNING, ROLLBACK_FINISHED, ROLLBACK_CUT_SHORT)

# Extra vars the rollback playbook receives (and that mark a run as a rollback run).
ROLLBACK_COMPONENTS_VAR = "emp_rollback_components"
ROLLBACK_REASON_VAR = "emp_rollback_reason"
# Fleet rollout (docs/fleet.md): per component run in batches, the hosts released so far (newest batch
# first) and those batches' sizes, the rollback play's serial.
ROLLBACK_HOSTS_VAR = "emp_rollback_hosts"
ROLLBACK_BATCHES_VAR = "emp_rollback_batches"
# The batch size of the phase plays (their serial) and the share of a batch's hosts that may fail.
BATCH_VAR = "emp_batch"
MAX_FAIL_VAR = "emp_max_fail_percentage"
RUN_ID_VAR = "emp_run_id"
RELEASE_VAR = "emp_release"
PHASE_VAR = "emp_phase"
# A first play with this var set to false (literally) starts no run record (the report playbook).
RECORD_VAR = "emp_record"
COMPONENT_VAR = "emp_component"
# Extra var (or a vars file given with -e @file): the waivers of this run, [{gate, reason, by, expires}].
WAIVERS_VAR = "emp_waivers"
# -e emp_plan=true: deploy.yml only prints its plan (emp.deploy.plan); such a run keeps no record.
PLAN_VAR = "emp_plan"

# --- run kinds ------------------------------------------------------------------------------------------

# `emp_run_kind: predeploy` (a literal) in the first play's vars: the checks before a deploy. Such a run is
# recorded like a deploy run (run_kind in run_start and summary.json) but never rolls anything back.
RUN_KIND_VAR = "emp_run_kind"
RUN_KIND_DEPLOY = "deploy"
RUN_KIND_PREDEPLOY = "predeploy"
RUN_KINDS = (RUN_KIND_DEPLOY, RUN_KIND_PREDEPLOY)

# --- the watch after GO ---------------------------------------------------------------------------------

# `emp_watch_attach: true` (a literal) in the first play's vars: the invocation attaches to a deploy run.
WATCH_ATTACH_VAR = "emp_watch_attach"
# Extra vars of an attached invocation: the run to attach to, and its rollback option (auto, plan, off).
WATCH_RUN_ID_VAR = "emp_watch_run_id"
WATCH_ROLLBACK_VAR = "emp_watch_rollback"
# follow (one long invocation, a looped pass task) or once (one pass per invocation)
WATCH_MODE_VAR = "emp_watch_mode"
WATCH_MODES = ("follow", "once")
WATCH_PHASE = "watch"

IN_PROGRESS = "IN_PROGRESS"
SUCCESS = "SUCCESS"
FAILED = "FAILED"
WATCH_VERDICTS = (IN_PROGRESS, SUCCESS, FAILED)

# The fields of a pass result that a watch_pass journal record keeps (never the full gate records).
WATCH_PASS_RESULT_KEYS = ("check", "layer", "component", "checklist_ref", "decision", "value", "reason")
# The fields of the watch state (emp_watch) that watch_pass records and the summary keep.
WATCH_STATE_KEYS = ("window_s", "started", "ends", "passes", "checks", "verdict", "done", "next_due")
WATCH_ALERT_KEYS = ("check", "component", "layer", "kind", "reason", "at")


class NotifyRecord(t.TypedDict, total=False):
    """``notify``: one notice to one target. Never the URL or the secret."""

    target: str  # slack, teams or webhook
    event: str  # nogo, rollback, go, watch_alert, watch_verdict
    outcome: str  # sent, http_error, timeout, unreachable, bad_answer, unfinished, not_sent
    sent: bool
    status: int | None  # the last HTTP status, None without an answer
    attempts: int
    statuses: list[int | None]  # the HTTP status of each attempt, None where none came back
    waits_s: list[float]  # the waits before each retry (Retry-After or backoff)
    error: str | None
    delay_s: float | None  # from the event to the first attempt
    duration_s: float | None  # from the first attempt to the outcome
    message_id: str | None  # webhook-id of a signed webhook notice


class TraceExportRecord(t.TypedDict, total=False):
    """``trace_export``: the run sent as one OTLP trace. Never the headers or the token."""

    endpoint: str  # host:port of the OTLP endpoint, never its path, query or credentials
    protocol: str  # http/protobuf or http/json
    outcome: str  # sent, rejected, http_error, timeout, unreachable, bad_answer, not_sent
    sent: bool
    status: int | None  # the last HTTP status, None without an answer
    attempts: int
    statuses: list[int | None]
    trace_id: str  # derived from the run id: the same journal always gives the same trace
    spans: int
    events: int
    rejected: int  # spans the backend refused (OTLP partialSuccess)
    error: str | None
    duration_s: float | None


class RollbackRecord(t.TypedDict, total=False):
    """``rollback`` in summary.json (and the fields of the rollback_* journal records)."""

    triggered: bool
    mode: str  # auto, plan or off
    scope: str  # failed or run
    runner: str | None  # RUNNER_IN_PROCESS or RUNNER_SUBPROCESS once it ran
    state: str  # one of ROLLBACK_STATES
    components: list[str]
    playbook: str
    reason: str
    command: str
    started: str
    ended: str
    rc: int | None
    ok: bool | None
    duration_s: float | None
    budget_s: float | None
    budgets: dict[str, float]
    within_budget: bool | None
    # per component: ran, ok, failures, duration_s, budget_s, within_budget, and verification (the
    # component's own gates after its rollback: name, host, decision, mode, reason) and verified
    per_component: dict[str, dict[str, t.Any]]
    problems: list[str]
    why_not: str


class BatchRecord(t.TypedDict, total=False):
    """A batch_end record and an entry of summary.json's batches (docs/fleet.md)."""

    phase: str | None
    component: str | None
    play: str
    batch: int  # from 1, in the order Ansible ran the play's batches
    size: int
    decision: str  # GO or NO-GO
    reason: str
    hosts_go: int
    nogo_hosts: list[str]  # hosts with an enforced NO-GO gate or a failed step
    no_data_hosts: list[str]  # hosts that produced no gate evidence (nothing passes for lack of data)
    released_hosts: int  # hosts whose release step changed something
    max_fail_percentage: int
    duration_s: float


class RunSummary(t.TypedDict, total=False):
    """summary.json: the whole run in one document, written atomically when the run ends."""

    schema_version: int
    run_id: str
    decision: str  # one of RUN_DECISIONS
    playbook: str | None
    check_mode: bool
    emp_release: str | None
    limit: str | None
    rollback_run: bool
    run_kind: str  # one of RUN_KINDS
    started: str
    ended: str
    duration_s: float | None
    reasons: list[str]
    skipped_checks: list[dict[str, t.Any]]  # CHECK_SKIPPED records: name, checklist_ref, component, reason
    phases: list[dict[str, t.Any]]
    gates: list[dict[str, t.Any]]
    failures: list[dict[str, t.Any]]
    releases: list[ReleaseStep]
    rollback: RollbackRecord
    hosts: dict[str, dict[str, int]]
    journal: str | None
    interrupted: str | None  # the signal that cut the run short (SIGINT, SIGTERM, SIGHUP, killed)
    running_step: dict[str, t.Any] | None  # the phase/task running when the run was interrupted
    record_errors: list[str]  # why parts of the record could not be written
    journal_head: JournalHead  # the journal's line count and last hash when the summary was written
    batches: list[BatchRecord]  # one per batch of a phase play run in batches (docs/fleet.md); else empty
    lock: LockRecord  # the environment lock of the run
    resumed_from: str | None  # the run this one resumed (-e emp_resume, docs/resume.md), else null
    resumed: list[dict[str, t.Any]]  # the resumed run's steps that said GO, skipped here (docs/resume.md)


class JournalHead(t.TypedDict, total=False):
    """``journal_head`` in summary.json (_journal_chain.py): what emp.deploy.verify checks the journal against."""

    lines: int
    sha256: str | None
    hmac_sha256: str  # only when EMP_DEPLOY_RECORD_KEY held a key


# --- the environment lock ------------------------------------------------------------------------------

# Extra var (or play var) naming the environment the lock guards; default: the inventory's name.
ENVIRONMENT_VAR = "emp_environment"
# Extra var: `emp_lock: off` runs without the lock (tests only); the run records it.
LOCK_VAR = "emp_lock"
# `emp_environment_lock: true` (a literal) in the first play's vars: this playbook takes the lock
# (deploy.yml, watch.yml, rollback.yml).
LOCK_PLAY_VAR = "emp_environment_lock"
LOCK_OUTCOMES = ("acquired", "joined", "taken_over", "refused", "released", "lost", "off")


class LockRecord(t.TypedDict, total=False):
    """``lock`` journal records and ``lock`` in summary.json: the environment lock of the run."""

    outcome: str  # one of LOCK_OUTCOMES
    environment: str
    backend: str  # redis or file
    holder: dict[str, t.Any]  # run_id, user, host, pid, since (the run that holds it: this one, or another)
    previous: dict[str, t.Any] | None  # taken_over: the dead run whose lock this run took
    ttl_s: float | None
    renewals: int
    held_s: float | None
    error: str | None


class WatchInvocation(t.TypedDict, total=False):
    """One attached watch invocation, in ``watch.invocations`` (and the watch_start/watch_end records)."""

    invocation: str  # "<pid>-<random>": tags every journal record of this invocation
    pid: int
    playbook: str | None
    mode: str | None  # follow or once
    started: str
    ended: str
    passes: int  # passes journaled by this invocation
    alerts: int  # alert gates (NO-GO) recorded by this invocation
    verdict: str  # one of WATCH_VERDICTS, as the watch said last
    rollback: str | None  # the rollback's state when this invocation rolled back, else None
    interrupted: str | None  # SIGINT, SIGTERM, SIGHUP or killed


class WatchSection(t.TypedDict, total=False):
    """``watch`` in summary.json: merged by every attached invocation."""

    window_s: float | None
    started: str | None
    ends: str | None
    mode: str | None
    passes: int  # the watch's own count of passes over all invocations
    checks: t.Any  # as the watch reports them
    alerts: list[dict[str, t.Any]]  # check, component, reason, at (and layer, kind)
    verdict: str  # one of WATCH_VERDICTS
    invocations: list[WatchInvocation]


class WatchedRunSummary(RunSummary, total=False):
    """summary.json of a deploy run that a watch attached to: the deploy's summary plus ``watch``."""

    watch: WatchSection
