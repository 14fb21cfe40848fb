# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The run as the reports see it, rebuilt from journal.jsonl alone (pure Python).

Every report (report.html, junit.xml, incident.md) is a function of the journal: the callback renders
them when the run ends and the report playbook renders them later from the same lines, so both give
the same bytes. summary.json is never read here (it holds nothing the journal does not).
Record types and fields: docs/records.md; the watch records: docs/reports.md.
"""

from __future__ import annotations

import json
import math
import re
import typing as t
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R

# A criterion that compares a figure with a literal number: "result.latency_ms.p95 < 200",
# "result.stdout | int >= 3", "0.5 > result.ratio". Only these get a chart with a threshold line.
_PATH = r"(?P<path>(?:result|baseline)(?:\.\w+|\[[^\]]+\])*)(?:\s*\|\s*\w+(?:\([^)]*\))?)*"
_NUMBER = r"(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_OP = r"(?P<op><=|>=|==|!=|<|>)"
_PATH_FIRST = re.compile(_PATH + r"\s*" + _OP + r"\s*" + _NUMBER + r"(?![\w.])")
_NUMBER_FIRST = re.compile(r"(?<![\w.])" + _NUMBER + r"\s*" + _OP + r"\s*" + _PATH)
_MIRROR = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "==", "!=": "!="}


class JournalError(ValueError):
    """The journal is missing, empty or of a schema version this reader does not know."""


@dataclass(frozen=True)
class Threshold:
    """One numeric comparison inside a criterion: figure `path` `op` `value`."""

    criterion: str
    path: str
    op: str
    value: float


@dataclass
class Watch:
    """What the watch appended to the run's journal (docs/reports.md, "The watch")."""

    invocations: list[dict[str, t.Any]] = field(default_factory=list)
    passes: list[dict[str, t.Any]] = field(default_factory=list)
    checks: dict[str, dict[str, t.Any]] = field(default_factory=dict)
    gates: list[dict[str, t.Any]] = field(default_factory=list)
    rollback: dict[str, t.Any] | None = None
    verdict: str = "IN_PROGRESS"
    window_s: float | None = None
    started: str | None = None
    ends: str | None = None

    @property
    def alerts(self) -> list[dict[str, t.Any]]:
        return [g for g in self.gates if g.get("decision") == R.NO_GO]


@dataclass
class RunView:
    """The run for the reports: the deployment, its rollback, and the watch when there was one."""

    run_dir: Path
    run_id: str
    run: dict[str, t.Any]
    end: dict[str, t.Any] | None
    phases: list[dict[str, t.Any]]
    gates: list[dict[str, t.Any]]
    failures: list[dict[str, t.Any]]
    releases: list[dict[str, t.Any]]
    rollback: dict[str, t.Any] | None
    rollback_plays: list[dict[str, t.Any]]
    rollback_gates: list[dict[str, t.Any]]
    rollback_failures: list[dict[str, t.Any]]
    interrupted: dict[str, t.Any] | None
    watch: Watch | None
    # notify records (sent or not, the watch's too) and trace_export records, each with its ts
    notices: list[dict[str, t.Any]] = field(default_factory=list)
    trace_exports: list[dict[str, t.Any]] = field(default_factory=list)
    # the phase (index into phases) each gate and each failed step was recorded in; -1: none
    gate_phase: list[int] = field(default_factory=list)
    failure_phase: list[int] = field(default_factory=list)

    @property
    def decision(self) -> str:
        """The run's decision; "unfinished" while the journal has no run_end (running, or the machine died)."""
        return str(self.end.get("decision")) if self.end else "unfinished"

    @property
    def started(self) -> str | None:
        return self.run.get("started") or self.run.get("ts")

    @property
    def ended(self) -> str | None:
        return self.end.get("ts") if self.end else None

    @property
    def duration_s(self) -> float | None:
        if self.end and self.end.get("duration_s") is not None:
            return float(self.end["duration_s"])
        return seconds_between(self.started, self.ended)

    @property
    def release(self) -> str:
        label = self.run.get("emp_release")
        return str(label) if label not in (None, "") else "unlabelled release"

    def reasons(self) -> list[str]:
        """Why NO-GO, one line per enforced NO-GO gate or failed step (as summary.json says it)."""
        lines = [f"{g.get('component')}: gate {g.get('name')} said NO-GO: {g.get('reason')}"
                 for g in self.gates if R.is_enforced_nogo(g)]
        lines += [f"{f.get('component')}: {f.get('reason')}: {f.get('task')} on {f.get('host')}: {f.get('msg')}"
                  for f in self.failures if f.get("component")]
        return lines


