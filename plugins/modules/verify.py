# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file only documents the action plugin plugins/action/verify.py (as ansible.builtin.assert does),
# so that ansible-doc emp.deploy.verify renders it.

from __future__ import annotations

DOCUMENTATION = r"""
module: verify
short_description: Check that a deployment run's record was not changed, removed or reordered
version_added: 0.1.0
description:
  - Reads C(journal.jsonl) and C(summary.json) of one run folder of the P(emp.deploy.go_no_go#callback)
    callback and checks the journal's hash chain, line by line (every line carries its position C(seq) and
    the SHA-256 of the line before it, C(prev_sha256)), then the last line against the head hash and line
    count in C(summary.json) (C(journal_head)).
  - Succeeds on an intact record. Fails naming the first line that was changed, removed or reordered
    (C(line N)), when C(summary.json) counts more lines than the journal holds, or when its head does not
    match the journal.
  - A run killed while it wrote a line leaves a cut last line; that verifies as C(truncated after line N),
    not as tampered (the task succeeds, with RV(status=truncated)). A cut line that the next writer ended
    and declared (the watcher of a killed run does) is accepted and listed in RV(notes).
  - "With E(EMP_DEPLOY_RECORD_KEY) set on the controller, the head's HMAC-SHA256 signature (written when the
    run had the same variable) is checked too: a wrong key, a missing signature or a rewritten head fails.
    The key is never printed or returned."
  - The format and the canonical JSON the hashes cover are described in the collection's C(docs/records.md).
  - Runs on the controller and changes nothing.
author:
  - emp.deploy maintainers (@emp-deploy)
options:
  run_dir:
    description:
      - The run folder, C(<report_dir>/<run_id>), holding C(journal.jsonl).
    type: path
    required: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - emp.deploy.attributes.controller_action
attributes:
  check_mode:
    support: full
    details: Reads only; it runs the same in check mode.
notes:
  - Lines appended after C(summary.json)'s head (a watch still running) are checked as a chain and listed in
    RV(notes) as not covered by the head.
  - The chain makes a changed record evident; whoever can rewrite the whole folder can forge a consistent one.
    Signing the head with a key that the deploy host holds and the folder's readers do not closes that gap.
seealso:
  - plugin: emp.deploy.go_no_go
    plugin_type: callback
  - module: emp.deploy.report
"""

EXAMPLES = r"""
- name: Check a run's record
  emp.deploy.verify:
    run_dir: deploy-reports/20261203T121500Z-a1b2c3
"""

RETURN = r"""
status:
  description: V(intact), V(truncated) (cut by a kill, not changed), V(tampered) or V(unverifiable).
  returned: always
  type: str
  sample: intact
lines:
  description: How many lines the journal holds (a cut last line not counted).
  returned: always
  type: int
  sample: 42
line:
  description: The first line changed, removed or reordered; null when none is.
  returned: always
  type: int
  sample: 7
signed:
  description: True when the head signature matched, false when it did not, null when none was checked.
  returned: always
  type: bool
notes:
  description: What the check could not cover or accepted (a cut line ended by the next writer, lines after the head).
  returned: always
  type: list
  elements: str
msg:
  description: The verdict in one sentence, naming the line.
  returned: always
  type: str
  sample: "line 7 was changed (line 8 holds the hash of another line 7)"
"""
