# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The GO/NO-GO table printed at the end of a run, made from summary.json's content (pure Python)."""

from __future__ import annotations

import typing as t

from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils._report_model import trace_line
from ansible_collections.emp.deploy.plugins.plugin_utils._run_recorder import first_line

COLORS = {R.GO: "bright green", R.WAIVED: "bright yellow", R.NO_GO: "bright red", R.NO_GATE: "bright yellow", R.INTERRUPTED: "bright red"}
WATCH_COLORS = {R.SUCCESS: "bright green", R.FAILED: "bright red", R.IN_PROGRESS: "bright cyan"}


def _gate_row(gate: t.Mapping[str, t.Any]) -> list[str]:
    # a redacted (no_log) gate shows its decision, name and timing, never what it measured
    reason = "redacted (no_log)" if gate.get("redacted") else first_line(gate.get("reason"), 110)
    return [gate.get("phase") or "-", gate.get("component") or "-", gate.get("host") or "-", gate.get("name") or "-",
            gate.get("mode") or "-", gate.get("decision") or "-", f"{gate.get('duration_s') or 0:.1f}s", reason]


def _failure_row(failure: t.Mapping[str, t.Any]) -> list[str]:
    return [failure.get("phase") or "-", failure.get("component") or "-", failure.get("host") or "-",
            first_line(failure.get("task"), 30), "step", R.NO_GO if failure.get("component") else "failed", "-",
            first_line(failure.get("msg"), 110)]


def _rows(summary: t.Mapping[str, t.Any]) -> list[list[str]]:
    rows = [["PHASE", "COMPONENT", "HOST", "GATE", "MODE", "DECISION", "TIME", "REASON"]]
    rows += [_gate_row(gate) for gate in summary.get("gates") or []]
    rows += [_failure_row(failure) for failure in summary.get("failures") or []]
    hosts = {row[2] for row in rows[1:]}
    if len(hosts) <= 1:  # the host column only when it tells rows apart
        rows = [row[:2] + row[3:] for row in rows]
    return rows


def _waiver_lines(summary: t.Mapping[str, t.Any]) -> list[str]:
    """One line per waived gate: who waived it, why, until when, and what it measured."""
    lines = []
    for gate in summary.get("gates") or []:
        waiver = gate.get("waiver") if gate.get("decision") == R.WAIVED else None
        if isinstance(waiver, t.Mapping):
            until = f" until {waiver.get('expires')}" if waiver.get("expires") else ""
            lines.append(f"  WAIVED {gate.get('name')}: by {waiver.get('by')}{until} ({first_line(waiver.get('reason'), 110)});"
                         f" measured {waiver.get('measured_decision')}")
    return lines


def _rollback_lines(summary: t.Mapping[str, t.Any]) -> list[str]:
    rollback = summary.get("rollback") or {}
    if rollback.get("triggered") and rollback.get("mode") == "auto":
        state = rollback.get("state")
        if state == R.ROLLBACK_CUT_SHORT:
            return [f"  rollback [{', '.join(rollback['components'])}] CUT SHORT by {summary.get('interrupted')}"]
        outcome = "ok" if rollback.get("ok") else "FAILED"
        budget = "within budget" if rollback.get("within_budget") else "OVER BUDGET"
        runner = f", {rollback['runner']}" if rollback.get("runner") == R.RUNNER_SUBPROCESS else ""
        lines = [f"  rollback [{', '.join(rollback['components'])}] ({rollback['scope']}{runner}): {outcome} in "
                 f"{rollback.get('duration_s')} s, {budget} ({rollback.get('budget_s')} s)"]
        return lines + [f"  ROLLBACK PROBLEM: {problem}" for problem in rollback.get("problems") or []]
    if rollback.get("mode") == "plan" and rollback.get("components"):
        return [f"  rollback planned, not run: {rollback.get('command')}"]
    if summary.get("decision") == R.NO_GO:
        return [f"  no rollback: {rollback.get('why_not')}"]
    return []


