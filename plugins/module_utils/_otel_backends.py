# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where a canary proves it arrived: Dash0's query API, Tempo, or Jaeger's api/v3.

Each backend answers two questions: is this canary visible yet (``find``), and has a named
service sent spans lately, canaries left out (``service_activity``). An answer that can never
improve by waiting (token refused, unknown dataset, wrong URL, malformed query) raises
``QueryError``; a transient one (5xx, 429, unreachable) returns ``None`` as "not yet" and is
remembered in ``last_error`` for the final message.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from urllib.parse import urlencode

from ansible_collections.emp.deploy.plugins.module_utils._http import (
    Deadline,
    DeadlineLike,
    HttpClient,
    HttpFailure,
    as_deadline,
    hostport,
)
from ansible_collections.emp.deploy.plugins.module_utils._otlp import (
    RUN_ID_ATTRIBUTE,
    SPAN_NAME,
    attribute,
    log_records_in,
    span_ids_in,
)

MAX_PAGES = 5

# The options of the emp.deploy.otel doc fragment, for every module that queries a telemetry backend.
OTEL_BACKEND_ARGSPEC: dict = dict(
    backend=dict(type="str", default="dash0", choices=["dash0", "tempo", "jaeger", "none"]),
    query_url=dict(type="str"),
    query_headers=dict(type="dict", default={}, no_log=True),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    request_timeout=dict(type="float", default=10.0),
)
# A backend needs its query API; given here once for every module that uses the spec.
OTEL_BACKEND_REQUIRED_IF: list = [(name, value, ["query_url"]) for name, value in
                                  (("backend", "dash0"), ("backend", "tempo"), ("backend", "jaeger"))]


class QueryError(Exception):
    """The backend refuses the query in a way waiting cannot fix. ``everyone`` is true when every
    other query would meet the same refusal (a refused token or dataset)."""

    def __init__(self, message: str, everyone: bool = False):
        super().__init__(message)
        self.everyone = everyone


class Canary:
    """What was sent: ids to look for and when."""

    def __init__(self, run_id: str, trace_id: str, span_id: str, time_ns: int, metric_query: str):
        self.run_id = run_id
        self.trace_id = trace_id
        self.span_id = span_id
        self.time_ns = time_ns
        self.metric_query = metric_query


def rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Backend:
    name = "none"
    signals: tuple = ()

    def __init__(self, http: HttpClient, query_url: str, headers: dict):
        self.http = http
        self.base = query_url.rstrip("/")
        self.headers = dict(headers or {})
        self.last_error: str | None = None
        self.queries = 0

    @property
    def target(self) -> str:
        return f"{self.name} at {hostport(self.base)}"

    def _call(self, method: str, path: str, deadline: DeadlineLike, payload=None, params=None):
        """(status, parsed JSON or None); None status on transient failure."""
        url = self.base + path + ("?" + urlencode(params) if params else "")
        headers = dict(self.headers)
        headers.setdefault("Accept", "application/json")
        body = None
        if payload is not None:
            body = json.dumps(payload).encode("utf-8")
            headers["Content-Type"] = "application/json"
        self.queries += 1
        try:
            answer = self.http.request(method, url, deadline=deadline, body=body, headers=headers)
        except HttpFailure as exc:
            exc.request = f"{method} {path}"
            self.last_error = exc.sentence(self.name)
            return None, None
        text = answer.text()
        if answer.status in (401, 403):
            raise QueryError(f"{self.target} answered {answer.status} to {method} {path}: {_short(text)} "
                             "(check query_headers: Authorization: Bearer <token>, Dash0-Dataset)", everyone=True)
        if answer.status in (400, 405) or (answer.status == 404 and not self.not_found_is_empty(path)):
            raise QueryError(f"{self.target} answered {answer.status} to {method} {path}: {_short(text)}")
        if answer.status == 404:
            return 404, None
        if not answer.ok:
            self.last_error = f"{method} {path} answered {answer.status}: {_short(text)}"
            return None, None
        data = _parse_json(text)
        if data is None and text.strip():
            # Waiting will not turn a login page or a wrong URL into the API: say what came back.
            raise QueryError(f"{self.target} answered {method} {path} with HTTP {answer.status} "
                             f"{answer.content_type or 'without a content type'}, not {self.api_label(path)} JSON: "
                             f"{_short(text)}")
        return answer.status, data

    def api_label(self, path: str) -> str:
        return f"the {self.name.capitalize()} API"

    def not_found_is_empty(self, path: str) -> bool:
        return False

    def find(self, signal: str, canary: Canary, deadline: DeadlineLike):
        """True when visible, False when not (yet), None after a transient failure; every page by ``deadline``."""
        raise NotImplementedError

    def service_activity(self, service: str, lookback_s: float, deadline: DeadlineLike) -> dict:
        raise NotImplementedError


