"""The run as an OTLP trace, built from crafted journals: the span tree, ids derived from the run id,
timing from the records, sample events, redaction, and the options (never showing a secret).
The export itself runs against the sandbox's telemetry service in tests/integration/test_go_no_go_trace.py."""
from __future__ import annotations

import pytest

import report_journals as rj
from ansible_collections.emp.deploy.plugins.module_utils import _otlp
from ansible_collections.emp.deploy.plugins.plugin_utils import _trace
from ansible_collections.emp.deploy.plugins.plugin_utils._report_model import parse_time
from ansible_collections.emp.deploy.plugins.plugin_utils._run_recorder import OptionError


def spans(request: dict) -> list[dict]:
    return request["resourceSpans"][0]["scopeSpans"][0]["spans"]


def attrs(item: dict) -> dict:
    return {kv["key"]: next(iter(kv["value"].values())) for kv in item["attributes"]}


def nanos(stamp: str) -> int:
    return int(round(parse_time(stamp) * 1_000_000)) * 1000


def test_the_trace_of_a_nogo_run_mirrors_its_journal():
    builder = rj.told_run()
    request = _trace.build_trace(builder.records)
    found = {s["name"]: s for s in spans(request)}
    run = found["deploy 1.1.0"]
    trace_id = _trace.trace_id_of(builder.run_id)
    assert {s["traceId"] for s in found.values()} == {trace_id} and "parentSpanId" not in run
    assert run["spanId"] == _trace.span_id_of(builder.run_id, "run")
    assert attrs(run)["emp.decision"] == "NO-GO" and run["status"] == {"code": 2}
    start, end = builder.records[0], builder.records[-1]
    assert (int(run["startTimeUnixNano"]), int(run["endTimeUnixNano"])) == (nanos(start["started"]), nanos(end["ts"]))
    phase = found["phase application · webhooks"]
    gate = found["gate webhook-p95"]
    assert gate["parentSpanId"] == phase["spanId"] and phase["parentSpanId"] == run["spanId"]
    record = next(r for r in builder.records if r["type"] == "gate")
    timing = (int(gate["startTimeUnixNano"]), int(gate["endTimeUnixNano"]))
    assert timing == (nanos(record["started"]), nanos(record["ended"]))
    assert [(attrs(e)["emp.sample.outcome"], attrs(e)["emp.figure.result.latency_ms.p95"]) for e in gate["events"]] == [
        ("passed", "150"), ("failed", "312")]  # OTLP JSON spells 64-bit integers as strings
    assert [int(e["timeUnixNano"]) for e in gate["events"]] == [nanos(s["time"]) for s in record["samples"]]
    assert attrs(phase)["emp.component"] == "webhooks" and [e["name"] for e in phase["events"]] == ["release"]
    rollback = found["rollback webhooks"]
    assert rollback["parentSpanId"] == run["spanId"] and attrs(rollback)["emp.rollback.ok"] is True
    assert found["rollback play Rollback · webhooks"]["parentSpanId"] == rollback["spanId"]
    # the notices are events of the run; the trace_export record itself is not part of the trace
    assert [(attrs(e)["emp.notice.target"], attrs(e)["emp.notice.sent"]) for e in run["events"]] == [
        ("slack", True), ("teams", False), ("slack", True)]
    assert _trace.span_count(request) == (len(found), sum(len(s["events"]) for s in found.values()))
    assert _otlp.encode_request("traces", request)  # the protobuf encoder takes every field


def test_the_same_journal_gives_the_same_trace_and_another_run_another():
    first, again = rj.nogo_run(), rj.nogo_run()
    assert _trace.build_trace(first.records) == _trace.build_trace(again.records)
    other = _trace.build_trace(rj.nogo_run(run_id="20261203T120000Z-nogo02").records)
    assert not {s["spanId"] for s in spans(other)} & {s["spanId"] for s in spans(_trace.build_trace(first.records))}
    assert len({s["spanId"] for s in spans(other)}) == len(spans(other))  # no two spans share an id


def test_a_watch_after_run_end_is_not_part_of_the_deploy_trace():
    watched = rj.watch_run()
    deploy_only = rj.go_run(run_id=watched.run_id)
    assert _trace.build_trace(watched.records) == _trace.build_trace(deploy_only.records)


