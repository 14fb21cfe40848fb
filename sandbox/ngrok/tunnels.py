"""Public endpoints of the stand-in: loopback listeners that forward to each tunnel's upstream.

An endpoint outlives the tunnel it served: after the tunnel is deleted an HTTP endpoint keeps
its port and answers ERR_NGROK_3200 (offline), and a tunnel re-created with the same name gets
the same endpoint back, as a reserved ngrok domain would.
"""
from __future__ import annotations

import http.client
import logging
import secrets
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from . import pages
from .config import TunnelSpec, is_loopback

UPSTREAM_CONNECT_TIMEOUT = 5.0
UPSTREAM_RESPONSE_TIMEOUT = 60.0
RELAY_CHUNK = 65536
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "proxy-connection"})

log = logging.getLogger("ngrok")


class Metrics:
    """Counters shaped like the agent API's ``metrics`` object (rates and percentiles stay 0)."""

    _ZERO = {"rate1": 0, "rate5": 0, "rate15": 0, "p50": 0, "p90": 0, "p95": 0, "p99": 0}

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.conns = 0
        self.gauge = 0
        self.http = 0

    def opened(self, http_request: bool = False) -> None:
        with self._lock:
            self.conns += 1
            self.gauge += 1
            self.http += int(http_request)

    def closed(self) -> None:
        with self._lock:
            self.gauge -= 1

    def as_dict(self, proto: str) -> dict:
        data = {"conns": {"count": self.conns, "gauge": self.gauge, **self._ZERO}}
        if proto == "http":
            data["http"] = {"count": self.http, **self._ZERO}
        return data


class Tunnel:
    def __init__(self, spec: TunnelSpec, endpoint: "Endpoint") -> None:
        self.spec = spec
        self.endpoint = endpoint
        self.id = secrets.token_hex(16)
        self.metrics = Metrics()
        self.fault: str | None = None  # stand-in only: "offline" makes the URL answer ERR_NGROK_3200
        self.started_at = time.time()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def public_url(self) -> str:
        return self.endpoint.public_url

    def as_json(self) -> dict:
        from urllib.parse import quote

        return {
            "ID": self.id,
            "name": self.name,
            "uri": "/api/tunnels/" + quote(self.name, safe=""),
            "public_url": self.public_url,
            "proto": self.spec.proto,
            "config": {"addr": self.spec.upstream.display, "inspect": self.spec.inspect},
            "metrics": self.metrics.as_dict(self.spec.proto),
        }


def connect_upstream(tunnel: Tunnel) -> socket.socket:
    """A TCP connection to the tunnel's upstream; loopback only, by the sandbox's rule."""
    upstream = tunnel.spec.upstream
    if not is_loopback(upstream.host):
        raise ConnectionRefusedError("the sandbox stand-in forwards to loopback addresses only")
    return socket.create_connection((upstream.host.strip("[]"), upstream.port), timeout=UPSTREAM_CONNECT_TIMEOUT)


def relay(left: socket.socket, right: socket.socket, on_done: Callable[[], None] | None = None,
          left_read: Callable[[int], bytes] | None = None) -> None:
    """Copies bytes both ways until both directions end, then closes both sockets.

    ``left_read`` reads the left side when some of its bytes already sit in a buffer (an HTTP
    server's rfile after the request head).
    """

    def pump(read: Callable[[int], bytes], dst: socket.socket) -> None:
        try:
            while True:
                data = read(RELAY_CHUNK)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    for sock in (left, right):
        sock.settimeout(None)
    other = threading.Thread(target=pump, args=(right.recv, left), daemon=True)
    other.start()
    pump(left_read or left.recv, right)
    other.join()
    for sock in (left, right):
        try:
            sock.close()
        except OSError:
            pass
    if on_done:
        on_done()


def _refusal_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused" if not exc.args or exc.args[0] == 111 else f"connect: {exc.args[-1]}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "i/o timeout"
    return f"connect: {exc.strerror or exc}"