def _batch_lines(summary: t.Mapping[str, t.Any]) -> list[str]:
    """One line per batch of a fleet rollout (docs/fleet.md): its decision and the hosts that decided it."""
    lines = []
    for batch in summary.get("batches") or []:
        named = [("NO-GO", batch.get("nogo_hosts") or []), ("no evidence", batch.get("no_data_hosts") or [])]
        hosts = "; ".join(f"{label}: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}"
                          for label, names in named if names)
        lines.append(f"  batch {batch.get('batch')} of {batch.get('component')} ({batch.get('size')} hosts): "
                     f"{batch.get('decision')}" + (f" ({hosts})" if hosts else ""))
    return lines


def render(summary: t.Mapping[str, t.Any], report: str | None) -> tuple[str, str]:
    """The table's text and its colour."""
    decision = summary.get("decision")
    lines = [f"EMP GO/NO-GO  run {summary.get('run_id')}  decision {decision}"
             + ("  (check mode)" if summary.get("check_mode") else "")
             + (f"  (interrupted by {summary['interrupted']})" if summary.get("interrupted") else "")]
    rows = _rows(summary)
    if len(rows) > 1:
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            lines.append("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    elif decision == R.NO_GATE:
        lines.append("  no gate ran in this run: nothing was judged GO or NO-GO")
    else:
        lines.append("  no gates and no failed deployment steps in this run")
    lines += _waiver_lines(summary)
    lines += _batch_lines(summary)
    lines += _rollback_lines(summary)
    for error in summary.get("record_errors") or []:
        lines.append(f"  NO RECORD: {error}")
    if report and not summary.get("record_errors"):
        lines.append(f"  report: {report}")
    return "\n".join(lines), COLORS.get(str(decision), "bright red")


def render_watch(summary: t.Mapping[str, t.Any], entry: t.Mapping[str, t.Any], gates: list[dict[str, t.Any]],
                 rollback: t.Mapping[str, t.Any] | None, report: str | None) -> tuple[str, str]:
    """The table of an attached watch invocation: the verdict, the alerts so far, this invocation's gates
    and its rollback. The deploy's decision is shown as it was decided, unchanged."""
    watch = summary.get("watch") or {}
    verdict = watch.get("verdict") or entry.get("verdict") or R.IN_PROGRESS
    lines = [f"EMP WATCH  run {summary.get('run_id')}  verdict {verdict}  (deploy decision {summary.get('decision')})"
             + (f"  (interrupted by {entry['interrupted']})" if entry.get("interrupted") else "")]
    lines.append(f"  passes: {entry.get('passes', 0)} in this invocation, {watch.get('passes', '-')} in all; mode "
                 f"{entry.get('mode') or '-'}; window {watch.get('started') or '-'} to {watch.get('ends') or '-'}")
    alerts = watch.get("alerts") or []
    lines += [f"  ALERT {a.get('check')} [{a.get('component') or '-'}] at {a.get('at') or '-'}: "
              f"{first_line(a.get('reason'), 110)}" for a in alerts] or ["  no alerts"]
    rows = _rows({"gates": gates, "failures": []})
    if len(rows) > 1:
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 1)]
        lines += ["  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]
                  for row in rows]
    for failure in entry.get("failures") or []:
        lines.append(f"  FAILED STEP: {failure}")
    enforced = any(R.is_enforced_nogo(g) for g in gates)
    lines += _rollback_lines({"rollback": rollback or {}, "decision": R.NO_GO if enforced else R.GO,
                              "interrupted": entry.get("interrupted")})
    for error in summary.get("record_errors") or []:
        lines.append(f"  NO RECORD: {error}")
    if report and not summary.get("record_errors"):
        lines.append(f"  report: {report}")
    return "\n".join(lines), WATCH_COLORS.get(str(verdict), "bright red")


def told_lines(notices: t.Sequence[t.Mapping[str, t.Any]], trace: t.Mapping[str, t.Any] | None) -> str:
    """Who was told: one line for the notices (target, event, outcome), one for the trace export; "" for neither."""
    lines = []
    if notices:
        told = [f"{n.get('target')} {n.get('event')}" + ("" if n.get("sent") else f" NOT SENT ({n.get('outcome')})")
                for n in notices]
        lines.append(f"  notices: {', '.join(told)}")
    if trace:
        lines.append(f"  {trace_line(trace)}")
    return "".join("\n" + line for line in lines)
