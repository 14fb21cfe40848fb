# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A small RFC 6455 WebSocket client on the standard library, for holding a connection open and counting.

The target may not have the ``websockets`` package, and a probe only needs the client handshake,
frame reading, answering pings and closing. Every step is bound by a deadline (monotonic clock), so
a server that accepts the TCP connection and then stalls, or drips its handshake, cannot hold the
probe past the hold time.

Messages never carry the URL's query or credentials: a query often holds a token.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
import time
from urllib.parse import urlsplit

from ansible_collections.emp.deploy.plugins.module_utils._http import url_problem

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
MAX_HEAD = 16 * 1024
MAX_PAYLOAD = 1024 * 1024
CLOSE_WAIT_S = 1.0
# a recv returns at least this often, so the hold's end is noticed on a silent connection
POLL_S = 0.25

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketError(Exception):
    """The connection could not be opened or broke the protocol; the message is for people."""


def ws_where(url: str) -> str:
    """host:port/path of a ws:// or wss:// URL, without credentials or query."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or (443 if parts.scheme.lower() == "wss" else 80)
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}{parts.path or '/'}"


def ws_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a WebSocket URL, or None."""
    return url_problem(url, ("ws", "wss"))


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")  # nosec B324 - RFC 6455


def encode_frame(opcode: int, payload: bytes = b"") -> bytes:
    """One final client frame; clients must mask (RFC 6455 section 5.3)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return head + mask + masked


class FrameReader:
    """Splits received bytes into frames: (fin, opcode, payload) tuples."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[bool, int, bytes]]:
        self.buffer += data
        frames: list[tuple[bool, int, bytes]] = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    def _next(self) -> tuple[bool, int, bytes] | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        if first & 0x70:
            raise WebSocketError("the server set reserved frame bits (an extension the probe did not ask for)")
        length = second & 0x7F
        offset = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length = struct.unpack("!H", buf[2:4])[0]
            offset = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length = struct.unpack("!Q", buf[2:10])[0]
            offset = 10
        if length > MAX_PAYLOAD:
            raise WebSocketError(f"the server sent a {length} byte frame, more than the probe reads ({MAX_PAYLOAD})")
        mask = b""
        if second & 0x80:  # servers must not mask, but reading a masked frame costs nothing
            if len(buf) < offset + 4:
                return None
            mask = buf[offset:offset + 4]
            offset += 4
        if len(buf) < offset + length:
            return None
        payload = buf[offset:offset + length]
        if mask:
            payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.buffer = buf[offset + length:]
        return bool(first & 0x80), first & 0x0F, payload


class Hold:
    """What one held connection saw."""

    def __init__(self) -> None:
        self.connected = False
        self.messages = 0
        self.pings = 0
        self.pongs = 0
        self.dropped = False
        self.close_code: int | None = None
        self.error: str | None = None
        self.held_s = 0.0
        self.handshake_ms: float | None = None