class Endpoint:
    """A loopback listener; ``tunnel`` is the tunnel it serves now, None when that tunnel is gone."""

    proto = "http"

    def __init__(self, port: int = 0) -> None:
        self.tunnel: Tunnel | None = None
        self.port = port

    @property
    def public_url(self) -> str:
        return f"{self.proto}://127.0.0.1:{self.port}"

    def close(self) -> None:
        raise NotImplementedError


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    endpoint: "HttpEndpoint"

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001 - http.server signature
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ngrok-sandbox"

    def version_string(self) -> str:
        return self.server_version
    server: _ProxyServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server signature
        log.debug("%s %s", self.address_string(), format % args)

    # Every method goes through the same path; ngrok forwards them all.
    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_page(self, page: tuple[int, str, bytes]) -> None:
        status, code, body = page
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header(pages.ERROR_HEADER, code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward_headers(self) -> dict[str, str]:
        headers = {key: value for key, value in self.headers.items() if key.lower() not in HOP_BY_HOP}
        headers.pop("Content-Length", None)
        headers["X-Forwarded-For"] = self.client_address[0]
        headers["X-Forwarded-Host"] = self.headers.get("Host", "")
        headers["X-Forwarded-Proto"] = self.server.endpoint.proto
        return headers

    def _serve(self) -> None:
        endpoint = self.server.endpoint
        tunnel = endpoint.tunnel
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        if tunnel is None or tunnel.fault == "offline":
            self._send_page(pages.endpoint_offline(endpoint.public_url))
            return
        if pages.is_browser(self.headers.get("User-Agent")) and "ngrok-skip-browser-warning" not in self.headers:
            self._send_page(pages.browser_warning(self.headers.get("Host") or endpoint.public_url))
            return
        tunnel.metrics.opened(http_request=True)
        try:
            if "upgrade" in self.headers.get("Connection", "").lower() and self.headers.get("Upgrade"):
                self._relay_upgrade(tunnel, body)
            else:
                self._proxy(tunnel, body)
        finally:
            tunnel.metrics.closed()

    def _connect(self, tunnel: Tunnel) -> socket.socket | None:
        upstream = tunnel.spec.upstream
        try:
            sock = connect_upstream(tunnel)
        except OSError as exc:
            log.warning("upstream refused: tunnel=%s addr=%s err=%s", tunnel.name, upstream.display, exc)
            self._send_page(pages.upstream_refused(upstream.display, upstream.hostport, _refusal_reason(exc)))
            return None
        if upstream.scheme == "https":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # like ngrok, which does not verify upstream certificates
            sock = context.wrap_socket(sock, server_hostname=upstream.host)
        return sock

    def _proxy(self, tunnel: Tunnel, body: bytes) -> None:
        sock = self._connect(tunnel)
        if sock is None:
            return
        upstream = tunnel.spec.upstream
        conn = http.client.HTTPConnection(upstream.host, upstream.port, timeout=UPSTREAM_RESPONSE_TIMEOUT)
        conn.sock = sock
        try:
            conn.request(self.command, self.path, body=body or None, headers=self._forward_headers())
            response = conn.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError) as exc:
            log.warning("invalid upstream response: tunnel=%s addr=%s err=%r", tunnel.name, upstream.display, exc)
            self._send_page(pages.invalid_upstream_response(type(exc).__name__))
            return
        finally:
            conn.close()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() not in ("content-length", "server", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _relay_upgrade(self, tunnel: Tunnel, body: bytes) -> None:
        """WebSockets and other upgrades: replay the request, then relay raw bytes both ways."""
        sock = self._connect(tunnel)
        if sock is None:
            return
        lines = [f"{self.command} {self.path} HTTP/1.1"]
        lines += [f"{key}: {value}" for key, value in self.headers.items()]
        lines += [f"X-Forwarded-For: {self.client_address[0]}"]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.wfile.flush()
        self.close_connection = True
        relay(self.connection, sock, left_read=self.rfile.read1)


class HttpEndpoint(Endpoint):
    proto = "http"

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self._server = _ProxyServer(("127.0.0.1", port), _ProxyHandler)
        self._server.endpoint = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"endpoint-{self.port}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class TcpEndpoint(Endpoint):
    proto = "tcp"

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind(("127.0.0.1", port))
            self._sock.listen(64)
        except OSError:
            self._sock.close()
            raise
        self.port = self._sock.getsockname()[1]
        self._closed = threading.Event()
        self._active: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, name=f"endpoint-{self.port}", daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _address = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        tunnel = self.tunnel
        if tunnel is None or tunnel.fault == "offline":
            client.close()
            return
        try:
            upstream = connect_upstream(tunnel)
        except OSError as exc:
            # ngrok's TCP edge has no page to show: it closes the connection.
            log.warning("upstream refused: tunnel=%s addr=%s err=%s", tunnel.name, tunnel.spec.upstream.display, exc)
            client.close()
            return
        tunnel.metrics.opened()
        with self._lock:
            self._active.update((client, upstream))

        def done() -> None:
            tunnel.metrics.closed()
            with self._lock:
                self._active.difference_update((client, upstream))

        relay(client, upstream, done)

    def close(self) -> None:
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            active = list(self._active)
        for sock in active:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def open_endpoint(proto: str, port: int = 0) -> Endpoint:
    return HttpEndpoint(port) if proto == "http" else TcpEndpoint(port)
