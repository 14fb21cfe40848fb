"""Waivers' pure parts: parsing and its errors, expiry, applying a waiver to a gate record, the gate names a
playbook can have (read from the collection's own playbooks and roles), and how renderers show WAIVED."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from ansible_collections.emp.deploy.plugins.plugin_utils import _go_no_go_table as table
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils import _waivers as W
from ansible_collections.emp.deploy.plugins.plugin_utils._report_html import render_report
from ansible_collections.emp.deploy.plugins.plugin_utils._report_junit import render_junit
from ansible_collections.emp.deploy.plugins.plugin_utils._report_model import build_view

ROOT = Path(__file__).resolve().parents[4]
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
VALID = {"gate": "redis-connections", "reason": "replica known slow, INC-42", "by": "alice",
         "expires": "2026-12-31T18:00:00Z"}


def load(path: Path):
    return yaml.safe_load(path.read_text())


def test_a_valid_waiver_is_parsed_with_its_expiry_in_utc():
    (waiver,) = W.parse_waivers([VALID])
    assert waiver.gate == "redis-connections" and waiver.by == "alice"
    assert waiver.expires == datetime(2026, 12, 31, 18, 0, tzinfo=timezone.utc)
    assert waiver.as_record() == dict(VALID)
    assert W.parse_waivers(None) == [] and W.parse_waivers([]) == []


def test_an_expiry_without_offset_is_utc_and_a_date_alone_is_its_midnight():
    (waiver,) = W.parse_waivers([dict(VALID, expires="2026-12-05")])
    assert waiver.expires == datetime(2026, 12, 5, tzinfo=timezone.utc)
    (no_expiry,) = W.parse_waivers([{k: v for k, v in VALID.items() if k != "expires"}])
    assert no_expiry.expires is None and not no_expiry.expired(NOW)


@pytest.mark.parametrize("entry, message", [
    ({k: v for k, v in VALID.items() if k != "reason"}, "emp_waivers[0] (gate redis-connections): reason is required"),
    (dict(VALID, by="  "), "emp_waivers[0] (gate redis-connections): by is required"),
    ({k: v for k, v in VALID.items() if k != "gate"}, "emp_waivers[0]: gate is required"),
    (dict(VALID, expires="next friday"), "expires 'next friday' is not an ISO 8601 date or time"),
    (dict(VALID, expires="2026-13-01"), "is not an ISO 8601"),
    (dict(VALID, resaon="typo"), "emp_waivers[0]: unknown key resaon"),
    ("redis-connections", "a waiver is a mapping"),
])
def test_a_malformed_waiver_is_an_error_naming_it(entry, message):
    with pytest.raises(W.WaiverError) as error:
        W.parse_waivers([entry])
    assert message in str(error.value)


def test_waivers_must_be_a_list_and_a_gate_is_waived_once():
    with pytest.raises(W.WaiverError, match="a list of waivers"):
        W.parse_waivers(VALID)
    with pytest.raises(W.WaiverError, match="waived twice"):
        W.parse_waivers([VALID, dict(VALID, by="bob")])


def test_the_waiver_in_force_and_the_expired_one():
    waivers = W.parse_waivers([VALID, dict(VALID, gate="old", expires="2026-12-01")])
    assert W.waiver_for(waivers, "redis-connections", NOW) == (waivers[0], None)
    assert W.waiver_for(waivers, "old", NOW) == (None, waivers[1])
    assert W.waiver_for(waivers, "other", NOW) == (None, None)
    assert "expired at 2026-12-01T00:00:00Z; it is ignored" in W.expired_warning(waivers[1])


def test_a_waived_gate_keeps_its_evidence_and_what_it_measured():
    gate = {"name": "redis-connections", "decision": R.NO_GO, "reason": "1 of 3 samples failed",
            "samples": [{"outcome": "failed"}], "mode": R.ENFORCE}
    (waiver,) = W.parse_waivers([VALID])
    W.waive(gate, waiver)
    assert gate["decision"] == R.WAIVED and not R.is_enforced_nogo(gate)
    assert gate["samples"] == [{"outcome": "failed"}]
    assert gate["waiver"] == dict(VALID, measured_decision=R.NO_GO)
    assert gate["reason"] == ("waived by alice until 2026-12-31T18:00:00Z (replica known slow, INC-42); "
                              "measured NO-GO: 1 of 3 samples failed")


def lookup_none(name):
    return None


def test_name_patterns_fill_in_known_variables_and_leave_the_rest_open():
    assert W.name_pattern("redis-connections", {}, lookup_none) == "redis\\-connections"
    assert W.name_pattern("{{ redis_gate_name }}", {"redis_gate_name": "redis-connections"}, lookup_none) \
        == "redis\\-connections"
    # the run's own value (extra vars, inventory) wins over the role default
    assert W.name_pattern("{{ redis_gate_name }}", {"redis_gate_name": "redis-connections"},
                          lambda name: "custom") == "custom"
    # a loop variable or a filter cannot be known before the run
    assert W.name_pattern("{{ ngrok_gate_name }}-{{ ngrok_tunnel.name }}", {"ngrok_gate_name": "ngrok-tunnels"},
                          lookup_none) == "ngrok\\-tunnels\\-.+"
    # a variable whose value is itself a template
    assert W.name_pattern("{{ a }}", {"a": "rollback-ready-{{ opts.name }}"}, lookup_none) == "rollback\\-ready\\-.+"


def test_unknown_gates_are_the_waived_names_no_gate_can_have():
    patterns = ["redis\\-connections", "ngrok\\-tunnels\\-.+"]
    waivers = W.parse_waivers([VALID, dict(VALID, gate="ngrok-tunnels-api"), dict(VALID, gate="redis-conections")])
    assert W.unknown_gates(waivers, patterns) == ["redis-conections"]
    assert W.known_names_text(patterns) == "ngrok-tunnels-*, redis-connections"


def test_the_deploy_playbooks_gate_names_come_from_its_phase_roles():
    names = W.playbook_gate_names(load, ROOT / "deploy.yml", ROOT / "roles")
    patterns = [W.name_pattern(n.template, n.variables, lookup_none) for n in names]
    known = W.known_names_text(patterns)
    for name in ("database-connections", "redis-connections", "telemetry-flowing", "webhooks-processing",
                 "workers-memory", "workers-processing-*", "ngrok-tunnels-*", "rollback-ready-*"):
        assert name in known.split(", "), known
    waivers = W.parse_waivers([VALID, dict(VALID, gate="webhook-processing")])
    assert W.unknown_gates(waivers, patterns) == ["webhook-processing"]


def test_gate_tasks_in_plays_and_blocks_are_found(tmp_path):
    (tmp_path / "pb.yml").write_text(yaml.safe_dump([
        {"name": "p", "hosts": "all", "vars": {"suffix": "a"}, "tasks": [
            {"name": "g", "emp.deploy.gate": {"name": "db-gate", "evidence": {}, "criteria": ["true"]}},
            {"block": [{"name": "b", "emp.deploy.gate": {"name": "loop-{{ suffix }}", "evidence": {}}}]}]}]))
    names = W.playbook_gate_names(load, tmp_path / "pb.yml", ROOT / "roles")
    assert [W.name_pattern(n.template, n.variables, lookup_none) for n in names] == ["db\\-gate", "loop\\-a"]


WAIVED_GATE = {"id": "g1", "name": "redis-connections", "phase": "infrastructure", "component": "redis",
               "mode": "enforce", "enforced": True, "decision": R.WAIVED, "host": "sandbox", "duration_s": 1.0,
               "reason": "waived by alice (slow replica); measured NO-GO: 1 of 1 samples failed",
               "counts": {"planned": 1, "taken": 1, "passed": 0, "failed": 1, "errors": 0, "no_data": 0},
               "waiver": {"gate": "redis-connections", "reason": "slow replica", "by": "alice",
                          "expires": "2026-12-31T18:00:00Z", "measured_decision": R.NO_GO}}


def test_the_table_shows_waived_gates_and_who_waived_them():
    text, color = table.render({"run_id": "r", "decision": R.GO, "gates": [WAIVED_GATE]}, None)
    assert "WAIVED" in text.splitlines()[2]
    assert ("  WAIVED redis-connections: by alice until 2026-12-31T18:00:00Z (slow replica); measured NO-GO"
            in text.splitlines())
    assert color == "bright green"


def journal_with(gate):
    return [{"type": R.RUN_START, "schema_version": 1, "run_id": "r", "ts": "2026-12-04T12:00:00.000Z",
             "started": "2026-12-04T12:00:00.000Z"},
            {"type": R.PHASE_START, "schema_version": 1, "run_id": "r", "ts": "2026-12-04T12:00:00.100Z",
             "phase": "infrastructure", "component": "redis", "play": "p"},
            dict(gate, type=R.GATE, schema_version=1, run_id="r", ts="2026-12-04T12:00:01.000Z",
                 started="2026-12-04T12:00:00.200Z", ended="2026-12-04T12:00:01.000Z"),
            {"type": R.PHASE_END, "schema_version": 1, "run_id": "r", "ts": "2026-12-04T12:00:01.100Z",
             "phase": "infrastructure", "component": "redis", "play": "p", "decision": R.GO, "duration_s": 1.0},
            {"type": R.RUN_END, "schema_version": 1, "run_id": "r", "ts": "2026-12-04T12:00:02.000Z",
             "decision": R.GO, "duration_s": 2.0}]


def test_junit_reports_a_waived_gate_as_skipped_with_the_reason():
    root = ET.fromstring(render_junit(build_view(Path('r'), journal_with(WAIVED_GATE))))
    (suite,) = root.findall("testsuite")
    assert suite.get("skipped") == "1" and suite.get("failures") == "0"
    skipped = suite.find("testcase/skipped")
    assert skipped is not None
    assert skipped.get("message") == "waived by alice until 2026-12-31T18:00:00Z: slow replica (measured NO-GO)"


def test_the_html_report_tags_a_waived_gate_and_says_why():
    html = render_report(build_view(Path('r'), journal_with(WAIVED_GATE)))
    assert '<span class="tag t-warn">WAIVED</span>' in html
    assert "waived by alice until 2026-12-31T18:00:00Z: slow replica (measured NO-GO)" in html
