# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test probe for emp.deploy.gate: the n-th call plays the n-th scripted outcome (the last repeats).

Outcomes: {"ok": {figures}} returns the figures; {"unhealthy": {figures}, "problem": "..."} fails
the task with its measurements (healthy: false); {"error": "..."} fails without measurements;
{"crash": true} dies with a traceback; {"unreachable": true} returns reachable: false;
{"changed": "what it did"} measures but reports changed (a probe that lies about being read-only).
Every call appends one line to `calls` with the call's check mode, so a test can count the samples
that really ran and see how they ran.
"""
from __future__ import annotations

import json

from ansible.module_utils.basic import AnsibleModule

# Declares itself read-only the way emp.deploy.gate reads it: check_mode and read_only support full.
DOCUMENTATION = r"""
module: sequence_probe
short_description: Scripted probe for the gate's tests
description: The n-th call plays the n-th scripted outcome.
options:
  script:
    description: Outcomes, one per call; the last repeats.
    type: list
    elements: raw
    required: true
  calls:
    description: File that gets one line per call.
    type: path
    required: true
attributes:
  check_mode:
    description: Runs the same in check mode.
    support: full
  read_only:
    description: Never changes its target.
    support: full
"""


def main() -> None:
    module = AnsibleModule(argument_spec=dict(script=dict(type="list", elements="raw", required=True),
                                              calls=dict(type="path", required=True)),
                           supports_check_mode=True)
    calls = module.params["calls"]
    try:
        with open(calls, encoding="utf-8") as handle:
            done = len(handle.readlines())
    except FileNotFoundError:
        done = 0
    with open(calls, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"call": done + 1, "check_mode": module.check_mode}) + "\n")
    script = module.params["script"]
    outcome = script[min(done, len(script) - 1)]
    if outcome.get("crash"):
        raise RuntimeError("probe crashed on purpose")
    if outcome.get("unreachable"):
        module.fail_json(msg="target 127.0.0.1:1 refused the connection", reachable=False, healthy=False,
                         problems=["target 127.0.0.1:1 refused the connection"], changed=False)
    if "error" in outcome:
        module.fail_json(msg=outcome["error"], changed=False)
    if "changed" in outcome:
        module.exit_json(changed=True, msg=outcome["changed"], healthy=True, problems=[], **outcome.get("ok", {}))
    if "unhealthy" in outcome:
        module.fail_json(msg=outcome.get("problem", "unhealthy"), healthy=False, problems=[outcome.get("problem", "unhealthy")],
                         changed=False, **outcome["unhealthy"])
    module.exit_json(changed=False, healthy=True, problems=[], **outcome.get("ok", {}))


if __name__ == "__main__":
    main()
