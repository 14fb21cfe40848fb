# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file only documents the action plugin plugins/action/plan.py (as ansible.builtin.assert does),
# so that ansible-doc emp.deploy.plan renders it.

from __future__ import annotations

DOCUMENTATION = r"""
module: plan
short_description: Print what the phased deployment would do, and what is unsafe, without touching any host
version_added: 0.3.0
description:
  - Reads the deploy playbook's phase plays in order (the plays that set C(emp_phase) and C(emp_component)),
    each component role's GO/NO-GO gate tasks, and the rollback playbook; templates them with each target
    host's inventory variables over the role's defaults; and prints, per phase and component, the hosts,
    the releases, every gate (probe, criteria, soak window, mode), the rollback play and its time budget.
  - Flags what is unsafe, in RV(unsafe) and on the printed plan - a component without a gate, without a
    rollback play, or with a gate whose soak window is longer than the component's rollback budget.
  - Runs on the controller only; it never connects to a host, runs no module and changes nothing.
    C(ansible-playbook deploy.yml -e emp_plan=true) runs it first and ends the playbook after it (the
    P(emp.deploy.go_no_go#callback) callback keeps no record of such a run). See the collection's
    C(docs/safety.md).
author:
  - emp.deploy maintainers (@emp-deploy)
options:
  playbook:
    description: The deploy playbook to plan. Defaults to the collection's C(playbooks/deploy.yml).
    type: path
  rollback_playbook:
    description: The rollback playbook. Defaults to the collection's C(playbooks/rollback.yml).
    type: path
  roles_dir:
    description: Where the component roles are. Defaults to the collection's C(roles).
    type: path
  rollback_budgets:
    description:
      - Rollback budgets as C(component=duration) items, as the callback's
        O(emp.deploy.go_no_go#callback:rollback_budgets). Defaults to the callback's configuration.
    type: list
    elements: str
  rollback_default_budget:
    description: Budget of a component without an item, as O(emp.deploy.go_no_go#callback:rollback_default_budget).
    type: str
  batch:
    description:
      - The batches of a fleet rollout, as the extra var C(emp_batch) gives them to the phase plays' C(serial) - a
        number of hosts, a percentage such as V(10%), or a list of them. Each component's line then shows the host
        count of every batch, as Ansible would split its hosts.
      - Defaults to the run's extra var C(emp_batch) (inventory variables cannot set a play's C(serial)); none -
        each phase play releases all its hosts at once. A malformed value fails with the callback's message.
    type: raw
  max_fail_percentage:
    description:
      - The share of a batch's hosts that may say NO-GO without stopping the rollout, a whole number from 0 to 100.
      - Defaults to the run's extra var C(emp_max_fail_percentage); none - the first NO-GO host stops the run.
    type: raw
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - emp.deploy.attributes.controller_action
attributes:
  check_mode:
    support: full
    details: It never changes anything, in check mode or not.
notes:
  - Host patterns are resolved from the inventory's groups (names and groups joined by C(,) or C(:), with
    C(!) and C(&)); regular expressions are not.
  - A gate whose options cannot be templated for a host is shown with the error instead of its figures.
seealso:
  - module: emp.deploy.gate
  - module: emp.deploy.rollback_ready
"""

EXAMPLES = r"""
# From a terminal: ansible-playbook deploy.yml -e emp_plan=true   (or: make plan)
- name: Print the plan
  emp.deploy.plan:
  run_once: true
"""

RETURN = r"""
plan:
  description: The plan - C(playbook) and C(phases), each with C(phase) and C(components) (C(component), C(play),
    C(hosts), C(batches) (the host count of each batch; one batch of all hosts without O(batch)), C(batch),
    C(max_fail_percentage), C(releases), C(readiness), C(gates), C(rollback_play), C(rollback_budget_s), C(unsafe)).
  returned: always
  type: dict
safe:
  description: Whether nothing is unsafe.
  returned: always
  type: bool
  sample: true
unsafe:
  description: What is unsafe, one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["webhooks: gate webhooks-processing soaks 600 s, longer than its rollback budget 300 s"]
msg:
  description: The plan as printed.
  returned: always
  type: str
"""
