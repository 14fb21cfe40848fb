# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""JSON over HTTP to the EMP webhook service and API, counting every status each route answered."""

from __future__ import annotations

import json

from ansible_collections.emp.deploy.plugins.module_utils._http import (
    Deadline,
    HttpClient,
    HttpFailure,
    hostport,
)

USER_AGENT = "emp.deploy.webhook_probe"
EXCERPT_CHARS = 160

# The options of the emp.deploy.webhook doc fragment, for every module that talks to the webhook service.
WEBHOOK_SERVICE_ARGSPEC: dict = dict(
    service_url=dict(type="str", required=True),
    request_timeout=dict(type="float", default=10.0),
    validate_certs=dict(type="bool", default=True),
    api_url=dict(type="str"),
    api_token=dict(type="str", no_log=True),
)


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


class JsonClient:
    """One base URL; ``statuses`` maps "METHOD route" to {status: count} for every answer."""

    def __init__(self, base_url: str, name: str, timeout: float, validate_certs: bool = True,
                 headers: dict | None = None):
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.statuses: dict = {}
        self.not_found: list = []  # "METHOD route" answered 404 where the route should exist
        self.deadline: Deadline | None = None  # the module's: no call outlives it
        self._http = HttpClient(validate_certs=validate_certs, user_agent=USER_AGENT)

    @property
    def where(self) -> str:
        return hostport(self.base_url)

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
        if self.deadline is not None and self.deadline.expired:
            raise ServiceError("no time left to call %s at %s (%s) within %g s" % (
                self.name, self.where, key, self.deadline.total))
        headers = {"Accept": "application/json"}
        headers.update(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            got = self._http.request(method, self.base_url + path, deadline=self.call_deadline(timeout),
                                     body=data, headers=headers)
        except HttpFailure as exc:
            self._count(key, "unreachable")
            raise ServiceError(self.failure_sentence(key, exc)) from None
        status, raw, content_type = got.status, got.body, got.header("content-type")
        elapsed_ms = got.elapsed_s * 1000.0
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

    def call_deadline(self, timeout: float | None) -> Deadline:
        seconds = self.timeout if timeout is None else timeout
        return self.deadline.within(seconds) if self.deadline is not None else Deadline(seconds)

    def failure_sentence(self, key: str, exc: HttpFailure) -> str:
        """Names the route template (``key``) rather than the concrete path, as every figure does."""
        exc.request = key
        return exc.sentence(self.name)

    def expect(self, answer: Answer, key: str, statuses: tuple) -> dict:
        """The answer's JSON object when the status is one of ``statuses``, else ServiceError."""
        if answer.status not in statuses:
            raise ServiceError("%s at %s answered %s with HTTP %s: %s" % (
                self.name, self.where, key, answer.status, answer.error_text()))
        if not isinstance(answer.data, dict):
            raise ServiceError("%s at %s answered %s with JSON that is not an object: %s" % (
                self.name, self.where, key, excerpt(answer.text)))
        return answer.data