class Dash0Backend(Backend):
    name = "dash0"
    signals = ("traces", "metrics", "logs")

    def api_label(self, path: str) -> str:
        return "the Prometheus API" if "/prometheus/" in path else "the Dash0 API"

    def _items(self, path: str, filters: list, start: float, end: float, deadline: Deadline, key: str):
        """Every page of POST /api/spans or /api/logs (at most MAX_PAGES), as one list of resource blocks."""
        request = {"timeRange": {"from": rfc3339(start), "to": rfc3339(end)}, "filter": filters,
                   "pagination": {"limit": 200}}
        blocks: list = []
        for dummy in range(MAX_PAGES):
            status, data = self._call("POST", path, deadline, payload=request)
            if status is None:
                return None
            blocks.extend((data or {}).get(key) or [])
            cursor = ((data or {}).get("cursors") or {}).get("after")
            if not cursor:
                break
            request["pagination"] = {"limit": 200, "cursor": cursor}
        return blocks

    def _window(self, canary: Canary) -> tuple:
        sent = canary.time_ns / 1e9
        return sent - 600, sent + 600  # generous: clocks of sender and backend may differ

    def find(self, signal: str, canary: Canary, deadline: DeadlineLike):
        deadline = as_deadline(deadline)
        start, end = self._window(canary)
        trace_filter = [{"key": "otel.trace.id", "operator": "is", "value": canary.trace_id}]
        if signal == "traces":
            blocks = self._items("/api/spans", trace_filter, start, end, deadline, "resourceSpans")
            return None if blocks is None else (canary.trace_id, canary.span_id) in span_ids_in(blocks)
        if signal == "logs":
            blocks = self._items("/api/logs", trace_filter, start, end, deadline, "resourceLogs")
            if blocks is None:
                return None
            return any(str(attribute(record, RUN_ID_ATTRIBUTE)) == canary.run_id for record in log_records_in(blocks))
        status, data = self._call("GET", "/api/prometheus/api/v1/query", deadline,
                                  params={"query": canary.metric_query, "time": f"{time.time():.3f}"})
        if status is None:
            return None
        if not isinstance(data, dict):
            what = "an empty body" if data is None else "JSON that is not an object"
            raise QueryError(f"{self.target} answered PromQL {canary.metric_query!r} with {what}, "
                             "not the Prometheus API JSON")
        if data.get("status") != "success":
            said = ": ".join(str(data[key]) for key in ("errorType", "error") if data.get(key))
            raise QueryError(f"{self.target}: PromQL {canary.metric_query!r} failed: {said or _short(json.dumps(data))}")
        return bool(((data.get("data") or {}).get("result")))

    def service_activity(self, service: str, lookback_s: float, deadline: DeadlineLike) -> dict:
        now = time.time()
        blocks = self._items("/api/spans", [{"key": "service.name", "operator": "is", "value": service}],
                             now - lookback_s, now + 60, as_deadline(deadline), "resourceSpans")
        if blocks is None:
            return {"seen": None, "spans": 0, "latest_age_s": None, "error": self.last_error}
        starts = [int(span.get("startTimeUnixNano") or 0) for span in _spans(blocks)
                  if attribute(span, RUN_ID_ATTRIBUTE) is None]
        return _activity(starts, now)


