"""The gate's probe gets the play's module_defaults, like any task of that module would."""
from __future__ import annotations

import json

import pytest

from conftest import run_playbook, write_playbook


@pytest.mark.compat
def test_module_defaults_reach_the_probe_and_explicit_args_win(tmp_path, redis_factory):
    defaulted = redis_factory()
    explicit = redis_factory()
    out = tmp_path / "gates.json"
    playbook = write_playbook(tmp_path, "")
    playbook.write_text(f"""---
- name: Gate with module_defaults
  hosts: sandbox
  gather_facts: false
  module_defaults:
    group/emp.deploy.redis:
      port: {defaulted.port}
      latency_samples: 3
  tasks:
    - name: Gate on the Redis named only by module_defaults
      emp.deploy.gate:
        name: defaults
        component: redis
        probe: {{module: emp.deploy.redis_health, args: {{}}}}
        samples: 1
        criteria: ["result.target == '127.0.0.1:{defaulted.port}'", "result.latency_ms.samples == 3"]
      register: from_defaults
    - name: Gate whose probe args override the defaults
      emp.deploy.gate:
        name: explicit
        component: redis
        probe: {{module: emp.deploy.redis_health, args: {{port: {explicit.port}}}}}
        samples: 1
        criteria: ["result.target == '127.0.0.1:{explicit.port}'"]
      register: from_args
    - name: Save
      ansible.builtin.copy:
        content: "{{{{ {{'defaults': from_defaults.emp_gate, 'explicit': from_args.emp_gate}} | to_json }}}}"
        dest: "{out}"
        mode: "0600"
""")
    proc = run_playbook(playbook)
    assert proc.returncode == 0, proc.stdout[-3000:]
    gates = json.loads(out.read_text())
    assert gates["defaults"]["decision"] == "GO"
    assert gates["explicit"]["decision"] == "GO"
