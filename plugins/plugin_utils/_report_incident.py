# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""incident.md: a draft of the checklist's incident report for a NO-GO (or a watch alert), from the journal.

Timeline (first bad sample, NO-GO, rollback start and end), what rolled back and whether within
budget, the failing criteria with their figures, the evidence, the commands to redo the rollback,
re-run or re-render, and the open questions for the root-cause analysis. People complete the TODOs.
"""

from __future__ import annotations

import json
import shlex
import typing as t

from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils._report_junit import evidence
from ansible_collections.emp.deploy.plugins.plugin_utils._report_model import (
    RunView, fmt_figure, fmt_seconds, history_text, parse_time, seconds_between, trace_line,
)

# "Within 10 minutes: notify stakeholders" (the checklist's critical service failure procedure)
_NOTIFY_WITHIN_S = 600


def wanted(view: RunView) -> bool:
    """An incident draft for a NO-GO run, or a watch that raised an enforced alert."""
    if view.decision == R.NO_GO:
        return True
    return view.watch is not None and any(R.is_enforced_nogo(g) for g in view.watch.gates)


def _cell(value: t.Any) -> str:
    return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")


def _bad_gates(view: RunView) -> list[dict[str, t.Any]]:
    gates = [g for g in view.gates if R.is_enforced_nogo(g)]
    if view.watch is not None:
        gates += [g for g in view.watch.gates if R.is_enforced_nogo(g)]
    return gates


def _first_bad_sample(gate: t.Mapping[str, t.Any]) -> dict[str, t.Any] | None:
    return next((dict(s) for s in gate.get("samples") or [] if s.get("outcome") != "passed"), None)


def _timeline(view: RunView) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []

    def add(at: t.Any, what: str) -> None:
        events.append((str(at), what))

    add(view.started, f"run {view.run_id} started ({view.run.get('playbook')}, release {view.release})")
    for phase in view.phases:
        label = f"phase {phase.get('phase')} · {phase.get('component')}"
        add(phase.get("started"), f"{label} started")
        if phase.get("ended"):
            add(phase.get("ended"), f"{label} ended: {phase.get('decision')}")
    for gate in _bad_gates(view):
        sample = _first_bad_sample(gate)
        if sample is not None:
            figures = ", ".join(f"{k}={fmt_figure(v)}" for k, v in (sample.get("figures") or {}).items())
            add(sample.get("time"), f"first bad sample of gate {gate.get('name')}: sample {sample.get('index')} "
                                    f"{sample.get('outcome')}" + (f" ({figures})" if figures else "")
                + (f": {sample.get('error')}" if sample.get("error") else ""))
        add(gate.get("ended"), f"NO-GO: gate {gate.get('name')} ({gate.get('component')})")
    for failure in view.failures:
        add(failure.get("ts"), f"step failed: {failure.get('task')} on {failure.get('host')}: {failure.get('msg')}")
    for rollback, label in ((view.rollback, "rollback"), (view.watch.rollback if view.watch else None, "watch rollback")):
        if rollback and rollback.get("started"):
            add(rollback.get("started"), f"{label} of {', '.join(rollback.get('components') or [])} started")
        if rollback and rollback.get("ended"):
            add(rollback.get("ended"), f"{label} ended: {'ok' if rollback.get('ok') else 'FAILED'} in "
                                       f"{fmt_seconds(rollback.get('duration_s'))}")
    for notice in view.notices:
        add(notice.get("ts"), f"notice to {notice.get('target')} ({notice.get('event')}): "
                              + ("sent" if notice.get("sent") else f"NOT SENT ({notice.get('outcome')})"))
    if view.ended:
        add(view.ended, f"run ended: {view.decision}")
    for gate in view.watch.alerts if view.watch is not None else []:
        add(gate.get("ended"), f"watch alert: {gate.get('name')} ({gate.get('component')})")
    return sorted(events, key=lambda item: parse_time(item[0]) or 0.0)


def _nogo_time(view: RunView) -> str | None:
    """When the run (or the watch) said NO-GO first: the earliest enforced NO-GO gate's end or failed step."""
    stamps = [g.get("ended") for g in _bad_gates(view)] + [f.get("ts") for f in view.failures if f.get("component")]
    timed = sorted((parse_time(s), str(s)) for s in stamps if parse_time(s) is not None)
    return timed[0][1] if timed else None


