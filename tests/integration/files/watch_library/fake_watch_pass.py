# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test stand-in for one pass of emp.deploy.watch: the n-th call plays the n-th scripted pass (the last
repeats) and returns emp_watch, emp_watch_pass and emp_gates shaped as the watch returns them.

Its state lives in the run folder the go_no_go callback exports (EMP_DEPLOY_RUN_DIR), as the watch's
does, and survives invocations. Each call also appends to calls.jsonl there how many watch_pass
records the run's journal held when the call started, so a test sees passes journaled as they happen.
A pass may sleep (after touching `<sleep_marker>`), so a test can interrupt a watch mid-pass.
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: fake_watch_pass
short_description: Scripted watch pass for the go_no_go callback's tests
description: The n-th call plays the n-th scripted pass; the last repeats.
options:
  script:
    description:
      - Passes, one per call. Each may have C(alerts) (check, component, mode), C(final) (check, component,
        decision), C(done) and C(sleep) (seconds).
    type: list
    elements: dict
    required: true
  sleep_marker:
    description: File touched before a pass sleeps.
    type: path
"""


def stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def gate(check: dict, decision: str, at: str, run_id: str, number: int) -> dict:
    mode = check.get("mode", "enforce")
    return {"id": f"watch:{run_id}:{check['check']}:{number}", "name": check["check"], "phase": "watch",
            "component": check.get("component"), "checklist_ref": "post-deploy", "mode": mode,
            "enforced": mode == "enforce", "decision": decision,
            "reason": check.get("reason", f"{check['check']}: scripted {decision}"), "started": at, "ended": at,
            "duration_s": 0.0, "counts": {"planned": 1, "taken": 1, "passed": int(decision == "GO"),
                                          "failed": int(decision != "GO"), "errors": 0, "no_data": 0}}


def journal_passes(run_dir: str) -> int:
    try:
        with open(os.path.join(run_dir, "journal.jsonl"), encoding="utf-8") as handle:
            # canonical JSON lines: no spaces after the colon (docs/records.md)
            return sum(1 for line in handle if '"type":"watch_pass"' in line)
    except OSError:
        return 0


def main() -> None:
    module = AnsibleModule({"script": {"type": "list", "elements": "dict", "required": True},
                            "sleep_marker": {"type": "path"}}, supports_check_mode=True)
    run_dir = os.environ.get("EMP_DEPLOY_RUN_DIR")
    if not run_dir or not os.path.isabs(run_dir):
        module.fail_json(msg=f"EMP_DEPLOY_RUN_DIR is not an absolute path: {run_dir!r}")
    state_path = os.path.join(run_dir, "fake-watch.json")
    state = {"passes": 0, "alerts": [], "started": stamp(), "window_s": 600}
    if os.path.exists(state_path):
        with open(state_path, encoding="utf-8") as handle:
            state = json.load(handle)
    with open(os.path.join(run_dir, "calls.jsonl"), "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"call": state["passes"] + 1, "journal_passes": journal_passes(run_dir)}) + "\n")
    script = module.params["script"]
    step = script[min(state["passes"], len(script) - 1)]
    if step.get("sleep"):
        open(module.params["sleep_marker"], "w", encoding="utf-8").close()
        time.sleep(float(step["sleep"]))
    state["passes"] += 1
    at = stamp()
    run_id = os.path.basename(run_dir)
    gates = [gate(a, "NO-GO", at, run_id, state["passes"]) for a in step.get("alerts", [])]
    gates += [gate(f, f.get("decision", "GO"), at, run_id, state["passes"]) for f in step.get("final", [])]
    state["alerts"] += [{"check": a["check"], "component": a.get("component"), "layer": "alert",
                         "kind": "no_data" if a.get("mode") == "warn" else "breach",
                         "reason": a.get("reason", f"{a['check']}: scripted NO-GO"), "at": at}
                        for a in step.get("alerts", [])]
    done = bool(step.get("done"))
    failed_final = any(g["decision"] != "GO" for g in gates if g["name"] in [f["check"] for f in step.get("final", [])])
    verdict = "FAILED" if state["alerts"] or failed_final else ("SUCCESS" if done else "IN_PROGRESS")
    with open(state_path, "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    results = [{"check": g["name"], "layer": "alert", "component": g["component"], "checklist_ref": "post-deploy",
                "decision": g["decision"], "value": 1.0, "reason": g["reason"]} for g in gates]
    enforced_nogo = any(g["decision"] == "NO-GO" and g["mode"] == "enforce" for g in gates)
    module.exit_json(
        changed=False, failed=enforced_nogo, msg="watch alert" if enforced_nogo else "pass done",
        emp_watch={"run_id": run_id, "window_s": state["window_s"], "started": state["started"], "ends": "later",
                   "passes": state["passes"], "checks": ["webhook_failures", "job_rate"], "alerts": state["alerts"],
                   "verdict": verdict, "done": done, "next_due": None if done else "soon"},
        emp_watch_pass={"at": at, "layers": ["alert"], "results": results},
        emp_gates=gates)


if __name__ == "__main__":
    main()
