"""The run record names the release also when the inventory, not an extra var, sets emp_release."""
from __future__ import annotations

import json

import pytest

from conftest import run_playbook, write_playbook


@pytest.mark.compat
def test_emp_release_from_inventory_group_vars(tmp_path):
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        "all:\n  hosts:\n    sandbox:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: '{{ ansible_playbook_python }}'\n")
    (inventory / "group_vars" / "all" / "release.yml").write_text(
        "emp_release_base: '2.4'\nemp_release: '{{ emp_release_base }}.1'\n")
    playbook = write_playbook(tmp_path, """
- name: A gate
  emp.deploy.gate:
    name: label
    component: redis
    evidence: {ok: true}
    criteria: [result.ok]
""")
    reports = tmp_path / "reports"
    proc = run_playbook(playbook, env={"EMP_DEPLOY_REPORT_DIR": str(reports)}, args=["-i", str(inventory)])
    assert proc.returncode == 0, proc.stdout[-2000:]
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    run_start = json.loads((run_dir / "journal.jsonl").read_text().splitlines()[0])
    assert run_start["type"] == "run_start" and run_start["emp_release"] == "2.4.1"
    assert json.loads((run_dir / "summary.json").read_text())["emp_release"] == "2.4.1"
