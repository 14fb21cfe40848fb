# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""JSON over HTTP to the EMP webhook service and API, counting every status each route answered."""

from __future__ import annotations

import json
import socket
import ssl
import time
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from ansible.module_utils.urls import Request, make_context

EXCERPT_CHARS = 160


class ServiceError(Exception):
    """A call that leaves the probe unable to measure: unreachable, HTML, 5xx, bad JSON."""


class Answer:
    __slots__ = ("status", "data", "text", "content_type", "elapsed_ms")

    def __init__(self, status, data, text, content_type, elapsed_ms):
        self.status = status
        self.data = data  # parsed JSON or None
        self.text = text
        self.content_type = content_type
        self.elapsed_ms = elapsed_ms

    @property
    def is_json(self) -> bool:
        return self.data is not None

    def error_text(self) -> str:
        if isinstance(self.data, dict):
            parts = [str(self.data[k]) for k in ("error", "message") if self.data.get(k)]
            if parts:
                return ": ".join(parts)
        return excerpt(self.text)


def excerpt(text: str) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[:EXCERPT_CHARS] + "..."


def host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return "%s:%d" % (parts.hostname or "?", port)


class JsonClient:
    """One base URL; ``statuses`` maps "METHOD route" to {status: count} for every answer."""

    def __init__(self, base_url: str, name: str, timeout: float, validate_certs: bool = True,
                 headers: dict | None = None):
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.headers = dict(headers or {})
        self.statuses = {}
        self.not_found = []  # "METHOD route" answered 404 where the route should exist
        # One TLS context for every call: building one loads the CA store (~25 ms) and open_url
        # would do that per request. Plain http never uses it, so it stays empty there.
        if urlsplit(self.base_url).scheme == "https":
            context = make_context(validate_certs=validate_certs)
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._request = Request(timeout=timeout, validate_certs=validate_certs, follow_redirects="none",
                                context=context)

    @property
    def where(self) -> str:
        return host_port(self.base_url)

    def _count(self, key: str, status) -> None:
        per_route = self.statuses.setdefault(key, {})
        per_route[str(status)] = per_route.get(str(status), 0) + 1

    def call(self, method: str, path: str, route: str, body=None, timeout: float | None = None,
             missing_ok: bool = False) -> Answer:
        """One request; raises ServiceError when nothing (or no JSON) came back.

        ``route`` is the path template used in figures and messages ("/webhooks/:id").
        ``missing_ok`` marks a 404 as expected (reading back a deleted webhook).
        """
        key = "%s %s" % (method, route)
        headers = {"Accept": "application/json"}
        headers.update(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        try:
            response = self._request.open(method, self.base_url + path, data=data, headers=headers,
                                          timeout=timeout or self.timeout)
            status = response.getcode()
            raw = response.read()
            content_type = response.headers.get("Content-Type", "")
        except HTTPError as exc:
            status = exc.code
            raw = exc.read() if exc.fp is not None else b""
            content_type = exc.headers.get("Content-Type", "") if exc.headers else ""
        except (URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
            self._count(key, "unreachable")
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason):
                raise ServiceError("%s at %s did not answer %s within %.1f s" % (
                    self.name, self.where, key, timeout or self.timeout)) from exc
            raise ServiceError("cannot reach %s at %s (%s): %s" % (self.name, self.where, key, reason)) from exc
        elapsed_ms = (time.monotonic() - started) * 1000.0
        self._count(key, status)
        text = raw.decode("utf-8", "replace")
        try:
            parsed = json.loads(text) if text.strip() else None
        except ValueError:
            parsed = None
        answer = Answer(status, parsed, text, content_type, elapsed_ms)
        if status == 404 and not missing_ok:
            self.not_found.append(key)
        if parsed is None:
            kind = "HTML" if "html" in content_type.lower() or text.lstrip().startswith("<") else "no JSON"
            raise ServiceError("%s at %s answered %s with HTTP %s and %s instead of JSON: %s" % (
                self.name, self.where, key, status, kind, excerpt(text) or "(empty body)"))
        return answer

    def expect(self, answer: Answer, key: str, statuses: tuple) -> dict:
        """The answer's JSON object when the status is one of ``statuses``, else ServiceError."""
        if answer.status not in statuses:
            raise ServiceError("%s at %s answered %s with HTTP %s: %s" % (
                self.name, self.where, key, answer.status, answer.error_text()))
        if not isinstance(answer.data, dict):
            raise ServiceError("%s at %s answered %s with JSON that is not an object: %s" % (
                self.name, self.where, key, excerpt(answer.text)))
        return answer.data
