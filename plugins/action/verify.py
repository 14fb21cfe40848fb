# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""emp.deploy.verify: checks a run folder's journal hash chain and summary head on the controller.

The documentation lives in plugins/modules/verify.py, as for ansible.builtin.assert.
"""

from __future__ import annotations

import os
import typing as t

from ansible.plugins.action import ActionBase

from ansible_collections.emp.deploy.plugins.plugin_utils import _journal_chain as chain
from ansible_collections.emp.deploy.plugins.plugin_utils._reports import run_folder

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = dict(
    run_dir=dict(type="path", required=True),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        run_dir = run_folder(args["run_dir"])
        # the key is read here and never returned: only whether the signature matched
        verdict = chain.verify_run(run_dir, os.environ.get(chain.KEY_ENV) or None)
        result.update(changed=False, run_dir=str(run_dir), status=verdict.status, lines=verdict.lines,
                      line=verdict.line, signed=verdict.signed, notes=verdict.notes, msg=verdict.msg)
        if not verdict.ok:
            result["failed"] = True
        return result
