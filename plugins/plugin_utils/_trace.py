# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The deployment as one OTLP trace: run -> phases -> gates (samples as events), the rollback as its own span.

The trace is a pure function of the journal (``build_trace``): the trace id comes from the run id and
every span id from the run id and the record it stands for, so the trace the callback sends at the end
of the run is the one anybody rebuilds later from journal.jsonl. ``export`` sends it once over OTLP/HTTP
(protobuf or JSON, through module_utils/_otlp.py) within one deadline that covers every attempt; the
outcome is journaled as a ``trace_export`` record (docs/trace.md). The headers and the token never reach
an output, a record or a message.
"""

from __future__ import annotations

import hashlib
import re
import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ansible_collections.emp.deploy.plugins.module_utils import _http
from ansible_collections.emp.deploy.plugins.module_utils import _otlp as otlp
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils._notify import (
    BAD_ANSWER, HTTP_ERROR, NOT_SENT, SENT, TIMEOUT, UNREACHABLE, bounded_duration,
)
from ansible_collections.emp.deploy.plugins.plugin_utils._report_model import JournalError, parse_time, read_journal
from ansible_collections.emp.deploy.plugins.plugin_utils._run_recorder import OptionError, first_line

ENV_OF = {
    "otlp_endpoint": "EMP_DEPLOY_OTLP_ENDPOINT",
    "otlp_headers": "EMP_DEPLOY_OTLP_HEADERS",
    "otlp_token": "EMP_DEPLOY_OTLP_TOKEN",
    "otlp_protocol": "EMP_DEPLOY_OTLP_PROTOCOL",
    "otlp_timeout": "EMP_DEPLOY_OTLP_TIMEOUT",
    "otlp_service_name": "EMP_DEPLOY_OTLP_SERVICE_NAME",
}
OPTION_NAMES = tuple(ENV_OF)
PROTOCOLS = ("http/protobuf", "http/json")
DEFAULT_TIMEOUT_S = 5.0
MAX_TIMEOUT_S = 60.0
DEFAULT_SERVICE = "emp.deploy"
SCOPE = "emp.deploy.go_no_go"
# OTLP/HTTP: these answers (and a refused connection) may be retried; any other failure is final
RETRYABLE = (429, 502, 503, 504)
FIRST_BACKOFF_S = 0.25
ANSWER_LIMIT = 4096
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

# span kind INTERNAL; status codes UNSET, OK, ERROR
_INTERNAL = 1
_OK, _ERROR = 1, 2

# outcome of a trace_export record: those of a notice (_notify.py), and this one
REJECTED = "rejected"


def _named(option: str) -> str:
    return f"{option} ({ENV_OF[option]})"


# --- options --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceOptions:
    url: str = field(repr=False)  # the full /v1/traces URL
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    protocol: str = "http/protobuf"
    timeout_s: float = DEFAULT_TIMEOUT_S
    service_name: str = DEFAULT_SERVICE

    @property
    def endpoint(self) -> str:
        """What records and messages may say of the endpoint: host and port only."""
        return _http.hostport(self.url)

    @property
    def secrets(self) -> list[str]:
        """Every string that must never be printed: header values, the URL's credentials and query."""
        parts = urlsplit(self.url)
        hidden = [value for _name, value in self.headers] + [parts.query, unquote(parts.query)]
        hidden += [parts.username or "", parts.password or ""]
        for _name, value in self.headers:
            hidden += value.split()  # "Bearer <token>": the token alone too
        return sorted({h for h in hidden if len(h) >= 4}, key=len, reverse=True)


def _text(value: t.Any) -> str:
    return "" if value is None else str(value).strip()


def traces_url(endpoint: str) -> str:
    """The base URL with /v1/traces appended, as OTEL_EXPORTER_OTLP_ENDPOINT is read; a URL that already
    ends in /v1/traces is used as it is."""
    parts = urlsplit(endpoint)
    path = parts.path.rstrip("/")
    if not path.endswith(otlp.SIGNAL_PATHS["traces"]):
        path += otlp.SIGNAL_PATHS["traces"]
    return parts._replace(path=path).geturl()