class WebSocketClient:
    """Opens one connection, holds it until ``hold_until`` (monotonic), answering pings, then closes."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, validate_certs: bool = True,
                 ca_path: str | None = None) -> None:
        self.url = url
        self.where = ws_where(url)
        self.headers = headers or {}
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.sock: socket.socket | None = None

    # ------------------------------------------------------------------ handshake
    def _tls(self, sock: socket.socket, host: str) -> socket.socket:
        context = ssl.create_default_context(cafile=self.ca_path)
        if not self.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context.wrap_socket(sock, server_hostname=host)

    def _request(self, key: str) -> bytes:
        parts = urlsplit(self.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", "User-Agent: emp.deploy"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _read_head(self, sock: socket.socket, ends: float) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            remaining = ends - time.monotonic()
            if remaining <= 0:
                raise WebSocketError(f"the server at {self.where} did not finish the WebSocket handshake in time")
            sock.settimeout(remaining)
            try:
                piece = sock.recv(4096)
            except (socket.timeout, TimeoutError):
                continue
            if not piece:
                raise WebSocketError(f"the server at {self.where} closed the connection during the handshake")
            data += piece
            if len(data) > MAX_HEAD:
                raise WebSocketError(f"the server at {self.where} sent more than {MAX_HEAD} bytes of handshake headers")
        head, _sep, rest = data.partition(b"\r\n\r\n")
        return head, rest

    def _check_answer(self, head: bytes, key: str) -> None:
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or not status[0].startswith("HTTP/"):
            raise WebSocketError(f"the server at {self.where} did not answer the WebSocket handshake with HTTP")
        if status[1] != "101":
            raise WebSocketError(f"the server at {self.where} refused the WebSocket upgrade with HTTP {' '.join(status[1:])}")
        fields = {}
        for line in lines[1:]:
            name, _sep, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if fields.get("sec-websocket-accept") != accept_key(key):
            raise WebSocketError(f"the server at {self.where} answered the handshake with a wrong Sec-WebSocket-Accept")

    def connect(self, ends: float) -> bytes:
        """Connects and upgrades by ``ends``; returns bytes that arrived after the handshake."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme.lower() == "wss" else 80)
        remaining = ends - time.monotonic()
        if remaining <= 0:
            raise WebSocketError(f"no time left to connect to {self.where}")
        try:
            sock = socket.create_connection((host, port), timeout=remaining)
        except (socket.timeout, TimeoutError):
            raise WebSocketError(f"cannot connect to {self.where} within {remaining:.1f} s") from None
        except OSError as exc:
            raise WebSocketError(f"cannot reach {self.where}: {exc}") from None
        self.sock = sock
        try:
            if parts.scheme.lower() == "wss":
                sock.settimeout(max(ends - time.monotonic(), 0.01))
                sock = self.sock = self._tls(sock, host)
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            sock.settimeout(max(ends - time.monotonic(), 0.01))
            sock.sendall(self._request(key))
            head, rest = self._read_head(sock, ends)
            self._check_answer(head, key)
            return rest
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise WebSocketError(f"TLS with {self.where} failed: {exc}") from None
        except (socket.timeout, TimeoutError):
            raise WebSocketError(f"the server at {self.where} did not finish the WebSocket handshake in time") from None
        except OSError as exc:
            raise WebSocketError(f"the connection to {self.where} broke during the handshake: {exc}") from None

    # ------------------------------------------------------------------ the hold
    def hold(self, connect_by: float, hold_s: float) -> Hold:
        """Connects by ``connect_by``, then holds for ``hold_s`` seconds from the moment it is open."""
        seen = Hold()
        started = time.monotonic()
        try:
            rest = self.connect(connect_by)
        except WebSocketError as exc:
            seen.error = str(exc)
            self.close_socket()
            return seen
        seen.connected = True
        seen.handshake_ms = round((time.monotonic() - started) * 1000.0, 3)
        opened = time.monotonic()
        try:
            self._read_until(opened + hold_s, rest, seen)
        except WebSocketError as exc:
            seen.dropped, seen.error = True, str(exc)
        seen.held_s = round(time.monotonic() - opened, 3)
        if not seen.dropped:
            self._close_politely()
        self.close_socket()
        return seen

    def _read_until(self, ends: float, pending: bytes, seen: Hold) -> None:
        reader = FrameReader()
        opened = time.monotonic()
        data = pending
        while True:
            for fin, opcode, payload in reader.feed(data):
                if opcode == OP_PING:
                    seen.pings += 1
                    self._send(OP_PONG, payload)
                elif opcode == OP_PONG:
                    seen.pongs += 1
                elif opcode == OP_CLOSE:
                    seen.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    reason = payload[2:].decode("utf-8", "replace")
                    self._send(OP_CLOSE, payload[:2])
                    raise WebSocketError(f"the server at {self.where} closed the WebSocket after "
                                         f"{time.monotonic() - opened:.1f} s (code {seen.close_code}"
                                         f"{': ' + reason if reason else ''})")
                elif opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
                    if fin:  # a fragmented message counts once, at its last frame
                        seen.messages += 1
                else:
                    raise WebSocketError(f"the server at {self.where} sent an unknown opcode {opcode}")
            remaining = ends - time.monotonic()
            if remaining <= 0:
                return
            received = self._recv(min(remaining, POLL_S))
            if received == b"":
                raise WebSocketError(f"the server at {self.where} dropped the connection after "
                                     f"{time.monotonic() - opened:.1f} s")
            data = received or b""

    def _recv(self, seconds: float) -> bytes | None:
        """Bytes, b"" when the peer closed, None when nothing arrived in ``seconds``."""
        sock = self.sock
        if sock is None:
            return b""
        sock.settimeout(max(seconds, 0.001))
        try:
            return sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return None
        except ssl.SSLWantReadError:
            return None
        except OSError as exc:
            raise WebSocketError(f"the connection to {self.where} broke: {exc}") from None

    def _send(self, opcode: int, payload: bytes = b"") -> None:
        if self.sock is None:
            return
        try:
            self.sock.settimeout(CLOSE_WAIT_S)
            self.sock.sendall(encode_frame(opcode, payload))
        except OSError as exc:
            raise WebSocketError(f"the connection to {self.where} broke while sending: {exc}") from None

    def _close_politely(self) -> None:
        """Sends a normal close and waits a moment for the server's, as the protocol asks."""
        try:
            self._send(OP_CLOSE, struct.pack("!H", 1000))
            ends = time.monotonic() + CLOSE_WAIT_S
            while time.monotonic() < ends:
                data = self._recv(ends - time.monotonic())
                if not data:  # closed, or nothing more in time
                    return
        except WebSocketError:
            return

    def close_socket(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