def test_an_unfinished_journal_ends_its_spans_at_its_last_record():
    builder = rj.JournalBuilder("20261203T120000Z-cut001")
    builder.run_start()
    builder.phase("application", "webhooks", [("webhook-p95", [150])])
    builder.add("phase_start", phase="database", component="database", play="Phase database")
    found = {s["name"]: s for s in spans(_trace.build_trace(builder.records))}
    run, cut = found["deploy 1.1.0"], found["phase database · database"]
    assert attrs(run)["emp.decision"] == "unfinished" and "status" not in run
    assert run["endTimeUnixNano"] == cut["endTimeUnixNano"] == str(nanos(builder.records[-1]["ts"]))


def test_a_redacted_gate_has_no_samples_and_no_reason_in_the_trace():
    builder = rj.JournalBuilder("20261203T120000Z-nolog1")
    builder.run_start()
    builder.phase("application", "webhooks", [("webhook-p95", [150, 9876])])
    gate = next(r for r in builder.records if r["type"] == "gate")
    gate["redacted"] = True
    (span,) = [s for s in spans(_trace.build_trace(builder.records)) if s["name"] == "gate webhook-p95"]
    assert span["events"] == [] and attrs(span)["emp.gate.redacted"] is True
    assert "9876" not in str(span) and "emp.gate.reason" not in attrs(span)


def test_options_build_the_traces_url_and_headers():
    options = _trace.parse_options({"otlp_endpoint": "https://ingress.example:4318/", "otlp_token": "auth_Q1w2e3",
                                    "otlp_headers": "Dash0-Dataset=prod%2Ceu, X-Extra = 1",
                                    "otlp_timeout": "2s", "otlp_protocol": "http/json"})
    assert options.url == "https://ingress.example:4318/v1/traces" and options.endpoint == "ingress.example:4318"
    assert options.headers == (("Dash0-Dataset", "prod,eu"), ("X-Extra", "1"), ("Authorization", "Bearer auth_Q1w2e3"))
    assert (options.timeout_s, options.protocol, options.service_name) == (2.0, "http/json", "emp.deploy")
    assert "auth_Q1w2e3" not in repr(options)
    assert _trace.scrub("refused Bearer auth_Q1w2e3 for prod,eu", options) == "refused <hidden> for <hidden>"
    assert _trace.parse_options({"otlp_endpoint": "http://c:4318/v1/traces"}).url == "http://c:4318/v1/traces"
    assert _trace.parse_options({}) is None


@pytest.mark.parametrize(("raw", "expected"), [
    ({"otlp_endpoint": "ftp://SECRETPART@c/"}, "otlp_endpoint (EMP_DEPLOY_OTLP_ENDPOINT): the OTLP endpoint cannot"),
    ({"otlp_endpoint": "http://c:4318", "otlp_headers": "Authorization"}, "an item without '='"),
    ({"otlp_endpoint": "http://c:4318", "otlp_headers": "Bad Name=SECRETPART"}, "'Bad Name' is not an HTTP header name"),
    ({"otlp_endpoint": "http://c:4318", "otlp_headers": "Authorization=SECRETPART", "otlp_token": "SECRETPART"},
     "has an Authorization header already"),
    ({"otlp_endpoint": "http://c:4318", "otlp_token": "SECRET PART"}, "a token with blanks"),
    ({"otlp_endpoint": "http://c:4318", "otlp_timeout": "61"}, "61 s is not between 0 and 60 s"),
    ({"otlp_endpoint": "http://c:4318", "otlp_protocol": "grpc"}, "'grpc' is not one of http/protobuf, http/json"),
    ({"otlp_headers": "SECRETPART=1"}, "otlp_headers (EMP_DEPLOY_OTLP_HEADERS) is set, but otlp_endpoint"),
])
def test_bad_options_are_refused_without_showing_secrets(raw, expected):
    with pytest.raises(OptionError) as caught:
        _trace.parse_options(raw)
    assert expected in str(caught.value) and "SECRET" not in str(caught.value)
