# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A toy service for the molecule scenarios and the tests: it holds one named Redis connection.

`run` reads <base>/current/release.json ({"service", "version", "faults", "client_name"}) and keeps a
connection to Redis named after the release's client name (CLIENT SETNAME), reconnecting when Redis
goes away, unless the release has the fault `no_redis_client`. `restart` and `stop` manage the
process through <state>/<service>.pid; restart returns at once (the service runs detached).
Standard library only, so any Python runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse


def resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def connect(url: str, client_name: str | None) -> socket.socket:
    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=2)
    if parsed.password:
        sock.sendall(resp("AUTH", parsed.password))
        sock.recv(1024)
    if client_name:
        sock.sendall(resp("CLIENT", "SETNAME", client_name))
        if not sock.recv(1024).startswith(b"+OK"):
            raise OSError("CLIENT SETNAME refused")
    return sock


def run(args: argparse.Namespace) -> int:
    release_dir = Path(args.base_dir, "current").resolve()
    release = json.loads((release_dir / "release.json").read_text())
    client_name = None if "no_redis_client" in release.get("faults", []) else release.get("client_name", "emp-toy")
    Path(args.state_dir, f"{args.service}.version").write_text(release.get("version", "?"))
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    sock = None
    while not stop["now"]:
        try:
            if sock is None:
                sock = connect(args.redis_url, client_name)
            sock.sendall(resp("PING"))
            if not sock.recv(64):
                raise OSError("connection closed")
        except OSError:
            if sock is not None:
                sock.close()
            sock = None
        time.sleep(0.2)
    if sock is not None:
        sock.close()
    return 0


def pidfile(args: argparse.Namespace) -> Path:
    return Path(args.state_dir, f"{args.service}.pid")


def stop(args: argparse.Namespace) -> int:
    path = pidfile(args)
    if not path.exists():
        return 0
    pid = int(path.read_text().strip() or 0)
    try:
        os.kill(pid, signal.SIGTERM)
        for dummy in range(50):
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    path.unlink(missing_ok=True)
    return 0


def restart(args: argparse.Namespace) -> int:
    stop(args)
    Path(args.state_dir).mkdir(parents=True, exist_ok=True)
    log = open(Path(args.state_dir, f"{args.service}.log"), "ab")  # noqa: SIM115 - handed to the child
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "run", "--base-dir", args.base_dir, "--redis-url", args.redis_url,
         "--state-dir", args.state_dir, "--service", args.service],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)
    pidfile(args).write_text(str(child.pid))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["run", "restart", "stop"])
    parser.add_argument("--base-dir", required=True, help="release base dir holding current -> releases/<version>")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--state-dir", required=True, help="pid, log and version files")
    parser.add_argument("--service", default="toy")
    args = parser.parse_args()
    return {"run": run, "restart": restart, "stop": stop}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
