# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The checklist coverage report: each checklist line, its status and the evidence, from a run's journal.

Pure Python. The go_no_go callback writes coverage.json and coverage.md at the end of a run that judged
checklist lines (a predeploy run), and the emp.deploy.coverage action writes them again, from the journal
alone, on any run folder: both call build()/render(), so both write the same bytes. The lines and what
covers them: _checklist.py (docs/checklist.md); the rules: docs/coverage.md.
"""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.emp.deploy.plugins.plugin_utils import _checklist as C
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils._report_model import is_could_not_measure

PASSED = "automated-passed"
FAILED = "automated-failed"
MANUAL = "manual"
NOT_APPLICABLE = "not-applicable"
STATUSES = (PASSED, FAILED, MANUAL, NOT_APPLICABLE)
# a gate whose checklist_ref names no line of the checklist: listed after the lines, never dropped
UNMAPPED = "unmapped"
UNMAPPED_SECTION = "Gates that name no checklist line"

COVERAGE_JSON = "coverage.json"
COVERAGE_MD = "coverage.md"
JOURNAL = "journal.jsonl"
# run_start's run_kind of a predeploy run (docs/records.md); such a run always gets a coverage report
PREDEPLOY = "predeploy"


class CoverageError(ValueError):
    """The run folder or its journal cannot give a coverage report; the message says which and why."""


@dataclass
class Coverage:
    """The report: one entry per checklist line (then the unmapped gates), and the run it judged."""

    run_id: str
    decision: str  # the run's decision, "unfinished" while it has no run_end
    playbook: str | None
    entries: list[dict[str, t.Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = {status: 0 for status in STATUSES + (UNMAPPED,)}
        for entry in self.entries:
            counts[entry["status"]] += 1
        return counts


# --- reading the journal ----------------------------------------------------------------------------


def read_journal(run_dir: Path) -> tuple[list[dict[str, t.Any]], list[str]]:
    """The journal's records, refusing any line it cannot read (a lost gate record could make a line look
    passed); only a last line cut short by a kill (no newline after it) is left out, with a warning."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CoverageError(f"{run_dir} is not a folder: give the folder of one run, <report_dir>/<run_id> "
                            f"(for example deploy-reports/20261203T121500Z-a1b2c3)")
    path = run_dir / JOURNAL
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CoverageError(f"{run_dir} holds no {JOURNAL}: give the folder of one run of the "
                            f"emp.deploy.go_no_go callback, <report_dir>/<run_id>") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CoverageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    lines = text.split("\n")
    records, warnings = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = _parse(line)
        if record is None and number == len(lines):  # the file does not end with a newline: cut by a kill
            warnings.append(f"{path} line {number} is cut short (the run was killed while writing it) and "
                            f"was left out")
            continue
        if record is None:
            raise CoverageError(f"{path} line {number} is not a journal record ({_excerpt(line)}); the coverage "
                                f"report would miss what it recorded, so none is written")
        version = record.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or version > R.SCHEMA_VERSION:
            raise CoverageError(f"{path} line {number}: schema_version {version!r} is not one this collection knows "
                                f"(up to {R.SCHEMA_VERSION}); use a newer emp.deploy")
        records.append(record)
    if not records:
        raise CoverageError(f"{path} holds no journal record")
    return records, warnings


def _parse(line: str) -> dict[str, t.Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("type"), str) else None


def _excerpt(line: str) -> str:
    line = line.strip()
    return repr(line if len(line) <= 60 else line[:59] + "…")


def wanted(records: t.Sequence[t.Mapping[str, t.Any]]) -> bool:
    """A run gets a coverage report at its end when it is a predeploy run or a gate of it named a
    checklist line by its id (deploy runs, whose gates carry free-text refs, get one on request)."""
    if any(r.get("type") == R.RUN_START and r.get("run_kind") == PREDEPLOY for r in records):
        return True
    return any(r.get("type") in _JUDGED_TYPES and C.is_line_id(r.get("checklist_ref")) for r in records)


