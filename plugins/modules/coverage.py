# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file only documents the action plugin plugins/action/coverage.py (as ansible.builtin.assert does),
# so that ansible-doc emp.deploy.coverage renders it.

from __future__ import annotations

DOCUMENTATION = r"""
module: coverage
short_description: Report which lines of the deployment checklist a run judged, with their status and evidence
version_added: 0.3.0
description:
  - Reads C(journal.jsonl) of one run folder of the P(emp.deploy.go_no_go#callback) callback and writes
    C(coverage.json) and C(coverage.md) into that folder (each replaced atomically), one entry per line of
    the checklist's pre-deployment testing section, its deployment sequence's GO/NO-GO lines, its success
    criteria and performance targets, and its list of what still requires manual verification.
  - Each line gets a status. V(automated-passed) when every gate that named the line (its C(checklist_ref))
    said GO with measured samples; V(automated-failed) when one said NO-GO, could not measure, or would have
    said NO-GO in observe mode (the evidence says which); V(manual) when no gate judged it in this run (the
    entry names what would cover it), when its gate task was skipped (evidence C(skipped:)), when its gate
    said GO without measuring, or when nothing can check it (with the reason); V(not-applicable) when
    O(not_applicable) says so.
  - A gate whose C(checklist_ref) names no line is listed after the lines with status V(unmapped), never
    dropped.
  - The go_no_go callback writes the same files at the end of a run whose gates name checklist lines by id
    (a predeploy run); this action writes them again from the journal alone, byte for byte the same, on any
    run folder (a deploy run after its watch, for example), and prints the table.
  - Runs on the controller; the files are written where the controller sees O(run_dir).
  - The lines, their ids and what covers each are in the collection's C(docs/checklist.md); the report in
    C(docs/coverage.md).
author:
  - emp.deploy maintainers (@emp-deploy)
options:
  run_dir:
    description:
      - The run folder, C(<report_dir>/<run_id>), holding C(journal.jsonl).
      - Default the folder of the run this task is part of (C(EMP_DEPLOY_RUN_DIR), exported by the go_no_go
        callback), so the last task of a playbook reports on its own run.
    type: path
  not_applicable:
    description:
      - "Lines that do not apply to this deployment, as line id to the reason, for example
        C({testing/ngrok/auto-restart: no ngrok in production}). A line without any gate in the run is then
        V(not-applicable) with that reason; a line that a gate judged keeps the gate's status."
      - An id that names no line fails the task.
    type: dict
    default: {}
  show:
    description:
      - Print the table on the controller's output.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - emp.deploy.attributes.controller_action
attributes:
  check_mode:
    support: full
    details: Builds the report and returns it and which files would change; writes nothing.
notes:
  - A missing run folder or journal, a journal line that is not a record (only a last line cut short by a kill is
    left out, with a warning), or a record format newer than this collection's fails the task with a message
    naming the file and line; nothing is written then.
  - Run as the last task of a playbook, the journal has no C(run_end) yet, so the report says the run is
    V(unfinished); the callback rewrites both files when the run ends.
  - The task reports C(changed) only when a file's content changed.
seealso:
  - module: emp.deploy.report
  - module: emp.deploy.gate
  - plugin: emp.deploy.go_no_go
    plugin_type: callback
"""

EXAMPLES = r"""
- name: Checklist coverage of this run (the last task of the predeploy playbook)
  emp.deploy.coverage:

- name: Coverage of an earlier run, some lines marked as not applicable here
  emp.deploy.coverage:
    run_dir: deploy-reports/20261203T121500Z-a1b2c3
    not_applicable:
      testing/ngrok/auto-restart: ngrok runs only in the development environment
  register: emp_coverage

- name: Fail when a checklist line failed
  ansible.builtin.assert:
    that: emp_coverage.counts['automated-failed'] == 0
"""

RETURN = r"""
run_dir:
  description: The run folder, as an absolute path.
  returned: always
  type: str
  sample: /srv/deploy/deploy-reports/20261203T121500Z-a1b2c3
files:
  description: Each file and what happened to it (V(written), V(unchanged), or V(would write) in check mode).
  returned: success
  type: dict
  sample:
    /srv/deploy/deploy-reports/20261203T121500Z-a1b2c3/coverage.json: written
    /srv/deploy/deploy-reports/20261203T121500Z-a1b2c3/coverage.md: written
counts:
  description: How many entries have each status (V(unmapped) counts the gates that name no line).
  returned: success
  type: dict
  sample: {automated-passed: 20, automated-failed: 1, manual: 38, not-applicable: 0, unmapped: 0}
coverage:
  description:
    - The entries of C(coverage.json), one per line then one per unknown C(checklist_ref).
    - C(id), C(line) (the checklist's words), C(section), C(group), C(status), C(covered_by) (the gates that
      judged it with their probe module, or what would cover it), C(evidence) (each gate's decision, mode,
      reason with the figures, and samples; or why it is manual or not applicable), C(gates) (per gate
      C(id), C(name), C(phase), C(component), C(host), C(probe_module), C(mode), C(decision), C(reason),
      C(counts), C(checklist_ref)).
  returned: success
  type: list
  elements: dict
table:
  description: The Markdown table of C(coverage.md), without its heading.
  returned: success
  type: str
warnings:
  description: What the report left out (a journal line cut short by a kill).
  returned: success
  type: list
  elements: str
"""
