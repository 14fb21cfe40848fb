# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""emp.deploy.coverage: the checklist coverage report of a run, from its journal, on the controller.

The documentation lives in plugins/modules/coverage.py, as for ansible.builtin.assert.
"""

from __future__ import annotations

import os
import typing as t
from pathlib import Path

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.emp.deploy.plugins.plugin_utils import _coverage as coverage
from ansible_collections.emp.deploy.plugins.plugin_utils._records import RUN_DIR_ENV
from ansible_collections.emp.deploy.plugins.plugin_utils._reports import write_text_atomically

display = Display()

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = dict(
    run_dir=dict(type="path"),
    not_applicable=dict(type="dict", default={}),
    show=dict(type="bool", default=True),
)


def run_dir_of(given: str | None, environ: t.Mapping[str, str]) -> Path:
    """The run folder given, else the running run's (the go_no_go callback exports it)."""
    if given:
        return Path(given).expanduser().resolve()
    current = environ.get(RUN_DIR_ENV)
    if not current:
        raise AnsibleActionFail(f"give run_dir (a run folder, <report_dir>/<run_id>): this play runs without the "
                                f"emp.deploy.go_no_go callback's {RUN_DIR_ENV}, so there is no current run folder")
    return Path(current).resolve()


def write_files(run_dir: Path, files: dict[str, str], check_mode: bool) -> dict[str, str]:
    """path -> written | unchanged | would write; each file replaced atomically."""
    states = {}
    for name, text in files.items():
        path = run_dir / name
        if check_mode:
            try:
                same = path.read_bytes() == text.encode("utf-8")
            except OSError:
                same = False
            states[str(path)] = "unchanged" if same else "would write"
            continue
        try:
            states[str(path)] = "written" if write_text_atomically(path, text) else "unchanged"
        except OSError as exc:
            raise AnsibleActionFail(f"writing {path} failed ({exc.strerror or exc})") from None
    return states


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        run_dir = run_dir_of(args["run_dir"], os.environ)
        not_applicable = {str(k): str(v) for k, v in (args["not_applicable"] or {}).items()}
        try:
            report = coverage.load(run_dir, not_applicable)
        except coverage.CoverageError as exc:
            raise AnsibleActionFail(f"emp.deploy.coverage: {exc}") from None
        files = coverage.render(report)
        states = write_files(run_dir, files, bool(self._task.check_mode))
        table = coverage.render_table(report)
        summary = coverage.summary_line(report)
        if args["show"]:
            display.display(f"CHECKLIST COVERAGE  run {report.run_id}  ({summary})\n{table}")
        result.update(changed=any(s in ("written", "would write") for s in states.values()), run_dir=str(run_dir),
                      files=states, counts=report.counts, coverage=report.entries, table=table,
                      warnings=report.warnings, msg=f"run {report.run_id}: {summary}")
        return result
