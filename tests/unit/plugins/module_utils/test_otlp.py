"""The hand-written OTLP encoder/decoder, checked against opentelemetry-proto (the reference schema)."""
from __future__ import annotations

import base64
import json
import time

import pytest

from ansible_collections.emp.deploy.plugins.module_utils import _otlp as otlp

pb_json = pytest.importorskip("google.protobuf.json_format", reason="needs protobuf (opentelemetry-proto)")
trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
metrics_service = pytest.importorskip("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2")
logs_service = pytest.importorskip("opentelemetry.proto.collector.logs.v1.logs_service_pb2")
status_pb2 = pytest.importorskip("google.rpc.status_pb2")

REQUESTS = {"traces": trace_service.ExportTraceServiceRequest, "metrics": metrics_service.ExportMetricsServiceRequest,
            "logs": logs_service.ExportLogsServiceRequest}
RESPONSES = {"traces": (trace_service.ExportTraceServiceResponse, "rejected_spans"),
             "metrics": (metrics_service.ExportMetricsServiceResponse, "rejected_data_points"),
             "logs": (logs_service.ExportLogsServiceResponse, "rejected_log_records")}
ATTRIBUTES = {"deployment.environment": "production", "count": -3, "ratio": 0.25, "enabled": True,
              "tags": ["a", 1, False], "nested": {"k": "v"}, "unicode": "héllo ✓"}


def canary(signal: str, **overrides) -> dict:
    args = dict(service_name="emp-api", resource_attributes=ATTRIBUTES, run_id="run-1", trace_id=otlp.new_trace_id(),
                span_id=otlp.new_span_id(), time_ns=time.time_ns(), metric_name="emp_deploy_canary")
    args.update(overrides)
    return otlp.build_canary(signal, **args)


