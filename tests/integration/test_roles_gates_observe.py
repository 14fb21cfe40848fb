"""The roles' gates only observe: a probe sample never repairs what the gate measures.

The ngrok step against the sandbox's ngrok stand-in, with a tunnel that keeps dying: its upstream
deletes the tunnel from the agent every time its health URL is requested (the request in flight is
still answered). The step's own task before the gate makes the tunnel present; the gate must then see
it gone and say NO-GO, and must never create it again. (Sampled with `state: present` outside check
mode, every sample recreated the tunnel and the gate said GO.)
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import run_playbook, write_playbook
from ngrok_harness import BIN, NgrokStandIn, http


class DyingTunnelUpstream:
    """An HTTP service whose /health answers 200 after deleting the tunnel that forwarded the request."""

    def __init__(self, agent_api: str, tunnel: str) -> None:
        self.health_requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server signature
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/health"):
                    outer.health_requests += 1
                    # the tunnel dies; the stand-in still relays this answer (it picked the tunnel already)
                    http("DELETE", f"{agent_api}/api/tunnels/{tunnel}", timeout=5)
                body = b'{"status": "ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_ngrok_gate_does_not_recreate_a_dying_tunnel(tmp_path: Path):
    agent = NgrokStandIn(tmp_path / "agent").start("--none")
    upstream = DyingTunnelUpstream(agent.api_url, "api")
    try:
        role_vars = {
            "ngrok_enabled": True, "ngrok_api_url": agent.api_url, "ngrok_binary": str(BIN),
            "ngrok_restart_on_failure": False, "ngrok_gate_samples": 3, "ngrok_gate_interval": 1,
            "ngrok_tunnels": [{"name": "api", "addr": f"127.0.0.1:{upstream.port}", "health_path": "/health",
                               "expect_status": [200]}],
        }
        playbook = write_playbook(tmp_path, f"""
- name: The ngrok step
  ansible.builtin.include_role:
    name: emp.deploy.ngrok
  vars: {json.dumps(role_vars)}
""")
        reports = tmp_path / "reports"
        proc = run_playbook(playbook, env={"EMP_DEPLOY_REPORT_DIR": str(reports), "EMP_DEPLOY_RUN_ID": "dying"})
        health_requests = upstream.health_requests
        tunnel_after = agent.tunnel("api")
    finally:
        upstream.stop()
        agent.cleanup()

    summary = json.loads((reports / "dying" / "summary.json").read_text())
    assert len(summary["gates"]) == 1, proc.stdout[-4000:]
    (gate,) = summary["gates"]
    assert gate["name"] == "ngrok-tunnels-api"
    assert gate["decision"] == "NO-GO", proc.stdout[-4000:]
    assert proc.returncode == 2
    # only the step's own task made the tunnel present and requested its health URL; the gate's samples
    # saw it gone and neither recreated it nor reached the upstream through it
    assert health_requests == 1, proc.stdout[-4000:]
    assert tunnel_after is None
