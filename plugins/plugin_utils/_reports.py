# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Writes a run's reports (report.html, junit.xml, incident.md on NO-GO, coverage.json and coverage.md for a
run that judged checklist lines) and the report folder's index.html.

The one entry point for the go_no_go callback (at the end of every run) and the emp.deploy.report
action (later, from the journal): both call render_run()/write_reports(), so both write the same bytes.
"""

from __future__ import annotations

import json
import os
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

from ansible.errors import AnsibleActionFail

from ansible_collections.emp.deploy.plugins.plugin_utils import _coverage as coverage
from ansible_collections.emp.deploy.plugins.plugin_utils import _report_incident as incident
from ansible_collections.emp.deploy.plugins.plugin_utils._report_html import render_index, render_report
from ansible_collections.emp.deploy.plugins.plugin_utils._report_junit import render_junit
from ansible_collections.emp.deploy.plugins.plugin_utils._report_model import (
    JournalError, build_view, read_journal, seconds_between,
)

REPORT = "report.html"
JUNIT = "junit.xml"
INCIDENT = "incident.md"
INDEX = "index.html"


@dataclass
class Outcome:
    """What write_reports did: files written (changed or not), the run's decision, what failed."""

    run_dir: Path
    decision: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # path -> "written" | "unchanged" | "would write"
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(state in ("written", "would write") for state in self.files.values())


def render_run(run_dir: Path) -> dict[str, str]:
    """File name -> content for the run in run_dir, from its journal alone; raises JournalError."""
    run_dir = Path(run_dir).resolve()
    view = build_view(run_dir, read_journal(run_dir / "journal.jsonl"))
    files = {REPORT: render_report(view), JUNIT: render_junit(view)}
    if incident.wanted(view):
        files[INCIDENT] = incident.render_incident(view)
    return files


def write_text_atomically(path: Path, text: str) -> bool:
    """Writes text unless the file already holds it; False when it was unchanged."""
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
    return True


def write_reports(run_dir: Path, index: bool = True, check_mode: bool = False) -> Outcome:
    """Renders and writes the run's reports, then the index of its report folder. Never raises: what
    could not be rendered or written is in Outcome.errors (the callback's record_errors)."""
    run_dir = Path(run_dir).resolve()
    outcome = Outcome(run_dir)
    try:
        files = render_run(run_dir)
        outcome.decision = _decision_of(files)
    except JournalError as exc:
        outcome.errors.append(f"reports not rendered: {exc}")
        return outcome
    except Exception as exc:  # pylint: disable=broad-exception-caught  # a report never breaks the run
        outcome.errors.append(f"reports not rendered: {type(exc).__name__}: {exc}")
        return outcome
    targets = {run_dir / name: text for name, text in files.items()}
    targets.update({run_dir / name: text for name, text in _coverage_files(run_dir, outcome.errors).items()})
    if index:
        try:
            targets[run_dir.parent / INDEX] = render_index(index_rows(run_dir.parent, fresh=run_dir))
        except OSError as exc:
            outcome.errors.append(f"the index of {run_dir.parent} not rendered: {exc.strerror or exc}")
    for path, text in targets.items():
        if check_mode:
            outcome.files[str(path)] = "unchanged" if _holds(path, text) else "would write"
            continue
        try:
            outcome.files[str(path)] = "written" if write_text_atomically(path, text) else "unchanged"
        except OSError as exc:
            outcome.errors.append(f"writing {path} failed ({exc.strerror or exc})")
    return outcome


def _coverage_files(run_dir: Path, errors: list[str]) -> dict[str, str]:
    """coverage.json and coverage.md for a run that judged checklist lines (docs/coverage.md); a journal
    the coverage cannot trust is one more error, and the other reports are written all the same."""
    try:
        records, warnings = coverage.read_journal(run_dir)
    except coverage.CoverageError as exc:
        if coverage.wanted(read_journal(run_dir / "journal.jsonl")):  # the lenient reading the reports used
            errors.append(f"coverage not written: {exc}")
        return {}
    if not coverage.wanted(records):
        return {}
    return coverage.render(coverage.build(run_dir, records, warnings=warnings))


def _holds(path: Path, text: str) -> bool:
    try:
        return path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


def _decision_of(files: dict[str, str]) -> str | None:
    marker = 'data-decision="'
    html = files.get(REPORT, "")
    start = html.find(marker)
    return html[start + len(marker):html.find('"', start + len(marker))] if start >= 0 else None


# --- index.html -----------------------------------------------------------------------------------


def index_rows(report_dir: Path, fresh: Path | None = None) -> list[dict[str, t.Any]]:
    """One row per run folder (one with a journal), newest first; from summary.json, else the journal's
    first and last lines. `fresh` is read from its journal (its summary may not be written yet)."""
    rows = []
    for entry in sorted(report_dir.iterdir()):
        if not (entry / "journal.jsonl").is_file():
            continue
        row = None if fresh is not None and entry.resolve() == fresh else _row_from_summary(entry)
        row = row or _row_from_journal(entry)
        if row is not None:
            row["report"] = (entry / REPORT).is_file() or (fresh is not None and entry.resolve() == fresh)
            rows.append(row)
    return sorted(rows, key=lambda r: (str(r.get("started") or ""), r["run_id"]), reverse=True)


def _row_from_summary(entry: Path) -> dict[str, t.Any] | None:
    try:
        summary = json.loads((entry / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    watch = summary.get("watch")
    watch = watch if isinstance(watch, dict) else {}
    return {"run_id": entry.name, "started": summary.get("started"), "decision": summary.get("decision"),
            "release": summary.get("emp_release"), "duration_s": summary.get("duration_s"),
            "watch": watch.get("verdict")}


def _row_from_journal(entry: Path) -> dict[str, t.Any] | None:
    try:
        records = read_journal(entry / "journal.jsonl")
    except JournalError:
        return None
    start = records[0]
    end = next((r for r in reversed(records) if r.get("type") == "run_end"), None)
    watch = next((r for r in reversed(records) if r.get("type") == "watch_end"), None)
    duration = end.get("duration_s") if end else None
    if end and duration is None:
        duration = seconds_between(start.get("started") or start.get("ts"), end.get("ts"))
    return {"run_id": entry.name, "started": start.get("started") or start.get("ts"),
            "decision": end.get("decision") if end else "unfinished", "release": start.get("emp_release"),
            "duration_s": duration, "watch": watch.get("verdict") if watch else None}


def run_folder(given: str) -> Path:
    """The run folder an action plugin was given (``run_dir``), resolved; fails unless it holds a journal."""
    run_dir = Path(given).expanduser().resolve()
    if not (run_dir / "journal.jsonl").is_file():
        raise AnsibleActionFail(f"{run_dir} holds no journal.jsonl: give the folder of one run, "
                                f"<report_dir>/<run_id> (for example deploy-reports/20261203T121500Z-a1b2c3)")
    return run_dir
