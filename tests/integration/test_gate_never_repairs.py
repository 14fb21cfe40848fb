"""A gate observes and never repairs: probes run in check mode unless their documentation declares
them read-only, and a sample that reports changed is an error (issue 10, defect 1).

writer_probe (tests/integration/files/gate_library) rewrites its target file outside check mode, as
emp.deploy.ngrok_tunnel with state present recreates a dead tunnel; its documentation does not
declare it read-only. sequence_probe declares itself read-only (check_mode and read_only support
full) and records the check mode of every call.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_gate_playbooks import calls_of, gate_task, ok, run


def writer_gate(name: str, target: Path, samples: int = 2, **probe_options) -> dict:
    return {
        "name": f"gate {name}", "register": f"r_{name.replace('-', '_')}", "ignore_errors": True,
        "emp.deploy.gate": {
            "name": name, "component": "ngrok", "samples": samples, "interval": 0,
            "probe": {"module": "writer_probe", "args": {"path": str(target), "content": "healthy"}, **probe_options},
            "criteria": ["result.content == 'healthy'"],
        },
    }


def check_modes(calls: Path, name: str) -> list[bool]:
    return [json.loads(line)["check_mode"] for line in (calls / name).read_text().splitlines()]


@pytest.mark.compat
def test_a_probe_not_declared_read_only_never_changes_the_target(tmp_path):
    untouched = tmp_path / "untouched.txt"
    untouched.write_text("broken")
    forced = tmp_path / "forced.txt"
    forced.write_text("broken")
    tasks = [
        writer_gate("check-mode", untouched),
        # probe.check_mode false overrides the documentation: the probe repairs, the gate says so and stops
        writer_gate("forced", forced, samples=3, check_mode=False),
        gate_task("read-only", [ok(p95=10)], ["result.p95 < 200"], samples=2),
        gate_task("lying", [{"changed": "recreated tunnel api", "ok": {"p95": 10}}], ["result.p95 < 200"],
                  samples=3, consecutive_error_limit=5),
    ]
    results, proc, calls = run(tmp_path, tasks)

    # not declared read-only: every sample in check mode, the target untouched, "would change" is an error
    assert untouched.read_text() == "broken"
    gate = results["r_check_mode"]["emp_gate"]
    assert gate["decision"] == "NO-GO" and results["r_check_mode"]["failed"]
    assert [s["outcome"] for s in gate["samples"]] == ["error", "error"]
    assert all(s["check_mode"] for s in gate["samples"])
    assert gate["samples"][0]["error"] == (f"the probe would change the target (nothing was changed, it ran in "
                                           f"check mode): writer_probe rewrote {untouched}")

    # forced outside check mode: the first sample repaired the target, so the gate stopped there, NO-GO
    forced_gate = results["r_forced"]["emp_gate"]
    assert forced_gate["decision"] == "NO-GO"
    assert forced_gate["counts"]["taken"] == 1 and forced_gate["stopped_early"]
    assert forced_gate["reason"].startswith(f"the probe changed the target: writer_probe rewrote {forced}; "
                                            f"a gate observes and never repairs")
    assert f"sample 1/3: ERROR could not measure: the probe changed the target: writer_probe rewrote {forced}" \
        in proc.stdout

    # declared read-only: runs as the run does (not in check mode here) and measures
    assert results["r_read_only"]["emp_gate"]["decision"] == "GO"
    assert check_modes(calls, "read-only") == [False, False]

    # declared read-only but reports changed: an error, and never GO whatever the limits
    lying = results["r_lying"]["emp_gate"]
    assert lying["decision"] == "NO-GO" and calls_of(calls, "lying") == 1
    assert "the probe changed the target: sequence_probe recreated tunnel api" in lying["reason"]


def test_probe_check_mode_true_forces_check_mode_on_a_read_only_probe(tmp_path):
    task = gate_task("forced-check", [ok(p95=10)], ["result.p95 < 200"], samples=1)
    task["emp.deploy.gate"]["probe"]["check_mode"] = True
    results, proc, calls = run(tmp_path, [task])
    assert check_modes(calls, "forced-check") == [True]
    assert results["r_forced_check"]["emp_gate"]["samples"][0]["check_mode"] is True


def test_a_read_only_probe_follows_a_check_run(tmp_path):
    results, proc, calls = run(tmp_path, [gate_task("read-only", [ok(p95=10)], ["result.p95 < 200"], samples=1)],
                               check=True)
    assert check_modes(calls, "read-only") == [True]
    assert results["r_read_only"]["emp_gate"]["decision"] == "GO"


def test_a_command_probe_skipped_in_check_mode_says_how_to_measure(tmp_path):
    tasks = [{"name": "command", "register": "r_command", "ignore_errors": True,
              "emp.deploy.gate": {"name": "command", "component": "database", "samples": 1,
                                  "probe": {"module": "ansible.builtin.command", "args": {"argv": ["echo", "1"]}},
                                  "criteria": ["result.stdout == '1'"]}}]
    results, proc, calls = run(tmp_path, tasks)
    gate = results["r_command"]["emp_gate"]
    assert gate["decision"] == "NO-GO" and gate["counts"]["no_data"] == 1
    assert gate["reason"].endswith("ansible.builtin.command ran in check mode because its documentation does not "
                                   "declare it read-only (set probe.check_mode: false for a probe that changes nothing)")
