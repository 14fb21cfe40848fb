"""Runs a probe module (emp.deploy.redis_health unless told) in real ansible-playbook runs and returns the
registered results."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import run_playbook, write_playbook


def probe_many(tmp_path: Path, probes: dict, *, name: str = "probes", check: bool = False,
               extra_vars: dict | None = None, cli_args: list | None = None, timeout: float = 300,
               module: str = "emp.deploy.redis_health", environment: dict | None = None) -> tuple[dict, object]:
    """One playbook, one task per probe (named by its key, a plain identifier); returns {key: result} and the process.
    ``environment`` is set on every probe task (PYTHONPATH to hide a library from the module, say)."""
    out = tmp_path / f"{name}.json"
    tasks = []
    env = f"\n  environment: {json.dumps(environment)}" if environment else ""
    for key, args in probes.items():
        tasks.append(f"""
- name: Probe · {key}
  {module}: {json.dumps(args)}
  register: probe_{key}
  ignore_errors: true{env}
""")
    collected = ", ".join(f"'{key}': probe_{key}" for key in probes)
    tasks.append(f"""
- name: Save the results
  ansible.builtin.copy:
    content: "{{{{ {{{collected}}} | to_json }}}}"
    dest: "{out}"
    mode: "0600"
  check_mode: false
""")
    playbook = write_playbook(tmp_path, "".join(tasks), name=f"{name}.yml")
    proc = run_playbook(playbook, check=check, extra_vars=extra_vars, args=cli_args, timeout=timeout)
    assert out.exists(), proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc


def probe(tmp_path: Path, args: dict, *, name: str = "probe", **kwargs) -> tuple[dict, object]:
    """Runs the module once in a real playbook; returns its registered result and the process."""
    results, proc = probe_many(tmp_path, {"probe": args}, name=name, **kwargs)
    return results["probe"], proc


def gate_many(tmp_path: Path, module: str, component: str, gates: dict, *, samples: int = 2) -> dict:
    """One playbook, one emp.deploy.gate task per entry of ``gates`` ({name: (probe args, criteria)}),
    each sampling ``module`` ``samples`` times with no interval and ignore_errors; returns {name: emp_gate}."""
    out = tmp_path / "gates.json"
    tasks = []
    for name, (args, criteria) in gates.items():
        tasks.append(f"""
- name: gate {name}
  emp.deploy.gate:
    name: {name}
    component: {component}
    probe: {{module: {module}, args: {json.dumps(args)}}}
    samples: {samples}
    interval: 0
    criteria: {json.dumps(criteria)}
  ignore_errors: true
  register: gate_{name.replace('-', '_')}
""")
    collected = ", ".join(f"'{name}': gate_{name.replace('-', '_')}.emp_gate" for name in gates)
    tasks.append(f"""
- name: Save
  ansible.builtin.copy:
    content: "{{{{ {{{collected}}} | to_json }}}}"
    dest: "{out}"
    mode: "0600"
""")
    proc = run_playbook(write_playbook(tmp_path, "".join(tasks), name="gates.yml"))
    assert out.exists(), proc.stdout[-4000:]
    return json.loads(out.read_text())


def assert_gate_keeps_secret(tmp_path: Path, module: str, component: str, args: dict, criteria: list,
                             secret: str) -> None:
    """A gate over ``module`` at -vvv, its record shown with debug: it says GO, and ``secret`` (a password or
    token among ``args``) appears neither in the output nor in anything the callback wrote."""
    reports = tmp_path / "reports"
    tasks = f"""
- name: gate with a secret
  emp.deploy.gate:
    name: {component}-secret
    component: {component}
    probe: {{module: {module}, args: {json.dumps(args)}}}
    samples: 2
    interval: 0
    criteria: {json.dumps(criteria)}
  register: gated
- name: Show the gate record
  ansible.builtin.debug:
    var: gated
"""
    proc = run_playbook(write_playbook(tmp_path, tasks, name="secret.yml"), args=["-vvv"],
                        env={"EMP_DEPLOY_REPORT_DIR": str(reports)})
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "decision GO" in proc.stdout
    written = "".join(path.read_text() for path in reports.rglob("*") if path.is_file())
    assert written and secret not in proc.stdout + proc.stderr + written
