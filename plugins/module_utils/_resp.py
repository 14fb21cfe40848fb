# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A minimal, dependency-free RESP2 client for read-only probes.

Why not redis-py: importing redis-py 8 costs 100-180 ms on every task (it pulls in asyncio and,
when installed, the OpenTelemetry SDK), more than the rest of a probe's work, and it retries with
backoff by default. A probe sends a handful of commands over one connection and never retries,
so that an outage is seen the moment it happens.

Every operation runs against a deadline, not a per-read timeout: a peer that drips one byte per
second would otherwise restart a socket timeout with every byte and hold the probe for ever.
The connection (name resolution, TCP, TLS handshake) must finish within connect_timeout, each
command's whole reply within command_timeout, and everything within the caller's overall
Deadline, whichever comes first.
"""

from __future__ import annotations

import math
import re
import socket
import ssl
import threading
import time
from urllib.parse import parse_qsl, unquote

RESP_TYPES = b"+-:$*"
READ_CHUNK = 65536
FOREIGN_PREVIEW = 80  # bytes of a non-RESP answer we wait for before naming it
MAX_HEADER = 65536  # a RESP header line is a few bytes; more without a newline is not RESP
# A socket timeout this close to the time left is left as it is: a settimeout() per read is a system
# call per read, and back-to-back commands would pay it for nothing. Bounds an overrun to 10 ms.
TIMEOUT_SLACK = 0.01
TLS_HINT = "is the server serving TLS on this port?"
PLAIN_HINT = "does this port expect TLS?"
# subcommands named with their command in messages and ACL hints: CLIENT LIST, FUNCTION LIST
CONTAINER_COMMANDS = ("ACL", "CLIENT", "CONFIG", "FUNCTION", "MEMORY", "OBJECT")


class RespError(Exception):
    """Base class: the message is meant for people."""


class ConnectFailed(RespError):
    """No connection: refused, unknown host, TLS handshake failed."""


class ConnectionLost(ConnectFailed):
    """The server closed or reset an open connection. The message reads after 'Redis at host:port'."""


class ReplyTimeout(RespError):
    """A deadline passed before the connection or a whole reply. The message reads after 'Redis at host:port'."""


class ProtocolMismatch(RespError):
    """The peer answered something that is not RESP: not a Redis server."""

    def __init__(self, first_line: bytes | bytearray):
        self.first_line = bytes(first_line).decode("ascii", "replace").strip()[:FOREIGN_PREVIEW]
        super().__init__(f"answered '{self.first_line}' instead of a Redis reply")


class ReplyError(RespError):
    """An error reply (-ERR ...). `code` is its first word (ERR, WRONGPASS, NOAUTH, NOPERM, ...);
    `command` names the command that got it (CLIENT LIST), when known."""

    def __init__(self, message: str, command: str | None = None):
        super().__init__(message)
        self.code = message.split(" ", 1)[0]
        self.command = command


class Deadline:
    """An instant by which an operation must be done, and the option people set it with."""

    def __init__(self, seconds: float | None, option: str = "timeout"):
        self.seconds = seconds
        self.option = option
        self.at = math.inf if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def sooner(self, seconds: float, option: str) -> Deadline:
        """This deadline or one `seconds` from now, whichever comes first."""
        own = Deadline(seconds, option)
        return own if own.at <= self.at else self

    def phrase(self) -> str:
        """'within 2 s (command_timeout)', for messages."""
        if self.option == "timeout":
            return f"within the probe's overall timeout of {self.seconds:g} s"
        return f"within {self.seconds:g} s ({self.option})"


# --- URLs ----------------------------------------------------------------------------------------

_HOST_PORT = re.compile(r"(?:\[(?P<ipv6>[0-9A-Za-z:.%]+)\]|(?P<host>[0-9A-Za-z._~-]*))(?::(?P<port>[^/?#]*))?\Z")


class UrlError(ValueError):
    """A URL that cannot be read. The message never quotes the URL: it may hold a password."""


def _host_port(text: str) -> tuple[str | None, int | None]:
    match = _HOST_PORT.match(text)
    if not match:
        raise UrlError("the host is not a name, an IPv4 address or a bracketed [IPv6] address")
    port_text = match.group("port")
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UrlError("the port is not a number between 1 and 65535")
        port = int(port_text)
    return match.group("ipv6") or match.group("host") or None, port


def _query(text: str) -> dict:
    if not text:
        return {}
    if any("=" not in part for part in text.split("&") if part):
        raise UrlError("the query is not a list of name=value pairs")
    return dict(parse_qsl(text, keep_blank_values=True))


def _db_number(text: str) -> int:
    if not text.isdigit():
        raise UrlError("the database is not a whole number")
    return int(text)


def _location(text: str) -> dict:
    """host[:port][/db][?query] of a redis:// URL (after any user info)."""
    if "#" in text:
        raise UrlError("it has a '#' part; write '#' in a password as %23")
    before_query, _sep, query_text = text.partition("?")
    host_port, slash, db_text = before_query.partition("/")
    host, port = _host_port(host_port)
    query = _query(query_text)
    db_text = db_text.strip("/") if slash else ""
    db = _db_number(db_text) if db_text else _db_number(query.get("db", "0"))
    return {"host": host, "port": port, "db": db, "query": query}


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, sep, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if sep and password else None)


