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
