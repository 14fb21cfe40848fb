"""emp.deploy.gate through real ansible-playbook runs: sampling, accounting, modes, evidence, bad options.

The probe is tests/integration/files/gate_library/sequence_probe.py (on ANSIBLE_LIBRARY): its n-th
call plays the n-th scripted outcome and appends a line to a calls file, so the tests can count the
samples that really ran (early stop) and prove that bad options fail before any sampling.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_playbook, write_playbook

LIBRARY = Path(__file__).parent / "files" / "gate_library"


def ok(**figures):
    return {"ok": figures}


def gate_task(name, script, criteria, register=None, **options):
    """A gate task sampling sequence_probe; options are the gate's other options."""
    task = {
        "name": f"gate {name}",
        "emp.deploy.gate": {
            "name": name, "component": "redis", "phase": "test",
            "probe": {"module": "sequence_probe", "args": {"script": script, "calls": f"{{{{ calls_dir }}}}/{name}"}},
            "criteria": criteria, "interval": 0.1, **options,
        },
        "register": register or f"r_{name.replace('-', '_')}",
        "ignore_errors": True,
    }
    return task


def run(tmp_path, tasks, extra_vars=None, **kwargs):
    names = [t["register"] for t in tasks]
    out = tmp_path / "out.json"
    body = json.dumps(tasks + [{
        "name": "Write results",
        "ansible.builtin.copy": {"content": "{{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}",
                                 "dest": str(out), "mode": "0644"},
        "check_mode": False,  # written in --check runs too
    }], indent=1)
    playbook = write_playbook(tmp_path, "")
    playbook.write_text(f'- name: Gate test\n  hosts: sandbox\n  gather_facts: false\n  tasks: {body}\n')
    calls = tmp_path / "calls"
    calls.mkdir(exist_ok=True)
    env = {"ANSIBLE_LIBRARY": str(LIBRARY), "EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports")}
    proc = run_playbook(playbook, extra_vars={"calls_dir": str(calls), **(extra_vars or {})}, env=env, **kwargs)
    assert out.exists(), proc.stdout[-4000:] + proc.stderr[-2000:]
    return json.loads(out.read_text()), proc, calls