def _split_user_info(rest: str) -> tuple[str, dict]:
    """The user info and location of 'user:password@host:port/db?query'.

    Read the standard way first (the authority ends at the first '/', '?' or '#'). A password
    holding one of those characters unencoded breaks that reading; then the URL is read again
    from each '@', last first, and the first reading that yields a valid location is taken.
    """
    end = min((index for index in (rest.find(char) for char in "/?#") if index >= 0), default=len(rest))
    userinfo, _at, host_part = rest[:end].rpartition("@")
    problems = []
    try:
        return userinfo, _location(host_part + rest[end:])
    except UrlError as problem:
        problems.append(problem)
    for index in reversed([position for position, char in enumerate(rest) if char == "@"]):
        try:
            return rest[:index], _location(rest[index + 1:])
        except UrlError as problem:
            problems.append(problem)
    # read after its last '@', the URL's own mistake is the one to name
    raise problems[1] if len(problems) > 1 else problems[0]


def parse_redis_url(url: str) -> dict:
    """redis://, rediss:// and unix:// URLs to connection settings (credentials unquoted).

    Raises UrlError (a ValueError) whose message never quotes any part of the URL.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("redis", "rediss", "unix"):
        raise UrlError("it does not start with redis://, rediss:// or unix://")
    settings: dict = {"tls": scheme == "rediss", "unix_path": None, "host": None, "port": None}
    if scheme == "unix":
        userinfo, at, path_part = rest.rpartition("@") if not rest.startswith("/") else ("", "", rest)
        path, _sep, query_text = path_part.partition("?")
        if not path:
            raise UrlError("the socket path is missing (unix:///path/to/redis.sock)")
        query = _query(query_text)
        settings.update(unix_path=path, db=_db_number(query.get("db", "0")))
    else:
        userinfo, location = _split_user_info(rest)
        query = location["query"]
        settings.update(host=location["host"] or "127.0.0.1", port=location["port"] or 6379, db=location["db"])
    username, password = _credentials(userinfo)
    settings["username"] = username
    settings["password"] = password or query.get("password") or None
    return settings


def url_secret_candidates(url: str) -> list:
    """Everything in a URL that may be a password, for scrubbing, even when the URL cannot be read."""
    rest = url.partition("://")[2]
    userinfo = rest.rpartition("@")[0]
    candidates = [userinfo, userinfo.partition(":")[2], unquote(userinfo.partition(":")[2])]
    candidates += re.findall(r"[?&]password=([^&#]*)", url)
    return [candidate for candidate in candidates if candidate]


def format_host_port(host: str, port: int) -> str:
    """host:port, with an IPv6 address in brackets ([::1]:6379)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- RESP ----------------------------------------------------------------------------------------

