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


def make_fleet(root: Path, count: int, faults: tuple[str, ...] = ()) -> Path:
    """Release dirs at OLD (current -> releases/OLD) for every host; a fault file on the faulty ones.
    Returns the inventory."""
    hosts = {}
    for name in host_names(count):
        base = root / "hosts" / name
        (base / "releases" / OLD).mkdir(parents=True)
        (base / "current").symlink_to(f"releases/{OLD}")
        if name in faults:
            (base / "fault").write_text("injected\n")
        hosts[name] = {"fleet_base": str(base)}
    inventory = root / "fleet.yml"
    inventory.write_text(json.dumps({"fleet": {"hosts": hosts, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}))
    return inventory


DEPLOY = """---
- name: Preflight · the fleet run starts
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Say which batches
      ansible.builtin.debug:
        msg: "emp_batch {{ emp_batch | default('all at once') }}"

- name: "Phase 3 · application · 4. webhook service changes"
  hosts: fleet
  gather_facts: false
  serial: "{{ emp_batch | default(0) }}"
  any_errors_fatal: "{{ emp_max_fail_percentage is not defined }}"
  max_fail_percentage: "{{ emp_max_fail_percentage | default(0) }}"
  vars:
    emp_phase: application
    emp_component: webhooks
  tasks:
    - name: Release the webhook service
      emp.deploy.release:
        name: webhook
        component: webhooks
        version: "%(new)s"
        base_dir: "{{ fleet_base }}"
        host: "{{ inventory_hostname }}"
        run_id: "{{ lookup('ansible.builtin.env', 'EMP_DEPLOY_RUN_ID') }}"
    - name: Gate the webhook service
      emp.deploy.gate:
        name: webhooks-fleet
        component: webhooks
        probe:
          module: ansible.builtin.stat
          args:
            path: "{{ fleet_base }}/fault"
        criteria:
          - not result.stat.exists
        samples: 1
        interval: 0
      when: not (fleet_skip_gate | default(false))
"""

ROLLBACK = """---
- name: "Rollback · webhooks · webhook service changes"
  hosts: "{{ (emp_rollback_hosts['webhooks'] if 'webhooks' in emp_rollback_hosts | default({}) else 'fleet') if 'webhooks' in emp_rollback_components | default([]) else '!all' }}"
  serial: "{{ emp_rollback_batches['webhooks'] if 'webhooks' in emp_rollback_batches | default({}) else 0 }}"
  gather_facts: false
  vars:
    emp_phase: rollback
    emp_component: webhooks
  tasks:
    - name: Roll the webhook service back
      emp.deploy.release:
        name: webhook
        component: webhooks
        action: rollback
        version: "%(new)s"
        base_dir: "{{ fleet_base }}"
        host: "{{ inventory_hostname }}"
"""


def write_playbooks(root: Path) -> tuple[Path, Path]:
    deploy, rollback = root / "fleet_deploy.yml", root / "fleet_rollback.yml"
    deploy.write_text(DEPLOY % {"new": NEW})
    rollback.write_text(ROLLBACK % {"new": NEW})
    return deploy, rollback


def fleet_env(root: Path, rollback: Path) -> dict[str, str]:
    return {"EMP_DEPLOY_REPORT_DIR": str(root / "reports"), "EMP_DEPLOY_ROLLBACK_PLAYBOOK": str(rollback),
            "ANSIBLE_FORKS": "20"}


def current_of(root: Path, name: str) -> str:
    return os.readlink(root / "hosts" / name / "current")
