# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""junit.xml: the run as test results for CI (GitLab, Jenkins, GitHub test reporters).

One testsuite per phase, one testcase per gate; an enforced NO-GO is a <failure> (the reason as its
message, the evidence as its text), a gate that could not measure an <error>; observe and warn gates
(and NO-GOs under ignore_errors) pass, with the would-be decision in <system-out>; a waived gate (WAIVED) is
<skipped> with who waived it and why. A failed deployment
step is a failed testcase of its phase. The rollback's gates and the watch's checks get suites of their own.
"""

from __future__ import annotations

import re
import typing as t
import xml.etree.ElementTree as ET

from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils._report_model import (
    RunView, Watch, fmt_figure, history_text, is_could_not_measure, waiver_text,
)

# characters XML 1.0 cannot carry (control characters from a probe's output)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def clean(value: t.Any) -> str:
    return _NOT_XML.sub("?", "" if value is None else str(value))


def _seconds(value: t.Any) -> str:
    try:
        return f"{max(float(value), 0.0):.3f}"
    except (TypeError, ValueError):
        return "0.000"


def evidence(gate: t.Mapping[str, t.Any]) -> str:
    """The gate's criteria and every sample's figures, as plain text."""
    if gate.get("redacted"):
        return "redacted (no_log): no figures were recorded"
    lines = [f"reason: {gate.get('reason')}"]
    history = history_text(gate)
    if history:
        lines.append(f"history: {history}")
    for criterion in gate.get("criteria") or []:
        lines.append(f"criterion {criterion.get('criterion')}: {criterion.get('outcome')} "
                     f"({criterion.get('held', 0)} held, {criterion.get('failed', 0)} failed, {criterion.get('errors', 0)} errors)")
    for sample in gate.get("samples") or []:
        figures = ", ".join(f"{k}={fmt_figure(v)}" for k, v in (sample.get("figures") or {}).items())
        failed = [c.get("criterion") for c in sample.get("criteria") or [] if not c.get("held")]
        parts = (figures, "failed: " + "; ".join(map(str, failed)) if failed else "", sample.get("error") or "",
                 sample.get("problem") or "")
        detail = "; ".join(part for part in parts if part)
        lines.append(f"sample {sample.get('index')} at {sample.get('time')}: {sample.get('outcome')} {detail}".rstrip())
    return "\n".join(lines)


def _testcase(suite: ET.Element, name: str, classname: str, time: t.Any) -> ET.Element:
    return ET.SubElement(suite, "testcase", {"name": clean(name), "classname": clean(classname), "time": _seconds(time)})


def _gate_case(suite: ET.Element, gate: t.Mapping[str, t.Any], classname: str) -> str:
    """Adds one gate's testcase; returns its status: passed, failure or error."""
    case = _testcase(suite, str(gate.get("name")), classname, gate.get("duration_s"))
    decision, mode = gate.get("decision"), gate.get("mode")
    if decision == R.WAIVED:
        ET.SubElement(case, "skipped", {"message": clean(waiver_text(gate))})
        ET.SubElement(case, "system-out").text = clean(f"{mode} mode: {R.WAIVED}\n{evidence(gate)}")
        return "skipped"
    if R.is_enforced_nogo(gate):
        reason = "redacted (no_log)" if gate.get("redacted") else str(gate.get("reason"))
        if is_could_not_measure(gate):
            ET.SubElement(case, "error", {"message": clean(f"could not measure: {reason}"),
                                          "type": "could-not-measure"}).text = clean(evidence(gate))
            return "error"
        ET.SubElement(case, "failure", {"message": clean(reason), "type": R.NO_GO}).text = clean(evidence(gate))
        return "failure"
    if decision == R.NO_GO:
        why = "ignored (ignore_errors)" if gate.get("ignored") else f"{mode} mode, not enforced"
        out = f"would have decided NO-GO ({why}): {gate.get('reason')}\n{evidence(gate)}"
    else:
        out = f"{mode} mode: {decision}\n{evidence(gate)}"
    ET.SubElement(case, "system-out").text = clean(out)
    return "passed"


def _step_case(suite: ET.Element, failure: t.Mapping[str, t.Any], classname: str) -> str:
    case = _testcase(suite, f"step {failure.get('task')} on {failure.get('host')}", classname, 0)
    ET.SubElement(case, "failure", {"message": clean(f"{failure.get('reason')}: {failure.get('msg')}"),
                                    "type": "step-failed"}).text = clean(
        f"task {failure.get('task')} ({failure.get('action')}) on {failure.get('host')}: {failure.get('msg')}")
    return "failure"