def encode_command(args: tuple) -> bytes:
    chunks = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        chunks.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(chunks)


def command_name(args: tuple | list) -> str:
    """PING, CLIENT LIST: the command without its arguments (which may hold a password)."""
    name = str(args[0]).upper()
    if name in CONTAINER_COMMANDS and len(args) > 1:
        return f"{name} {str(args[1]).upper()}"
    return name


def describe_commands(commands: list) -> str:
    names = [command_name(command) for command in commands]
    if len(names) == 1:
        return names[0]
    if len(set(names)) == 1:
        return f"{len(names)} pipelined {names[0]}"
    return f"{len(names)} pipelined commands ({', '.join(dict.fromkeys(names))})"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def resolve(host: str, port: int, limit: Deadline) -> list:
    """getaddrinfo within the deadline: the system resolver has no timeout of its own."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass  # a name, not an address
    outcome: dict = {}

    def lookup() -> None:
        try:
            outcome["addresses"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            outcome["error"] = exc

    resolver = threading.Thread(target=lookup, daemon=True)
    resolver.start()
    resolver.join(max(limit.remaining(), 0.0))
    if resolver.is_alive():
        raise ReplyTimeout(f"did not answer in time: the name '{host}' was not resolved {limit.phrase()}")
    if "error" in outcome:
        raise ConnectFailed(f"cannot resolve the name '{host}': {outcome['error'].strerror or outcome['error']}")
    return outcome["addresses"]


class RespConnection:
    """One connection, RESP2, every operation bounded by a deadline, never a retry."""

    def __init__(self, *, host: str | None = None, port: int | None = None, unix_path: str | None = None,
                 tls: bool = False, ca_path: str | None = None, cert_path: str | None = None,
                 key_path: str | None = None, validate_certs: bool = True,
                 connect_timeout: float = 5.0, command_timeout: float = 5.0, deadline: Deadline | None = None):
        self.host, self.port, self.unix_path = host, port, unix_path
        self.tls, self.ca_path, self.cert_path, self.key_path = tls, ca_path, cert_path, key_path
        self.validate_certs = validate_certs
        self.connect_timeout, self.command_timeout = connect_timeout, command_timeout
        self.deadline = deadline or Deadline(None)
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._pos = 0
        # the exchange under way: its commands, when it must end and which limit that is, bytes received;
        # and how many exchanges came before
        self._commands: list = []
        self._limit_at = math.inf
        self._by_command_timeout = True
        self._received = 0
        self._exchanges = 0

    # --- connection ---------------------------------------------------------------------------

    def _connect_socket(self, sock: socket.socket, address, limit: Deadline) -> None:
        remaining = limit.remaining()
        if remaining <= 0:
            raise ReplyTimeout(f"did not answer in time: no connection {limit.phrase()}")
        sock.settimeout(remaining)
        try:
            sock.connect(address)
        except socket.timeout:
            raise ReplyTimeout(f"did not answer in time: no connection {limit.phrase()}") from None

    def _open_tcp(self, limit: Deadline) -> socket.socket:
        last_error: OSError | None = None
        for family, kind, proto, _canonical, address in resolve(str(self.host), int(self.port or 0), limit):
            sock = socket.socket(family, kind, proto)
            try:
                self._connect_socket(sock, address, limit)
            except OSError as exc:  # refused or unreachable: the next address may answer
                sock.close()
                last_error = exc
                continue
            except BaseException:
                sock.close()
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise ConnectFailed(last_error.strerror or str(last_error) if last_error else "no address to connect to")

    def _open_socket(self, limit: Deadline) -> socket.socket:
        if not self.unix_path:
            return self._open_tcp(limit)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._connect_socket(sock, self.unix_path, limit)
        except OSError as exc:
            sock.close()
            raise ConnectFailed(exc.strerror or str(exc)) from None
        except BaseException:
            sock.close()
            raise
        return sock

    def _tls_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.ca_path)
            if not self.validate_certs:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self.cert_path:
                context.load_cert_chain(self.cert_path, self.key_path)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot load the TLS files: {exc}") from None
        return context

    def _tls_handshake(self, sock: socket.socket, context: ssl.SSLContext, limit: Deadline) -> socket.socket:
        """The handshake within what is left of the connect deadline (one deadline for the whole call)."""
        remaining = limit.remaining()
        if remaining <= 0:
            raise ReplyTimeout(f"did not answer in time: no TLS handshake {limit.phrase()}")
        sock.settimeout(remaining)
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        except socket.timeout:
            raise ConnectFailed(f"TLS handshake failed: {TLS_HINT} No answer to the handshake {limit.phrase()}.") from None
        except ssl.SSLCertVerificationError as exc:
            raise ConnectFailed(f"TLS handshake failed: {exc}") from None
        except (ssl.SSLError, OSError) as exc:  # a plain-text peer: wrong version number, EOF, reset
            raise ConnectFailed(f"TLS handshake failed: {TLS_HINT} ({getattr(exc, 'reason', None) or exc})") from None

    def connect(self, *, username: str | None = None, password: str | None = None, db: int = 0,
                client_name: str | None = None) -> RespConnection:
        """Connects, then authenticates, selects the database and names the connection in one round trip."""
        # loading CA files is local work: done before the connect_timeout clock starts
        context = self._tls_context() if self.tls else None
        limit = self.deadline.sooner(self.connect_timeout, "connect_timeout")
        sock = self._open_socket(limit)
        if context is not None:
            try:
                sock = self._tls_handshake(sock, context, limit)
            except BaseException:
                sock.close()
                raise
        self._sock = sock
        setup: list = []
        if password:
            setup.append(("AUTH", username, password) if username else ("AUTH", password))
        if db:
            setup.append(("SELECT", db))
        if client_name:
            setup.append(("CLIENT", "SETNAME", client_name))
        for reply in self.pipeline(setup):
            if isinstance(reply, ReplyError):  # the first error: after a failed AUTH the rest say NOAUTH
                raise reply
        return self

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None

    def __enter__(self) -> RespConnection:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- commands -----------------------------------------------------------------------------

    def execute(self, *args):
        """Sends one command and returns its reply; an error reply raises ReplyError."""
        reply = self._exchange([args])[0]
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def pipeline(self, commands: list) -> list:
        """Sends every command in one write and reads every reply within one command_timeout;
        error replies are returned, not raised."""
        return self._exchange(commands) if commands else []

    def _exchange(self, commands: list) -> list:
        self._open()
        self._limit_at = time.monotonic() + self.command_timeout
        self._by_command_timeout = self._limit_at <= self.deadline.at
        if not self._by_command_timeout:
            self._limit_at = self.deadline.at
        self._commands = commands
        self._received = 0
        self._send(b"".join(encode_command(tuple(command)) for command in commands))
        replies = []
        for command in commands:
            reply = self._read_reply()
            if isinstance(reply, ReplyError):
                reply.command = command_name(command)
            replies.append(reply)
        self._exchanges += 1
        return replies

    @property
    def _what(self) -> str:
        """The exchange under way, for messages (built only when one is needed)."""
        return describe_commands(self._commands)

    def _limit_phrase(self) -> str:
        if self._by_command_timeout:
            return f"within {self.command_timeout:g} s (command_timeout)"
        return self.deadline.phrase()

    def _remaining(self) -> float:
        remaining = self._limit_at - time.monotonic()
        if remaining <= 0:
            raise self._cut_short(closed=False)
        return remaining

    def _bounded(self) -> socket.socket:
        """The socket, its timeout no longer than the time left to the exchange's deadline (within TIMEOUT_SLACK)."""
        sock = self._open()
        remaining = self._remaining()
        current = sock.gettimeout()
        if current is None or abs(current - remaining) > TIMEOUT_SLACK:
            sock.settimeout(remaining)
        return sock

    def _open(self) -> socket.socket:
        if self._sock is None:
            raise ConnectionLost("closed the connection earlier")
        return self._sock

    def _send(self, payload: bytes) -> None:
        sock = self._bounded()
        try:
            sock.sendall(payload)  # since Python 3.5 the timeout bounds the whole sendall
        except socket.timeout:
            raise ReplyTimeout(f"did not answer in time: it did not take {self._what} {self._limit_phrase()}") from None
        except OSError as exc:
            raise ConnectionLost(f"closed the connection while the probe sent {self._what}: "
                                 f"{exc.strerror or exc}{self._plain_hint()}") from None

    # --- replies ------------------------------------------------------------------------------

    def _plain_hint(self) -> str:
        return "" if self.tls or self._exchanges or self._received else f" ({PLAIN_HINT})"

    def _foreign(self) -> ProtocolMismatch | None:
        """What arrived so far, when it cannot be the start of a RESP reply."""
        pending = self._buffer[self._pos:]
        if pending and pending[0] not in RESP_TYPES and len(pending) == self._received:
            return ProtocolMismatch(pending)
        return None

    def _cut_short(self, closed: bool) -> RespError:
        """Why the exchange under way ended without its reply: foreign bytes, the deadline, or a closed connection."""
        foreign = self._foreign()
        if foreign:
            return foreign
        what, received = self._what, _plural(self._received, "byte")
        if closed:
            if self._received:
                return ConnectionLost(f"closed the connection in the middle of its reply to {what} (after {received})")
            return ConnectionLost(f"closed the connection without answering {what}{self._plain_hint()}")
        if self._received:
            return ReplyTimeout(f"sent its reply too slowly: only {received} of the reply to {what} arrived "
                                f"{self._limit_phrase()}")
        return ReplyTimeout(f"did not answer in time: no reply to {what} {self._limit_phrase()}")

    def _fill(self) -> None:
        """Reads what has arrived, waiting at most until the exchange's deadline."""
        while True:
            sock = self._bounded()
            try:
                chunk = sock.recv(READ_CHUNK)
                break
            except socket.timeout:
                continue  # _bounded() raises when the deadline has passed; else the timeout was short by the slack
            except OSError as exc:
                raise ConnectionLost(f"reset the connection during its reply to {self._what}: "
                                     f"{exc.strerror or exc}{self._plain_hint()}") from None
        if not chunk:
            raise self._cut_short(closed=True)
        if self._pos:
            del self._buffer[:self._pos]
            self._pos = 0
        self._buffer += chunk
        self._received += len(chunk)

    def _readline(self) -> bytes:
        while True:
            end = self._buffer.find(b"\n", self._pos)
            if end >= 0:
                break
            pending = self._buffer[self._pos:]
            if pending and pending[0] not in RESP_TYPES and len(pending) >= FOREIGN_PREVIEW or len(pending) > MAX_HEADER:
                raise ProtocolMismatch(pending)
            self._fill()
        line = bytes(self._buffer[self._pos:end + 1])
        self._pos = end + 1
        if not line.endswith(b"\r\n"):
            raise ProtocolMismatch(line)
        return line[:-2]

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) - self._pos < size + 2:
            self._fill()
        data = bytes(self._buffer[self._pos:self._pos + size + 2])
        self._pos += size + 2
        if not data.endswith(b"\r\n"):
            raise ProtocolMismatch(data[:FOREIGN_PREVIEW])
        return data[:-2]

    def _read_reply(self):
        line = self._readline()
        prefix, rest = line[:1], line[1:]
        if prefix == b"+":
            return rest.decode("utf-8", "replace")
        if prefix == b"-":
            return ReplyError(rest.decode("utf-8", "replace"))
        if prefix not in (b":", b"$", b"*") or not rest.lstrip(b"-").isdigit():
            raise ProtocolMismatch(line)
        number = int(rest)
        if prefix == b":":
            return number
        if prefix == b"$":
            return None if number < 0 else self._read_exactly(number).decode("utf-8", "replace")
        return None if number < 0 else [self._read_reply() for _index in range(number)]


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
