"""A small asyncio HTTP/1.1 server core: request parsing, keep-alive, JSON responses.

Just enough for the sandbox API, which must serve plain HTTP *and* WebSocket upgrades on
one port (the websockets library only serves GET requests, the API needs POST).
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
KEEPALIVE_IDLE_S = 30.0


class BadRequest(Exception):
    """A request we cannot parse; answered with 400 and the connection closed."""


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    raw_head: bytes
    body: bytes = b""
    path: str = ""
    query: dict[str, list[str]] = field(default_factory=dict)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def query_value(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    @property
    def keep_alive(self) -> bool:
        connection = self.header("connection").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"

    @property
    def is_websocket_upgrade(self) -> bool:
        return (self.method == "GET" and "websocket" in self.header("upgrade").lower()
                and "upgrade" in self.header("connection").lower())

    def json(self) -> Any:
        """The body as JSON; ValueError when malformed."""
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload).encode("utf-8"), "application/json", dict(headers or {}))

    def encode(self, keep_alive: bool, head_only: bool = False) -> bytes:
        reason = HTTPStatus(self.status).phrase if self.status in HTTPStatus._value2member_map_ else "Status"
        lines = [f"HTTP/1.1 {self.status} {reason}",
                 f"Content-Type: {self.content_type}",
                 f"Content-Length: {len(self.body)}",
                 f"Connection: {'keep-alive' if keep_alive else 'close'}",
                 "Server: emp-sandbox-api"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def parse_head(raw_head: bytes) -> Request:
    try:
        text = raw_head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ", 2)
    except ValueError as exc:
        raise BadRequest("malformed request line") from exc
    if not version.startswith("HTTP/1."):
        raise BadRequest(f"unsupported protocol {version!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"malformed header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    parts = urlsplit(target)
    return Request(method=method.upper(), target=target, version=version, headers=headers,
                   raw_head=raw_head, path=parts.path or "/", query=parse_qs(parts.query))


async def read_request(reader: asyncio.StreamReader, idle_timeout: float = KEEPALIVE_IDLE_S) -> Request | None:
    """The next request on a connection, None at a clean end of stream."""
    try:
        raw_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), idle_timeout)
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    request = parse_head(raw_head)
    if request.header("transfer-encoding"):
        raise BadRequest("chunked request bodies are not supported; send Content-Length")
    try:
        length = int(request.header("content-length", "0") or 0)
    except ValueError as exc:
        raise BadRequest("malformed Content-Length") from exc
    if length < 0 or length > MAX_BODY:
        raise BadRequest(f"Content-Length {length} outside 0..{MAX_BODY}")
    if length:
        request.body = await asyncio.wait_for(reader.readexactly(length), idle_timeout)
    return request
