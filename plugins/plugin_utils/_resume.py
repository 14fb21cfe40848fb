# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Resume a deploy run at the step that did not say GO (-e emp_resume=RUN_ID|latest, docs/resume.md).

Pure logic, read before any task by the go_no_go callback: which earlier run, which of its steps said GO
(and are skipped, their evidence linked into the new run), and why resuming is refused. That the skipped
steps' releases are still current on every host is checked by the preflight play (a read-only task).
"""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass
from pathlib import Path

from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R

RESUME_VAR = "emp_resume"
LATEST = "latest"
# The plan as JSON, exported for the preflight check and the phase plays (lookup('ansible.builtin.env', ...)).
RESUME_ENV = "EMP_DEPLOY_RESUME"


class ResumeError(ValueError):
    """Resuming is refused: the message says why. Raised before any task runs."""


@dataclass(frozen=True)
class ResumedStep:
    """A step of the earlier run that said GO: skipped in the new run, its evidence linked."""

    phase: str | None
    component: str
    play: str | None
    gates: tuple[dict[str, t.Any], ...]
    releases: tuple[dict[str, t.Any], ...]

    def as_record(self) -> dict[str, t.Any]:
        return {"phase": self.phase, "component": self.component, "play": self.play, "decision": R.GO,
                "gates": list(self.gates), "releases": list(self.releases)}


@dataclass(frozen=True)
class ResumePlan:
    """What a resumed run skips, and where it starts."""

    resumed_from: str
    steps: tuple[ResumedStep, ...]
    resume_at: str | None  # the component of the first step that did not say GO

    @property
    def components(self) -> list[str]:
        return [step.component for step in self.steps]

    def as_record(self) -> dict[str, t.Any]:
        """The ``resume`` journal record's fields (and ``resumed`` in summary.json)."""
        return {"resumed_from": self.resumed_from, "resume_at": self.resume_at,
                "steps": [step.as_record() for step in self.steps]}

    def for_tasks(self) -> str:
        """JSON for the preflight check and the phase plays: the components skipped and the versions their
        releases left current, per host."""
        versions: dict[str, dict[str, list[str]]] = {}
        for step in self.steps:
            per_host = versions.setdefault(step.component, {})
            for release in step.releases:
                per_host.setdefault(str(release.get("host")), []).append(str(release.get("version")))
        return json.dumps({"resumed_from": self.resumed_from, "skip": self.components, "versions": versions},
                          sort_keys=True)


def _is_deploy_run(summary: t.Mapping[str, t.Any]) -> bool:
    return not summary.get("rollback_run") and summary.get("run_kind", R.RUN_KIND_DEPLOY) == R.RUN_KIND_DEPLOY


def latest_run(report_dir: Path) -> str:
    """The newest deploy run in report_dir (by its summary's ``started``), whatever it decided."""
    newest = R.newest_run(report_dir, _is_deploy_run)
    if newest is None:
        raise ResumeError(f"-e {RESUME_VAR}={LATEST}: {report_dir} holds no finished deploy run to resume")
    return newest


def resolve_run(report_dir: Path, requested: t.Any) -> tuple[str, dict[str, t.Any]]:
    """The run to resume (a run id or ``latest``) and its summary; ResumeError naming what is missing."""
    if not isinstance(requested, str) or not requested:
        raise ResumeError(f"-e {RESUME_VAR}=RUN_ID|{LATEST}: got {requested!r}, not a run id")
    run_id = latest_run(report_dir) if requested == LATEST else requested
    if not R.valid_run_id(run_id):
        raise ResumeError(f"-e {RESUME_VAR}={run_id!r} is not a valid run id (letters, digits, '.', '_', '-')")
    if not (report_dir / run_id).is_dir():
        raise ResumeError(f"-e {RESUME_VAR}={run_id}: no run of that id in {report_dir}")
    summary = R.read_summary(report_dir / run_id)
    if summary is None:
        raise ResumeError(f"-e {RESUME_VAR}={run_id}: that run has no record to resume from (no readable "
                          f"{report_dir / run_id / 'summary.json'}: still running, or killed before its end)")
    return run_id, summary


def refusal_of_run(run_id: str, summary: t.Mapping[str, t.Any]) -> str | None:
    """Why a run cannot be resumed at all, or None."""
    if summary.get("rollback_run"):
        return f"run {run_id} is a rollback run"
    if summary.get("run_kind", R.RUN_KIND_DEPLOY) != R.RUN_KIND_DEPLOY:
        return f"run {run_id} is a {summary.get('run_kind')} run, not a deploy"
    decision = summary.get("decision")
    if decision == R.GO:
        return f"run {run_id} said GO end to end: nothing to resume"
    if decision == R.REFUSED:
        return f"run {run_id} was refused before any task: nothing to resume (run the deployment again)"
    if summary.get("check_mode"):
        return f"run {run_id} was a check-mode run: it released nothing"
    return None


def _rolled_back(summary: t.Mapping[str, t.Any]) -> set[str]:
    rollback = summary.get("rollback") or {}
    return {str(c) for c in rollback.get("components") or []} if rollback.get("state") != "not_started" else set()


def resumed_steps(summary: t.Mapping[str, t.Any]) -> tuple[list[ResumedStep], str | None]:
    """The steps before the first one that did not say GO (or was rolled back), and that first one's component."""
    rolled_back = _rolled_back(summary)
    steps: list[ResumedStep] = []
    for phase in summary.get("phases") or []:
        component = phase.get("component")
        if phase.get("decision") != R.GO or component in rolled_back or not component:
            return steps, component
        gates = tuple({"id": g.get("id"), "name": g.get("name"), "decision": g.get("decision"), "host": g.get("host")}
                      for g in summary.get("gates") or [] if g.get("component") == component)
        releases = tuple({"component": r.get("component"), "version": r.get("version"), "host": r.get("host")}
                         for r in summary.get("releases") or [] if r.get("component") == component)
        steps.append(ResumedStep(phase.get("phase"), str(component), phase.get("play"), gates, releases))
    return steps, None


def hosts_refusal(run_id: str, summary: t.Mapping[str, t.Any], hosts_now: t.Iterable[str]) -> str | None:
    """Why the inventory (with the limit) is not the one the earlier run deployed to, or None."""
    before = set((summary.get("hosts") or {}).keys())
    now = set(hosts_now)
    if before == now:
        return None
    parts = []
    if now - before:
        parts.append(f"new hosts {', '.join(sorted(now - before))}")
    if before - now:
        parts.append(f"hosts no longer in it {', '.join(sorted(before - now))}")
    return f"the inventory changed since run {run_id}: {'; '.join(parts)}"


def plan_resume(report_dir: Path, requested: t.Any, hosts_now: t.Iterable[str]) -> ResumePlan:
    """The resume plan, or ResumeError with the reason resuming is refused."""
    run_id, summary = resolve_run(report_dir, requested)
    refusal = refusal_of_run(run_id, summary) or hosts_refusal(run_id, summary, hosts_now)
    if refusal is not None:
        raise ResumeError(f"-e {RESUME_VAR}={requested}: resuming is refused: {refusal}")
    steps, resume_at = resumed_steps(summary)
    return ResumePlan(run_id, tuple(steps), resume_at)