def calls_of(calls: Path, name: str) -> int:
    path = calls / name
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.compat
def test_sampling_decisions_and_reasons(tmp_path):
    tasks = [
        gate_task("go", [ok(p95=10)], ["result.p95 < 200"], samples=3),
        gate_task("failures", [ok(p95=10), ok(p95=312), ok(p95=290), ok(p95=305), ok(p95=12)],
                  ["result.p95 < 200"], samples=5, failure_limit=2),
        gate_task("errors", [{"error": "connection refused by 127.0.0.1:1"}], ["result.p95 < 200"], samples=3,
                  consecutive_error_limit=5),
        gate_task("consecutive", [{"error": "boom"}, {"error": "boom"}, ok(p95=1)], ["result.p95 < 200"], samples=3,
                  consecutive_error_limit=1),
        gate_task("crash", [{"crash": True}], ["result.p95 < 200"], samples=2),
        gate_task("unreachable", [{"unreachable": True}], ["result.p95 < 200"], samples=1),
        gate_task("unhealthy", [{"unhealthy": {"p95": 5}, "problem": "client 'emp-api' has 0 connections, expected at least 1"}],
                  ["result.healthy", "result.p95 < 200"], samples=2),
        gate_task("growth", [ok(connected=5), ok(connected=6), ok(connected=9)],
                  ["result.connected - baseline.connected <= 2"], samples=3),
        gate_task("early-go", [ok(p95=1)], ["result.p95 < 200"], samples=5, failure_limit=5, consecutive_error_limit=5),
        gate_task("window", [ok(p95=1)], ["result.p95 < 200"], duration=0.4, interval=0.2),
        gate_task("play-vars", [ok(p95=150)], ["result.p95 < max_p95 | int"]),
    ]
    results, proc, calls = run(tmp_path, tasks, extra_vars={"max_p95": 100})
    gates = {name[2:].replace("_", "-"): r["emp_gate"] for name, r in results.items()}

    assert gates["go"]["decision"] == "GO" and calls_of(calls, "go") == 3
    assert not results["r_go"].get("failed")
    assert gates["go"]["reason"] == "all 1 criterion held in 3 of 3 samples"

    failures = gates["failures"]
    assert failures["decision"] == "NO-GO" and results["r_failures"]["failed"]
    assert calls_of(calls, "failures") == 4  # stopped once the third failure exceeded failure_limit 2
    assert failures["stopped_early"] is True
    assert "result.p95 < 200 did not hold in 3 of 4 measured samples (result.p95 was 312, 290, 305)" in failures["reason"]
    assert [s["outcome"] for s in failures["samples"]] == ["passed", "failed", "failed", "failed"]
    assert failures["samples"][1]["figures"] == {"result.p95": 312}

    assert gates["errors"]["decision"] == "NO-GO"
    assert "could not measure in any of 3 samples: connection refused by 127.0.0.1:1" in gates["errors"]["reason"]
    assert gates["errors"]["counts"]["errors"] == 3

    assert gates["consecutive"]["decision"] == "NO-GO" and calls_of(calls, "consecutive") == 2
    assert "2 consecutive samples" in gates["consecutive"]["reason"]

    assert gates["crash"]["decision"] == "NO-GO"
    assert [s["outcome"] for s in gates["crash"]["samples"]] == ["error", "error"]
    assert "probe crashed: " in gates["crash"]["reason"] and "probe crashed on purpose" in gates["crash"]["reason"]

    assert gates["unreachable"]["samples"][0]["outcome"] == "error"
    assert "127.0.0.1:1 refused" in gates["unreachable"]["reason"]

    unhealthy = gates["unhealthy"]
    assert unhealthy["samples"][0]["outcome"] == "failed"  # measured: a failure, not an error
    assert unhealthy["reason"].startswith("client 'emp-api' has 0 connections, expected at least 1")

    growth = gates["growth"]
    assert growth["decision"] == "NO-GO"
    assert growth["samples"][2]["figures"] == {"result.connected": 9, "baseline.connected": 5}

    assert gates["early-go"]["decision"] == "GO" and calls_of(calls, "early-go") == 1
    assert "stopped after 1 of 5 samples" in gates["early-go"]["reason"]

    assert gates["window"]["counts"]["planned"] == 3 and calls_of(calls, "window") == 3

    assert gates["play-vars"]["decision"] == "NO-GO"

    for gate in gates.values():
        assert set(gate) >= {"name", "phase", "component", "checklist_ref", "mode", "decision", "reason", "criteria",
                             "samples", "started", "ended", "duration_s"}
    # each sample is shown as it happens
    assert "gate failures [sandbox] sample 2/5: FAILED result.p95 < 200 (result.p95=312)" in proc.stdout
    assert "gate go [sandbox] sample 3/3: ok (result.p95=10)" in proc.stdout


