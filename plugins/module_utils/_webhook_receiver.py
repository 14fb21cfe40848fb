# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The HTTP receiver emp.deploy.webhook_probe runs on the target while it probes (stdlib only).

It records every request with its arrival time and answers 500 to the first ``fail_first``
attempts of each event (by event id), 200 afterwards, so the probe can watch the service retry.
"""

from __future__ import annotations

import errno
import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY_BYTES = 8 * 1024 * 1024
EVENT_ID_HEADERS = ("x-event-id", "webhook-id", "x-github-delivery")


class ReceiverError(Exception):
    """The receiver could not start (port taken, address not available, ...)."""


class Delivery:
    """One request as the receiver saw it."""

    __slots__ = ("arrived", "arrived_wall", "path", "headers", "body", "event_id", "attempt", "status")

    def __init__(self, arrived, arrived_wall, path, headers, body, event_id, attempt, status):
        self.arrived = arrived            # time.monotonic() at arrival
        self.arrived_wall = arrived_wall  # time.time() at arrival
        self.path = path
        self.headers = headers            # lower-case names
        self.body = body                  # raw bytes, exactly as signed
        self.event_id = event_id
        self.attempt = attempt            # 1-based attempt number of this event id
        self.status = status              # what the receiver answered

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def event_id_of(headers: dict[str, str], body: bytes) -> str:
    """The event id a retry must keep: X-Event-ID, then the body's event_id, then a body hash."""
    for name in EVENT_ID_HEADERS:
        if headers.get(name):
            return headers[name]
    try:
        parsed = json.loads(body.decode("utf-8"))
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("event_id"):
        return str(parsed["event_id"])
    return "sha256:" + hashlib.sha256(body).hexdigest()[:16]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "emp-deploy-webhook-probe"
    disable_nagle_algorithm = True  # one small answer per request: no 40 ms Nagle/delayed-ACK stalls

    server: _Server  # the server this handler was made by, with its receiver

    def do_POST(self):  # noqa: N802  # http.server naming
        self.server.probe_receiver.handle(self)

    do_PUT = do_PATCH = do_GET = do_DELETE = do_POST

    def log_message(self, format, *args):  # noqa: A002  # pylint: disable=redefined-builtin
        pass  # a module must not write to stdout/stderr


class _Server(ThreadingHTTPServer):
    probe_receiver: ProbeReceiver
    daemon_threads = True
    allow_reuse_address = False  # a taken port must fail, not be shared
    request_queue_size = 128


class ProbeReceiver:
    """Listens on host:port (0 = a free port) for deliveries to ``path``."""

    def __init__(self, host: str, port: int, path: str, fail_first: int = 0):
        self.host = host
        self.requested_port = port
        self.path = path
        self.fail_first = fail_first
        self.deliveries: list[Delivery] = []  # arrival order
        self.stray_requests = 0   # requests to another path or with another method
        self._attempts: dict[str, int] = {}
        self._cond = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self.requested_port

    @property
    def url(self) -> str:
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d%s" % (host, self.port, self.path)

    def start(self) -> "ProbeReceiver":
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("ProbeServer", (_Server,), {"address_family": family})
        try:
            self._server = server_class((self.host, self.requested_port), _Handler)
        except OSError as exc:
            where = "%s:%d" % (self.host, self.requested_port)
            if exc.errno == errno.EADDRINUSE:
                raise ReceiverError("receiver port %s is taken by another process; choose another receiver_port "
                                    "or 0 for a free one" % where) from exc
            raise ReceiverError("receiver cannot listen on %s: %s" % (where, exc.strerror or exc)) from exc
        self._server.probe_receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="webhook-probe-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> bool:
        """Stops listening and frees the port; True once nothing listens any more."""
        if self._server is None:
            return True
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        return True

    # ------------------------------------------------------------------ requests
    def handle(self, request: BaseHTTPRequestHandler) -> None:
        arrived, arrived_wall = time.monotonic(), time.time()
        length = int(request.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            # Not read, so the connection cannot be reused: answer and close it.
            request.close_connection = True
            with self._cond:
                self.stray_requests += 1
            self._answer(request, 413, b'{"error":"body too large"}')
            return
        body = request.rfile.read(length) if length > 0 else b""
        headers = dict((name.lower(), value) for name, value in request.headers.items())
        path = request.path.split("?", 1)[0]
        if request.command != "POST" or path.rstrip("/") != self.path.rstrip("/"):
            with self._cond:
                self.stray_requests += 1
            self._answer(request, 404, b'{"error":"not the probe endpoint"}')
            return
        event_id = event_id_of(headers, body)
        with self._cond:
            attempt = self._attempts.get(event_id, 0) + 1
            self._attempts[event_id] = attempt
            status = 500 if attempt <= self.fail_first else 200
            self.deliveries.append(Delivery(arrived, arrived_wall, path, headers, body, event_id, attempt, status))
            self._cond.notify_all()
        self._answer(request, status, b'{"received":true}' if status == 200 else b'{"error":"fail_first"}')

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def snapshot(self) -> list:
        with self._cond:
            return list(self.deliveries)

    def wait(self, done, deadline: float) -> bool:
        """Blocks until ``done(deliveries)`` is true or time.monotonic() passes ``deadline``."""
        with self._cond:
            while True:
                if done(self.deliveries):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
