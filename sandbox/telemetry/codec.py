"""OTLP/HTTP request decoding and answers, as the OTLP specification describes them.

Requests: protobuf (``application/x-protobuf``) or JSON (``application/json``, the OTLP JSON
mapping: hex trace/span ids, int64 as strings or numbers, enums as integers, unknown fields
ignored), optionally ``Content-Encoding: gzip``. Decoding uses opentelemetry-proto, so the
collection's hand-written canary encoder is checked against the reference schema.

Answers: 200 with an Export<Signal>ServiceResponse (``partial_success`` set only when something
was rejected), 400 with a google.rpc.Status for malformed payloads, 429/503 with Retry-After
(also a google.rpc.Status), encoded in the request's own content type.
"""
from __future__ import annotations

import base64
import binascii
import gzip
import json
import zlib
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# google.rpc.Code values used in error answers.
CODE_INVALID_ARGUMENT = 3
CODE_RESOURCE_EXHAUSTED = 8
CODE_UNAVAILABLE = 14
CODE_UNAUTHENTICATED = 16
CODE_PERMISSION_DENIED = 7

# Field names that carry ids; OTLP JSON writes them as hex, protobuf's JSON mapping as base64.
_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_ID_LENGTHS = {"traceId": 16, "trace_id": 16, "spanId": 8, "span_id": 8, "parentSpanId": 8, "parent_span_id": 8}


@dataclass(frozen=True)
class SignalSpec:
    """Per-signal protobuf classes and field names."""
    name: str
    request: type[Message]
    response: type[Message]
    resource_field: str      # ExportXServiceRequest's repeated field
    scope_field: str         # ResourceX's repeated scope field
    items_field: str         # ScopeX's repeated item field
    rejected_field: str      # ExportXPartialSuccess's rejected counter
    unit: str                # otelcol self-metric suffix


SIGNAL_SPECS: dict[str, SignalSpec] = {
    "traces": SignalSpec("traces", trace_service_pb2.ExportTraceServiceRequest,
                         trace_service_pb2.ExportTraceServiceResponse,
                         "resource_spans", "scope_spans", "spans", "rejected_spans", "spans"),
    "metrics": SignalSpec("metrics", metrics_service_pb2.ExportMetricsServiceRequest,
                          metrics_service_pb2.ExportMetricsServiceResponse,
                          "resource_metrics", "scope_metrics", "metrics", "rejected_data_points",
                          "metric_points"),
    "logs": SignalSpec("logs", logs_service_pb2.ExportLogsServiceRequest,
                       logs_service_pb2.ExportLogsServiceResponse,
                       "resource_logs", "scope_logs", "log_records", "rejected_log_records", "log_records"),
}


class MalformedPayload(ValueError):
    """The request body cannot be decoded: the answer is 400."""


class UnsupportedMediaType(ValueError):
    """Neither protobuf nor JSON: the answer is 415."""


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header, lower case."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decompress(body: bytes, content_encoding: str | None) -> bytes:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        try:
            return gzip.decompress(body)
        except (OSError, EOFError, zlib.error) as exc:
            raise MalformedPayload(f"gzip body cannot be decompressed: {exc}") from exc
    raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported (identity, gzip)")


def _hex_ids_to_base64(node: Any, path: str = "") -> Any:
    """Rewrites OTLP JSON hex ids into the base64 protobuf's JSON parser expects."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                out[key] = _hex_to_base64(key, value, f"{path}.{key}")
            else:
                out[key] = _hex_ids_to_base64(value, f"{path}.{key}")
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(value, f"{path}[{i}]") for i, value in enumerate(node)]
    return node


def _hex_to_base64(key: str, value: str, where: str) -> str:
    if value == "":
        return ""
    try:
        raw = binascii.unhexlify(value)
    except (binascii.Error, ValueError) as exc:
        raise MalformedPayload(f"{where}: {value!r} is not a hex id") from exc
    if len(raw) != _ID_LENGTHS[key]:
        raise MalformedPayload(f"{where}: a {key} is {_ID_LENGTHS[key]} bytes, got {len(raw)}")
    return base64.b64encode(raw).decode("ascii")


def decode_request(spec: SignalSpec, body: bytes, content_type: str | None) -> Message:
    """Decodes an Export<Signal>ServiceRequest; raises MalformedPayload or UnsupportedMediaType."""
    kind = media_type(content_type)
    message = spec.request()
    if kind == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            raise MalformedPayload(f"protobuf body is not a valid {spec.request.__name__}: {exc}") from exc
        return message
    if kind == JSON:
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedPayload(f"JSON body cannot be parsed: {exc}") from exc
        if not isinstance(data, dict):
            raise MalformedPayload("JSON body must be an object")
        try:
            json_format.ParseDict(_hex_ids_to_base64(data), message, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise MalformedPayload(f"JSON body is not a valid {spec.request.__name__}: {exc}") from exc
        return message
    raise UnsupportedMediaType(f"Content-Type {kind or '(none)'!r} is not supported "
                               f"({PROTOBUF}, {JSON})")


def to_otlp_json(message: Message) -> dict[str, Any]:
    """A protobuf message in the OTLP JSON mapping (hex ids, integer enums, lowerCamelCase)."""
    data = json_format.MessageToDict(message, use_integers_for_enums=True)
    return _base64_ids_to_hex(data)


def _base64_ids_to_hex(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: (base64.b64decode(value).hex() if key in _ID_FIELDS and isinstance(value, str)
                      else _base64_ids_to_hex(value))
                for key, value in node.items()}
    if isinstance(node, list):
        return [_base64_ids_to_hex(value) for value in node]
    return node


def count_items(spec: SignalSpec, message: Message) -> int:
    """Spans, data points or log records in a request (the unit partialSuccess counts)."""
    total = 0
    for resource in getattr(message, spec.resource_field):
        for scope in getattr(resource, spec.scope_field):
            items = getattr(scope, spec.items_field)
            if spec.name == "metrics":
                total += sum(len(_data_points(metric)) for metric in items)
            else:
                total += len(items)
    return total


def _data_points(metric: Any) -> list:
    kind = metric.WhichOneof("data")
    return list(getattr(metric, kind).data_points) if kind else []


def encode_response(spec: SignalSpec, kind: str, rejected: int = 0, error_message: str = "") -> bytes:
    """The success answer; partial_success is set only when something was rejected or warned."""
    response = spec.response()
    if rejected or error_message:
        setattr(response.partial_success, spec.rejected_field, rejected)
        response.partial_success.error_message = error_message
    if kind == JSON:
        return json.dumps(json_format.MessageToDict(response)).encode("utf-8")
    return response.SerializeToString()


def encode_status(kind: str, code: int, message: str) -> bytes:
    """A google.rpc.Status error body in the request's content type."""
    status = status_pb2.Status(code=code, message=message)
    if kind == JSON:
        return json.dumps(json_format.MessageToDict(status)).encode("utf-8")
    return status.SerializeToString()
