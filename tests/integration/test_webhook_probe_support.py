"""Helpers and fixtures shared by the webhook_probe integration tests (no tests here).

A real sandbox webhook service per test (private redis-server from redis_factory), a forwarding
proxy that can answer HTML or 500 on chosen routes, and real ansible-playbook runs of the probe.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from conftest import run_playbook, write_playbook
from sandbox.webhook.launch import WebhookService, write_release


class Proxy:
    """Forwards to ``target``; a rule (method, path regex) -> (status, content type, body) answers instead."""

    def __init__(self, target: str, rules: list | None = None):
        self.rules = [(method, re.compile(pattern), answer) for method, pattern, answer in rules or []]
        self.paths: list[str] = []
        parts = urlsplit(target)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.paths.append(self.path)
                for method, pattern, (status, content_type, canned) in outer.rules:
                    if method == self.command and pattern.fullmatch(self.path.split("?")[0]):
                        return self._send(status, content_type, canned)
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    self._send(answer.status, answer.getheader("Content-Type", ""), answer.read())
                except OSError:
                    self._send(502, "text/html", b"<html><body>502 Bad Gateway</body></html>")
                finally:
                    conn.close()

            def _send(self, status, content_type, body):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def probe_many(tmp_path: Path, runs: list[dict], *, check: bool = False, name: str = "probe"
               ) -> tuple[list[dict], subprocess.CompletedProcess]:
    """One playbook, one probe task per argument dict; returns each task's registered result."""
    tasks = []
    for index, args in enumerate(runs):
        tasks.append(f"""
- name: Probe the webhook service ({index})
  emp.deploy.webhook_probe: {json.dumps(args)}
  register: r
  ignore_errors: true
- name: Save the result ({index})
  ansible.builtin.copy:
    content: "{{{{ r | to_json }}}}"
    dest: "{{{{ out }}}}-{index}.json"
    mode: "0600"
  check_mode: false
""")
    playbook = write_playbook(tmp_path, "".join(tasks), name=f"{name}.yml")
    out = tmp_path / name
    run = run_playbook(playbook, extra_vars={"out": str(out)}, check=check, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return [json.loads(Path(f"{out}-{i}.json").read_text()) for i in range(len(runs))], run


def probe(tmp_path: Path, args: dict, *, check: bool = False, name: str = "probe"
          ) -> tuple[dict, subprocess.CompletedProcess]:
    results, run = probe_many(tmp_path, [args], check=check, name=name)
    return results[0], run


def registry(service) -> dict:
    return redis.Redis.from_url(service.redis.url, decode_responses=True).hgetall("webhooks:registry")


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def start_service(redis_factory, tmp_path):
    services = []

    def start(faults: list[str] | None = None, version: str = "1.1.0") -> WebhookService:
        index = len(services)
        server = redis_factory()
        release = write_release(tmp_path / f"release-{index}", version, faults)
        service = WebhookService(server.url, release, log_file=tmp_path / f"webhook-{index}.log")
        service.redis = server
        services.append(service.start())
        return service
    yield start
    for service in services:
        service.stop()


@pytest.fixture
def service(start_service) -> WebhookService:
    return start_service()


@pytest.fixture
def proxies():
    made: list[Proxy] = []

    def make(target: str, rules: list | None = None) -> Proxy:
        made.append(Proxy(target, rules))
        return made[-1]
    yield make
    for item in made:
        item.close()