def parse_headers(value: t.Any) -> tuple[tuple[str, str], ...]:
    """``name=value,name2=value2`` (values percent-decoded), as OTEL_EXPORTER_OTLP_HEADERS; a mapping too.
    Errors name the header, never its value."""
    if isinstance(value, t.Mapping):
        items = [(str(k), str(v)) for k, v in value.items()]
    else:
        items = []
        for item in (i for i in _text(value).split(",") if i.strip()):
            name, sep, raw = item.partition("=")
            if not sep:
                raise OptionError(f"{_named('otlp_headers')}: an item without '=' (write name=value,name2=value2; "
                                  f"the value is not shown)")
            items.append((name.strip(), unquote(raw.strip())))
    headers = []
    for name, raw in items:
        if not _HEADER_NAME.match(name):
            raise OptionError(f"{_named('otlp_headers')}: {name[:40]!r} is not an HTTP header name")
        if any(c in raw for c in "\r\n\0"):
            raise OptionError(f"{_named('otlp_headers')}: the value of {name} holds a line break (not shown)")
        headers.append((name, raw))
    return tuple(headers)


def parse_options(raw: t.Mapping[str, t.Any]) -> TraceOptions | None:
    """The trace options checked when the run starts; None when no endpoint is set (no export)."""
    endpoint = _text(raw.get("otlp_endpoint"))
    others = [name for name in OPTION_NAMES[1:3] if _text(raw.get(name))]
    if not endpoint:
        if others:
            raise OptionError(f"{_named(others[0])} is set, but {_named('otlp_endpoint')} is not")
        return None
    problem = _http.url_problem(endpoint)
    if problem:
        raise OptionError(f"{_named('otlp_endpoint')}: the OTLP endpoint cannot be used: {problem} "
                          f"(the URL itself is not shown)")
    headers = parse_headers(raw.get("otlp_headers"))
    token = _text(raw.get("otlp_token"))
    if token:
        if any(name.lower() == "authorization" for name, _value in headers):
            raise OptionError(f"{_named('otlp_token')}: {_named('otlp_headers')} has an Authorization header "
                              f"already; set one of them")
        if any(c in token for c in "\r\n\0 "):
            raise OptionError(f"{_named('otlp_token')}: a token with blanks or line breaks (not shown)")
        headers += (("Authorization", f"Bearer {token}"),)
    protocol = _text(raw.get("otlp_protocol")) or PROTOCOLS[0]
    if protocol not in PROTOCOLS:
        raise OptionError(f"{_named('otlp_protocol')}: {protocol[:40]!r} is not one of {', '.join(PROTOCOLS)}")
    service = _text(raw.get("otlp_service_name")) or DEFAULT_SERVICE
    timeout_s = bounded_duration(raw.get("otlp_timeout"), _named("otlp_timeout"), DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S)
    return TraceOptions(traces_url(endpoint), headers, protocol, timeout_s, service)


# --- the trace ------------------------------------------------------------------------------------


def trace_id_of(run_id: str) -> str:
    return _digest(f"emp.deploy trace {run_id}", 32)


def span_id_of(run_id: str, key: str) -> str:
    return _digest(f"emp.deploy span {run_id} {key}", 16)


def _digest(text: str, length: int) -> str:
    value = hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
    return value if value.strip("0") else "1".rjust(length, "0")  # an all-zero id is invalid in OTLP


def _nanos(stamp: t.Any, fallback: int) -> int:
    seconds = parse_time(stamp)
    return fallback if seconds is None else int(round(seconds * 1_000_000)) * 1000


def _attributes(values: t.Mapping[str, t.Any]) -> list[dict[str, t.Any]]:
    """OTLP attributes of the values that are set; lists of scalars stay lists, anything else is text."""
    kept = {}
    for key, value in values.items():
        if value is None or value == [] or value == "":
            continue
        if isinstance(value, (list, tuple)):
            value = [v if isinstance(v, (str, int, float, bool)) else str(v) for v in value]
        elif not isinstance(value, (str, int, float, bool)):
            value = str(value)
        kept[key] = value
    return otlp.key_values(kept)


