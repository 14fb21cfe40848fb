"""Fleet rollout (docs/fleet.md) with the real ansible-playbook: a phase play run in batches (emp_batch) over
local connection aliases, each host with its own release directory under the test's temp path."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import fleet_harness as fh
import pytest

from conftest import BIN, ROOT


def run_fleet(tmp_path: Path, count: int, extra_vars: list[dict], faults: tuple[str, ...] = (),
              run_id: str = "fleet-run") -> tuple[subprocess.CompletedProcess, dict | None]:
    inventory = fh.make_fleet(tmp_path, count, faults)
    deploy, rollback = fh.write_playbooks(tmp_path)
    cmd = [str(BIN / "ansible-playbook"), str(deploy), "-i", str(inventory)]
    for variables in extra_vars:
        cmd += ["-e", json.dumps(variables)]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", EMP_DEPLOY_RUN_ID=run_id,
               PATH=f"{BIN}:{os.environ.get('PATH', '')}", **fh.fleet_env(tmp_path, rollback))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=str(ROOT), check=False)
    summary_path = tmp_path / "reports" / run_id / "summary.json"
    return proc, json.loads(summary_path.read_text()) if summary_path.exists() else None


def journal(tmp_path: Path, run_id: str = "fleet-run") -> list[dict]:
    lines = (tmp_path / "reports" / run_id / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def untouched(tmp_path: Path, name: str) -> bool:
    base = tmp_path / "hosts" / name / "webhooks"
    return (fh.current_of(tmp_path, name) == f"releases/{fh.OLD}" and not (base / "releases" / fh.NEW).exists()
            and not (base / ".emp-release.json").exists())


def test_a_fault_in_batch_3_of_200_hosts_stops_there_and_rolls_back_exactly_the_released_hosts(tmp_path):
    # [1, 5%, 25%, 100%] of 200 hosts: batches of 1, 10, 50 and 139 hosts; batch 3 is h012..h061
    batch = [1, "5%", "25%", "100%"]
    proc, summary = run_fleet(tmp_path, 200, [{"emp_batch": batch}], faults=("h020", "h050"))
    assert proc.returncode == 2, proc.stdout[-3000:]
    names = fh.host_names(200)
    batches = [names[:1], names[1:11], names[11:61]]
    outcomes = [(b["batch"], b["size"], b["decision"]) for b in summary["batches"]]
    assert outcomes == [(1, 1, "GO"), (2, 10, "GO"), (3, 50, "NO-GO")]
    assert sorted(summary["batches"][2]["nogo_hosts"]) == ["h020", "h050"]
    assert summary["decision"] == "NO-GO"
    assert "batch 3 of webhooks (50 hosts): NO-GO (NO-GO: h020, h050)" in proc.stdout
    # the released hosts, newest batch first, and nothing else
    released = batches[2] + batches[1] + batches[0]
    assert summary["rollback"]["hosts"] == {"webhooks": released}
    assert summary["rollback"]["ok"] is True and summary["rollback"]["within_budget"] is True
    for name in released:
        assert fh.current_of(tmp_path, name) == f"releases/{fh.OLD}", name
    for name in names[61:]:
        assert untouched(tmp_path, name), name
    # rolled back in reverse batch order: each batch's links were switched back after the later batch's
    switched = [[os.lstat(tmp_path / "hosts" / n / "webhooks" / "current").st_mtime_ns for n in group] for group in batches]
    assert max(switched[2]) <= min(switched[1]) and max(switched[1]) <= min(switched[0])
    records = journal(tmp_path)
    kinds = [r["type"] for r in records]
    assert kinds.count("batch_start") == 3 and kinds.count("batch_end") == 3
    assert kinds.count("rollback_play_start") == 3  # the rollback play ran once per batch, batch 3 first
    assert {r["host"] for r in records if r["type"] == "release"} == set(names[:61])


@pytest.mark.parametrize("variables, message", [
    ({"emp_batch": "abc"}, "emp_batch: 'abc' is not a batch size"),
    ({"emp_batch": 0}, "emp_batch: 0 is not a batch size: a batch has at least 1 host"),
    ({"emp_batch": "150%"}, "emp_batch: '150%' is not a percentage of hosts between 1% and 100%"),
    ({"emp_batch": []}, "emp_batch: an empty list has no batch"),
    ({"emp_batch": [1, "x"]}, "emp_batch[1]: 'x' is not a batch size"),
    ({"emp_batch": 2, "emp_max_fail_percentage": 101}, "emp_max_fail_percentage: 101 is out of range (0 to 100)"),
    ({"emp_batch": 2, "emp_max_fail_percentage": "half"}, "emp_max_fail_percentage: 'half' is not a whole percentage"),
])
def test_bad_fleet_variables_stop_the_run_before_any_host_changes(tmp_path, variables, message):
    proc, summary = run_fleet(tmp_path, 3, [variables])
    assert proc.returncode == 5, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert message in " ".join((proc.stdout + proc.stderr).split())
    assert summary is None
    assert all(untouched(tmp_path, name) for name in fh.host_names(3))


def test_a_batch_without_gate_evidence_is_not_go_and_stops_the_rollout(tmp_path):
    skip = {"fleet_skip_gate": "{{ inventory_hostname == 'h003' }}"}  # h003 (batch 2) never runs its gate
    proc, summary = run_fleet(tmp_path, 6, [{"emp_batch": [1, 2]}, skip])
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert [(b["batch"], b["decision"]) for b in summary["batches"]] == [(1, "GO"), (2, "NO-GO")]
    assert summary["batches"][1]["no_data_hosts"] == ["h003"]
    assert "nothing passes for lack of data" in summary["reasons"][0]
    assert summary["decision"] == "NO-GO"
    assert summary["rollback"]["hosts"] == {"webhooks": ["h002", "h003", "h001"]}
    assert all(untouched(tmp_path, name) for name in ("h004", "h005", "h006"))
    assert all(fh.current_of(tmp_path, name) == f"releases/{fh.OLD}" for name in ("h001", "h002", "h003"))


def test_max_fail_percentage_tolerates_a_host_per_batch_and_the_rollout_goes_on(tmp_path):
    proc, summary = run_fleet(tmp_path, 8, [{"emp_batch": 4, "emp_max_fail_percentage": 25}], faults=("h002",))
    assert proc.returncode == 2, proc.stdout[-3000:]  # a host failed: Ansible's own exit code
    assert [(b["batch"], b["decision"]) for b in summary["batches"]] == [(1, "GO"), (2, "GO")]
    assert summary["batches"][0]["nogo_hosts"] == ["h002"]
    assert summary["decision"] == "GO" and summary["rollback"]["triggered"] is False
    assert all(fh.current_of(tmp_path, name) == f"releases/{fh.NEW}" for name in fh.host_names(8))


def test_without_emp_batch_the_phase_play_is_one_batch_and_records_no_batch(tmp_path):
    proc, summary = run_fleet(tmp_path, 3, [])
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert summary["decision"] == "GO" and summary["batches"] == []
    assert not [r for r in journal(tmp_path) if r["type"].startswith("batch_")]
