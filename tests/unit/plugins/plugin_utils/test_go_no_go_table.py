"""The GO/NO-GO table from summary content: host column, redacted gates, runs without gates."""
from __future__ import annotations

from ansible_collections.emp.deploy.plugins.plugin_utils import _go_no_go_table as table


def gate(name, host, decision="GO", **extra):
    return {"name": name, "phase": "infrastructure", "component": "redis", "host": host, "mode": "enforce",
            "decision": decision, "duration_s": 2.0, "reason": "result.stdout was 312", **extra}


def summary(gates, decision="GO", **extra):
    return {"run_id": "r1", "decision": decision, "gates": gates, "failures": [], "rollback": {}, **extra}


def test_a_host_column_only_when_rows_come_from_several_hosts():
    one, color = table.render(summary([gate("a", "web-1"), gate("b", "web-1")]), "/r/summary.json")
    assert "HOST" not in one and "web-1" not in one and color == "bright green"
    several, dummy = table.render(summary([gate("a", "web-1"), gate("a", "web-2")]), None)
    header, *rows = [line for line in several.splitlines() if "PHASE" in line or " a " in line]
    assert header.split()[:4] == ["PHASE", "COMPONENT", "HOST", "GATE"]
    assert [row.split()[2] for row in rows] == ["web-1", "web-2"]


def test_a_redacted_gate_shows_decision_name_and_timing_but_no_values():
    text, color = table.render(summary([gate("secret", "h", "NO-GO", redacted=True)], "NO-GO"), None)
    assert "secret" in text and "NO-GO" in text and "2.0s" in text and "redacted (no_log)" in text
    assert "312" not in text and color == "bright red"


def test_no_gate_is_not_go():
    text, color = table.render(summary([], "no gate"), None)
    assert "decision no gate" in text and "no gate ran in this run" in text and color != "bright green"


def test_an_unwritable_record_and_an_interrupted_rollback_are_said_loudly():
    text, dummy = table.render(summary([gate("g", "h", "NO-GO")], "NO-GO", interrupted="SIGINT",
                                       record_errors=["cannot write the run record in /dev/null/reports/r1"],
                                       rollback={"triggered": True, "mode": "auto", "state": "cut_short",
                                                 "components": ["redis"]}), "/dev/null/reports/r1/summary.json")
    assert "(interrupted by SIGINT)" in text and "rollback [redis] CUT SHORT by SIGINT" in text
    assert "NO RECORD: cannot write the run record in /dev/null/reports/r1" in text and "report:" not in text


def test_who_was_told_follows_the_table():
    notices = [{"target": "slack", "event": "nogo", "sent": True, "outcome": "sent"},
               {"target": "teams", "event": "nogo", "sent": False, "outcome": "timeout"}]
    trace = {"sent": False, "endpoint": "127.0.0.1:4318", "outcome": "unreachable",
             "error": "cannot reach the OTLP endpoint at 127.0.0.1:4318 (POST /v1/traces): refused"}
    lines = table.told_lines(notices, trace).splitlines()
    assert lines == ["", "  notices: slack nogo, teams nogo NOT SENT (timeout)",
                     "  trace NOT exported to 127.0.0.1:4318 (unreachable): cannot reach the OTLP endpoint at "
                     "127.0.0.1:4318 (POST /v1/traces): refused"]
    sent = table.told_lines([], {"sent": True, "trace_id": "ab" * 16, "endpoint": "h:1", "spans": 4, "events": 2})
    assert sent == "\n  trace " + "ab" * 16 + " sent to h:1: 4 spans, 2 events"
    assert table.told_lines([], None) == ""


def test_a_fleet_rollout_shows_one_line_per_batch_with_the_hosts_that_decided_it():
    batches = [{"batch": 1, "component": "webhooks", "size": 1, "decision": "GO", "nogo_hosts": [], "no_data_hosts": []},
               {"batch": 2, "component": "webhooks", "size": 50, "decision": "NO-GO",
                "nogo_hosts": [f"h{i:03d}" for i in range(20, 27)], "no_data_hosts": ["h030"]}]
    text, dummy = table.render(summary([gate("g", "h001")], "NO-GO", batches=batches), None)
    assert "  batch 1 of webhooks (1 hosts): GO" in text.splitlines()
    assert ("  batch 2 of webhooks (50 hosts): NO-GO (NO-GO: h020, h021, h022, h023, h024, ...; no evidence: h030)"
            in text.splitlines())
    assert "batch" not in table.render(summary([gate("g", "h001")]), None)[0]
