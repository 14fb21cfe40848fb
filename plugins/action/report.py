# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""emp.deploy.report: renders a run's reports from its journal on the controller.

The documentation lives in plugins/modules/report.py, as for ansible.builtin.assert.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

from ansible.plugins.action import ActionBase

from ansible_collections.emp.deploy.plugins.plugin_utils._reports import run_folder, write_reports

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = dict(
    run_dir=dict(type="path", required=True),
    index=dict(type="bool", default=True),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        run_dir = run_folder(args["run_dir"])
        outcome = write_reports(run_dir, index=args["index"], check_mode=bool(self._task.check_mode))
        result.update(run_dir=str(run_dir), decision=outcome.decision, files=outcome.files, changed=outcome.changed)
        if outcome.errors:
            result.update(failed=True, msg="; ".join(outcome.errors))
        else:
            verb = "would write" if self._task.check_mode else "rendered"
            result["msg"] = f"{outcome.decision}: {verb} {', '.join(Path(p).name for p in outcome.files)}"
        return result