# --- judging each line ----------------------------------------------------------------------------------


# A gate task skipped by its `when` (gate_skipped) and a check not run on purpose, such as a disruptive
# check on a target not marked disposable (check_skipped), both count as skipped, never as passed.
_SKIPPED_TYPES = (R.GATE_SKIPPED, R.CHECK_SKIPPED)
_JUDGED_TYPES = (R.GATE,) + _SKIPPED_TYPES


def _judged(records: t.Sequence[t.Mapping[str, t.Any]]) -> list[dict[str, t.Any]]:
    """The gate records (decided or skipped) of the run and of its watch; the rollback's gates verify the
    rollback, not the checklist, so they are not among them."""
    return [dict(r) for r in records if r.get("type") in _JUDGED_TYPES]


def _is_skipped(gate: t.Mapping[str, t.Any]) -> bool:
    return gate.get("type") in _SKIPPED_TYPES


def _measured_nothing(gate: t.Mapping[str, t.Any]) -> bool:
    """A GO without one sample that measured (on_no_data: pass, or a probe skipped in check mode)."""
    counts = gate.get("counts")
    if gate.get("decision") != R.GO or not isinstance(counts, t.Mapping):
        return False
    return not counts.get("passed") and not counts.get("failed")


def _samples(gate: t.Mapping[str, t.Any]) -> str:
    counts = gate.get("counts")
    if not isinstance(counts, t.Mapping):
        return "no sample counts"
    taken = counts.get("taken", 0)
    parts = [f"{counts.get(key, 0)} {word}" for key, word in (("passed", "passed"), ("failed", "failed"),
                                                              ("errors", "could not measure"), ("no_data", "no data"))
             if counts.get(key)]
    return f"{taken} sample{'s' if taken != 1 else ''}" + (f": {', '.join(parts)}" if parts else "")


def _gate_label(gate: t.Mapping[str, t.Any]) -> str:
    name = str(gate.get("name") or "unnamed gate")
    where = gate.get("probe_module") or ("evidence" if gate.get("source") == "evidence" else None)
    if gate.get("phase") == R.WATCH_PHASE:
        where = "watch"
    return f"{name} ({where})" if where else name


def gate_evidence(gate: t.Mapping[str, t.Any]) -> str:
    """One gate's part of the evidence: its decision, mode, reason with the figures, and its samples."""
    name = str(gate.get("name") or "unnamed gate")
    if _is_skipped(gate):
        return f"{name}: skipped: {gate.get('reason') or 'its task did not run'}"
    decision, mode = gate.get("decision"), gate.get("mode")
    reason = "redacted (no_log)" if gate.get("redacted") else (gate.get("reason") or "no reason recorded")
    if decision == R.NO_GO and mode == R.OBSERVE:
        head = "NO-GO (observe mode: recorded, not enforced)"
    elif decision == R.NO_GO and mode == R.WARN:
        head = "NO-GO (warn mode: not enforced)"
    elif decision == R.NO_GO and gate.get("ignored"):
        head = "NO-GO (ignore_errors: not enforced)"
    elif is_could_not_measure(gate):
        head = "NO-GO (could not measure)"
    elif _measured_nothing(gate):
        head = "skipped: GO without one measured sample"
    else:
        head = f"{decision}" + (f" ({mode})" if mode and mode != R.ENFORCE else "")
    host = f" on {gate['host']}" if gate.get("host") else ""
    return f"{name}{host}: {head}: {reason} [{_samples(gate)}]"


