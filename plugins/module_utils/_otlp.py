# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""OTLP canaries without opentelemetry-proto: a tiny protobuf writer/reader and the OTLP JSON mapping.

Modules run on targets where opentelemetry-proto (and protobuf) are not installed, so the
canary requests are built here as OTLP JSON dicts (hex trace/span ids, 64-bit integers as
strings, enums as integers) and encoded to protobuf by walking a field table that mirrors
opentelemetry-proto's .proto files. Only the messages a canary needs are described.

The reader decodes the few answers an exporter must understand: Export*ServiceResponse
(partial_success) and google.rpc.Status (error bodies).
"""

from __future__ import annotations

import binascii
import json
import os
import struct
from typing import Any

SIGNALS = ("traces", "metrics", "logs")
SIGNAL_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
SCOPE_NAME = "emp.deploy.otel_verify"
RUN_ID_ATTRIBUTE = "emp.canary.run_id"
SPAN_NAME = "emp.deploy.otel_verify canary"
# What the partial_success counter is called per signal, and the unit people read.
REJECTED_FIELD = {"traces": "rejectedSpans", "metrics": "rejectedDataPoints", "logs": "rejectedLogRecords"}
ITEM_UNIT = {"traces": "span", "metrics": "data point", "logs": "log record"}

# Wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

# Field tables: message -> {json name: (field number, kind, message type of the value or None)}.
# Kinds: string, bytes_hex (ids, hex in OTLP JSON), bytes_b64, fixed64, sfixed64, int64, uint32,
# enum, bool, double, fixed32, message. Repetition follows from the JSON value being a list.
_SCHEMA: dict[str, dict[str, tuple]] = {
    "ExportTraceServiceRequest": {"resourceSpans": (1, "message", "ResourceSpans")},
    "ExportMetricsServiceRequest": {"resourceMetrics": (1, "message", "ResourceMetrics")},
    "ExportLogsServiceRequest": {"resourceLogs": (1, "message", "ResourceLogs")},
    "ResourceSpans": {"resource": (1, "message", "Resource"), "scopeSpans": (2, "message", "ScopeSpans"),
                      "schemaUrl": (3, "string", None)},
    "ResourceMetrics": {"resource": (1, "message", "Resource"), "scopeMetrics": (2, "message", "ScopeMetrics"),
                        "schemaUrl": (3, "string", None)},
    "ResourceLogs": {"resource": (1, "message", "Resource"), "scopeLogs": (2, "message", "ScopeLogs"),
                     "schemaUrl": (3, "string", None)},
    "Resource": {"attributes": (1, "message", "KeyValue"), "droppedAttributesCount": (2, "uint32", None)},
    "InstrumentationScope": {"name": (1, "string", None), "version": (2, "string", None),
                             "attributes": (3, "message", "KeyValue"),
                             "droppedAttributesCount": (4, "uint32", None)},
    "ScopeSpans": {"scope": (1, "message", "InstrumentationScope"), "spans": (2, "message", "Span"),
                   "schemaUrl": (3, "string", None)},
    "ScopeMetrics": {"scope": (1, "message", "InstrumentationScope"), "metrics": (2, "message", "Metric"),
                     "schemaUrl": (3, "string", None)},
    "ScopeLogs": {"scope": (1, "message", "InstrumentationScope"), "logRecords": (2, "message", "LogRecord"),
                  "schemaUrl": (3, "string", None)},
    "Span": {"traceId": (1, "bytes_hex", None), "spanId": (2, "bytes_hex", None), "traceState": (3, "string", None),
             "parentSpanId": (4, "bytes_hex", None), "name": (5, "string", None), "kind": (6, "enum", None),
             "startTimeUnixNano": (7, "fixed64", None), "endTimeUnixNano": (8, "fixed64", None),
             "attributes": (9, "message", "KeyValue"), "droppedAttributesCount": (10, "uint32", None),
             "events": (11, "message", "Event"), "droppedEventsCount": (12, "uint32", None),
             "droppedLinksCount": (14, "uint32", None), "status": (15, "message", "Status"),
             "flags": (16, "fixed32", None)},
    "Event": {"timeUnixNano": (1, "fixed64", None), "name": (2, "string", None),
              "attributes": (3, "message", "KeyValue"), "droppedAttributesCount": (4, "uint32", None)},
    "Status": {"message": (2, "string", None), "code": (3, "enum", None)},
    "Metric": {"name": (1, "string", None), "description": (2, "string", None), "unit": (3, "string", None),
               "gauge": (5, "message", "Gauge"), "sum": (7, "message", "Sum"),
               "metadata": (12, "message", "KeyValue")},
    "Gauge": {"dataPoints": (1, "message", "NumberDataPoint")},
    "Sum": {"dataPoints": (1, "message", "NumberDataPoint"), "aggregationTemporality": (2, "enum", None),
            "isMonotonic": (3, "bool", None)},
    "NumberDataPoint": {"startTimeUnixNano": (2, "fixed64", None), "timeUnixNano": (3, "fixed64", None),
                        "asDouble": (4, "double", None), "asInt": (6, "sfixed64", None),
                        "attributes": (7, "message", "KeyValue"), "flags": (8, "uint32", None)},
    "LogRecord": {"timeUnixNano": (1, "fixed64", None), "severityNumber": (2, "enum", None),
                  "severityText": (3, "string", None), "body": (5, "message", "AnyValue"),
                  "attributes": (6, "message", "KeyValue"), "droppedAttributesCount": (7, "uint32", None),
                  "flags": (8, "fixed32", None), "traceId": (9, "bytes_hex", None), "spanId": (10, "bytes_hex", None),
                  "observedTimeUnixNano": (11, "fixed64", None), "eventName": (12, "string", None)},
    "KeyValue": {"key": (1, "string", None), "value": (2, "message", "AnyValue")},
    "AnyValue": {"stringValue": (1, "string", None), "boolValue": (2, "bool", None), "intValue": (3, "int64", None),
                 "doubleValue": (4, "double", None), "arrayValue": (5, "message", "ArrayValue"),
                 "kvlistValue": (6, "message", "KeyValueList"), "bytesValue": (7, "bytes_b64", None)},
    "ArrayValue": {"values": (1, "message", "AnyValue")},
    "KeyValueList": {"values": (1, "message", "KeyValue")},
}
REQUEST_MESSAGE = {"traces": "ExportTraceServiceRequest", "metrics": "ExportMetricsServiceRequest",
                   "logs": "ExportLogsServiceRequest"}
_REQUEST_LIST = {"traces": ("resourceSpans", "scopeSpans", "spans"),
                 "metrics": ("resourceMetrics", "scopeMetrics", "metrics"),
                 "logs": ("resourceLogs", "scopeLogs", "logRecords")}


class ProtobufError(ValueError):
    """Bytes that are not the protobuf message they should be, or a value the schema cannot hold."""


# --------------------------------------------------------------------------- writer
def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 negatives are ten-byte two's complement varints
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _tag(number, _LEN) + _varint(len(payload)) + payload


def _encode_scalar(number: int, kind: str, value, where: str) -> bytes:
    try:
        if kind == "string":
            return _length_delimited(number, str(value).encode("utf-8"))
        if kind == "bytes_hex":
            return _length_delimited(number, binascii.unhexlify(value))
        if kind == "bytes_b64":
            return _length_delimited(number, binascii.a2b_base64(value))
        if kind in ("int64", "uint32", "enum"):
            return _tag(number, _VARINT) + _varint(int(value))
        if kind == "bool":
            return _tag(number, _VARINT) + _varint(1 if value else 0)
        if kind == "fixed64":
            return _tag(number, _I64) + struct.pack("<Q", int(value))
        if kind == "sfixed64":
            return _tag(number, _I64) + struct.pack("<q", int(value))
        if kind == "double":
            return _tag(number, _I64) + struct.pack("<d", float(value))
        if kind == "fixed32":
            return _tag(number, _I32) + struct.pack("<I", int(value))
    except (TypeError, ValueError, struct.error, binascii.Error) as exc:
        raise ProtobufError(f"{where}: {value!r} cannot be encoded as {kind}: {exc}") from exc
    raise ProtobufError(f"{where}: unknown kind {kind}")


def encode_message(message_type: str, data: dict, where: str = "") -> bytes:
    """Protobuf bytes of an OTLP JSON dict, per the field table of ``message_type``."""
    fields = _SCHEMA[message_type]
    out = bytearray()
    unknown = [name for name in data if name not in fields]
    if unknown:
        raise ProtobufError(f"{where or message_type}: field {unknown[0]!r} is not in the canary schema of {message_type}")
    # Field-number order, as protobuf serializers write it, so the bytes are canonical.
    for name, value in sorted(data.items(), key=lambda pair: fields[pair[0]][0]):
        number, kind, sub_type = fields[name]
        for one in value if isinstance(value, list) else [value]:
            here = f"{where or message_type}.{name}"
            if kind == "message":
                out += _length_delimited(number, encode_message(sub_type, one, here))
            else:
                out += _encode_scalar(number, kind, one, here)
    return bytes(out)


def encode_request(signal: str, request: dict) -> bytes:
    return encode_message(REQUEST_MESSAGE[signal], request)


# --------------------------------------------------------------------------- reader
def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint longer than 10 bytes")


def decode_fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) triples; LEN values stay bytes, I64/I32 stay raw bytes."""
    fields: list[tuple[int, int, Any]] = []
    value: Any
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire_type == _I64:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire_type == _LEN:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire_type == _I32:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire_type}")
        if pos > len(buf):
            raise ProtobufError("truncated field")
        fields.append((number, wire_type, value))
    return fields


