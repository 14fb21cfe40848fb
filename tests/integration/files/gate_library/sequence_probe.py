# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test probe for emp.deploy.gate: the n-th call plays the n-th scripted outcome (the last repeats).

Outcomes: {"ok": {figures}} returns the figures; {"unhealthy": {figures}, "problem": "..."} fails
the task with its measurements (healthy: false); {"error": "..."} fails without measurements;
{"crash": true} dies with a traceback; {"unreachable": true} returns reachable: false.
Every call appends one line to `calls`, so a test can count the samples that really ran.
"""
from __future__ import annotations

import json

from ansible.module_utils.basic import AnsibleModule


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
    if "unhealthy" in outcome:
        module.fail_json(msg=outcome.get("problem", "unhealthy"), healthy=False, problems=[outcome.get("problem", "unhealthy")],
                         changed=False, **outcome["unhealthy"])
    module.exit_json(changed=False, healthy=True, problems=[], **outcome.get("ok", {}))


if __name__ == "__main__":
    main()
