# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The record side of the watch after GO: a watch invocation attached to a deploy run's record.

A playbook whose first play sets ``emp_watch_attach: true`` does not start a run of its own: the
go_no_go callback finds the deploy run it watches (``emp_watch_run_id``, else the newest GO run in
report_dir), appends to that run's journal (watch_start, watch_pass, gate, rollback records,
watch_end; every record tagged with the invocation's id) and merges a ``watch`` section into its
summary.json. The deploy's ``decision`` is never changed. Pure Python (no Ansible import); formats in
docs/records.md.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import secrets
import time
import typing as t
from pathlib import Path

from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils._run_recorder import (
    ROLLBACK_MODES, OptionError, Options, RunRecorder, first_line, journal_head, now, plain, write_json_atomically,
)
from ansible_collections.emp.deploy.plugins.plugin_utils._journal_chain import HEAD_KEY

_RUN_ID_RULE = ("one path segment of letters, digits, '.', '_' and '-' (at most 128, no '..', not starting "
                "with '.' or '-')")


# --- attaching ------------------------------------------------------------------------------------


def attach_requested(play_vars: t.Mapping[str, t.Any] | None) -> bool:
    """Only the literal ``emp_watch_attach: true`` attaches (a template is not evaluated this early)."""
    return (play_vars or {}).get(R.WATCH_ATTACH_VAR) is True


def attach_options(options: Options, rollback_override: t.Any) -> Options:
    """The run's options for an attached invocation: emp_watch_rollback over `rollback`, scope failed
    (a watch rolls back only the components it alerted on)."""
    rollback = options.rollback
    if rollback_override not in (None, ""):
        rollback = str(rollback_override)
        if rollback not in ROLLBACK_MODES:
            raise OptionError(f"-e {R.WATCH_ROLLBACK_VAR}={rollback!r} is not one of {', '.join(ROLLBACK_MODES)}")
    return dataclasses.replace(options, rollback=rollback, rollback_scope="failed")


def _watchable(summary: t.Mapping[str, t.Any]) -> bool:
    return (summary.get("decision") == R.GO and not summary.get("rollback_run")
            and summary.get("run_kind", R.RUN_KIND_DEPLOY) == R.RUN_KIND_DEPLOY)  # a predeploy run released nothing


def find_deploy_run(report_dir: Path, requested: t.Any) -> str:
    """The run id to attach to: ``requested`` (validated, a GO deploy run in report_dir), else the newest
    GO deploy run by its summary's ``started``. OptionError naming what is missing otherwise."""
    if requested not in (None, ""):
        run_id = str(requested)
        if not R.valid_run_id(run_id):
            raise OptionError(f"-e {R.WATCH_RUN_ID_VAR}={run_id!r} is not a valid run id: it must be {_RUN_ID_RULE}")
        summary = R.read_summary(report_dir / run_id)
        if summary is None:
            raise OptionError(f"-e {R.WATCH_RUN_ID_VAR}={run_id!r}: no finished deploy run of that id in {report_dir} "
                              f"(no readable {report_dir / run_id / 'summary.json'})")
        if not _watchable(summary):
            what = ("is a rollback run" if summary.get("rollback_run") else
                    f"is a {summary.get('run_kind')} run" if summary.get("run_kind", R.RUN_KIND_DEPLOY) != R.RUN_KIND_DEPLOY
                    else f"decided {summary.get('decision')}")
            raise OptionError(f"-e {R.WATCH_RUN_ID_VAR}={run_id!r}: that run {what}; a watch attaches only to a "
                              f"deploy run that decided GO")
        return run_id
    newest = R.newest_run(report_dir, _watchable)
    if newest is None:
        raise OptionError(f"no deploy run to attach the watch to: {report_dir} holds no run whose summary.json says "
                          f"decision GO and rollback_run false (name one with -e {R.WATCH_RUN_ID_VAR}=RUN_ID)")
    return newest


def mode_hint(extra_vars: t.Mapping[str, t.Any], play_vars: t.Mapping[str, t.Any] | None) -> str | None:
    """follow or once when the invocation says so literally (extra var first); else None (inferred later)."""
    for source in (extra_vars, play_vars or {}):
        value = source.get(R.WATCH_MODE_VAR)
        if isinstance(value, str) and value in R.WATCH_MODES:
            return value
    return None


# --- what the watch returns -----------------------------------------------------------------------


def passes_in(data: t.Mapping[str, t.Any]) -> list[tuple[dict[str, t.Any], dict[str, t.Any]]]:
    """(emp_watch_pass, emp_watch) of a result and of a loop's per-item results, in order."""
    found = []
    watch_pass, state = data.get(R.WATCH_PASS_RESULT_KEY), data.get(R.WATCH_RESULT_KEY)
    if isinstance(watch_pass, t.Mapping):
        found.append((dict(watch_pass), dict(state) if isinstance(state, t.Mapping) else {}))
    items = data.get("results")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, t.Mapping):
                found.extend(passes_in(item))
    return found


