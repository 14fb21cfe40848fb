# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The run recorder behind the go_no_go callback: options, journal, decisions, summary.

Pure Python (no Ansible import), so it is unit-tested on its own. The callback feeds it what Ansible
reports; the recorder keeps the run's state, writes journal.jsonl and summary.json in the formats of
docs/records.md, and decides GO/NO-GO and what to roll back. Recording is best effort: a report
folder that cannot be written is reported (``record_errors``) and never stops the deciding, the
rollback or the table.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import secrets
import socket
import threading
import time
import typing as t
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ansible_collections.emp.deploy.plugins.plugin_utils import _fleet as fleet
from ansible_collections.emp.deploy.plugins.plugin_utils import _journal_chain as chain
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R

DEFAULT_BUDGETS: dict[str, float] = {"redis": 300, "webhooks": 300, "telemetry": 600, "database": 900}
ROLLBACK_MODES = ("auto", "plan", "off")
ROLLBACK_SCOPES = ("failed", "run")
ROLLBACK_RUNNERS = ("auto", R.RUNNER_SUBPROCESS)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class OptionError(ValueError):
    """A callback option or the run id is malformed; the message says which and how to write it."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def first_line(value: t.Any, limit: int = 400) -> str:
    lines = str(value if value is not None else "").strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def plain(value: t.Any) -> t.Any:
    """JSON-safe copy (tagged or unsafe strings of any ansible-core become plain str)."""
    return json.loads(json.dumps(value, default=str))


def _seconds(value: float) -> float:
    return int(value) if float(value).is_integer() else round(value, 3)


# --- options --------------------------------------------------------------------------------------


def parse_duration(value: t.Any, what: str) -> float:
    """Seconds from 300, '300', '90s', '5m', '1h' or '250ms'; OptionError otherwise."""
    if isinstance(value, bool):
        raise OptionError(f"{what}: {value!r} is not a duration (write 300, 90s, 5m or 1h)")
    if isinstance(value, (int, float)) and value >= 0:
        return _seconds(float(value))
    match = _DURATION.match(str(value))
    if not match:
        raise OptionError(f"{what}: {str(value)!r} is not a duration (write 300, 90s, 5m or 1h)")
    return _seconds(float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_budgets(items: t.Iterable[t.Any] | None) -> dict[str, float]:
    """'redis=300' or 'redis=5m' items over the checklist defaults; OptionError on a malformed item."""
    budgets = dict(DEFAULT_BUDGETS)
    for item in items or []:
        name, sep, duration = str(item).partition("=")
        if not sep or not name.strip():
            raise OptionError(f"rollback_budgets: {str(item)!r} is not component=duration (for example redis=300 "
                              f"or redis=5m)")
        budgets[name.strip()] = parse_duration(duration, f"rollback_budgets item {str(item)!r}")
    return budgets


@dataclass(frozen=True)
class Options:
    """The callback's options, validated once when the run starts."""

    report_dir: Path
    rollback: str = "auto"
    rollback_scope: str = "failed"
    rollback_playbook: str = "emp.deploy.rollback"
    budgets: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    default_budget: float = 300
    runner: str = "auto"

    def budget_of(self, component: str) -> float:
        return self.budgets.get(component, self.default_budget)


