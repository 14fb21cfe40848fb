# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A run killed outright (SIGKILL, as ansible-runner and AWX cancel a job) still ends its record.

No signal handler runs on SIGKILL, so a small watcher process, started when the run starts and
living outside the run's process group, ends the record from the journal (docs/records.md) when
the run dies without ending it: run_interrupted and run_end in the journal, summary.json rebuilt.
For a watch invocation attached to a deploy run it ends that invocation instead: watch_end in the
journal and the deploy's summary.json merged, never rebuilt (the deploy's record ended long ago).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import typing as t
from pathlib import Path

from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils._journal_chain import CUT_KEY, HEAD_KEY, PREV_KEY, SEQ_KEY
from ansible_collections.emp.deploy.plugins.plugin_utils._run_recorder import (
    Journal, journal_head, now, plain, write_json_atomically,
)

# the envelope of every line, and the hash chain's fields (_journal_chain.py): never part of a record's content
_ENVELOPE = ("schema_version", "ts", "type", "run_id", SEQ_KEY, PREV_KEY, CUT_KEY)


def _strip(record: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    return {k: v for k, v in record.items() if k not in _ENVELOPE}


def _recovered_rollback(records: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    kinds = {R.ROLLBACK_END: R.ROLLBACK_FINISHED, R.ROLLBACK_START: R.ROLLBACK_CUT_SHORT,
             R.ROLLBACK_PLANNED: R.ROLLBACK_NOT_STARTED, R.ROLLBACK_SKIPPED: R.ROLLBACK_NOT_STARTED}
    for record in reversed(records):
        if record["type"] in kinds:
            rollback = _strip(record)
            rollback.setdefault("triggered", record["type"] != R.ROLLBACK_SKIPPED)
            rollback["state"] = kinds[record["type"]]
            return rollback
    return {"triggered": False, "state": R.ROLLBACK_NOT_STARTED, "components": [],
            "why_not": "the run was killed before it decided"}


def _last_lock(records: list[dict[str, t.Any]]) -> dict[str, t.Any] | None:
    locks = [_strip(r) for r in records if r.get("type") == R.LOCK]
    return locks[-1] if locks else None


def recover_summary(run_dir: Path, running_step: dict[str, t.Any] | None, cause: str = "killed") -> bool:
    """Ends the record of a run that died without ending it: run_interrupted and run_end in the journal,
    summary.json rebuilt from the journal. False when the run had ended its record itself."""
    path = run_dir / "journal.jsonl"
    records = _read_journal(path)
    if not records or any(r.get("type") == R.RUN_END for r in records):
        return False
    run = next((r for r in records if r.get("type") == R.RUN_START), records[0])
    phases: dict[int, dict[str, t.Any]] = {}
    for record in records:
        if record["type"] == R.PHASE_START:
            phases[len(phases)] = dict(_strip(record), started=record["ts"], decision=R.INTERRUPTED)
        elif record["type"] == R.PHASE_END and phases:
            phases[len(phases) - 1].update(_strip(record), ended=record["ts"])
    gates = [{k: r.get(k) for k in R.GATE_SUMMARY_KEYS} for r in records if r["type"] == R.GATE]
    failures = [_strip(r) for r in records if r["type"] == R.STEP_FAILED]
    reasons = [f"{g['component']}: gate {g['name']} said NO-GO: {g['reason']}" for g in gates if R.is_enforced_nogo(g)]
    reasons += [f"{f['component']}: {f['reason']}: {f['task']} on {f['host']}: {f['msg']}"
                for f in failures if f.get("component")]
    rollback = _recovered_rollback(records)
    summary = {
        "schema_version": R.SCHEMA_VERSION, "run_id": run.get("run_id"), "decision": R.NO_GO if reasons else R.INTERRUPTED,
        "playbook": run.get("playbook"), "check_mode": run.get("check_mode"), "emp_release": run.get("emp_release"),
        "limit": run.get("limit"), "rollback_run": run.get("rollback_run"),
        "run_kind": run.get("run_kind") or R.RUN_KIND_DEPLOY, "started": run.get("started"),
        "ended": now(), "duration_s": None, "reasons": reasons, "phases": list(phases.values()), "gates": gates,
        "failures": failures, "releases": [_strip(r) for r in records if r["type"] == R.RELEASE],
        "skipped_checks": [_strip(r) for r in records if r["type"] == R.CHECK_SKIPPED],
        "rollback": rollback, "hosts": {}, "journal": str(path), "interrupted": cause, "running_step": running_step,
        "record_errors": [], "lock": _last_lock(records),
    }
    closing = [(R.RUN_INTERRUPTED, {"signal": cause, "running_step": running_step, "rollback_state": rollback["state"]}),
               (R.RUN_END, {"decision": summary["decision"], "rollback": rollback, "interrupted": cause})]
    journal = Journal(path)
    try:
        for kind, data in closing:
            journal.write({"schema_version": R.SCHEMA_VERSION, "ts": now(), "type": kind, "run_id": run.get("run_id"),
                           **plain(data)})
    finally:
        journal.close()
    try:  # the reports too, as at the end of every run (they read only the journal)
        from ansible_collections.emp.deploy.plugins.plugin_utils._reports import write_reports

        summary["record_errors"] = write_reports(run_dir).errors
    except Exception as exc:  # pylint: disable=broad-exception-caught  # the summary matters more
        summary["record_errors"] = [f"reports not rendered: {exc}"]
    summary[HEAD_KEY] = journal_head(path, run.get("run_id"))
    write_json_atomically(run_dir / "summary.json", plain(summary))
    return True


def recover_watch(run_dir: Path, invocation: str, running_step: dict[str, t.Any] | None, cause: str = "killed") -> bool:
    """Ends the record of an attached watch invocation that died without ending it: watch_end in the
    journal, the deploy's summary.json merged (never rebuilt). False when the invocation had ended it."""
    from ansible_collections.emp.deploy.plugins.plugin_utils import _watch_recorder as watch

    path = run_dir / "journal.jsonl"
    records = [r for r in _read_journal(path) if r.get("invocation") == invocation]
    if not records or any(r.get("type") == R.WATCH_END for r in records):
        return False
    rollback = _recovered_rollback(records) if any(r["type"].startswith("rollback_") for r in records) else None
    entry, state, gates = watch.recovered_invocation(records, rollback, cause)
    journal = Journal(path)
    try:
        journal.write({"schema_version": R.SCHEMA_VERSION, "ts": now(), "type": R.WATCH_END,
                       "run_id": records[0].get("run_id"), "invocation": invocation,
                       **plain(dict(entry, rollback_record=rollback, running_step=running_step))})
    finally:
        journal.close()
    watch.merge_summary(run_dir, entry, state, gates, rollback)
    return True


def _read_journal(path: Path) -> list[dict[str, t.Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line cut by the kill
    return records


class Sentinel:
    """A small watcher process outside the run's process group: if the run dies without ending its
    record (SIGKILL, as ansible-runner and AWX cancel a job), it ends the record from the journal."""

    def __init__(self, run_dir: Path, invocation: str | None = None) -> None:
        collections_root = str(Path(__file__).parents[5])  # .../ansible_collections/emp/deploy/plugins/plugin_utils
        code = ("import sys; sys.path.insert(0, sys.argv[1]); "
                "from ansible_collections.emp.deploy.plugins.plugin_utils._run_watcher import sentinel_main; "
                "sentinel_main(*sys.argv[2:])")
        argv = [sys.executable, "-c", code, collections_root, str(run_dir)] + ([invocation] if invocation else [])
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            argv, stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)

    def _send(self, message: dict[str, t.Any]) -> None:
        if self.process is None or self.process.stdin is None:
            return
        try:
            self.process.stdin.write((json.dumps(message, default=str) + "\n").encode("utf-8"))
            self.process.stdin.flush()
        except (OSError, ValueError):
            self.process = None

    def step(self, running_step: dict[str, t.Any] | None) -> None:
        self._send({"step": running_step})

    def done(self) -> None:
        """The run ended its record itself: the watcher has nothing to do."""
        self._send({"done": True})
        if self.process is not None and self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        self.process = None


def sentinel_main(run_dir: str, invocation: str | None = None, poll_s: float = 0.5) -> None:
    """The watcher: remembers the running step until the run says done, or dies; for an attached watch
    invocation it ends that invocation's record instead of the run's.

    The run's death shows as this process being re-parented (the pipe alone is not enough: the
    run's worker processes live in their own sessions, survive a process-group kill and hold the pipe)."""
    parent = os.getppid()
    step = None
    pending = b""
    while os.getppid() == parent:
        readable = select.select([sys.stdin.buffer], [], [], poll_s)[0]
        if not readable:
            continue
        chunk = os.read(sys.stdin.buffer.fileno(), 65536)
        if not chunk:
            break  # the pipe closed without "done": the run died
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("done"):
                return
            step = message.get("step", step)
    try:
        if invocation:
            recover_watch(Path(run_dir), invocation, step)
        else:
            recover_summary(Path(run_dir), step)
    except (OSError, ValueError):
        pass
