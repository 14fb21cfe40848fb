"""Real servers for tests and benchmarks, without pytest: free ports and private redis-server processes."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# what a bound on an operation's duration allows beyond the timeout it proves is honoured: scheduling
# and start-up on a loaded 2-core machine; far below what an unbounded wait (a drip) would take
LOAD_MARGIN_S = 5.0

# how long to wait for a server we started to listen: generous, the box may be loaded (returns at once
# when it listens, so only a broken start waits this long)
START_DEADLINE = 30.0


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = START_DEADLINE) -> None:
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


PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PostgresCluster:
    """A private PostgreSQL cluster (Debian's binaries) on a free loopback port, run as the postgres user
    (initdb refuses root), with password (scram-sha-256) authentication and a small max_connections.
    The machine's shared cluster on 5432 trusts every local login, so wrong passwords and a full server
    can only be shown on one of our own."""

    def __init__(self, password: str, max_connections: int = 10, run_as: str = "postgres") -> None:
        self.password = password
        self.max_connections = max_connections
        self.run_as = run_as
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="emp-pg-"))

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", self.run_as, "--"] if os.geteuid() == 0 else []
        subprocess.run(prefix + list(argv), check=True, capture_output=True, timeout=120)

    def start(self) -> "PostgresCluster":
        if os.geteuid() == 0:
            shutil.chown(self.dir, self.run_as)
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, self.run_as)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "--auth=scram-sha-256",
                  f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync")
        pwfile.unlink()
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   f"-c max_connections={self.max_connections} -c fsync=off")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-o", options, "-l", str(self.dir / "log"),
                  "-w", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # never started
        shutil.rmtree(self.dir, ignore_errors=True)


def kill_processes_working_in(folder: Path) -> None:
    """SIGKILL every process whose working directory is ``folder`` or below it: a playbook that
    ansible-runner started in a job's project folder names no unique path on its command line."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd").removesuffix(" (deleted)"))
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def kill_processes_mentioning(text: str) -> None:
    """SIGKILL every process whose command line contains ``text``: ansible-core 2.21 starts each worker
    in a session of its own, so killing a playbook's process group leaves a worker that outlives it."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