def reference_parse(signal: str, data: dict):
    """OTLP JSON -> protobuf via opentelemetry-proto, ids rewritten from hex to base64 as json_format wants."""
    def rewrite(node):
        if isinstance(node, dict):
            return {k: base64.b64encode(bytes.fromhex(v)).decode() if k in ("traceId", "spanId") else rewrite(v)
                    for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node
    return pb_json.ParseDict(rewrite(data), REQUESTS[signal]())


@pytest.mark.parametrize("signal", otlp.SIGNALS)
def test_protobuf_canary_is_byte_identical_to_opentelemetry_proto(signal):
    data = canary(signal)
    body, content_type = otlp.encode_canary(signal, data, "http/protobuf")
    assert content_type == "application/x-protobuf"
    decoded = REQUESTS[signal].FromString(body)
    assert decoded == reference_parse(signal, data)
    assert decoded.SerializeToString() == body  # canonical field order, nothing extra


@pytest.mark.parametrize("signal", otlp.SIGNALS)
def test_json_canary_follows_the_otlp_json_mapping(signal):
    data = canary(signal)
    body, content_type = otlp.encode_canary(signal, data, "http/json")
    assert content_type == "application/json"
    parsed = json.loads(body)
    assert parsed == data
    protobuf_body = otlp.encode_canary(signal, data, "http/protobuf")[0]
    assert reference_parse(signal, parsed) == REQUESTS[signal].FromString(protobuf_body)


def test_canary_content_per_signal():
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    span = trace_service.ExportTraceServiceRequest.FromString(otlp.encode_request(
        "traces", canary("traces", trace_id=trace_id, span_id=span_id, time_ns=10**18)))
    resource = span.resource_spans[0].resource
    assert {kv.key: kv.value.string_value for kv in resource.attributes}["service.name"] == "emp-api"
    one = span.resource_spans[0].scope_spans[0].spans[0]
    assert one.trace_id.hex() == trace_id and one.span_id.hex() == span_id
    assert one.start_time_unix_nano == 10**18 and one.end_time_unix_nano > one.start_time_unix_nano
    assert {kv.key: kv.value.string_value for kv in one.attributes}["emp.canary.run_id"] == "run-1"
    log = logs_service.ExportLogsServiceRequest.FromString(otlp.encode_request(
        "logs", canary("logs", trace_id=trace_id, span_id=span_id))).resource_logs[0].scope_logs[0].log_records[0]
    assert log.trace_id.hex() == trace_id and log.severity_number == 9 and "run-1" in log.body.string_value
    point = metrics_service.ExportMetricsServiceRequest.FromString(otlp.encode_request(
        "metrics", canary("metrics"))).resource_metrics[0].scope_metrics[0].metrics[0]
    assert point.name == "emp_deploy_canary" and point.gauge.data_points[0].as_int == 1


def test_attribute_types_survive_protobuf():
    decoded = trace_service.ExportTraceServiceRequest.FromString(otlp.encode_request("traces", canary("traces")))
    values = {kv.key: kv.value for kv in decoded.resource_spans[0].resource.attributes}
    assert values["count"].int_value == -3  # ten-byte varint for negative int64
    assert values["ratio"].double_value == 0.25
    assert values["enabled"].bool_value is True
    assert [v.WhichOneof("value") for v in values["tags"].array_value.values] == [
        "string_value", "int_value", "bool_value"]
    assert values["nested"].kvlist_value.values[0].key == "k"
    assert values["unicode"].string_value == "héllo ✓"


@pytest.mark.parametrize("signal", otlp.SIGNALS)
def test_partial_success_read_from_both_encodings(signal):
    response_type, field = RESPONSES[signal]
    response = response_type()
    setattr(response.partial_success, field, 4)
    response.partial_success.error_message = "quota"
    assert otlp.decode_partial_success(response.SerializeToString()) == (4, "quota")
    as_json = pb_json.MessageToJson(response).encode()
    assert otlp.parse_export_answer(signal, as_json, "application/json; charset=utf-8") == (4, "quota")
    assert otlp.parse_export_answer(signal, response_type().SerializeToString(), "application/x-protobuf") == (0, "")
    assert otlp.parse_export_answer(signal, b"", "application/x-protobuf") == (0, "")
    assert otlp.parse_export_answer(signal, b"{}", "application/json") == (0, "")


def test_snake_case_json_partial_success_is_read_too():
    body = json.dumps({"partial_success": {"rejected_spans": 2, "error_message": "x"}}).encode()
    assert otlp.parse_export_answer("traces", body, "application/json") == (2, "x")


def test_rpc_status_bodies_are_described():
    status = status_pb2.Status(code=14, message="collector is overloaded")
    assert otlp.decode_rpc_status(status.SerializeToString()) == (14, "collector is overloaded")
    assert otlp.describe_error_body(status.SerializeToString(), "application/x-protobuf") == "collector is overloaded"
    as_json = pb_json.MessageToJson(status).encode()
    assert otlp.describe_error_body(as_json, "application/json") == "collector is overloaded"
    assert otlp.describe_error_body(b"<html>bad gateway</html>", "text/html") == "<html>bad gateway</html>"
    assert otlp.describe_error_body(b"", "application/json") == ""


@pytest.mark.parametrize("garbage", [b"\x0a\xff", b"\x08", b"\x0f\x01", b"\x00\x01"])
def test_malformed_protobuf_raises(garbage):
    with pytest.raises(otlp.ProtobufError):
        otlp.decode_partial_success(garbage)


def test_fields_outside_the_schema_are_refused():
    with pytest.raises(otlp.ProtobufError, match="links"):
        otlp.encode_message("Span", {"links": []})
    with pytest.raises(otlp.ProtobufError, match="bytes_hex"):
        otlp.encode_message("Span", {"traceId": "not-hex"})


def test_ids_are_random_valid_hex():
    ids = {otlp.new_trace_id() for dummy in range(100)}
    assert len(ids) == 100 and all(len(i) == 32 and int(i, 16) for i in ids)
    assert len(otlp.new_span_id()) == 16


def test_span_ids_in_accepts_hex_and_base64():
    blocks = [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"},
        {"traceId": base64.b64encode(bytes.fromhex("00" * 15 + "01")).decode(),
         "spanId": base64.b64encode(bytes.fromhex("00" * 7 + "02")).decode()}]}]}]
    assert otlp.span_ids_in(blocks) == {("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"),
                                        ("0" * 31 + "1", "0" * 15 + "2")}
