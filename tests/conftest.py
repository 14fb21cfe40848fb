"""Shared fixtures: real redis-server processes on free loopback ports, real ansible-playbook runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from servers import RedisServer, free_port, wait_for_port

# tests import these from here: `from conftest import free_port, run_playbook, ...`
__all__ = ["RedisServer", "free_port", "wait_for_port", "run_playbook", "write_playbook", "ROOT", "BIN"]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COLLECTIONS_PATH = ROOT / "collections"
# emp.deploy.* resolves through collections/ansible_collections/emp/deploy -> ROOT (ansible.cfg), a
# link that is not committed (collection CI's sanity refuses it): make it here too, so the tests also
# run from a plain clone without make.
subprocess.run([str(ROOT / "tools/collection-link")], check=True)
# unit tests import plugins as installed collection code: ansible_collections.emp.deploy.*
if str(COLLECTIONS_PATH) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_PATH))


@pytest.fixture
def redis_factory(tmp_path):
    started: list[RedisServer] = []

    def make(**kwargs) -> RedisServer:
        workdir = Path(tempfile.mkdtemp(dir=tmp_path, prefix="redis-"))
        server = RedisServer(workdir, **kwargs)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def redis_server(redis_factory) -> RedisServer:
    return redis_factory()


def run_playbook(playbook: Path, *, extra_vars: dict | None = None, check: bool = False,
                 env: dict | None = None, timeout: float = 300, args: list[str] | None = None
                 ) -> subprocess.CompletedProcess:
    """Runs the real ansible-playbook of the interpreter running the tests, against this checkout."""
    cmd = [str(BIN / "ansible-playbook"), str(playbook), "-i", str(ROOT / "inventories/sandbox/hosts.yml")]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    cmd += args or []
    full_env = dict(os.environ)
    full_env.update({"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                     "ANSIBLE_FORCE_COLOR": "0", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
    # the go_no_go callback is enabled by ansible.cfg: keep each test's journal beside its playbook
    full_env.setdefault("EMP_DEPLOY_REPORT_DIR", str(Path(playbook).parent / "deploy-reports"))
    full_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=str(ROOT), check=False)


def write_playbook(tmp_path: Path, tasks_yaml: str, name: str = "playbook.yml") -> Path:
    """A one-play playbook on the sandbox host; tasks may write results to {{ out }}."""
    path = tmp_path / name
    body = "\n".join("    " + line if line.strip() else line for line in tasks_yaml.strip("\n").splitlines())
    path.write_text(
        "---\n- name: Test play\n  hosts: sandbox\n  gather_facts: false\n  tasks:\n" + body + "\n"
    )
    return path