class _Builder:
    """Spans in the order their records come; each span's end defaults to the run's end."""

    def __init__(self, run_id: str, end_ns: int) -> None:
        self.run_id = run_id
        self.trace_id = trace_id_of(run_id)
        self.end_ns = end_ns
        self.spans: list[dict[str, t.Any]] = []

    def span(self, key: str, name: str, parent: dict[str, t.Any] | None, start: t.Any, end: t.Any,
             attributes: t.Mapping[str, t.Any], error: bool | None = None) -> dict[str, t.Any]:
        start_ns = _nanos(start, self.end_ns)
        span: dict[str, t.Any] = {
            "traceId": self.trace_id, "spanId": span_id_of(self.run_id, key), "name": name, "kind": _INTERNAL,
            "startTimeUnixNano": str(start_ns), "endTimeUnixNano": str(max(_nanos(end, self.end_ns), start_ns)),
            "attributes": _attributes(attributes), "events": []}
        if parent is not None:
            span["parentSpanId"] = parent["spanId"]
        if error is not None:
            span["status"] = {"code": _ERROR} if error else {"code": _OK}
        self.spans.append(span)
        return span

    def event(self, span: dict[str, t.Any], name: str, at: t.Any, attributes: t.Mapping[str, t.Any]) -> None:
        start = int(span["startTimeUnixNano"])
        span["events"].append({"timeUnixNano": str(max(_nanos(at, start), start)), "name": name,
                               "attributes": _attributes(attributes)})


