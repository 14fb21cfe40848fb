# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file only documents the action plugin plugins/action/report.py (as ansible.builtin.assert does),
# so that ansible-doc emp.deploy.report renders it.

from __future__ import annotations

DOCUMENTATION = r"""
module: report
short_description: Render a deployment run's reports (HTML, JUnit, incident draft) from its journal
version_added: 0.1.0
description:
  - Reads C(journal.jsonl) of one run folder of the P(emp.deploy.go_no_go#callback) callback and writes
    C(report.html) (one self-contained page, no network access when viewed), C(junit.xml) (one testsuite
    per phase, one testcase per gate) and, for a NO-GO or a watch alert, C(incident.md) (a draft of the
    incident report) into that folder, then rewrites C(index.html) of the folder above, which lists every run.
  - The callback writes the same files when a run ends; this action renders them again from the journal
    alone, byte for byte the same, for example after a watch added to the journal, for a run whose machine
    went down, or with a newer version of the collection. C(summary.json) is not needed.
  - Runs on the controller; the files are written where the controller sees O(run_dir).
  - The formats are described in the collection's C(docs/reports.md).
author:
  - emp.deploy maintainers (@emp-deploy)
options:
  run_dir:
    description:
      - The run folder, C(<report_dir>/<run_id>), holding C(journal.jsonl).
    type: path
    required: true
  index:
    description:
      - Rewrite C(index.html) in the parent folder of O(run_dir) (the report folder), listing every run there.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - emp.deploy.attributes.controller_action
attributes:
  check_mode:
    support: full
    details: Renders in memory and returns which files would be written; writes nothing.
notes:
  - A missing or empty journal, or one of a newer record format (C(schema_version)), fails the task with
    a message naming the file; nothing is written then.
  - The task reports C(changed) only when a file's content changed, so rendering twice changes nothing.
seealso:
  - plugin: emp.deploy.go_no_go
    plugin_type: callback
"""

EXAMPLES = r"""
- name: Render the reports of a run again
  emp.deploy.report:
    run_dir: deploy-reports/20261203T121500Z-a1b2c3

# The collection's playbook does the same from a terminal, a CI job or AWX:
#   ansible-playbook emp.deploy.report -e emp_run_dir=deploy-reports/20261203T121500Z-a1b2c3
"""

RETURN = r"""
run_dir:
  description: The run folder, as an absolute path.
  returned: always
  type: str
  sample: /srv/deploy/deploy-reports/20261203T121500Z-a1b2c3
decision:
  description: The run's decision as the report shows it (V(GO), V(NO-GO), V(no gate), V(interrupted), V(unfinished)).
  returned: success
  type: str
  sample: NO-GO
files:
  description: Each file rendered and what happened to it (V(written), V(unchanged), or V(would write) in check mode).
  returned: success
  type: dict
  sample:
    /srv/deploy/deploy-reports/20261203T121500Z-a1b2c3/report.html: written
    /srv/deploy/deploy-reports/20261203T121500Z-a1b2c3/junit.xml: unchanged
    /srv/deploy/deploy-reports/index.html: written
"""