def _notified_lines(view: RunView) -> list[str]:
    """Who was told, when and how: the checklist asks for stakeholders notified within 10 minutes."""
    nogo = _nogo_time(view)
    # a watched run's GO notice went out before the alert: only notices from the NO-GO on count
    since = parse_time(nogo) if nogo else None
    sent = [n for n in view.notices if n.get("sent") and (since is None or (parse_time(n.get("ts")) or 0) >= since)]
    if sent:
        first = sent[0]
        via = ", ".join(dict.fromkeys(str(n.get("target")) for n in sent))
        delay = seconds_between(nogo, first.get("ts")) if nogo else None
        after = "" if delay is None else (f", {fmt_seconds(delay)} after the NO-GO at {nogo} "
                                          f"({'within' if delay <= _NOTIFY_WITHIN_S else 'LATER than'} the checklist's 10 minutes)")
        lines = [f"Stakeholders notified at {first.get('ts')} via {via}{after}.", ""]
    else:
        lines = ["No notice reached anybody: TODO who was told, when and how (the checklist asks for stakeholders "
                 "notified within 10 minutes).", ""]
    for notice in view.notices:
        state = "sent" if notice.get("sent") else f"NOT SENT ({notice.get('outcome')}): {notice.get('error')}"
        lines.append(f"- {notice.get('ts')} {notice.get('target')} {notice.get('event')}: {state}, HTTP "
                     f"{notice.get('status') or '-'}, {notice.get('attempts')} attempt(s)")
    lines += [f"- {trace.get('ts')} {trace_line(trace)}" for trace in view.trace_exports]
    return lines


def _rollback_lines(view: RunView) -> list[str]:
    rollback = view.rollback or (view.watch.rollback if view.watch else None)
    if not rollback:
        return ["No rollback was recorded."]
    if rollback.get("state") != R.ROLLBACK_FINISHED:
        return [f"No rollback ran to its end (state {rollback.get('state')}): {rollback.get('why_not') or 'see the journal'}."]
    lines = [f"Rolled back {', '.join(rollback.get('components') or [])} ({rollback.get('scope')} scope, "
             f"{rollback.get('runner')} runner): {'ok' if rollback.get('ok') else 'FAILED'} in "
             f"{fmt_seconds(rollback.get('duration_s'))}, "
             f"{'within' if rollback.get('within_budget') else 'OVER'} its budget of {fmt_seconds(rollback.get('budget_s'))}.",
             "", "| component | ran | ok | duration | budget | within budget |", "|---|---|---|---|---|---|"]
    for component, item in (rollback.get("per_component") or {}).items():
        lines.append(f"| {_cell(component)} | {'yes' if item.get('ran') else 'no'} | {'yes' if item.get('ok') else 'NO'} | "
                     f"{fmt_seconds(item.get('duration_s'))} | {fmt_seconds(item.get('budget_s'))} | "
                     f"{'yes' if item.get('within_budget') else 'NO'} |")
    lines += [f"- ROLLBACK PROBLEM: {problem}" for problem in rollback.get("problems") or []]
    return lines


def _criteria_lines(view: RunView) -> list[str]:
    lines = []
    for gate in _bad_gates(view):
        lines += [f"### Gate {gate.get('name')} ({gate.get('component')}, phase {gate.get('phase')}, host {gate.get('host')})",
                  "", f"{gate.get('reason')}", ""]
        history = history_text(gate)
        if history:
            lines += [f"History: {history}.", ""]
        for criterion in gate.get("criteria") or []:
            if criterion.get("outcome") != "held":
                lines.append(f"- `{criterion.get('criterion')}`: {criterion.get('outcome')}, {criterion.get('failed', 0)} "
                             f"failed and {criterion.get('errors', 0)} could not evaluate of {criterion.get('evaluated', 0)}")
        lines.append("")
    for failure in view.failures:
        lines.append(f"- step {failure.get('task')} on {failure.get('host')} ({failure.get('component') or 'outside any phase'}):"
                     f" {failure.get('msg')}")
    return lines or ["No failing criterion was recorded."]


