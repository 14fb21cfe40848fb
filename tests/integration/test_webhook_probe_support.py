"""Helpers and fixtures shared by the webhook_probe integration tests (no tests here).

A real sandbox webhook service per test (private redis-server from redis_factory), a forwarding
front that can answer HTML or 500 on chosen routes, and real ansible-playbook runs of the probe.
"""
from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
import redis

from conftest import run_playbook, write_playbook
from misbehaving_http import MisbehavingServer
from sandbox.webhook.launch import WebhookService, write_release


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
    """Fronts that forward to ``target``; a rule (method, path regex) -> (status, content type, body) answers instead."""
    made: list[MisbehavingServer] = []

    def make(target: str, rules: list | None = None) -> MisbehavingServer:
        made.append(MisbehavingServer(rules, upstream=target))
        return made[-1]
    yield make
    for item in made:
        item.close()
