"""Shared fixtures: real redis-server processes on free loopback ports, real ansible-playbook runs."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COLLECTIONS_PATH = ROOT / "collections"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class RedisServer:
    """A private redis-server on a free loopback port; killed and restarted at will by tests."""

    def __init__(self, workdir: Path, password: str | None = None, tls: dict | None = None,
                 extra_args: list[str] | None = None):
        self.workdir = workdir
        self.password = password
        self.tls = tls  # {"cert": path, "key": path, "ca": path}
        self.extra_args = extra_args or []
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        args = [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                "--daemonize", "no", "--loglevel", "warning"]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls["cert"],
                     "--tls-key-file", self.tls["key"], "--tls-ca-cert-file", self.tls["ca"],
                     "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        return args + self.extra_args

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def cli(self, *args: str) -> str:
        cmd = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port)]
        if self.password:
            cmd += ["--no-auth-warning", "-a", self.password]
        if self.tls:
            cmd += ["--tls", "--cacert", self.tls["ca"]]
        return subprocess.run(cmd + list(args), check=True, capture_output=True, text=True, timeout=10).stdout


@pytest.fixture
def redis_factory(tmp_path):
    servers: list[RedisServer] = []

    def make(**kwargs) -> RedisServer:
        workdir = Path(tempfile.mkdtemp(dir=tmp_path, prefix="redis-"))
        server = RedisServer(workdir, **kwargs)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
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
