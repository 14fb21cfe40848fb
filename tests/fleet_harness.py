"""A fleet on one machine (docs/fleet.md): N inventory hosts as local connection aliases, each with its own
release directory, a phase play run in batches (emp_batch), and the matching rollback play.

Used by tests/integration/test_fleet_rollout.py and bench/fleet."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

OLD, NEW = "1.0.0", "2.0.0"


def host_names(count: int) -> list[str]:
    return [f"h{i:03d}" for i in range(1, count + 1)]


def make_fleet(root: Path, count: int, faults: tuple[str, ...] = (), components: tuple[str, ...] = ("webhooks",)) -> Path:
    """Per host and component a release dir at OLD (current -> releases/OLD); a fault file on the faulty hosts.
    Returns the inventory."""
    hosts = {}
    for name in host_names(count):
        for component in components:
            base = root / "hosts" / name / component
            (base / "releases" / OLD).mkdir(parents=True)
            (base / "current").symlink_to(f"releases/{OLD}")
            if name in faults:
                (base / "fault").write_text("injected\n")
        hosts[name] = {"fleet_base": str(root / "hosts" / name)}
    inventory = root / "fleet.yml"
    inventory.write_text(json.dumps({"fleet": {"hosts": hosts, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}))
    return inventory


PREFLIGHT = """---
- name: Preflight · the fleet run starts
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Say which batches
      ansible.builtin.debug:
        msg: "emp_batch {{ emp_batch | default('all at once') }}"
"""

PHASE = """
- name: "Phase %(number)d · %(component)s"
  hosts: fleet
  gather_facts: false
  serial: "{{ emp_batch | default(0) }}"
  any_errors_fatal: "{{ emp_max_fail_percentage is not defined }}"
  max_fail_percentage: "{{ emp_max_fail_percentage | default(0) }}"
  vars:
    emp_phase: phase%(number)d
    emp_component: %(component)s
  tasks:
    - name: Release %(component)s
      emp.deploy.release:
        name: %(component)s
        component: %(component)s
        version: "%(new)s"
        base_dir: "{{ fleet_base }}/%(component)s"
        host: "{{ inventory_hostname }}"
        run_id: "{{ lookup('ansible.builtin.env', 'EMP_DEPLOY_RUN_ID') }}"
    - name: Gate %(component)s
      emp.deploy.gate:
        name: %(component)s-fleet
        component: %(component)s
        probe:
          module: ansible.builtin.stat
          args:
            path: "{{ fleet_base }}/%(component)s/fault"
        criteria:
          - not result.stat.exists
        samples: 1
        interval: 0
      when: not (fleet_skip_gate | default(false))
"""

ROLLBACK = """
- name: "Rollback · %(component)s"
  hosts: >-
    {{ ((emp_rollback_hosts['%(component)s'] if '%(component)s' in emp_rollback_hosts | default({}) else 'fleet')
    if '%(component)s' in emp_rollback_components | default([]) else '!all') }}
  serial: "{{ emp_rollback_batches['%(component)s'] if '%(component)s' in emp_rollback_batches | default({}) else 0 }}"
  gather_facts: false
  vars:
    emp_phase: rollback
    emp_component: %(component)s
  tasks:
    - name: Roll %(component)s back
      emp.deploy.release:
        name: %(component)s
        component: %(component)s
        action: rollback
        version: "%(new)s"
        base_dir: "{{ fleet_base }}/%(component)s"
        host: "{{ inventory_hostname }}"
"""


def write_playbooks(root: Path, components: tuple[str, ...] = ("webhooks",)) -> tuple[Path, Path]:
    """One phase play per component, in order, and the rollback play of each, the later phase first."""
    deploy, rollback = root / "fleet_deploy.yml", root / "fleet_rollback.yml"
    deploy.write_text(PREFLIGHT + "".join(PHASE % {"new": NEW, "number": n, "component": c}
                                          for n, c in enumerate(components, 1)))
    rollback.write_text("---" + "".join(ROLLBACK % {"new": NEW, "component": c} for c in reversed(components)))
    return deploy, rollback


def fleet_env(root: Path, rollback: Path) -> dict[str, str]:
    return {"EMP_DEPLOY_REPORT_DIR": str(root / "reports"), "EMP_DEPLOY_ROLLBACK_PLAYBOOK": str(rollback),
            "ANSIBLE_FORKS": "20"}


def current_of(root: Path, name: str, component: str = "webhooks") -> str:
    return os.readlink(root / "hosts" / name / component / "current")