def parse_time(value: t.Any) -> float | None:
    """Epoch seconds of a journal timestamp (ISO 8601 with Z), None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def seconds_between(start: t.Any, end: t.Any) -> float | None:
    first, last = parse_time(start), parse_time(end)
    return None if first is None or last is None else round(last - first, 3)


def read_journal(path: Path) -> list[dict[str, t.Any]]:
    """The journal's records; a line cut by a kill is skipped, an unknown schema version refused."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise JournalError(f"no journal at {path}: is this a run folder of the emp.deploy.go_no_go callback?") from exc
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror or exc}") from exc
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or not record.get("type"):
            continue
        version = record.get("schema_version")
        if not isinstance(version, int) or version > R.SCHEMA_VERSION:
            raise JournalError(f"{path}: schema_version {version!r} is not one this collection knows "
                               f"(up to {R.SCHEMA_VERSION}); use a newer emp.deploy to render it")
        records.append(record)
    if not records:
        raise JournalError(f"{path} holds no journal record")
    return records


# the envelope, and the hash chain's fields (_journal_chain.py): the record's seal, not its content
_ENVELOPE = ("schema_version", "type", "run_id", "seq", "prev_sha256", "cut")


def _strip(record: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    return {k: v for k, v in record.items() if k not in _ENVELOPE}


def _rollback_from(records: list[dict[str, t.Any]]) -> dict[str, t.Any] | None:
    """The last rollback record (end, start, planned or skipped) as the rollback's state."""
    kinds = {R.ROLLBACK_END: R.ROLLBACK_FINISHED, R.ROLLBACK_START: R.ROLLBACK_RUNNING,
             R.ROLLBACK_PLANNED: R.ROLLBACK_NOT_STARTED, R.ROLLBACK_SKIPPED: R.ROLLBACK_NOT_STARTED}
    found: dict[str, t.Any] | None = None
    start = next((r for r in records if r["type"] == R.ROLLBACK_START), None)
    for record in records:
        if record["type"] in kinds:
            found = dict(_strip(record), state=record.get("state") or kinds[record["type"]])
    if found is not None and start is not None:
        found.setdefault("started", start.get("ts"))
        found.setdefault("command", start.get("command"))
    return found


def _rollback_plays(records: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    plays: list[dict[str, t.Any]] = []
    for record in records:
        if record["type"] == R.ROLLBACK_PLAY_START:
            plays.append({"play": record.get("play"), "component": record.get("component"), "started": record.get("ts"),
                          "ended": None, "hosts": True, "failures": []})
        elif record["type"] == R.ROLLBACK_PLAY_END and plays:
            plays[-1].update(ended=record.get("ts"), hosts=record.get("hosts", True),
                             failures=record.get("failures") or [], duration_s=record.get("duration_s"))
    return plays


def _phases(records: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    phases: list[dict[str, t.Any]] = []
    for record in records:
        if record["type"] == R.PHASE_START:
            phases.append(dict(_strip(record), started=record.get("ts"), ended=None, decision=None, gates=[],
                               failures=[]))
        elif record["type"] == R.PHASE_END and phases:
            phases[-1].update(ended=record.get("ts"), decision=record.get("decision"),
                              duration_s=record.get("duration_s"), nogo=record.get("nogo") or [])
    return phases


def _watch(records: list[dict[str, t.Any]]) -> Watch | None:
    """The watch section, or None for a run that was never watched."""
    if not any(r["type"] == R.WATCH_START for r in records):
        return None
    watch = Watch()
    for record in records:
        kind = record["type"]
        _take_window(watch, record)
        if kind == R.WATCH_START:
            watch.invocations.append({"started": record.get("ts"), "mode": record.get("mode"),
                                      "playbook": record.get("playbook"), "pid": record.get("pid"),
                                      "ended": None, "verdict": None, "interrupted": None})
        elif kind == R.WATCH_END and watch.invocations:
            watch.invocations[-1].update(ended=record.get("ts"), verdict=record.get("verdict"),
                                         interrupted=record.get("interrupted"),
                                         mode=watch.invocations[-1]["mode"] or record.get("mode"))
            watch.verdict = str(record.get("verdict") or watch.verdict)
        elif kind == R.WATCH_PASS:
            _add_pass(watch, record)
        elif kind == R.GATE:
            watch.gates.append(_strip(record))
    watch.started = watch.started or (watch.invocations[0]["started"] if watch.invocations else None)
    watch.rollback = _rollback_from(records)
    return watch


def _take_window(watch: Watch, record: t.Mapping[str, t.Any]) -> None:
    """The watch window, from the watch state a watch_pass carries (newest wins), or window_s/ends
    on any watch record (the invocation's own `started` is not the window's)."""
    state = record.get("watch") if record["type"] == R.WATCH_PASS else None
    if isinstance(state, t.Mapping):
        for key in ("window_s", "started", "ends"):
            if state.get(key) is not None:
                setattr(watch, key, state[key])
    elif record["type"] in (R.WATCH_START, R.WATCH_END):
        for key in ("window_s", "ends"):
            if record.get(key) is not None and getattr(watch, key) is None:
                setattr(watch, key, record[key])


def _add_pass(watch: Watch, record: t.Mapping[str, t.Any]) -> None:
    data = record.get("emp_watch_pass")
    data = data if isinstance(data, t.Mapping) else record
    at = data.get("at") or record.get("ts")
    results = [r for r in data.get("results") or [] if isinstance(r, t.Mapping)]
    watch.passes.append({"at": at, "layers": list(data.get("layers") or []), "results": results})
    for result in results:
        name = str(result.get("check"))
        check = watch.checks.setdefault(name, {"check": name, "component": result.get("component"),
                                               "layer": result.get("layer"), "checklist_ref": result.get("checklist_ref"),
                                               "history": [], "counts": {R.GO: 0, R.NO_GO: 0, "NO-DATA": 0}})
        decision = str(result.get("decision"))
        check["counts"][decision] = check["counts"].get(decision, 0) + 1
        check["history"].append({"at": at, "decision": decision, "value": result.get("value"),
                                 "reason": result.get("reason")})


def build_view(run_dir: Path, records: list[dict[str, t.Any]]) -> RunView:
    """The run from its journal records, the deployment's part split from the watch's."""
    first_watch = next((i for i, r in enumerate(records) if r["type"] == R.WATCH_START), len(records))
    deploy, watched = records[:first_watch], records[first_watch:]
    run_start = next((r for r in deploy if r["type"] == R.RUN_START), deploy[0] if deploy else records[0])
    end = next((r for r in reversed(deploy) if r["type"] == R.RUN_END), None)
    gates, rollback_gates, failures = [], [], []
    gate_phase, failure_phase = [], []
    phase, started = -1, 0  # by position: a gate belongs to the phase whose play recorded it
    for record in deploy:
        kind = record["type"]
        if kind == R.PHASE_START:
            phase, started = started, started + 1
        elif kind == R.PHASE_END:
            phase = -1
        elif kind == R.GATE:
            gates.append(_strip(record))
            gate_phase.append(phase)
        elif kind == R.STEP_FAILED:
            failures.append(dict(_strip(record), ts=record.get("ts")))
            failure_phase.append(phase)
        elif kind == R.ROLLBACK_GATE:
            rollback_gates.append(_strip(record))
    return RunView(
        run_dir=run_dir,
        run_id=str(run_start.get("run_id") or run_dir.name),
        run=_strip(run_start),
        end=dict(_strip(end), ts=end.get("ts")) if end else None,
        phases=_phases(deploy),
        gates=gates,
        failures=failures,
        releases=[_strip(r) for r in deploy if r["type"] == R.RELEASE],
        rollback=_rollback_from(deploy),
        rollback_plays=_rollback_plays(deploy),
        rollback_gates=rollback_gates,
        rollback_failures=[_strip(r) for r in deploy if r["type"] == R.ROLLBACK_STEP_FAILED],
        interrupted=next((_strip(r) for r in deploy if r["type"] == R.RUN_INTERRUPTED), None),
        watch=_watch(watched),
        gate_phase=gate_phase,
        failure_phase=failure_phase,
        notices=[dict(_strip(r), ts=r.get("ts")) for r in records if r["type"] == R.NOTIFY],
        trace_exports=[dict(_strip(r), ts=r.get("ts")) for r in records if r["type"] == R.TRACE_EXPORT],
    )


def load_run(run_dir: Path) -> RunView:
    return build_view(run_dir, read_journal(run_dir / "journal.jsonl"))


# --- figures --------------------------------------------------------------------------------------


def _alone(before: str, after: str) -> bool:
    """Whether a comparison stands on its own (not `a - b <= 2`): only boolean glue around it."""
    before, after = before.rstrip(), after.lstrip()
    return (not before or before.endswith("(") or re.search(r"\b(and|or|not)$", before) is not None) and \
        (not after or after.startswith(")") or re.match(r"(and|or)\b", after) is not None)


def thresholds(criterion: t.Any) -> list[Threshold]:
    """The numeric comparisons of one criterion, each as figure op number."""
    text = str(criterion)
    found = [Threshold(text, m["path"], m["op"], float(m["num"])) for m in _PATH_FIRST.finditer(text)
             if _alone(text[:m.start()], text[m.end():])]
    found += [Threshold(text, m["path"], _MIRROR[m["op"]], float(m["num"])) for m in _NUMBER_FIRST.finditer(text)
              if _alone(text[:m.start()], text[m.end():])]
    return found


def number(value: t.Any) -> float | None:
    """A figure as a float ("312" and 312 alike), None when it is not a finite number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = float(str(value).strip())
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def is_could_not_measure(gate: t.Mapping[str, t.Any]) -> bool:
    """A NO-GO without any sample that measured and failed: the probe could not measure (or saw nothing)."""
    counts = gate.get("counts") or {}
    return (gate.get("decision") == R.NO_GO and not gate.get("redacted") and not counts.get("failed")
            and not counts.get("passed") and bool(counts.get("errors") or counts.get("no_data")))


def fmt_seconds(value: t.Any) -> str:
    """'4.2 s', '3 min 05 s', '1 h 02 min' for durations; '-' when unknown."""
    if value is None:
        return "-"
    seconds = float(value)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_figure(value: t.Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "missing"
    text = str(value)
    return text if len(text) <= 60 else text[:59] + "…"


def trace_line(record: t.Mapping[str, t.Any]) -> str:
    """A trace_export record in one line (the end-of-run table, report.html, incident.md)."""
    if record.get("sent"):
        rejected = f", {record['rejected']} REJECTED" if record.get("rejected") else ""
        return (f"trace {record.get('trace_id')} sent to {record.get('endpoint')}: {record.get('spans')} spans, "
                f"{record.get('events')} events{rejected}")
    error = str(record.get("error") or "")
    return f"trace NOT exported to {record.get('endpoint')} ({record.get('outcome')}): {error[:200]}"


def history_text(gate: t.Mapping[str, t.Any]) -> str | None:
    """What a gate with the history option was judged against (docs/history.md), or None without it."""
    found = gate.get("history")
    if not isinstance(found, t.Mapping):
        return None
    runs, decision = found.get("runs"), found.get("decision")
    figures = "; ".join(f"history.{path} = {fmt_figure(value)}" for path, value in (found.get("figures") or {}).items())
    if found.get("source") == "history":
        run_ids = [str(run) for run in found.get("run_ids") or []]
        shown = ", ".join(run_ids[:5]) + (f" and {len(run_ids) - 5} more" if len(run_ids) > 5 else "")
        return f"judged against the {found.get('aggregate')} of the last {runs} {decision} runs ({shown}): {figures}"
    if found.get("source") == "fallback":
        return (f"judged against history_fallback ({found.get('found')} of the {runs} {decision} runs needed were "
                f"recorded): {figures}")
    why = found.get("reason") or f"{found.get('found')} of the {runs} {decision} runs needed were recorded"
    return f"history not used: {why}"


def waiver_text(gate: t.Mapping[str, t.Any]) -> str:
    """Why a waived gate was skipped: who waived it, why, until when, and what it measured."""
    found = gate.get("waiver")
    waiver: t.Mapping[str, t.Any] = found if isinstance(found, t.Mapping) else {}
    until = f" until {waiver.get('expires')}" if waiver.get("expires") else ""
    return (f"waived by {waiver.get('by')}{until}: {waiver.get('reason')} "
            f"(measured {waiver.get('measured_decision')})")