def _choice(raw: t.Mapping[str, t.Any], name: str, choices: tuple[str, ...], default: str) -> str:
    value = raw.get(name)
    value = default if value is None else str(value)
    if value not in choices:
        raise OptionError(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return value


def validate_options(raw: t.Mapping[str, t.Any]) -> Options:
    """Every option checked at once, so a malformed one fails the run before anything changed."""
    playbook = str(raw.get("rollback_playbook") or "emp.deploy.rollback").strip()
    if not playbook:
        raise OptionError("rollback_playbook: empty")
    default_budget = raw.get("rollback_default_budget")
    return Options(
        report_dir=Path(str(raw.get("report_dir") or "./deploy-reports")).expanduser(),
        rollback=_choice(raw, "rollback", ROLLBACK_MODES, "auto"),
        rollback_scope=_choice(raw, "rollback_scope", ROLLBACK_SCOPES, "failed"),
        rollback_playbook=playbook,
        budgets=parse_budgets(raw.get("rollback_budgets")),
        default_budget=parse_duration(300 if default_budget is None else default_budget, "rollback_default_budget"),
        runner=_choice(raw, "rollback_runner", ROLLBACK_RUNNERS, "auto"),
    )


def run_user() -> str | None:
    """Who ran the deployment (the login of the controller process), None when it has no name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def run_id_from_environment(environ: t.Mapping[str, str], pid: int) -> str | None:
    """EMP_DEPLOY_RUN_ID as the user (or AWX) set it; None when it was inherited from another run.

    A run exports its id for its tasks; an ansible-playbook that one of those tasks starts is a run of
    its own and must not write into its parent's report folder.
    """
    value = environ.get(R.RUN_ID_ENV)
    owner_pid, sep, owner_id = (environ.get(R.RUN_ID_OWNER_ENV) or "").partition(":")
    if sep and owner_pid != str(pid) and value == owner_id:
        return None  # inherited unchanged from the run that started us; a task that sets its own id is obeyed
    return value


def resolve_run_id(extra_var: t.Any, env_value: str | None) -> str:
    """The extra var emp_run_id, else EMP_DEPLOY_RUN_ID, else a new id; refused unless one safe path segment."""
    for source, value in ((f"-e {R.RUN_ID_VAR}", extra_var), (R.RUN_ID_ENV, env_value)):
        if value in (None, ""):
            continue
        run_id = str(value)
        if not R.valid_run_id(run_id):
            raise OptionError(f"{source}={run_id!r} is not a valid run id: it names the run's report folder, so it "
                              f"must be one path segment of letters, digits, '.', '_' and '-' (at most 128, "
                              f"no '..', not starting with '.' or '-')")
        return run_id
    return new_run_id()


# --- files ----------------------------------------------------------------------------------------


class Journal:
    """Append-only JSON lines; each record is written whole, flushed and fsynced before returning.

    Every line is chained to the one before it (_journal_chain.py, docs/records.md): the writer holds
    an flock on the file while it appends, and first takes in what other writers (a watch invocation,
    the watcher of a killed run) appended since its last line, so the chain stays one chain."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(str(path), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        self.chain = chain.ChainState()
        self.unsynced = False

    def write(self, record: t.Mapping[str, t.Any], sync: bool = True) -> None:
        """Appends one line; sync=False leaves the fsync to the next sync() (a fleet batch's host events,
        docs/fleet.md): the line is in the file at once, only a crash of the machine could lose it."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self._catch_up()
            data = chain.chained_line(self.chain, record)
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if sync:
                os.fsync(self._fd)
            self.unsynced = not sync
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def sync(self) -> None:
        """fsyncs the lines written with sync=False, if any."""
        if self.unsynced and self._fd >= 0:
            os.fsync(self._fd)
            self.unsynced = False

    def _catch_up(self) -> None:
        """Takes in the lines appended by others since this writer's last line (all of them, the first time)."""
        size = os.fstat(self._fd).st_size
        if size == self.chain.size:
            return
        if size < self.chain.size:  # cut short under us: start over from the file as it is
            self.chain = chain.ChainState()
        added = os.pread(self._fd, size - self.chain.size, self.chain.size)
        self.chain.advance(added)
        self.chain.size += len(added)

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1


def journal_head(path: Path, run_id: t.Any) -> dict[str, t.Any]:
    """summary.json's journal_head: the journal's line count and last hash, signed when
    EMP_DEPLOY_RECORD_KEY holds a key (docs/records.md)."""
    return chain.head_of(path, run_id, os.environ.get(chain.KEY_ENV) or None)


def write_json_atomically(path: Path, data: t.Mapping[str, t.Any]) -> None:
    """tmp file in the same folder, fsync, os.replace: readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=str, ensure_ascii=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(str(path.parent), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --- records found in task results ----------------------------------------------------------------


def gates_in(data: t.Mapping[str, t.Any]) -> list[dict[str, t.Any]]:
    """Every emp_gate and every record of an emp_gates list in a result, including the per-item
    results of a loop (the item results and the loop's result both carry them: add_gate dedupes)."""
    return _records_in(data, R.GATE_RESULT_KEY, "decision", list_key=R.GATES_RESULT_KEY)


def releases_in(data: t.Mapping[str, t.Any]) -> list[dict[str, t.Any]]:
    """Every emp_release_step in a result, including the per-item results of a loop."""
    return _records_in(data, R.RELEASE_RESULT_KEY, "component")


def _records_in(data: t.Mapping[str, t.Any], key: str, required: str,
                list_key: str | None = None) -> list[dict[str, t.Any]]:
    candidates = [data.get(key)]
    listed = data.get(list_key) if list_key else None
    if isinstance(listed, list):
        candidates += listed
    found = [dict(record) for record in candidates if isinstance(record, t.Mapping) and record.get(required)]
    items = data.get("results")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, t.Mapping):
                found.extend(_records_in(item, key, required, list_key))
    return found


def redact_gate(gate: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """A no_log gate keeps its decision, name, timing and counts; measured values and reasons go."""
    kept = {k: v for k, v in gate.items() if k not in ("samples", "criteria", "reason")}
    kept["reason"] = "redacted (no_log)"
    kept["redacted"] = True
    return kept


# --- the rollback's own plays, as reported by the rollback run ------------------------------------


@dataclass
class RollbackPlay:
    play: str
    component: str | None
    started_mono: float
    hosts: bool = True
    failures: list[str] = field(default_factory=list)
    ended_mono: float | None = None
    # the verification gates (the component's own gate after its rollback), as recorded in per_component
    gates: list[dict[str, t.Any]] = field(default_factory=list)


# --- the recorder ---------------------------------------------------------------------------------

# Per-host records whose fsync waits for the end of their task (or batch) while a fleet batch runs.
_BATCHED_SYNC_TYPES = frozenset((R.GATE, R.RELEASE, R.STEP_FAILED, R.GATE_SKIPPED, R.CHECK_SKIPPED))


class RunRecorder:
    """One run's record: the journal as things happen, the decision and the summary at the end."""

    def __init__(self, options: Options, run_id: str, clock: t.Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.run_id = run_id
        self.clock = clock
        self.run_dir = (options.report_dir / run_id).absolute()
        self.record_errors: list[str] = []
        self.journal: Journal | None = None
        self.run: dict[str, t.Any] = {}
        self.phases: list[dict[str, t.Any]] = []
        self.phase: dict[str, t.Any] | None = None
        self.gates: list[dict[str, t.Any]] = []
        self._gate_ids: set[str] = set()
        self.failures: list[dict[str, t.Any]] = []
        self.releases: list[dict[str, t.Any]] = []
        self.skipped_checks: list[dict[str, t.Any]] = []
        self.resumed: dict[str, t.Any] | None = None  # the resume record of a resumed run (docs/resume.md)
        self.rollback: dict[str, t.Any] | None = None
        self.lock: dict[str, t.Any] | None = None  # the environment lock's last outcome (_env_lock.py)
        self.rb_plays: list[RollbackPlay] = []
        self.running_step: dict[str, t.Any] | None = None
        self.finished = False
        self.summary: dict[str, t.Any] | None = None
        self.sentinel: t.Any = None  # _run_watcher.Sentinel once watch() started it
        # an attached watch invocation's id (_watch_recorder.py); the watcher then ends only that invocation
        self.invocation: str | None = None
        # called with the run_end record just before it is written (the trace export, _trace.py)
        self.before_end: t.Callable[[dict[str, t.Any]], None] | None = None
        # the notification sender threads journal too (_notify.py): one record at a time
        self._journal_lock = threading.RLock()
        # fleet rollout (docs/fleet.md): the batches of phase plays run with serial, the one running
        self.batches: list[fleet.Batch] = []
        self.batch: fleet.Batch | None = None
        self.batch_started_mono = 0.0

    # --- journal ----------------------------------------------------------------------------------

    def open(self) -> None:
        try:
            self.journal = Journal(self.run_dir / "journal.jsonl")
        except OSError as exc:
            self._record_error(f"cannot write the run record in {self.run_dir} ({exc.strerror or exc}); "
                               f"this run keeps no journal or summary, but still decides and rolls back")

    def _record_error(self, message: str) -> None:
        if message not in self.record_errors:
            self.record_errors.append(message)

    def record(self, kind: str, **data: t.Any) -> None:
        with self._journal_lock:
            if self.journal is None:
                return
            entry = {"schema_version": R.SCHEMA_VERSION, "ts": now(), "type": kind, "run_id": self.run_id}
            entry.update(plain(data))
            # a host's event inside a fleet batch is fsynced with the others at the next task or batch end
            sync = self.batch is None or kind not in _BATCHED_SYNC_TYPES
            try:
                self.journal.write(entry, sync=sync)
            except OSError as exc:
                self._record_error(f"writing {self.journal.path} failed ({exc.strerror or exc}); the journal stops here")
                self._close_journal()

    def _close_journal(self) -> None:
        with self._journal_lock:
            if self.journal is not None:
                try:
                    self.journal.close()
                except OSError:
                    pass
                self.journal = None

    # --- run and phases ---------------------------------------------------------------------------

    def start(self, **info: t.Any) -> None:
        self.run = dict(info, started=now(), started_mono=self.clock(), pid=os.getpid(), user=run_user(),
                        controller=socket.gethostname())
        self.open()
        self.record(R.RUN_START, **{k: v for k, v in self.run.items() if k != "started_mono"})

    def resume(self, plan: dict[str, t.Any]) -> None:
        """A resumed run: journals the earlier run's steps that said GO, which this run skips (their evidence)."""
        self.resumed = plan
        self.record(R.RESUME, **plan)

    def _resumed_step(self, component: str | None) -> bool:
        return self.resumed is not None and any(s["component"] == component for s in self.resumed["steps"])

    def watch(self) -> None:
        """Starts the watcher that ends the record if this process is killed outright."""
        from ansible_collections.emp.deploy.plugins.plugin_utils._run_watcher import Sentinel

        if self.journal is not None:
            try:
                self.sentinel = Sentinel(self.run_dir, self.invocation)
            except OSError as exc:
                self._record_error(f"the watcher for a killed run could not start ({exc})")

    def start_phase(self, phase: str | None, component: str | None, play: str) -> None:
        self.end_phase()
        if phase is None and component is None:
            self.phase = None
            return
        self.phase = {"phase": phase, "component": component, "play": play, "started": now(),
                      "started_mono": self.clock(), "ended": None, "nogo": [], "gates": 0}
        if self._resumed_step(component) and self.resumed is not None:
            self.phase["resumed_from"] = self.resumed["resumed_from"]
        self.phases.append(self.phase)
        self.record(R.PHASE_START, phase=phase, component=component, play=play)

    def sync_journal(self) -> None:
        """fsyncs what a fleet batch's host events left unsynced (at each task start and batch end)."""
        with self._journal_lock:
            if self.journal is not None:
                try:
                    self.journal.sync()
                except OSError as exc:
                    self._record_error(f"syncing {self.journal.path} failed ({exc.strerror or exc})")

    # --- fleet rollout: batches of a phase play (docs/fleet.md) ----------------------------------

    def start_batch(self, hosts: list[str], max_fail_percentage: int) -> None:
        """The phase play's next batch starts (Ansible starts the play once per batch)."""
        self.end_batch()
        phase = self.phase or {}
        number = 1 + sum(1 for b in self.batches if b.play == phase.get("play") and b.component == phase.get("component"))
        self.batch = fleet.Batch(phase.get("phase"), phase.get("component"), str(phase.get("play")), number,
                                 list(hosts), max_fail_percentage)
        self.batches.append(self.batch)
        self.batch_started_mono = self.clock()
        if self.phase is not None:
            self.phase["batches"] = number
        self.record(R.BATCH_START, phase=self.batch.phase, component=self.batch.component, play=self.batch.play,
                    batch=number, size=len(hosts), hosts=hosts, max_fail_percentage=max_fail_percentage)

    def end_batch(self) -> None:
        """The running batch's decision from its hosts' evidence: batch_end, and a NO-GO of its phase."""
        batch, self.batch = self.batch, None
        if batch is None:
            return
        outcome = batch.outcome()
        outcome["duration_s"] = round(self.clock() - self.batch_started_mono, 3)
        if batch.decision == R.NO_GO and self.phase is not None:
            self.phase["nogo"].append(f"batch {batch.number}: {batch.reason}")
        self.record(R.BATCH_END, **outcome)
        self.sync_journal()

    def _batch_evidence(self, host: str) -> fleet.HostEvidence | None:
        if self.batch is None or host not in self.batch.hosts:
            return None
        return self.batch.host(host)

    def rollout_stopped(self) -> str | None:
        """Why no further batch or phase may start: a batch said NO-GO without failing a host (no evidence)."""
        reasons = self.batch_nogo()
        return reasons[0] if reasons else None

    def batch_summaries(self) -> list[dict[str, t.Any]]:
        return [b.outcome() for b in self.batches if b.decision is not None]

    def batch_nogo(self) -> list[str]:
        """NO-GO reasons of batches that said NO-GO without an enforced NO-GO of their own (no evidence)."""
        return [f"{b.component}: batch {b.number} of {b.play} said NO-GO: {b.reason}" for b in self.batches
                if b.decision == R.NO_GO and not any(b.host(h).nogo for h in b.hosts)]

    def tolerated(self, component: t.Any, host: t.Any) -> bool:
        """A host's NO-GO within its GO batch's max_fail_percentage: recorded, but it rolls nothing back."""
        return any(b.decision == R.GO and b.component == component and host in b.hosts for b in self.batches)

    def fleet_rollback_targets(self, components: list[str]) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
        """Per component run in batches: the released hosts, newest batch first, and the batch sizes."""
        fleet_components = [c for c in components if any(b.component == c for b in self.batches)]
        return fleet.rollback_targets(self.batches, fleet_components)

    def end_phase(self, interrupted: bool = False) -> None:
        self.end_batch()
        phase = self.phase
        if phase is None or phase["ended"]:
            return
        phase["ended"] = now()
        phase["duration_s"] = round(self.clock() - phase.pop("started_mono"), 3)
        if phase["nogo"]:
            phase["decision"] = R.NO_GO
        elif interrupted:
            phase["decision"] = R.INTERRUPTED
        elif phase["gates"] or phase.get("resumed_from"):  # a resumed step said GO in the run it was resumed from
            phase["decision"] = R.GO
        else:
            phase["decision"] = R.NO_GATE
        resumed = {"resumed_from": phase["resumed_from"]} if phase.get("resumed_from") else {}
        self.record(R.PHASE_END, phase=phase["phase"], component=phase["component"], play=phase["play"],
                    decision=phase["decision"], duration_s=phase["duration_s"], nogo=phase["nogo"], **resumed)

    def step_started(self, task: str, rollback: bool = False) -> None:
        """The task now running; an interruption names it."""
        if rollback:
            phase, component = None, self.rb_plays[-1].component if self.rb_plays else None
        else:
            phase, component = (self.phase["phase"], self.phase["component"]) if self.phase else (None, None)
        self.running_step = {"task": task, "phase": phase, "component": component, "rollback": rollback}
        if self.batch is not None:  # the previous task of the batch is done: its host events reach the disk
            self.sync_journal()
        if self.sentinel is not None:
            self.sentinel.step(self.running_step)

    # --- what tasks returned ----------------------------------------------------------------------

    def add_gate(self, gate: dict[str, t.Any], host: str, ignored: bool = False,
                 delegated_to: str | None = None) -> bool:
        """Records a gate once (a loop reports each item, then the loop); False for a repeat."""
        gate_id = gate.get("id") or f"{gate.get('name')}:{gate.get('started')}:{gate.get('host') or host}"
        if gate_id in self._gate_ids:
            return False
        self._gate_ids.add(gate_id)
        gate.setdefault("host", host)
        if ignored and gate.get("decision") == R.NO_GO:
            gate["ignored"] = True  # ignore_errors: recorded, but it neither fails the run nor rolls back
        if delegated_to:
            gate["delegated_to"] = delegated_to
        if gate.get("phase") is None and self.phase:
            gate["phase"] = self.phase["phase"]
        if gate.get("redacted"):
            gate = redact_gate(gate)
        self.gates.append({key: gate.get(key) for key in R.GATE_SUMMARY_KEYS})
        if self.phase is not None:
            self.phase["gates"] += 1
            if R.is_enforced_nogo(gate):
                self.phase["nogo"].append(f"gate {gate.get('name')}: {gate.get('reason')}")
        evidence = self._batch_evidence(str(gate.get("host") or host))
        if evidence is not None:
            if R.is_enforced_nogo(gate):
                evidence.nogo.append(f"gate {gate.get('name')}: {gate.get('reason')}")
            elif gate.get("decision") in (R.GO, R.NO_GO):
                evidence.gates.append(str(gate.get("decision")))
        self.record(R.GATE, **gate)
        return True

    def add_skipped_gate(self, gate: t.Mapping[str, t.Any], host: str) -> None:
        """A gate task skipped by its `when`: journaled (gate_skipped) so that its checklist line reads
        "skipped", not "no gate"; it is no gate of the run and decides nothing."""
        record = {key: gate.get(key) for key in ("name", "component", "checklist_ref", "mode", "task", "reason")}
        record.update(host=host, phase=gate.get("phase") or (self.phase["phase"] if self.phase else None))
        if record["component"] is None and self.phase:
            record["component"] = self.phase["component"]
        self.record(R.GATE_SKIPPED, **record)

    def add_failure(self, host: str, task: str | None, action: str | None, msg: str, unreachable: bool) -> None:
        failure = {
            "phase": self.phase["phase"] if self.phase else None,
            "component": self.phase["component"] if self.phase else None,
            "host": host, "task": task, "action": action, "unreachable": unreachable, "msg": first_line(msg),
            "reason": "host unreachable during deployment" if unreachable else "deployment step failed",
        }
        self.failures.append(failure)
        evidence = self._batch_evidence(host)
        if evidence is not None:
            evidence.nogo.append(f"{failure['reason']}: {task}: {failure['msg']}")
        if self.phase is not None:
            self.phase["nogo"].append(f"{failure['reason']}: {task} on {host}: {failure['msg']}")
        self.record(R.STEP_FAILED, **failure)

    def add_release(self, step: dict[str, t.Any], host: str) -> None:
        """Records a release step once (a loop reports each item, then the loop)."""
        step.setdefault("host", host)
        step.setdefault("phase", self.phase["phase"] if self.phase else None)
        if step in self.releases:
            return
        self.releases.append(step)
        evidence = self._batch_evidence(str(step.get("host") or host))
        if evidence is not None and step.get("changed"):
            evidence.released = True
        self.record(R.RELEASE, **step)

    def add_skipped_check(self, check: t.Mapping[str, t.Any], host: str) -> None:
        """Records a check skipped on purpose once (a loop reports each item, then the loop)."""
        record = {"name": check.get("name"), "checklist_ref": check.get("checklist_ref"),
                  "component": check.get("component") or (self.phase["component"] if self.phase else None),
                  "phase": self.phase["phase"] if self.phase else None, "host": check.get("host") or host,
                  "reason": first_line(check.get("reason") or "skipped")}
        if record in self.skipped_checks:
            return
        self.skipped_checks.append(record)
        self.record(R.CHECK_SKIPPED, **record)

    @property
    def run_kind(self) -> str:
        return str(self.run.get("run_kind") or R.RUN_KIND_DEPLOY)

    # --- decisions --------------------------------------------------------------------------------

    def enforced_nogo(self) -> list[str]:
        """NO-GO reasons that roll back: enforced gates, failed steps inside a phase."""
        reasons = [f"{g['component']}: gate {g['name']} said NO-GO: {g['reason']}" for g in self.gates
                   if R.is_enforced_nogo(g) and not self.tolerated(g.get("component"), g.get("host"))]
        reasons += [f"{f['component']}: {f['reason']}: {f['task']} on {f['host']}: {f['msg']}"
                    for f in self.failures if f["component"] and not self.tolerated(f["component"], f["host"])]
        return reasons + self.batch_nogo()

    def failed_outside_phases(self, failed_hosts: t.Collection[str]) -> list[str]:
        """A run that failed outside any phase is no GO either (nothing to roll back, though)."""
        return [f"outside any phase: {f['reason']}: {f['task']} on {f['host']}: {f['msg']}"
                for f in self.failures if not f["component"] and f["host"] in failed_hosts]

    def decision(self, failed_hosts: t.Collection[str]) -> tuple[str, list[str]]:
        reasons = self.enforced_nogo() + self.failed_outside_phases(failed_hosts)
        if reasons:
            return R.NO_GO, reasons
        if not self.gates and not self.failures:
            return R.NO_GATE, []
        return R.GO, []

    def changed_components(self) -> set[str]:
        return {str(r.get("component")) for r in self.releases if r.get("changed")}

    def nothing_changed_nogo(self, gate: t.Mapping[str, t.Any]) -> bool:
        """A readiness NO-GO of a component none of whose releases changed: nothing to roll back."""
        return R.is_readiness_gate(gate) and gate.get("component") not in self.changed_components()

    def why_no_rollback(self) -> str:
        unready = sorted({str(g.get("component")) for g in self.gates
                          if R.is_enforced_nogo(g) and self.nothing_changed_nogo(g)})
        if unready:
            return (f"nothing changed: {', '.join(unready)} could not be rolled back, so "
                    f"{'it was' if len(unready) == 1 else 'they were'} not released")
        return "no phase component to roll back"

    def nogo_components(self) -> list[str]:
        failed = {g["component"] for g in self.gates if R.is_enforced_nogo(g) and not self.nothing_changed_nogo(g)
                  and not self.tolerated(g.get("component"), g.get("host"))}
        failed |= {f["component"] for f in self.failures if f["component"] and not self.tolerated(f["component"], f["host"])}
        failed |= {b.component for b in self.batches if b.decision == R.NO_GO}
        return [c for c in failed if c]

    def deployed_components(self) -> list[str]:
        """Components whose release step ran in this run, in order of deployment."""
        order: list[str] = []
        for component in [r.get("component") for r in self.releases]:
            if component and component not in order:
                order.append(str(component))
        return order

    def rollback_components(self) -> list[str]:
        """Reverse order of deployment; NO-GO components without a release record come last.

        scope=run: every component whose release step ran (its release record), plus the NO-GO
        ones; scope=failed: the NO-GO ones. A phase whose tasks never ran (tags, --start-at-task)
        has no release record, so it is never rolled back for being "in the run".
        """
        deployed = self.deployed_components()
        nogo = set(self.nogo_components())
        wanted = set(deployed) | nogo if self.options.rollback_scope == "run" else nogo
        phase_order = [p["component"] for p in self.phases if p["component"]]
        ordered = [c for c in reversed(deployed) if c in wanted]
        ordered += [c for c in reversed(list(dict.fromkeys(phase_order))) if c in wanted and c not in ordered]
        return ordered + sorted(c for c in wanted if c not in ordered)

    def no_rollback(self, why: str) -> dict[str, t.Any]:
        return {"triggered": False, "mode": self.options.rollback, "scope": self.options.rollback_scope,
                "runner": None, "state": R.ROLLBACK_NOT_STARTED, "components": [], "ok": None, "duration_s": None,
                "budget_s": None, "within_budget": None, "why_not": why}

    # --- the rollback -----------------------------------------------------------------------------

    def rollback_reason(self) -> str:
        return "; ".join(self.enforced_nogo())[:2000]

    def plan_rollback(self, components: list[str], command: str,
                      hosts: dict[str, list[str]] | None = None) -> dict[str, t.Any]:
        """hosts: per component run in batches, the released hosts it rolls back, newest batch first."""
        budgets = {c: self.options.budget_of(c) for c in components}
        self.rollback = {
            "triggered": self.options.rollback != "off", "mode": self.options.rollback,
            "scope": self.options.rollback_scope, "runner": None, "state": R.ROLLBACK_NOT_STARTED,
            "components": components, "playbook": self.options.rollback_playbook,
            "reason": self.rollback_reason(), "ok": None, "duration_s": None,
            "budget_s": _seconds(sum(budgets.values())), "budgets": budgets, "within_budget": None,
            "command": command,
        }
        if hosts:
            self.rollback["hosts"] = {c: hosts[c] for c in components if c in hosts}
        if self.options.rollback == "off":
            self.rollback["why_not"] = "rollback is off"
            self.record(R.ROLLBACK_SKIPPED, **self.rollback)
        elif self.options.rollback == "plan":
            self.record(R.ROLLBACK_PLANNED, **self.rollback)
        return self.rollback

    def rollback_started(self, runner: str) -> None:
        rollback = self.rollback or {}
        rollback.update(state=R.ROLLBACK_RUNNING, runner=runner, started=now(), started_mono=self.clock())
        self.record(R.ROLLBACK_START, components=rollback.get("components"), scope=rollback.get("scope"),
                    playbook=rollback.get("playbook"), reason=rollback.get("reason"), budgets=rollback.get("budgets"),
                    runner=runner, command=rollback.get("command"),
                    **({"hosts": rollback["hosts"]} if "hosts" in rollback else {}))

    def rollback_runner_switched(self, runner: str, why: str) -> None:
        """The in-process runner could not run the rollback; the child process runs it instead."""
        if self.rollback is not None:
            self.rollback["runner"] = runner
            self.rollback.setdefault("notes", []).append(why)

    # the rollback run reports its plays here (in process directly, from a child process by replay)

    def rb_play_start(self, play: str, component: str | None, mono: float | None = None) -> None:
        self.rb_play_end(mono)
        self.rb_plays.append(RollbackPlay(play, component, self.clock() if mono is None else mono))
        self.record(R.ROLLBACK_PLAY_START, play=play, component=component)

    def rb_no_hosts(self) -> None:
        if self.rb_plays:
            self.rb_plays[-1].hosts = False

    def rb_gate(self, gate: dict[str, t.Any]) -> None:
        if gate.get("redacted"):
            gate = redact_gate(gate)
        self.record(R.ROLLBACK_GATE, **gate)
        if self.rb_plays:
            verification_keys = ("name", "host", "decision", "mode", "reason")
            self.rb_plays[-1].gates.append({key: gate.get(key) for key in verification_keys})
        if gate.get("decision") == R.NO_GO and gate.get("mode") == R.ENFORCE and self.rb_plays:
            self.rb_plays[-1].failures.append(f"gate {gate.get('name')}: {gate.get('reason')}")

    def rb_failure(self, line: str, unreachable: bool) -> None:
        if self.rb_plays:
            self.rb_plays[-1].failures.append(line)
        self.record(R.ROLLBACK_STEP_FAILED, task=line, unreachable=unreachable)

    def rb_task(self, task: str) -> None:
        self.step_started(task, rollback=True)

    def rb_play_end(self, mono: float | None = None) -> None:
        if self.rb_plays and self.rb_plays[-1].ended_mono is None:
            play = self.rb_plays[-1]
            play.ended_mono = self.clock() if mono is None else mono
            self.record(R.ROLLBACK_PLAY_END, play=play.play, component=play.component, hosts=play.hosts,
                        failures=play.failures, duration_s=round(play.ended_mono - play.started_mono, 3))

    def rollback_finished(self, rc: int | None, error: str | None) -> list[str]:
        """Per-component outcome against the budgets; returns the problems to show loudly."""
        self.rb_play_end()
        rollback = self.rollback or {}
        ended = self.clock()
        rollback.update(state=R.ROLLBACK_FINISHED, ended=now(), rc=rc,
                        duration_s=round(ended - rollback.pop("started_mono", ended), 3))
        components = rollback.get("components") or []
        per_component = {c: self._per_component(c, ended) for c in components}
        rollback["per_component"] = per_component
        not_run = [c for c in components if not per_component[c]["ran"]]
        failed = [c for c in components if per_component[c]["failures"]]
        rollback["ok"] = rc == 0 and error is None and not not_run and not failed
        rollback["within_budget"] = (rollback["duration_s"] <= (rollback.get("budget_s") or 0)
                                     and all(p["within_budget"] is not False for p in per_component.values()))
        problems = []
        if error:
            problems.append(f"the rollback playbook could not run: {error}")
        if rc not in (0, None):
            problems.append(f"the rollback playbook ended with rc {rc}")
        problems += [f"no rollback play ran for {c} (does {rollback.get('playbook')} have one?)" for c in not_run]
        problems += [f"rollback of {c} failed: {per_component[c]['failures'][0]}" for c in failed]
        if not rollback["within_budget"]:
            late = [f"{c} took {p['duration_s']} s > budget {p['budget_s']} s" for c, p in per_component.items()
                    if p["within_budget"] is False]
            problems.append("rollback overran its budget: " + ("; ".join(late) if late else
                            f"{rollback['duration_s']} s > {rollback.get('budget_s')} s"))
        rollback["problems"] = problems
        self.record(R.ROLLBACK_END, **{k: v for k, v in rollback.items() if k != "command"})
        return problems

    def _per_component(self, component: str, ended: float) -> dict[str, t.Any]:
        plays = [p for p in self.rb_plays if p.component == component and p.hosts]
        duration = round(sum((p.ended_mono or ended) - p.started_mono for p in plays), 3) if plays else None
        failures = [f for p in plays for f in p.failures]
        budget = self.options.budget_of(component)
        verification = [g for p in plays for g in p.gates]
        return {"ran": bool(plays), "ok": bool(plays) and not failures, "failures": failures,
                "duration_s": duration, "budget_s": budget,
                "within_budget": None if duration is None else duration <= budget,
                # the old release proved working again: every verification gate said GO (None: none ran)
                "verification": verification,
                "verified": all(g.get("decision") == R.GO for g in verification) if verification else None}

    # --- the end ----------------------------------------------------------------------------------

    def write_reports(self) -> None:
        """report.html, junit.xml, incident.md and the folder's index.html, from the closed journal
        (docs/reports.md); what fails is a record error, never a failed run."""
        if not (self.run_dir / "journal.jsonl").is_file():
            return
        from ansible_collections.emp.deploy.plugins.plugin_utils._reports import write_reports

        for error in write_reports(self.run_dir).errors:
            self._record_error(error)

    def finish(self, decision: str, reasons: list[str], hosts: dict[str, t.Any],
               interrupted: str | None = None) -> dict[str, t.Any]:
        """Closes the record: run_end in the journal, summary.json written atomically."""
        self.finished = True
        rollback = self.rollback or self.no_rollback("no enforced NO-GO")
        if interrupted:
            self.end_phase(interrupted=True)
            if rollback.get("state") == R.ROLLBACK_RUNNING:
                rollback["state"] = R.ROLLBACK_CUT_SHORT
                self.rb_play_end()
            self.record(R.RUN_INTERRUPTED, signal=interrupted, running_step=self.running_step,
                        rollback_state=rollback["state"])
        rollback.pop("started_mono", None)
        started_mono = self.run.get("started_mono")
        summary: dict[str, t.Any] = {
            "schema_version": R.SCHEMA_VERSION,
            "run_id": self.run_id,
            "decision": decision,
            "playbook": self.run.get("playbook"),
            "check_mode": self.run.get("check_mode"),
            "emp_release": self.run.get("emp_release"),
            "limit": self.run.get("limit"),
            "rollback_run": self.run.get("rollback_run"),
            "run_kind": self.run_kind,
            "started": self.run.get("started"),
            "ended": now(),
            "duration_s": round(self.clock() - started_mono, 3) if started_mono else None,
            "reasons": reasons,
            "phases": [{k: v for k, v in p.items() if k != "started_mono"} for p in self.phases],
            "gates": self.gates,
            "failures": self.failures,
            "releases": self.releases,
            "skipped_checks": self.skipped_checks,
            "rollback": rollback,
            "hosts": hosts,
            "journal": str(self.journal.path) if self.journal else None,
            "interrupted": interrupted,
            "running_step": self.running_step if interrupted else None,
            "record_errors": self.record_errors,
            "lock": self.lock,
            "batches": self.batch_summaries(),  # empty unless a phase play ran in batches (docs/fleet.md)
            "resumed_from": self.run.get("resumed_from"),
            "resumed": self.resumed["steps"] if self.resumed is not None else [],
        }
        end = {"ts": summary["ended"], "decision": decision, "duration_s": summary["duration_s"], "rollback": rollback,
               "interrupted": interrupted}
        if self.before_end is not None:  # the trace export (_trace.py): its record goes before run_end
            try:
                self.before_end(plain(end))
            except Exception as exc:  # pylint: disable=broad-exception-caught  # the record must still end
                self._record_error(f"the trace export failed ({type(exc).__name__}: {exc})")
        self.record(R.RUN_END, **end)
        journal = self.journal.path if self.journal else None
        self._close_journal()
        if journal is not None:
            summary[chain.HEAD_KEY] = journal_head(journal, self.run_id)
        self.write_reports()
        try:
            write_json_atomically(self.run_dir / "summary.json", plain(summary))
        except OSError as exc:
            self._record_error(f"writing {self.run_dir / 'summary.json'} failed ({exc.strerror or exc})")
        if self.sentinel is not None:
            self.sentinel.done()
        self.summary = summary
        return summary
