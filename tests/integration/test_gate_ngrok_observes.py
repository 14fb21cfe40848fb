"""The ngrok step's gate observes the tunnel, it never recreates it (issue 10, defect 1), against the
sandbox's ngrok stand-in: a gate sampling emp.deploy.ngrok_tunnel with state present on a missing
tunnel used to create it and say GO.
"""
from __future__ import annotations

import json

from conftest import run_playbook, write_playbook

from ngrok_harness import BIN, HttpUpstream, NgrokStandIn


def test_a_gate_on_a_missing_tunnel_does_not_create_it(tmp_path):
    agent = NgrokStandIn(tmp_path / "agent")
    agent.start("--none")
    upstream = HttpUpstream().start()
    try:
        gate = sample_tunnel_api(tmp_path / "missing", agent, upstream.port)
        assert agent.tunnels() == []  # the gate created nothing
        # made present by a task before the gate (as the ngrok role does), the tunnel is observed: GO
        agent.create("api", str(upstream.port))
        present = sample_tunnel_api(tmp_path / "present", agent, upstream.port)
    finally:
        upstream.stop()
        agent.cleanup()
    assert present["decision"] == "GO", present["reason"]
    assert all(sample["check_mode"] for sample in present["samples"])
    assert gate["decision"] == "NO-GO"
    assert [s["outcome"] for s in gate["samples"]] == ["error", "error"]
    assert gate["samples"][0]["error"] == (
        "the probe would change the target (nothing was changed, it ran in check mode): emp.deploy.ngrok_tunnel "
        f"would create tunnel 'api' -> localhost:{upstream.port}: no tunnel of that name is running")


def sample_tunnel_api(tmp_path, agent, port: int) -> dict:
    """Runs the ngrok step's gate on tunnel api and returns its emp_gate record."""
    tmp_path.mkdir()
    args = {"api_url": agent.api_url, "ngrok_binary": str(BIN), "timeout": 5, "recheck_delay": 0,
            "name": "api", "addr": str(port), "health_path": "/health", "expect_status": [200]}
    out = tmp_path / "gate.json"
    playbook = write_playbook(tmp_path, f"""
- name: GO/NO-GO · tunnel api present and healthy
  emp.deploy.gate:
    name: ngrok-api
    component: ngrok
    probe:
      module: emp.deploy.ngrok_tunnel
      args: {json.dumps(args)}
    samples: 2
    interval: 0
    criteria: [result.healthy, result.public_url is truthy]
  register: gate
  ignore_errors: true
- name: Save
  ansible.builtin.copy:
    content: "{{{{ gate.emp_gate | to_json }}}}"
    dest: "{out}"
    mode: "0600"
""")
    proc = run_playbook(playbook, env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports")}, timeout=180)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads(out.read_text())
