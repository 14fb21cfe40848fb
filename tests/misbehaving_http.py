"""A real HTTP server on a free loopback port that misbehaves on chosen routes (no pytest here).

Routes that match a rule (method, path regex) get a fault: a body dripped one byte at a time, a
body cut short, a broken gzip body, HTML where JSON belongs, or bytes that are not HTTP at all.
Every other request is forwarded to ``upstream`` (a real service) when one is given, else 404.
Tests start it, point a module at it and stop it; stopping ends every drip at once.
"""
from __future__ import annotations

import http.client
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

Fault = Callable[[BaseHTTPRequestHandler, threading.Event], None]


def _head(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str]) -> None:
    lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    handler.close_connection = True


def answer(status: int, content_type: str, body: bytes) -> Fault:
    """A well-formed answer (for HTML or error pages where JSON is expected)."""
    def act(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
        _head(handler, status, {"Content-Type": content_type, "Content-Length": str(len(body))})
        handler.wfile.write(body)
    return act


def drip(size: int = 120, interval: float = 1.0, content_type: str = "application/json",
         status: int = 200) -> Fault:
    """Headers at once, then the body one byte per ``interval`` seconds (``size`` bytes in all)."""
    def act(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
        _head(handler, status, {"Content-Type": content_type, "Content-Length": str(size)})
        for dummy in range(size):
            if stop.wait(interval):
                return
            handler.wfile.write(b" ")
    return act


def drip_headers(interval: float = 1.0) -> Fault:
    """The status line and headers themselves, one byte per ``interval`` seconds, never finished."""
    def act(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
        handler.close_connection = True
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
            if stop.wait(interval):
                return
            handler.wfile.write(bytes([byte]))
    return act


def truncated(sent: bytes = b'{"status": "o', promised: int = 100, content_type: str = "application/json") -> Fault:
    """Promises ``promised`` bytes (Content-Length), sends ``sent``, closes the connection."""
    def act(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
        _head(handler, 200, {"Content-Type": content_type, "Content-Length": str(promised)})
        handler.wfile.write(sent)
    return act


def truncated_chunked() -> Fault:
    """A chunked body whose connection closes in the middle of a chunk."""
    def act(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
        _head(handler, 200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        handler.wfile.write(b"40\r\n{\"status\": ")
    return act


def bad_gzip(content_type: str = "application/json") -> Fault:
    """Content-Encoding: gzip over bytes that are not gzip."""
    body = b"\x1f\x8b\x08\x00garbage that no inflater accepts" + bytes(range(40))

    def act(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
        _head(handler, 200, {"Content-Type": content_type, "Content-Encoding": "gzip",
                             "Content-Length": str(len(body))})
        handler.wfile.write(body)
    return act


def not_http() -> Fault:
    """A greeting of another protocol, then the connection closes."""
    def act(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
        handler.close_connection = True
        handler.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
    return act


Rule = tuple  # (method or "*", path regex, Fault or (status, content type, body))


class MisbehavingServer:
    def __init__(self, rules: list[Rule] | None = None, upstream: str | None = None,
                 prefixes: tuple[str, ...] = ()) -> None:
        """``prefixes``: first path segments dropped before forwarding, so that one server can stand
        for several fronts (``/gzip/health`` is forwarded as ``/health``)."""
        self.prefixes = prefixes
        self.rules = [(method, re.compile(pattern), fault if callable(fault) else answer(*fault))
                      for method, pattern, fault in rules or []]
        self.upstream = urlsplit(upstream) if upstream else None
        self.paths: list[str] = []
        self.faults_served = 0
        self.stopping = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.request_body = body  # for faults that look at what was sent
                outer.paths.append(self.path)
                fault = outer.fault_for(self.command, self.path.split("?")[0])
                try:
                    if fault is not None:
                        outer.faults_served += 1
                        fault(self, outer.stopping)
                    else:
                        outer.forward(self, body)
                except OSError:
                    self.close_connection = True  # the client went away: nothing to tell it

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.where = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def add(self, method: str, pattern: str, fault: Fault | tuple) -> MisbehavingServer:
        """One more rule; earlier rules win."""
        self.rules.append((method, re.compile(pattern), fault if callable(fault) else answer(*fault)))
        return self

    def fault_for(self, method: str, path: str) -> Fault | None:
        for wanted, pattern, fault in self.rules:
            if wanted in ("*", method) and pattern.fullmatch(path):
                return fault
        return None

    def forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if self.upstream is None:
            answer(404, "application/json", b'{"error": "no such route"}')(handler, self.stopping)
            return
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=10)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(handler.command, self.upstream_path(handler.path), body=body, headers=headers)
            reply = conn.getresponse()
            content = reply.read()
            handler.send_response(reply.status)
            handler.send_header("Content-Type", reply.getheader("Content-Type", ""))
            handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content)
        except OSError:
            answer(502, "text/html", b"<html><body>502 Bad Gateway</body></html>")(handler, self.stopping)
        finally:
            conn.close()

    def upstream_path(self, path: str) -> str:
        first, dummy, rest = path.lstrip("/").partition("/")
        return "/" + rest if first in self.prefixes else path

    def close(self) -> None:
        self.stopping.set()  # ends every drip
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> MisbehavingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