def _gate_facts(gate: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """What coverage.json keeps of each gate (the journal has the rest, by id)."""
    return {"id": gate.get("id"), "name": gate.get("name"), "phase": gate.get("phase"),
            "component": gate.get("component"), "host": gate.get("host"), "probe_module": gate.get("probe_module"),
            "mode": gate.get("mode"), "decision": "skipped" if _is_skipped(gate) else gate.get("decision"),
            "reason": "redacted (no_log)" if gate.get("redacted") else gate.get("reason"),
            "counts": gate.get("counts"), "checklist_ref": gate.get("checklist_ref")}


def judge(line: C.Line, gates: list[dict[str, t.Any]], not_applicable: t.Mapping[str, str] | None = None
          ) -> tuple[str, str]:
    """(status, evidence) of one line from the gates that named it.

    Every gate must say GO, with measured samples, for automated-passed; any NO-GO (could-not-measure and
    observe mode included) is automated-failed; a skipped gate (or a GO that measured nothing) leaves the
    line manual, never passed; no gate at all: manual, naming what would cover it.
    """
    if gates:
        evidence = "; ".join(gate_evidence(g) for g in gates)
        if any(g.get("decision") == R.NO_GO and not _is_skipped(g) for g in gates):
            return FAILED, evidence
        if any(_is_skipped(g) or _measured_nothing(g) for g in gates):
            return MANUAL, evidence
        return PASSED, evidence
    reason = (not_applicable or {}).get(line.id)
    if reason:
        return NOT_APPLICABLE, f"not applicable: {reason}"
    if line.manual:
        return MANUAL, f"manual: {line.manual}"
    return MANUAL, "not judged in this run: no gate named this line (covered by says what would)"


def _derive(line: C.Line, statuses: t.Mapping[str, str]) -> tuple[str, str]:
    """A line made of other lines: passed when all of them passed, failed when one failed, else manual."""
    parts = {status: [i for i in line.derived_from if statuses.get(i) == status] for status in STATUSES}
    said = "; ".join(f"{status}: {', '.join(ids)}" for status, ids in parts.items() if ids)
    if parts[FAILED]:
        return FAILED, f"decided by its lines: {said}"
    if len(parts[PASSED]) == len(line.derived_from):
        return PASSED, f"every line it names passed: {', '.join(line.derived_from)}"
    return MANUAL, f"not automated in full: {said}"


def build(run_dir: Path, records: t.Sequence[t.Mapping[str, t.Any]],
          not_applicable: t.Mapping[str, str] | None = None, warnings: t.Sequence[str] = ()) -> Coverage:
    """The report for every line of the checklist, then one entry per checklist_ref no line knows."""
    run_start = next((r for r in records if r.get("type") == R.RUN_START), records[0] if records else {})
    end = next((r for r in reversed(records) if r.get("type") == R.RUN_END), None)
    coverage = Coverage(run_id=str(run_start.get("run_id") or Path(run_dir).name),
                        decision=str(end.get("decision")) if end else "unfinished",
                        playbook=run_start.get("playbook"), warnings=list(warnings))
    unknown_na = sorted(set(not_applicable or {}) - set(C.BY_ID))
    if unknown_na:
        raise CoverageError(f"not_applicable names no checklist line: {', '.join(unknown_na)} (the ids are in "
                            f"docs/checklist.md)")
    by_line: dict[str, list[dict[str, t.Any]]] = {line.id: [] for line in C.LINES}
    unmapped: dict[str, list[dict[str, t.Any]]] = {}
    for gate in _judged(records):
        ids = C.lines_of(gate.get("checklist_ref"))
        for line_id in ids:
            by_line[line_id].append(gate)
        if not ids:
            ref = gate.get("checklist_ref")
            unmapped.setdefault(str(ref).strip() if ref not in (None, "") else "", []).append(gate)
    statuses: dict[str, str] = {}
    judged: dict[str, tuple[str, str]] = {}
    for line in C.LINES:
        if by_line[line.id] or not line.derived_from or line.id in (not_applicable or {}):
            judged[line.id] = judge(line, by_line[line.id], not_applicable)
            statuses[line.id] = judged[line.id][0]
    for line in C.LINES:
        if line.id in judged:
            coverage.entries.append(_entry(line, *judged[line.id], by_line[line.id]))
        else:  # made of other lines, none of its own gates: as its lines say
            coverage.entries.append(_entry(line, *_derive(line, statuses), [], covered_by=list(line.derived_from)))
    for ref, gates in unmapped.items():
        coverage.entries.append(_unmapped_entry(ref, gates))
    return coverage


def _entry(line: C.Line, status: str, evidence: str, gates: list[dict[str, t.Any]],
           covered_by: list[str] | None = None) -> dict[str, t.Any]:
    if covered_by is None:
        covered_by = list(dict.fromkeys(_gate_label(g) for g in gates)) if gates else list(line.covered_by)
    return {"id": line.id, "line": line.text, "section": line.section, "group": line.group, "status": status,
            "covered_by": covered_by, "evidence": evidence, "gates": [_gate_facts(g) for g in gates]}


def _unmapped_entry(ref: str, gates: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    said = f"checklist_ref {ref!r}" if ref else "no checklist_ref"
    return {"id": None, "line": ref or "(no checklist_ref)", "section": UNMAPPED_SECTION, "group": None,
            "status": UNMAPPED, "covered_by": list(dict.fromkeys(_gate_label(g) for g in gates)),
            "evidence": f"{said} names no line of docs/checklist.md: " + "; ".join(gate_evidence(g) for g in gates),
            "gates": [_gate_facts(g) for g in gates]}


# --- rendering ------------------------------------------------------------------------------------------


def render_json(coverage: Coverage) -> str:
    return json.dumps(coverage.entries, indent=2, ensure_ascii=False, default=str) + "\n"


def _cell(value: t.Any) -> str:
    text = value if isinstance(value, str) else ", ".join(str(v) for v in value or [])
    return " ".join(text.split()).replace("|", "\\|") or "-"


def summary_line(coverage: Coverage) -> str:
    counts = coverage.counts
    said = ", ".join(f"{counts[status]} {status}" for status in STATUSES + (UNMAPPED,)
                     if counts[status] or status != UNMAPPED)
    return f"{len(coverage.entries)} entries: {said}"


def render_table(coverage: Coverage) -> str:
    """The Markdown table: one row per line, grouped by section."""
    out: list[str] = []
    section = None
    for entry in coverage.entries:
        if entry["section"] != section:
            section = entry["section"]
            out += ["", f"### {section}", "", "| id | line | status | covered by | evidence |", "|---|---|---|---|---|"]
        out.append(f"| {_cell(entry['id'] or '-')} | {_cell(entry['line'])} | {entry['status']} | "
                   f"{_cell(entry['covered_by'])} | {_cell(entry['evidence'])} |")
    return "\n".join(out[1:]) + "\n"


def render_markdown(coverage: Coverage) -> str:
    head = [f"# Checklist coverage · run {coverage.run_id}", "",
            f"Run decision: **{coverage.decision}**" + (f" ({coverage.playbook})" if coverage.playbook else "")
            + f". {summary_line(coverage)}.", "",
            "Statuses: automated-passed (every gate on the line said GO with measured samples), automated-failed "
            "(a gate said NO-GO, could not measure, or would have in observe mode), manual (no gate judged it in "
            "this run, or its gate was skipped), not-applicable. Lines in the checklist's words: "
            "docs/checklist.md of emp.deploy.", ""]
    head += [f"> {warning}" for warning in coverage.warnings] + ([""] if coverage.warnings else [])
    return "\n".join(head) + "\n" + render_table(coverage)


def render(coverage: Coverage) -> dict[str, str]:
    """File name -> content."""
    return {COVERAGE_JSON: render_json(coverage), COVERAGE_MD: render_markdown(coverage)}


def load(run_dir: Path, not_applicable: t.Mapping[str, str] | None = None) -> Coverage:
    """The coverage of the run in run_dir, from its journal alone; CoverageError on bad input."""
    records, warnings = read_journal(Path(run_dir))
    return build(Path(run_dir), records, not_applicable, warnings)