class TempoBackend(Backend):
    name = "tempo"
    signals = ("traces",)

    def not_found_is_empty(self, path: str) -> bool:
        return path.startswith("/api/traces/")

    def find(self, signal: str, canary: Canary, deadline: DeadlineLike):
        status, data = self._call("GET", f"/api/traces/{canary.trace_id}", deadline)
        if status is None or status == 404:
            return None if status is None else False
        data = data or {}
        blocks = data.get("batches") or data.get("resourceSpans") or (data.get("trace") or {}).get("resourceSpans")
        return (canary.trace_id, canary.span_id) in span_ids_in(blocks or [])

    def service_activity(self, service: str, lookback_s: float, deadline: DeadlineLike) -> dict:
        now = time.time()
        status, data = self._call("GET", "/api/search", deadline, params={
            "tags": f"service.name={service}", "start": int(now - lookback_s), "end": int(now + 60), "limit": 20})
        if status is None:
            return {"seen": None, "spans": 0, "latest_age_s": None, "error": self.last_error}
        traces = [t for t in (data or {}).get("traces") or [] if t.get("rootTraceName") != SPAN_NAME]
        return _activity([int(t.get("startTimeUnixNano") or 0) for t in traces], now)


class JaegerBackend(Backend):
    name = "jaeger"
    signals = ("traces",)

    def not_found_is_empty(self, path: str) -> bool:
        return path.startswith("/api/v3/traces")

    def find(self, signal: str, canary: Canary, deadline: DeadlineLike):
        status, data = self._call("GET", f"/api/v3/traces/{canary.trace_id}", deadline)
        if status is None or status == 404:
            return None if status is None else False
        return (canary.trace_id, canary.span_id) in span_ids_in(_jaeger_blocks(data))

    def service_activity(self, service: str, lookback_s: float, deadline: DeadlineLike) -> dict:
        now = time.time()
        status, data = self._call("GET", "/api/v3/traces", deadline, params={
            "query.service_name": service, "query.start_time_min": rfc3339(now - lookback_s),
            "query.start_time_max": rfc3339(now + 60), "query.num_traces": 20})
        if status is None:
            return {"seen": None, "spans": 0, "latest_age_s": None, "error": self.last_error}
        starts = [int(span.get("startTimeUnixNano") or 0) for span in _spans(_jaeger_blocks(data))
                  if attribute(span, RUN_ID_ATTRIBUTE) is None]
        return _activity(starts, now)


BACKENDS = {"dash0": Dash0Backend, "tempo": TempoBackend, "jaeger": JaegerBackend}


def _jaeger_blocks(data) -> list:
    """api/v3 answers {result: {resourceSpans}}; the streaming gateway may send several such objects."""
    chunks = data if isinstance(data, list) else [data or {}]
    blocks: list = []
    for chunk in chunks:
        blocks.extend(((chunk or {}).get("result") or {}).get("resourceSpans") or [])
    return blocks


def _spans(blocks: list) -> list:
    spans: list = []
    for block in blocks or []:
        for scope in block.get("scopeSpans") or []:
            spans.extend(scope.get("spans") or [])
    return spans


def _activity(start_ns: list, now: float) -> dict:
    starts = [s for s in start_ns if s > 0]
    latest_age = round(max(0.0, now - max(starts) / 1e9), 3) if starts else None
    return {"seen": bool(start_ns), "spans": len(start_ns), "latest_age_s": latest_age, "error": None}


def _parse_json(text: str):
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        # Newline-delimited JSON (grpc-gateway streams) is a list of objects.
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError:
            return None


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."