def test_modes_evidence_check_mode_loops_and_delegation(tmp_path):
    failing = [ok(p95=500)]
    tasks = [
        gate_task("warn", failing, ["result.p95 < 200"], mode="warn"),
        gate_task("observe", failing, ["result.p95 < 200"], mode="observe"),
        {"name": "evidence", "register": "r_evidence", "ignore_errors": True,
         "emp.deploy.gate": {"name": "evidence", "component": "database",
                             "evidence": {"rc": 0, "stdout": "0"}, "criteria": ["result.rc == 0", "result.stdout | int == 0"]}},
        {"name": "evidence-failed", "register": "r_evidence_failed", "ignore_errors": True,
         "emp.deploy.gate": {"name": "evidence-failed", "component": "database",
                             "evidence": {"failed": True, "msg": "psql: could not connect to 127.0.0.1:5"},
                             "criteria": ["result.rc == 0"]}},
        {"name": "evidence-none", "register": "r_evidence_none", "ignore_errors": True,
         "emp.deploy.gate": {"name": "evidence-none", "component": "database", "evidence": None,
                             "on_no_data": "pass", "criteria": ["result.rc == 0"]}},
        {"name": "check-mode", "register": "r_check_mode", "ignore_errors": True, "check_mode": True,
         "emp.deploy.gate": {"name": "check-mode", "component": "database", "samples": 2, "interval": 0,
                             "probe": {"module": "ansible.builtin.command", "args": {"argv": ["echo", "1"]}},
                             "criteria": ["result.stdout == '1'"]}},
        {"name": "check-mode-read-only", "register": "r_check_mode_read_only", "check_mode": True,
         "emp.deploy.gate": {"name": "check-mode-read-only", "component": "database",
                             "probe": {"module": "ansible.builtin.command", "args": {"argv": ["echo", "1"]},
                                       "check_mode": False},
                             "criteria": ["result.stdout == '1'"]}},
        {"name": "loop", "register": "r_loop", "delegate_to": "localhost", "loop": [1, 2],
         "emp.deploy.gate": {"name": "loop-{{ item }}", "component": "redis", "evidence": {"n": "{{ item }}"},
                             "criteria": ["result.n | int > 0"]}},
    ]
    results, proc, calls = run(tmp_path, tasks)
    assert proc.returncode == 0, proc.stdout[-3000:]
    warn, observe = results["r_warn"], results["r_observe"]
    assert warn["emp_gate"]["decision"] == "NO-GO" and not warn.get("failed")
    assert "NO-GO (warn, not enforced)" in warn["msg"]
    assert observe["emp_gate"]["decision"] == "NO-GO" and not observe.get("failed")
    assert observe["msg"].startswith("observe: would have decided NO-GO")
    assert results["r_evidence"]["emp_gate"]["decision"] == "GO"
    assert results["r_evidence"]["emp_gate"]["source"] == "evidence"
    failed_evidence = results["r_evidence_failed"]["emp_gate"]
    assert failed_evidence["decision"] == "NO-GO" and failed_evidence["samples"][0]["outcome"] == "error"
    assert "could not connect to 127.0.0.1:5" in failed_evidence["reason"]
    assert results["r_evidence_none"]["emp_gate"]["decision"] == "GO"
    assert "on_no_data is pass" in results["r_evidence_none"]["emp_gate"]["reason"]
    check_mode = results["r_check_mode"]["emp_gate"]
    assert check_mode["decision"] == "NO-GO" and check_mode["counts"]["no_data"] == 2
    assert "no data" in check_mode["reason"]
    assert results["r_check_mode_read_only"]["emp_gate"]["decision"] == "GO"
    loop = results["r_loop"]["results"]
    assert [item["emp_gate"]["name"] for item in loop] == ["loop-1", "loop-2"]
    assert all(item["emp_gate"]["decision"] == "GO" for item in loop)


