"""Test harness for the sandbox's ngrok stand-in: the agent as a real process, and small upstreams
(HTTP, TCP echo, garbage) to forward to. Loopback only. Import it as ``ngrok_harness`` (tests/ is on
the tests' import path, as for ``servers``)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from servers import free_port

BIN = Path(__file__).resolve().parents[1] / "sandbox" / "bin" / "ngrok"
TEST_AUTHTOKEN = "emp_sandbox_test_authtoken_0001"


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not met after {timeout}s")


def http(method: str, url: str, body: object = None, headers: dict | None = None,
         timeout: float = 5.0) -> tuple[int, dict, bytes]:
    """A plain urllib request that returns (status, headers, body) for every status."""
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in request.headers:
        request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def pids_using(needle: str) -> list[int]:
    """Processes whose command line contains ``needle`` (a unique tmp path), for cleanup by id."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            pids.append(int(entry.name))
    return pids


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class NgrokStandIn:
    """sandbox/bin/ngrok started on a config of its own in ``workdir``, with a free web_addr port."""

    def __init__(self, workdir: Path, *, authtoken: str | None = TEST_AUTHTOKEN, web_port: int | None = None,
                 config: dict | None = None, python: str = sys.executable) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.web_port = web_port or free_port()
        self.authtoken = authtoken
        self.python = python
        self.config_path = self.workdir / "ngrok.yml"
        self.log_path = self.workdir / "ngrok.log"
        self.proc: subprocess.Popen | None = None
        self.write_config(config or {})

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def write_config(self, extra: dict) -> None:
        agent = {"web_addr": f"127.0.0.1:{self.web_port}"}
        if self.authtoken:
            agent["authtoken"] = self.authtoken
        data = {"version": "3", "agent": agent, **extra}
        self.config_path.write_text(json.dumps(data, indent=2))  # JSON is YAML too
        os.chmod(self.config_path, 0o600)

    def command(self, *args: str) -> list[str]:
        return [self.python, str(BIN), *args]

    def start(self, *args: str, env: dict | None = None, wait: bool = True) -> "NgrokStandIn":
        argv = self.command("start", *(args or ("--all",)), "--config", str(self.config_path), "--log", "stdout")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={**os.environ, **(env or {})})
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ngrok stand-in exited with {self.proc.returncode}: {self.log()}")
            try:
                return http("GET", self.api_url + "/api/tunnels", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout, what=f"ngrok stand-in API on {self.api_url}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def cleanup(self) -> None:
        """Kills this stand-in and any agent another process started on this workdir's files."""
        self.kill()
        kill_pids(pids_using(str(self.workdir)))

    # API shortcuts
    def api(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        status, _headers, raw = http(method, self.api_url + path, body)
        return status, (json.loads(raw) if raw.strip() else None)

    def tunnels(self) -> list[dict]:
        return self.api("GET", "/api/tunnels")[1]["tunnels"]

    def tunnel(self, name: str) -> dict | None:
        return next((t for t in self.tunnels() if t["name"] == name), None)

    def create(self, name: str, addr: str, proto: str = "http") -> dict:
        status, body = self.api("POST", "/api/tunnels", {"name": name, "addr": addr, "proto": proto})
        assert status == 201, body
        return body

    def set_fault(self, name: str, fault: str | None) -> dict:
        return self.api("PUT", f"/api/_sandbox/tunnels/{name}/fault", {"fault": fault})[1]


# --------------------------------------------------------------------------- upstreams
class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server signature
        pass

    def do_GET(self) -> None:
        self.server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers)})
        if self.path.startswith("/health"):
            body, status = json.dumps({"status": "ok"}).encode(), 200
        elif self.path.startswith("/status/"):
            status, body = int(self.path.rsplit("/", 1)[1]), b"status page"
        else:
            body, status = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        self.server.requests.append({"method": "POST", "path": self.path, "body": data.decode(errors="replace")})
        body = json.dumps({"echo": data.decode(errors="replace")}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class HttpUpstream:
    """A small HTTP service on a fixed loopback port that can be stopped and started again."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[dict] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> "HttpUpstream":
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _UpstreamHandler)
        server.daemon_threads = True
        server.requests = self.requests  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class TcpUpstream:
    """A TCP service: ``echo`` echoes bytes back, ``garbage`` answers anything with non-HTTP bytes."""

    def __init__(self, mode: str = "echo", port: int | None = None) -> None:
        self.mode = mode
        self.port = port or free_port()
        self._sock: socket.socket | None = None

    def start(self) -> "TcpUpstream":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        self._sock = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()
        return self

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _address = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    if self.mode == "garbage":
                        conn.sendall(b"\x00\x01 this is not HTTP\r\n\r\n")
                        return
                    conn.sendall(data)
            except OSError:
                return

    def stop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