def _suite(root: ET.Element, name: str, started: t.Any, duration: t.Any, hostname: str) -> ET.Element:
    attrs = {"name": clean(name), "tests": "0", "failures": "0", "errors": "0", "skipped": "0",
             "time": _seconds(duration)}
    if started:
        attrs["timestamp"] = clean(str(started).replace("Z", ""))
    attrs["hostname"] = clean(hostname or "localhost")
    return ET.SubElement(root, "testsuite", attrs)


def _tally(suite: ET.Element, statuses: list[str]) -> None:
    suite.set("tests", str(len(statuses)))
    suite.set("failures", str(statuses.count("failure")))
    suite.set("errors", str(statuses.count("error")))
    suite.set("skipped", str(statuses.count("skipped")))


def render_junit(view: RunView) -> str:
    host = str(view.run.get("controller") or "localhost")
    root = ET.Element("testsuites", {"name": clean(f"emp.deploy run {view.run_id} ({view.release})"),
                                     "tests": "0", "failures": "0", "errors": "0",
                                     "time": _seconds(view.duration_s)})
    for number, phase in enumerate(view.phases):
        label = f"{phase.get('phase') or '-'} · {phase.get('component') or '-'}"
        suite = _suite(root, f"phase {label}", phase.get("started"), phase.get("duration_s"), host)
        classname = f"emp.deploy.{phase.get('phase') or 'phase'}.{phase.get('component') or 'component'}"
        statuses = [_gate_case(suite, g, classname) for g, p in zip(view.gates, view.gate_phase) if p == number]
        statuses += [_step_case(suite, f, classname) for f, p in zip(view.failures, view.failure_phase) if p == number]
        _tally(suite, statuses)
    rest = [g for g, p in zip(view.gates, view.gate_phase) if p < 0]
    rest_failures = [f for f, p in zip(view.failures, view.failure_phase) if p < 0]
    if rest or rest_failures:
        suite = _suite(root, "outside any phase", view.started, None, host)
        statuses = [_gate_case(suite, g, "emp.deploy.run") for g in rest]
        statuses += [_step_case(suite, f, "emp.deploy.run") for f in rest_failures]
        _tally(suite, statuses)
    if view.rollback_gates or view.rollback_failures:
        rollback = view.rollback or {}
        suite = _suite(root, "rollback", rollback.get("started"), rollback.get("duration_s"), host)
        statuses = [_gate_case(suite, g, "emp.deploy.rollback") for g in view.rollback_gates]
        for failure in view.rollback_failures:
            case = _testcase(suite, f"rollback step {failure.get('task')}", "emp.deploy.rollback", 0)
            ET.SubElement(case, "failure", {"message": clean(failure.get("task")), "type": "rollback-step-failed"})
            statuses.append("failure")
        _tally(suite, statuses)
    if view.watch is not None:
        _watch_suite(root, view.watch, host)
    suites = root.findall("testsuite")
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(s.get(key) or 0) for s in suites)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _watch_suite(root: ET.Element, watch: Watch, host: str) -> None:
    """One testcase per watch check (its passes) and per gate the watch recorded (alerts, final criteria)."""
    suite = _suite(root, "watch", watch.started, watch.window_s, host)
    statuses = []
    for check in watch.checks.values():
        case = _testcase(suite, f"check {check['check']}", f"emp.deploy.watch.{check.get('component') or 'run'}", 0)
        history = check["history"]
        bad = [h for h in history if h["decision"] == R.NO_GO]
        lines = "\n".join(f"{h.get('at')} {h['decision']} value={fmt_figure(h.get('value'))} {h.get('reason') or ''}".rstrip()
                          for h in history)
        if bad:
            ET.SubElement(case, "failure", {"message": clean(bad[-1].get("reason") or "NO-GO"),
                                            "type": R.NO_GO}).text = clean(lines)
            statuses.append("failure")
        elif history and history[-1]["decision"] != R.GO:
            ET.SubElement(case, "error", {"message": clean(f"could not measure: {history[-1].get('reason')}"),
                                          "type": "could-not-measure"}).text = clean(lines)
            statuses.append("error")
        else:
            ET.SubElement(case, "system-out").text = clean(lines)
            statuses.append("passed")
    for gate in watch.gates:
        statuses.append(_gate_case(suite, gate, f"emp.deploy.watch.{gate.get('component') or 'run'}"))
    _tally(suite, statuses)