def _strip(record: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    return {k: v for k, v in record.items() if k not in ("schema_version", "type", "run_id")}


def _gate_attributes(gate: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    counts = gate.get("counts") or {}
    values = {"emp.gate.name": gate.get("name"), "emp.gate.id": gate.get("id"), "emp.component": gate.get("component"),
              "emp.phase": gate.get("phase"), "emp.decision": gate.get("decision"), "emp.gate.mode": gate.get("mode"),
              "emp.gate.enforced": gate.get("enforced"), "emp.gate.ignored": gate.get("ignored"),
              "emp.gate.host": gate.get("host"), "emp.gate.delegated_to": gate.get("delegated_to"),
              "emp.checklist_ref": gate.get("checklist_ref"), "emp.gate.redacted": gate.get("redacted"),
              "emp.gate.probe_module": gate.get("probe_module")}
    if not gate.get("redacted"):
        values["emp.gate.reason"] = first_line(gate.get("reason"), 1000)
        values["emp.gate.criteria"] = [str(c.get("criterion")) for c in gate.get("criteria") or []
                                       if isinstance(c, t.Mapping)]
    values.update({f"emp.gate.samples.{k}": v for k, v in counts.items() if isinstance(v, int)})
    return values


def _add_gate(builder: _Builder, key: str, gate: t.Mapping[str, t.Any], parent: dict[str, t.Any]) -> None:
    span = builder.span(key, f"gate {gate.get('name')}", parent, gate.get("started"), gate.get("ended"),
                        _gate_attributes(gate), error=gate.get("decision") == R.NO_GO)
    samples = [] if gate.get("redacted") else gate.get("samples") or []  # no_log: no figures anywhere
    for sample in samples:
        if not isinstance(sample, t.Mapping):
            continue
        figures = sample.get("figures")
        figures = figures if isinstance(figures, t.Mapping) else {}
        values = {"emp.sample.index": sample.get("index"), "emp.sample.outcome": sample.get("outcome"),
                  "emp.sample.error": sample.get("error"), "emp.sample.duration_ms": sample.get("duration_ms")}
        values.update({f"emp.figure.{name}": value for name, value in figures.items()})
        builder.event(span, "sample", sample.get("time"), values)


def _rollback_attributes(rollback: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    return {"emp.rollback.components": list(rollback.get("components") or []), "emp.rollback.state":
            rollback.get("state"), "emp.rollback.ok": rollback.get("ok"), "emp.rollback.scope": rollback.get("scope"),
            "emp.rollback.runner": rollback.get("runner"), "emp.rollback.duration_s": rollback.get("duration_s"),
            "emp.rollback.budget_s": rollback.get("budget_s"), "emp.rollback.within_budget":
            rollback.get("within_budget"), "emp.rollback.reason": first_line(rollback.get("reason"), 1000),
            "emp.rollback.problems": [first_line(p, 300) for p in rollback.get("problems") or []]}


def deploy_records(records: t.Sequence[t.Mapping[str, t.Any]]) -> list[t.Mapping[str, t.Any]]:
    """The records of the deploy run itself: up to its run_end, never a watch's or a trace export's."""
    kept = []
    for record in records:
        if record.get("type") == R.WATCH_START:
            break
        if record.get("type") != R.TRACE_EXPORT:
            kept.append(record)
        if record.get("type") == R.RUN_END:
            break
    return kept


def build_trace(records: t.Sequence[t.Mapping[str, t.Any]], service_name: str = DEFAULT_SERVICE) -> dict[str, t.Any]:
    """The run's ExportTraceServiceRequest (OTLP JSON) from its journal records."""
    records = deploy_records(records)
    start = next((r for r in records if r.get("type") == R.RUN_START), records[0] if records else {})
    end = next((r for r in reversed(records) if r.get("type") == R.RUN_END), None)
    run_id = str(start.get("run_id") or "")
    last = records[-1].get("ts") if records else None
    end_ns = _nanos(end.get("ts") if end else last, 0)
    builder = _Builder(run_id, end_ns)
    decision = end.get("decision") if end else "unfinished"
    release = start.get("emp_release")
    run = builder.span("run", f"deploy {release}" if release else f"deploy run {run_id}", None,
                       start.get("started") or start.get("ts"), end.get("ts") if end else last,
                       {"emp.run_id": run_id, "emp.release": release, "emp.decision": decision,
                        "deployment.id": run_id, "emp.playbook": start.get("playbook"),
                        "emp.check_mode": start.get("check_mode"), "emp.limit": start.get("limit"),
                        "emp.rollback_run": start.get("rollback_run"), "emp.controller": start.get("controller"),
                        "emp.user": start.get("user"), "emp.interrupted": end.get("interrupted") if end else None,
                        "emp.rollback.state": ((end or {}).get("rollback") or {}).get("state")},
                       error=decision in (R.NO_GO, R.INTERRUPTED) if decision in R.RUN_DECISIONS else None)
    _walk(builder, run, records)
    resource = {"service.name": service_name, "emp.run_id": run_id, "deployment.id": run_id}
    return {"resourceSpans": [{"resource": {"attributes": _attributes(resource)},
                               "scopeSpans": [{"scope": {"name": SCOPE, "version": "1"}, "spans": builder.spans}]}]}


def _walk(builder: _Builder, run: dict[str, t.Any], records: t.Sequence[t.Mapping[str, t.Any]]) -> None:
    """Phases, gates, steps and the rollback, by position in the journal (as the reports read it)."""
    phase: dict[str, t.Any] | None = None
    rollback: dict[str, t.Any] | None = None
    play: dict[str, t.Any] | None = None
    phases = gates = plays = 0
    for record in records:
        kind, data = record.get("type"), _strip(record)
        holder = phase or run
        if kind == R.PHASE_START:
            phase = builder.span(f"phase/{phases}", f"phase {data.get('phase')} · {data.get('component')}", run,
                                 record.get("ts"), None, {"emp.phase": data.get("phase"),
                                                          "emp.component": data.get("component"),
                                                          "emp.play": data.get("play")})
            phases += 1
        elif kind == R.PHASE_END and phase is not None:
            phase["endTimeUnixNano"] = str(max(_nanos(record.get("ts"), builder.end_ns), int(phase["startTimeUnixNano"])))
            phase["attributes"] += _attributes({"emp.decision": data.get("decision")})
            if data.get("decision") in (R.GO, R.NO_GO):
                phase["status"] = {"code": _ERROR if data.get("decision") == R.NO_GO else _OK}
            phase = None
        elif kind == R.GATE:
            _add_gate(builder, f"gate/{gates}", data, holder)
            gates += 1
        elif kind == R.STEP_FAILED:
            builder.event(holder, "step failed", record.get("ts"), {
                "emp.task": data.get("task"), "emp.host": data.get("host"), "emp.component": data.get("component"),
                "emp.unreachable": data.get("unreachable"), "emp.reason": data.get("reason"),
                "emp.message": first_line(data.get("msg"), 1000)})
        elif kind == R.RELEASE:
            builder.event(holder, "release", record.get("ts"), {
                "emp.component": data.get("component"), "emp.version": data.get("version"),
                "emp.previous": data.get("previous"), "emp.changed": data.get("changed"), "emp.host": data.get("host")})
        elif kind == R.ROLLBACK_START:
            rollback = builder.span("rollback", f"rollback {', '.join(data.get('components') or [])}", run,
                                    record.get("ts"), None, _rollback_attributes(data))
        elif kind == R.ROLLBACK_PLAY_START and rollback is not None:
            play = builder.span(f"rollback/play/{plays}", f"rollback play {data.get('play')}", rollback,
                                record.get("ts"), None, {"emp.component": data.get("component"),
                                                         "emp.play": data.get("play")})
            plays += 1
        elif kind == R.ROLLBACK_PLAY_END and play is not None:
            play["endTimeUnixNano"] = str(max(_nanos(record.get("ts"), builder.end_ns), int(play["startTimeUnixNano"])))
            play["status"] = {"code": _ERROR if data.get("failures") else _OK}
            play = None
        elif kind in (R.ROLLBACK_GATE, R.ROLLBACK_STEP_FAILED) and rollback is not None:
            builder.event(play or rollback, "verification gate" if kind == R.ROLLBACK_GATE else "rollback step failed",
                          record.get("ts"), {"emp.gate.name": data.get("name"), "emp.decision": data.get("decision"),
                                             "emp.task": data.get("task"),
                                             "emp.message": first_line(data.get("reason"), 1000)})
        elif kind == R.ROLLBACK_END and rollback is not None:
            rollback["endTimeUnixNano"] = str(max(_nanos(record.get("ts"), builder.end_ns),
                                                  int(rollback["startTimeUnixNano"])))
            rollback["attributes"] = _attributes(_rollback_attributes(data))
            rollback["status"] = {"code": _OK if data.get("ok") else _ERROR}
        elif kind == R.NOTIFY:
            builder.event(run, "notice", record.get("ts"), {
                "emp.notice.target": data.get("target"), "emp.notice.event": data.get("event"),
                "emp.notice.outcome": data.get("outcome"), "emp.notice.sent": data.get("sent"),
                "emp.notice.status": data.get("status"), "emp.notice.attempts": data.get("attempts")})
        elif kind == R.RUN_INTERRUPTED:
            builder.event(run, "interrupted", record.get("ts"), {"emp.signal": data.get("signal"),
                                                                 "emp.rollback.state": data.get("rollback_state")})


def span_count(request: t.Mapping[str, t.Any]) -> tuple[int, int]:
    """(spans, events) of an ExportTraceServiceRequest."""
    spans = [s for block in request.get("resourceSpans") or [] for scope in block.get("scopeSpans") or []
             for s in scope.get("spans") or []]
    return len(spans), sum(len(s.get("events") or []) for s in spans)


# --- the export -----------------------------------------------------------------------------------


def scrub(text: str, options: TraceOptions) -> str:
    for secret in options.secrets:
        text = text.replace(secret, "<hidden>")
    return text


def export(options: TraceOptions, request: dict[str, t.Any], client: _http.HttpClient | None = None) -> dict[str, t.Any]:
    """Sends the trace once (retrying 429/502/503/504 and refused connections while the deadline lasts);
    the trace_export record. Never raises."""
    spans, events = span_count(request)
    trace_id = request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] if spans else None
    record: dict[str, t.Any] = {"endpoint": options.endpoint, "protocol": options.protocol, "outcome": NOT_SENT,
                                "sent": False, "status": None, "attempts": 0, "statuses": [], "trace_id": trace_id,
                                "spans": spans, "events": events, "rejected": 0, "error": None, "duration_s": None}
    started = time.monotonic()
    try:
        _send(options, request, record, client or _http.HttpClient(user_agent="emp.deploy.go_no_go"))
    except Exception as exc:  # pylint: disable=broad-exception-caught  # an export never breaks the run
        record.update(outcome=BAD_ANSWER, error=f"{type(exc).__name__}: {exc}")
    record["duration_s"] = round(time.monotonic() - started, 3)
    if record["error"]:
        record["error"] = scrub(first_line(record["error"], 500), options)
    return record


def _send(options: TraceOptions, request: dict[str, t.Any], record: dict[str, t.Any], client: _http.HttpClient) -> None:
    body, content_type = otlp.encode_canary("traces", request, options.protocol)
    headers = dict(options.headers, **{"Content-Type": content_type})
    deadline = _http.Deadline(options.timeout_s)
    backoff = FIRST_BACKOFF_S
    while True:
        record["attempts"] += 1
        wait = _attempt(options, client, body, headers, deadline, record, backoff)
        record["statuses"].append(record["status"])
        if wait is None:
            return
        if wait >= deadline.remaining():
            record["error"] += f"; no time left for another attempt within the {options.timeout_s:g} s timeout"
            return
        time.sleep(wait)
        backoff *= 2


def _attempt(options: TraceOptions, client: _http.HttpClient, body: bytes, headers: dict[str, str],
             deadline: _http.Deadline, record: dict[str, t.Any], backoff: float) -> float | None:
    """One POST; the seconds to wait before the next one, or None when the export is settled."""
    try:
        answer = client.request("POST", options.url, deadline=deadline, body=body, headers=headers,
                                body_limit=ANSWER_LIMIT)
    except _http.HttpFailure as exc:
        record.update(status=None, error=exc.sentence("the OTLP endpoint"))
        record["outcome"] = {_http.TIMEOUT: TIMEOUT, _http.UNREACHABLE: UNREACHABLE}.get(exc.kind, BAD_ANSWER)
        return backoff if exc.kind == _http.UNREACHABLE else None  # a timeout may have arrived: never sent twice
    record["status"] = answer.status
    if answer.ok:
        try:
            rejected, message = otlp.parse_export_answer("traces", answer.body, answer.header("content-type"))
        except (otlp.ProtobufError, ValueError, UnicodeDecodeError):
            rejected, message = 0, ""  # accepted (2xx) with a body that is no ExportTraceServiceResponse
        record.update(rejected=rejected, sent=True, outcome=REJECTED if rejected else SENT,
                      error=f"the endpoint rejected {rejected} of {record['spans']} spans: {message}" if rejected else None)
        return None
    said = otlp.describe_error_body(answer.body, answer.header("content-type"), 200)
    record.update(outcome=HTTP_ERROR, error=f"the OTLP endpoint at {options.endpoint} answered HTTP {answer.status}"
                  + (f": {said}" if said else ""))
    if answer.status not in RETRYABLE:
        return None
    asked = _http.retry_after_seconds(answer.header("retry-after"))
    return backoff if asked is None else asked


# --- the run's export ---------------------------------------------------------------------------


class RunTrace:
    """The callback's side: at the end of the run, the journal (and the run_end about to be written) as one
    trace, sent once and journaled as trace_export."""

    def __init__(self, options: TraceOptions, recorder: t.Any, client: _http.HttpClient | None = None) -> None:
        self.options = options
        self.recorder = recorder
        self.client = client
        self.record: dict[str, t.Any] | None = None

    def before_end(self, run_end: t.Mapping[str, t.Any]) -> None:
        """RunRecorder.finish calls this with the run_end record it is about to write."""
        journal = self.recorder.run_dir / "journal.jsonl"
        try:
            records = read_journal(journal)
        except JournalError as exc:
            self.record = {"endpoint": self.options.endpoint, "outcome": NOT_SENT, "sent": False,
                           "error": f"no trace without the journal: {exc}"}
            return
        end = dict(run_end, schema_version=R.SCHEMA_VERSION, type=R.RUN_END, run_id=self.recorder.run_id)
        request = build_trace(list(records) + [end], self.options.service_name)
        self.record = export(self.options, request, self.client)
        self.recorder.record(R.TRACE_EXPORT, **self.record)