def _as_int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def decode_partial_success(body: bytes) -> tuple[int, str]:
    """(rejected count, error message) of any Export*ServiceResponse; (0, '') when unset."""
    rejected, message = 0, ""
    for number, wire_type, value in decode_fields(body):
        if number == 1 and wire_type == _LEN:
            for inner_number, inner_type, inner in decode_fields(value):
                if inner_number == 1 and inner_type == _VARINT:
                    rejected = _as_int64(inner)
                elif inner_number == 2 and inner_type == _LEN:
                    message = inner.decode("utf-8", "replace")
    return rejected, message


def decode_rpc_status(body: bytes) -> tuple[int | None, str]:
    """(code, message) of a google.rpc.Status; raises ProtobufError when it is not one."""
    code, message = None, ""
    for number, wire_type, value in decode_fields(body):
        if number == 1 and wire_type == _VARINT:
            code = _as_int64(value)
        elif number == 2 and wire_type == _LEN:
            message = value.decode("utf-8", "replace")
    return code, message


def parse_export_answer(signal: str, body: bytes, content_type: str) -> tuple[int, str]:
    """(rejected, error message) of a 2xx answer in either encoding; an empty body is full success."""
    if not body:
        return 0, ""
    if media_type(content_type) == JSON:
        data = json.loads(body.decode("utf-8"))
        partial = (data or {}).get("partialSuccess") or (data or {}).get("partial_success") or {}
        snake = {"rejectedSpans": "rejected_spans", "rejectedDataPoints": "rejected_data_points",
                 "rejectedLogRecords": "rejected_log_records"}[REJECTED_FIELD[signal]]
        rejected = partial.get(REJECTED_FIELD[signal], partial.get(snake, 0))
        return int(rejected or 0), str(partial.get("errorMessage", partial.get("error_message", "")) or "")
    return decode_partial_success(body)