def _commands(view: RunView) -> list[str]:
    run_dir = str(view.run_dir)
    rollback = view.rollback or (view.watch.rollback if view.watch else None) or {}
    lines = []
    if rollback.get("command"):
        lines += ["Redo the rollback (the exact command of this run):", "", "```sh", str(rollback["command"]), "```", ""]
    elif rollback.get("components"):
        extra = {R.ROLLBACK_COMPONENTS_VAR: rollback.get("components"), R.RUN_ID_VAR: view.run_id}
        lines += ["Redo the rollback (add the inventory and variables of the original run):", "", "```sh",
                  shlex.join(["ansible-playbook", str(rollback.get("playbook") or "emp.deploy.rollback"), "-e",
                              _json(extra)]), "```", ""]
    deploy = ["ansible-playbook", *[str(p) for p in (view.run.get("playbooks") or [view.run.get("playbook")]) if p]]
    if view.run.get("emp_release") not in (None, ""):
        deploy += ["-e", f"emp_release={view.run.get('emp_release')}"]
    if view.run.get("limit"):
        deploy += ["--limit", str(view.run.get("limit"))]
    if view.run.get("check_mode"):
        deploy.append("--check")
    lines += ["Re-run the deployment (add the inventory and variables of the original run):", "", "```sh",
              shlex.join(deploy), "```", "", "Re-render these reports from the journal:", "", "```sh",
              shlex.join(["ansible-playbook", "emp.deploy.report", "-e", f"emp_run_dir={run_dir}"]), "```"]
    return lines


def _json(value: t.Any) -> str:
    return json.dumps(value, sort_keys=True)


def _questions(view: RunView) -> list[str]:
    questions = []
    for gate in _bad_gates(view):
        sample = _first_bad_sample(gate)
        when = f" from sample {sample.get('index')} ({sample.get('time')}) on" if sample else ""
        questions.append(f"Why did {gate.get('name')} ({gate.get('component')}) fail{when}? What changed in "
                         f"{view.release} for {gate.get('component')}?")
    for failure in view.failures:
        questions.append(f"Why did the step {failure.get('task')} fail on {failure.get('host')}?")
    rollback = view.rollback or {}
    if rollback.get("state") == R.ROLLBACK_FINISHED and not rollback.get("ok"):
        questions.append("Why did the rollback fail, and what state are the components in now?")
    if rollback.get("state") == R.ROLLBACK_FINISHED and rollback.get("within_budget") is False:
        questions.append("Why did the rollback overrun its budget?")
    questions += ["Were users affected between the first bad sample and the end of the rollback? (TODO: impact)",
                  "Would an earlier gate or a tighter criterion have caught it before this phase?",
                  "Which follow-up actions, owners and dates? (TODO)"]
    return [f"- {q}" for q in questions]


def render_incident(view: RunView) -> str:
    gates = _bad_gates(view)
    names = ", ".join(str(g.get("name")) for g in gates) or "failed deployment steps"
    what = "NO-GO" if view.decision == R.NO_GO else "watch alert"
    head = [f"# Incident draft: {what} of {view.release} (run {view.run_id})", "",
            "> Draft written from the run's journal by emp.deploy. Complete the TODOs; the figures below are the",
            "> recorded ones.", "",
            "## Summary", "",
            f"- Decision: **{view.decision}**" + (f" ({names})" if view.decision == R.NO_GO else f"; the watch alerted ({names})"),
            f"- Run: {view.run_id}, playbook {view.run.get('playbook')}, started {view.started} by "
            f"{view.run.get('user') or 'an unrecorded user'} on {view.run.get('controller') or 'an unrecorded controller'}, "
            f"lasted {fmt_seconds(view.duration_s)}",
            f"- Release: {view.release}" + (f"; limit {view.run.get('limit')}" if view.run.get("limit") else ""),
            "- Impact: TODO", ""]
    if view.watch is not None:
        head.insert(-1, f"- Watch: verdict {view.watch.verdict}, {len(view.watch.alerts)} alerts")
    timeline = ["## Timeline (UTC)", "", "| time | event |", "|---|---|"]
    timeline += [f"| {_cell(at)} | {_cell(what)} |" for at, what in _timeline(view)]
    evidence_lines = ["## Evidence", "", f"- Journal: `{view.run_dir / 'journal.jsonl'}`",
                      f"- Report: `{view.run_dir / 'report.html'}`, JUnit: `{view.run_dir / 'junit.xml'}`", ""]
    for gate in gates:
        evidence_lines += [f"Gate {gate.get('name')}:", "", "```text", evidence(gate), "```", ""]
    parts = head + ["## Stakeholders notified", ""] + _notified_lines(view) + [""] + timeline
    parts += ["", "## What rolled back", ""] + _rollback_lines(view) + ["", "## Failing criteria", ""]
    parts += _criteria_lines(view) + [""] + evidence_lines + ["## Reproduce or redo", ""] + _commands(view)
    parts += ["", "## Open questions for the root-cause analysis", ""] + _questions(view)
    return "\n".join(parts).rstrip("\n") + "\n"
