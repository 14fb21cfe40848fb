# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A minimal, dependency-free RESP2 client for read-only probes.

Why not redis-py: importing redis-py 8 costs 100-180 ms on every task (it pulls in asyncio and,
when installed, the OpenTelemetry SDK), more than the rest of a probe's work, and it retries with
backoff by default. A probe sends a handful of commands over one connection, with a timeout on
every socket operation and no retries at all, so that an outage is seen the moment it happens.
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import parse_qs, unquote, urlsplit


class RespError(Exception):
    """Base class: the message is meant for people."""


class ConnectFailed(RespError):
    """No connection (refused, unknown host, TLS handshake) or the server closed it."""


class ReplyTimeout(RespError):
    """The server did not answer within the timeout."""


class ProtocolMismatch(RespError):
    """The peer answered something that is not RESP: not a Redis server."""

    def __init__(self, first_line: bytes):
        self.first_line = first_line.decode("ascii", "replace").strip()[:80]
        super().__init__(f"answered '{self.first_line}' instead of a Redis reply")


class ReplyError(RespError):
    """An error reply (-ERR ...). `code` is its first word (ERR, WRONGPASS, NOAUTH, NOPERM, ...)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = message.split(" ", 1)[0]


AUTH_CODES = ("WRONGPASS", "NOAUTH", "NOPERM")


def parse_redis_url(url: str) -> dict:
    """redis://, rediss:// and unix:// URLs to connection settings (credentials unquoted)."""
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    settings: dict = {
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else query.get("password"),
        "tls": parts.scheme == "rediss",
        "unix_path": None,
        "host": None,
        "port": None,
        "db": int(query.get("db", 0)),
    }
    if parts.scheme == "unix":
        settings["unix_path"] = parts.path
        return settings
    settings["host"] = parts.hostname or "127.0.0.1"
    settings["port"] = parts.port or 6379
    path = parts.path.strip("/")
    if path:
        settings["db"] = int(path)
    return settings


def encode_command(args: tuple) -> bytes:
    chunks = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        chunks.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(chunks)


class RespConnection:
    """One connection, RESP2, every socket operation bounded by a timeout, never a retry."""

    def __init__(self, *, host: str | None = None, port: int | None = None, unix_path: str | None = None,
                 tls: bool = False, ca_path: str | None = None, cert_path: str | None = None,
                 key_path: str | None = None, validate_certs: bool = True,
                 connect_timeout: float = 5.0, command_timeout: float = 5.0):
        self.host, self.port, self.unix_path = host, port, unix_path
        self.tls, self.ca_path, self.cert_path, self.key_path = tls, ca_path, cert_path, key_path
        self.validate_certs = validate_certs
        self.connect_timeout, self.command_timeout = connect_timeout, command_timeout
        self._sock: socket.socket | None = None
        self._reader = None

    # --- connection ---------------------------------------------------------------------------

    def _open_socket(self) -> socket.socket:
        if self.unix_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.connect_timeout)
            sock.connect(self.unix_path)
            return sock
        return socket.create_connection((self.host, self.port), timeout=self.connect_timeout)

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_path)
        if not self.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_path:
            context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def connect(self, *, username: str | None = None, password: str | None = None, db: int = 0,
                client_name: str | None = None) -> "RespConnection":
        try:
            sock = self._open_socket()
            if self.tls:
                sock = self._tls_context().wrap_socket(sock, server_hostname=self.host)
        except socket.timeout:
            raise ReplyTimeout(f"no connection within {self.connect_timeout}s") from None
        except ssl.SSLError as exc:
            raise ConnectFailed(f"TLS handshake failed: {exc}") from None
        except OSError as exc:
            raise ConnectFailed(exc.strerror or str(exc)) from None
        sock.settimeout(self.command_timeout)
        self._sock = sock
        self._reader = sock.makefile("rb")
        if password:
            self.execute(*(("AUTH", username, password) if username else ("AUTH", password)))
        if db:
            self.execute("SELECT", db)
        if client_name:
            self.execute("CLIENT", "SETNAME", client_name)
        return self

    def close(self) -> None:
        for closeable in (self._reader, self._sock):
            if closeable is not None:
                try:
                    closeable.close()
                except OSError:
                    pass
        self._sock = self._reader = None

    def __enter__(self) -> "RespConnection":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- commands -----------------------------------------------------------------------------

    def _send(self, payload: bytes) -> None:
        try:
            self._sock.sendall(payload)
        except socket.timeout:
            raise ReplyTimeout(f"sending took longer than {self.command_timeout}s") from None
        except OSError as exc:
            raise ConnectFailed(f"connection lost while sending: {exc.strerror or exc}") from None

    def execute(self, *args):
        """Sends one command and returns its reply; an error reply raises ReplyError."""
        self._send(encode_command(args))
        reply = self._read_reply()
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def pipeline(self, commands: list) -> list:
        """Sends every command in one write and reads every reply; error replies are returned, not raised."""
        if not commands:
            return []
        self._send(b"".join(encode_command(tuple(command)) for command in commands))
        return [self._read_reply() for _command in commands]

    # --- replies ------------------------------------------------------------------------------

    def _readline(self) -> bytes:
        try:
            line = self._reader.readline()
        except socket.timeout:
            raise ReplyTimeout(f"no reply within {self.command_timeout}s") from None
        except OSError as exc:
            raise ConnectFailed(f"connection lost while reading: {exc.strerror or exc}") from None
        if not line:
            raise ConnectFailed("the server closed the connection")
        if not line.endswith(b"\r\n"):
            raise ProtocolMismatch(line)
        return line[:-2]

    def _read_exactly(self, size: int) -> bytes:
        try:
            data = self._reader.read(size + 2)
        except socket.timeout:
            raise ReplyTimeout(f"no reply within {self.command_timeout}s") from None
        if len(data) != size + 2:
            raise ConnectFailed("the server closed the connection in the middle of a reply")
        return data[:-2]

    def _read_reply(self):
        line = self._readline()
        prefix, rest = line[:1], line[1:]
        if prefix == b"+":
            return rest.decode("utf-8", "replace")
        if prefix == b"-":
            return ReplyError(rest.decode("utf-8", "replace"))
        if prefix == b":":
            return int(rest)
        if prefix == b"$":
            size = int(rest)
            return None if size < 0 else self._read_exactly(size).decode("utf-8", "replace")
        if prefix == b"*":
            count = int(rest)
            return None if count < 0 else [self._read_reply() for _index in range(count)]
        raise ProtocolMismatch(line)


def parse_info(text: str) -> dict:
    """INFO text to a dict: numbers become numbers, dbN lines become dicts."""
    info: dict = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        if key.startswith("db") and key[2:].isdigit():
            info[key] = {name: _number(number) for name, number in (pair.split("=", 1) for pair in value.split(","))}
        else:
            info[key] = _number(value)
    return info


def parse_client_list(text: str) -> list:
    """CLIENT LIST text to one dict per connection."""
    clients = []
    for line in text.splitlines():
        if line.strip():
            clients.append(dict(field.split("=", 1) for field in line.split(" ") if "=" in field))
    return clients


def _number(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value