def describe_error_body(body: bytes, content_type: str, limit: int = 300) -> str:
    """The server's own words about a failed export: a google.rpc.Status message, or the text."""
    if not body:
        return ""
    kind = media_type(content_type)
    try:
        if kind == PROTOBUF:
            code, message = decode_rpc_status(body)
            if message or code is not None:
                return message or f"google.rpc code {code}"
        if kind == JSON:
            data = json.loads(body.decode("utf-8"))
            if isinstance(data, dict):
                for key in ("message", "error", "status"):
                    if data.get(key):
                        return str(data[key])[:limit]
    except (ProtobufError, ValueError, UnicodeDecodeError):
        pass
    return body[:limit].decode("utf-8", "replace").strip()


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


# --------------------------------------------------------------------------- canaries
def new_trace_id() -> str:
    while True:
        value = os.urandom(16)
        if any(value):  # an all-zero trace id is invalid in OTLP
            return value.hex()


def new_span_id() -> str:
    while True:
        value = os.urandom(8)
        if any(value):
            return value.hex()


def any_value(value) -> dict:
    """A Python scalar or list as an OTLP JSON AnyValue."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [any_value(item) for item in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": key_values(value)}}
    return {"stringValue": str(value)}


def key_values(attributes: dict) -> list:
    return [{"key": str(key), "value": any_value(value)} for key, value in attributes.items()]


def build_canary(signal: str, service_name: str, resource_attributes: dict, run_id: str, trace_id: str,
                 span_id: str, time_ns: int, metric_name: str) -> dict:
    """One canary Export*ServiceRequest as OTLP JSON: one span, one data point or one log record."""
    resource = {"attributes": key_values(dict(resource_attributes, **{"service.name": service_name}))}
    scope = {"name": SCOPE_NAME, "version": "1"}
    attributes = key_values({RUN_ID_ATTRIBUTE: run_id, "emp.canary.signal": signal})
    if signal == "traces":
        item = {"traceId": trace_id, "spanId": span_id, "name": SPAN_NAME, "kind": 1,
                "startTimeUnixNano": str(time_ns), "endTimeUnixNano": str(time_ns + 1000000),
                "attributes": attributes, "status": {"code": 1}}
    elif signal == "logs":
        item = {"timeUnixNano": str(time_ns), "observedTimeUnixNano": str(time_ns), "severityNumber": 9,
                "severityText": "INFO", "body": {"stringValue": f"emp.deploy.otel_verify canary {run_id}"},
                "attributes": attributes, "traceId": trace_id, "spanId": span_id}
    else:
        item = {"name": metric_name, "description": "emp.deploy.otel_verify canary", "unit": "1",
                "gauge": {"dataPoints": [{"timeUnixNano": str(time_ns), "asInt": "1", "attributes": attributes}]}}
    resource_list, scope_list, items = _REQUEST_LIST[signal]
    return {resource_list: [{"resource": resource, scope_list: [{"scope": scope, items: [item]}]}]}


def encode_canary(signal: str, canary: dict, protocol: str) -> tuple[bytes, str]:
    """(body, content type) for ``protocol`` http/protobuf or http/json."""
    if protocol == "http/json":
        return json.dumps(canary, separators=(",", ":")).encode("utf-8"), JSON
    return encode_request(signal, canary), PROTOBUF


def span_ids_in(resource_spans: list) -> set:
    """Every (traceId, spanId) in OTLP JSON resourceSpans / Tempo batches, ids lower-cased hex."""
    found = set()
    for block in resource_spans or []:
        for scope in block.get("scopeSpans") or block.get("instrumentationLibrarySpans") or []:
            for span in scope.get("spans") or []:
                found.add((_hex_id(span.get("traceId")), _hex_id(span.get("spanId"))))
    return found


def log_records_in(resource_logs: list) -> list:
    out: list = []
    for block in resource_logs or []:
        for scope in block.get("scopeLogs") or []:
            out.extend(scope.get("logRecords") or [])
    return out


def attribute(item: dict, key: str):
    """A plain value of an OTLP JSON item's attribute, or None."""
    for kv in item.get("attributes") or []:
        if kv.get("key") == key:
            value = kv.get("value") or {}
            for field in ("stringValue", "intValue", "doubleValue", "boolValue"):
                if field in value:
                    return value[field]
    return None


def _hex_id(value) -> str:
    """Ids in OTLP JSON are hex; some backends (protobuf JSON mapping) answer base64: accept both."""
    text = str(value or "")
    if len(text) in (16, 32) and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.lower()
    try:
        return binascii.a2b_base64(text).hex()
    except (binascii.Error, ValueError):
        return text.lower()