BAD_OPTIONS = [
    ("no-criteria", {}, "missing required arguments: criteria"),
    ("empty-criteria", {"criteria": []}, "at least one criterion"),
    ("both", {"criteria": ["result.x"], "evidence": 1}, "exactly one of probe and evidence"),
    ("neither", {"criteria": ["result.x"], "probe": None}, "either probe"),
    ("mode", {"criteria": ["result.x"], "mode": "sometimes"}, "value of mode must be one of: enforce, warn, observe, got: sometimes"),
    ("syntax", {"criteria": ["result.x <"]}, "does not template"),
    ("criterion-type", {"criteria": [{"that": "x"}]}, "must be a non-empty string"),
    ("module", {"criteria": ["result.x"], "probe": {"module": "emp.deploy.no_such_probe", "args": {}}}, "unknown probe module"),
    ("itself", {"criteria": ["result.x"], "probe": {"module": "emp.deploy.gate", "args": {}}}, "cannot use emp.deploy.gate"),
    ("unknown-option", {"criteria": ["result.x"], "sample": 3}, "Unsupported parameters for (emp.deploy.gate) module: sample."),
    ("samples-type", {"criteria": ["result.x"], "samples": "many"}, "argument 'samples' is of type a string"),
    ("window", {"criteria": ["result.x"], "samples": 3, "duration": 10}, "at most two"),
    ("evidence-samples", {"criteria": ["result.x"], "probe": None, "evidence": 1, "samples": 3}, "apply to probe"),
    ("on-no-data", {"criteria": ["result.x"], "on_no_data": "maybe"}, "value of on_no_data must be one of: fail, pass, got: maybe"),
    ("criteria-mapping", {"criteria": {"result.x": 1}}, "criteria must be a conditional or a list of conditionals, not a mapping"),
    ("criterion-number", {"criteria": [5]}, "criterion 5 must be a non-empty string (a conditional, as in "
                                            "ansible.builtin.assert) or a boolean, not a number"),
    ("probe-string", {"criteria": ["result.x"], "probe": "sequence_probe"}, "probe must be a mapping ({module, args}), not a string"),
    ("args-list", {"criteria": ["result.x"], "probe": {"module": "sequence_probe", "args": [1]}},
     "argument 'args' is of type a list found in 'probe'. and we were unable to convert to dict: a list cannot be"),
    ("interval-string", {"criteria": ["result.x"], "interval": "soon"}, "argument 'interval' is of type a string"),
    ("check-mode-string", {"criteria": ["result.x"], "probe": {"module": "sequence_probe", "check_mode": "perhaps"}},
     "argument 'check_mode' is of type a string found in 'probe'"),
    ("cmd-and-raw-params",
     {"criteria": ["result.x"], "probe": {"module": "ansible.builtin.command", "args": {"cmd": "echo 1", "_raw_params": "echo 2"}}},
     "ansible.builtin.command: give the command either as cmd or as _raw_params, not both"),
    ("limit", {"criteria": ["result.x"], "failure_limit": -1}, "must not be negative"),
]


INTERNAL_TYPE = re.compile(r"Ansible\w*(Tagged|Unsafe|Unicode|Mapping|Sequence)|<class ")


@pytest.mark.compat
def test_bad_options_fail_before_any_sampling(tmp_path):
    tasks = []
    for name, options, dummy in BAD_OPTIONS:
        task = gate_task(name, [ok(x=1)], options.pop("criteria", None), samples=options.pop("samples", 2), **options)
        args = task["emp.deploy.gate"]
        if args.get("criteria") is None:
            args.pop("criteria")
        if args.get("probe", 1) is None:
            args.pop("probe")
        if name == "evidence-samples":
            args.pop("interval")
        tasks.append(task)
    results, proc, calls = run(tmp_path, tasks)
    for name, dummy, message in BAD_OPTIONS:
        result = results[f"r_{name.replace('-', '_')}"]
        assert result.get("failed"), name
        assert message in result["msg"], (name, result["msg"])
        assert not INTERNAL_TYPE.search(result["msg"]), (name, result["msg"])
        assert "emp_gate" not in result, name
        assert calls_of(calls, name) == 0, f"{name}: the probe ran before the options were checked"


@pytest.mark.compat
def test_command_and_shell_probes_take_cmd_on_every_supported_version(tmp_path):
    def command_gate(name, module, args, expected):
        return {"name": name, "register": f"r_{name}", "ignore_errors": True,
                "emp.deploy.gate": {"name": name, "component": "database", "samples": 1,
                                    "probe": {"module": module, "args": args, "check_mode": False},
                                    "criteria": [f"result.stdout == '{expected}'"]}}

    tasks = [
        command_gate("command_cmd", "ansible.builtin.command", {"cmd": "echo 1"}, "1"),
        command_gate("command_short", "command", {"cmd": "echo 2"}, "2"),
        command_gate("shell_cmd", "ansible.builtin.shell", {"cmd": "echo $((40 + 2))"}, "42"),
    ]
    results, proc, calls = run(tmp_path, tasks)
    for name in ("command_cmd", "command_short", "shell_cmd"):
        gate = results[f"r_{name}"]["emp_gate"]
        assert gate["decision"] == "GO", (name, gate["reason"])