def compact_state(state: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The watch state a watch_pass record keeps: enough to merge the summary after a kill."""
    kept = {key: state[key] for key in R.WATCH_STATE_KEYS if key in state}
    if isinstance(state.get("alerts"), list):
        kept["alerts"] = [_alert(a) for a in state["alerts"] if isinstance(a, t.Mapping)]
    return kept


def _alert(alert: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    return {key: alert.get(key) for key in R.WATCH_ALERT_KEYS}


def _pass_key(watch_pass: t.Mapping[str, t.Any]) -> str:
    return json.dumps([watch_pass.get("at"), watch_pass.get("layers")], default=str, sort_keys=True)


def _alerts_of_gates(gates: t.Iterable[t.Mapping[str, t.Any]]) -> list[dict[str, t.Any]]:
    """Alerts from the NO-GO gates themselves, when the watch's state did not reach the callback."""
    return [{"check": g.get("name"), "component": g.get("component"), "layer": None, "kind": g.get("mode"),
             "reason": g.get("reason"), "at": g.get("ended")} for g in gates if g.get("decision") == R.NO_GO]


# --- the summary ----------------------------------------------------------------------------------


def merge_summary(run_dir: Path, entry: t.Mapping[str, t.Any], state: t.Mapping[str, t.Any],
                  gates: list[dict[str, t.Any]], rollback: dict[str, t.Any] | None) -> dict[str, t.Any]:
    """Merges one invocation into the deploy's summary.json, atomically and under a lock (two
    invocations may end together): the ``watch`` section, its gates appended once, and the rollback
    when this invocation rolled back. ``decision`` stays the deploy's."""
    lock = os.open(str(run_dir / ".summary.lock"), os.O_WRONLY | os.O_CREAT, 0o640)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        summary = R.read_summary(run_dir)
        if summary is None:
            raise OSError(f"{run_dir / 'summary.json'} is missing or unreadable; the watch is in the journal only")
        watch = dict(summary.get("watch") or {})
        watch.update({key: state[key] for key in ("window_s", "started", "ends", "passes", "checks", "verdict")
                      if key in state})
        watch["mode"] = entry.get("mode") or watch.get("mode")
        if isinstance(state.get("alerts"), list):
            watch["alerts"] = [_alert(a) for a in state["alerts"]]
        else:
            watch["alerts"] = list(watch.get("alerts") or []) + _alerts_of_gates(gates)
        watch.setdefault("verdict", R.FAILED if watch["alerts"] else R.IN_PROGRESS)
        watch["invocations"] = list(watch.get("invocations") or []) + [dict(entry)]
        known = {g.get("id") for g in summary.get("gates") or []}
        summary["gates"] = list(summary.get("gates") or []) + [g for g in gates if g.get("id") not in known]
        if rollback is not None:
            summary["rollback"] = dict(rollback, trigger=R.WATCH_PHASE)
        summary["watch"] = watch
        summary[HEAD_KEY] = journal_head(run_dir / "journal.jsonl", summary.get("run_id"))
        write_json_atomically(run_dir / "summary.json", plain(summary))
        return summary
    finally:
        os.close(lock)


def recovered_invocation(records: list[dict[str, t.Any]], rollback: dict[str, t.Any] | None,
                         cause: str) -> tuple[dict[str, t.Any], dict[str, t.Any], list[dict[str, t.Any]]]:
    """(invocation entry, last watch state, gates) of a killed invocation, from its journal records."""
    start = next((r for r in records if r.get("type") == R.WATCH_START), records[0])
    passes = [r for r in records if r.get("type") == R.WATCH_PASS]
    state: dict[str, t.Any] = dict(passes[-1].get("watch") or {}) if passes else {}
    gates = [{key: r.get(key) for key in R.GATE_SUMMARY_KEYS} for r in records if r.get("type") == R.GATE]
    mode = start.get("mode") or (passes[-1].get("mode") if passes else None)
    entry: dict[str, t.Any] = {
        "invocation": start.get("invocation"), "pid": start.get("pid"), "playbook": start.get("playbook"),
        "mode": mode, "started": start.get("started") or start.get("ts"), "ended": now(), "passes": len(passes),
        "alerts": sum(1 for g in gates if g.get("decision") == R.NO_GO), "verdict": state.get("verdict") or R.IN_PROGRESS,
        "rollback": rollback.get("state") if rollback else None, "interrupted": cause, "failures": []}
    return entry, state, gates


# --- the recorder of an attached invocation ---------------------------------------------------------


class WatchRecorder(RunRecorder):
    """An attached watch invocation: appends to the deploy run's journal, merges its summary.

    The rollback bookkeeping (plan, run, per-component outcome, budgets) is the RunRecorder's."""

    def __init__(self, options: Options, run_id: str, clock: t.Callable[[], float] = time.monotonic) -> None:
        super().__init__(options, run_id, clock)
        self.invocation = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.state: dict[str, t.Any] = {}
        self.passes = 0
        self._pass_keys: set[str] = set()
        self._item_passes = False
        self.entry: dict[str, t.Any] = {}

    def record(self, kind: str, **data: t.Any) -> None:
        data.setdefault("invocation", self.invocation)  # the watcher of a killed invocation finds its records
        super().record(kind, **data)

    def start(self, **info: t.Any) -> None:
        self.run = dict(info, started=now(), started_mono=self.clock(), pid=os.getpid(), rollback_run=False)
        self.open()
        self.record(R.WATCH_START, mode=info.get("mode"), pid=self.run["pid"], playbook=info.get("playbook"),
                    check_mode=info.get("check_mode"), limit=info.get("limit"), started=self.run["started"])

    def start_phase(self, phase: str | None, component: str | None, play: str) -> None:
        """A watch has no phases: its gates name their component (phase ``watch``)."""
        self.phase = None

    @property
    def mode(self) -> str | None:
        if self.run.get("mode"):
            return str(self.run["mode"])
        if self.passes:
            return "follow" if self._item_passes else "once"
        return None

    def add_watch_results(self, data: t.Mapping[str, t.Any], item: bool) -> None:
        """Journals each pass once (an item result and its loop's result both carry it)."""
        state = data.get(R.WATCH_RESULT_KEY)
        if isinstance(state, t.Mapping):
            self._take_state(state)
        for watch_pass, pass_state in passes_in(data):
            key = _pass_key(watch_pass)
            if key in self._pass_keys:
                continue
            self._pass_keys.add(key)
            self.passes += 1
            self._item_passes = self._item_passes or item
            self._take_state(pass_state)
            results = [{k: r.get(k) for k in R.WATCH_PASS_RESULT_KEYS}
                       for r in watch_pass.get("results") or [] if isinstance(r, t.Mapping)]
            self.record(R.WATCH_PASS, at=watch_pass.get("at"), layers=watch_pass.get("layers"), results=results,
                        mode=self.mode, watch=compact_state(pass_state or self.state))

    def _take_state(self, state: t.Mapping[str, t.Any]) -> None:
        """The newest state wins (a loop's final result repeats older item states)."""
        if state and (not self.state or (state.get("passes") or 0) >= (self.state.get("passes") or 0)):
            self.state = dict(state)

    def finish(self, decision: str, reasons: list[str], hosts: dict[str, t.Any],
               interrupted: str | None = None) -> dict[str, t.Any]:
        """watch_end in the journal, the deploy's summary.json merged; ``decision`` is not this invocation's."""
        self.finished = True
        rollback = self.rollback
        if rollback is not None:
            if interrupted and rollback.get("state") == R.ROLLBACK_RUNNING:
                rollback["state"] = R.ROLLBACK_CUT_SHORT
                self.rb_play_end()
            rollback.pop("started_mono", None)
        self.entry = {
            "invocation": self.invocation, "pid": self.run.get("pid"), "playbook": self.run.get("playbook"),
            "mode": self.mode, "started": self.run.get("started"), "ended": now(), "passes": self.passes,
            "alerts": sum(1 for g in self.gates if g.get("decision") == R.NO_GO),
            "verdict": self.state.get("verdict") or R.IN_PROGRESS,
            "rollback": rollback.get("state") if rollback else None, "interrupted": interrupted,
            "failures": [f"{f['task']} on {f['host']}: {first_line(f['msg'], 200)}" for f in self.failures],
        }
        self.record(R.WATCH_END, **self.entry, rollback_record=rollback,
                    running_step=self.running_step if interrupted else None)
        self._close_journal()
        self.write_reports()  # the run's reports now tell the watch too
        summary: dict[str, t.Any] = {"run_id": self.run_id, "gates": self.gates, "rollback": rollback or {}}
        try:
            summary = merge_summary(self.run_dir, self.entry, self.state, self.gates, rollback)
        except OSError as exc:
            self._record_error(f"merging the watch into {self.run_dir / 'summary.json'} failed ({exc})")
        summary = dict(summary, record_errors=self.record_errors)  # this invocation's, for its table
        if self.sentinel is not None:
            self.sentinel.done()
        self.summary = summary
        return summary
