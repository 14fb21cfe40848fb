"""The history index's pure parts: options and their errors, relative thresholds, the index file and its lines,
baselines over the last N runs with a decision, the fallback, and which criteria are skipped for lack of history."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from ansible_collections.emp.deploy.plugins.plugin_utils import _history as H
from ansible_collections.emp.deploy.plugins.plugin_utils._gate import parse_criterion


def test_options_default_to_the_last_five_go_runs_median():
    assert H.parse_options({}) == H.HistoryOptions(5, "GO", "median")
    assert H.parse_options({"runs": "3", "decision": "NO-GO", "aggregate": "p90"}) == H.HistoryOptions(3, "NO-GO", "p90")


@pytest.mark.parametrize("value, message", [
    ([5], "history: a mapping"),
    ({"run": 5}, "history: unknown key run"),
    ({"runs": 0}, "history.runs: 0 is not between 1 and 1000"),
    ({"runs": 1.5}, "history.runs: 1.5 is not a whole number"),
    ({"runs": True}, "history.runs: True is not a whole number"),
    ({"decision": "go"}, "history.decision: 'go' is not one of GO, NO-GO"),
    ({"aggregate": "mean"}, "history.aggregate: 'mean' is not one of median, p90, max"),
])
def test_bad_options_are_errors_naming_them(value, message):
    with pytest.raises(H.HistoryError) as error:
        H.parse_options(value)
    assert message in str(error.value)


def test_fallback_values_are_numbers_per_figure():
    assert H.parse_fallback({"latency_ms.p95": 250, "result.errors": 0}) == {"latency_ms.p95": 250.0, "errors": 0.0}
    assert H.parse_fallback(None) == {}
    with pytest.raises(H.HistoryError, match="history_fallback.latency_ms.p95: 'fast' is not a finite number"):
        H.parse_fallback({"latency_ms.p95": "fast"})
    with pytest.raises(H.HistoryError, match="a mapping of figure to number"):
        H.parse_fallback([250])


@pytest.mark.parametrize("written, expanded", [
    ("result.latency_ms.p95 <=+10%", "result.latency_ms.p95 <= history.latency_ms.p95 * 1.1"),
    ("result.rate >= -5%", "result.rate >= history.rate * 0.95"),
    ("result.queue.depth <+50", "result.queue.depth < history.queue.depth + 50"),
    ("result.latency_ms.p95 < 200", "result.latency_ms.p95 < 200"),
    (True, True),
])
def test_relative_thresholds_read_against_the_history_value(written, expanded):
    assert H.expand_relative(written) == expanded


def gate(decision="GO", values=(10, 30, 20), name="api-latency", redacted=False):
    measured = [{"outcome": "passed", "figures": {"result.latency_ms.p95": v, "result.name": "x", "baseline.latency_ms.p95": 1}}
                for v in values]
    errored = [{"outcome": "error", "figures": {"result.latency_ms.p95": 999}}]
    return {"name": name, "decision": decision, "host": "h1", "component": "api", "ended": "2026-12-04T12:00:00Z",
            "redacted": redacted, "samples": measured + errored}


def test_a_runs_figure_is_the_median_of_its_measured_samples_numbers_only():
    assert H.run_figures(gate()) == {"latency_ms.p95": 20.0}
    assert H.run_figures(gate(redacted=True)) == {}
    assert H.run_figures(gate(values=("12.5",))) == {"latency_ms.p95": 12.5}


def test_index_lines_are_appended_whole_one_file_per_environment_and_gate(tmp_path):
    path = H.gate_file(tmp_path, "prod/eu", "api latency")
    assert path == tmp_path / ".history.prod%2Feu.api%20latency.jsonl"
    assert H.gate_file(tmp_path, "prod.eu", "x").name != H.gate_file(tmp_path, "prod", "eu.x").name
    assert H.gate_file(tmp_path, "prod", "..").name == ".history.prod.%2E%2E.jsonl"

    def write(n):
        for i in range(50):
            H.append_entry(path, H.entry_of(gate(), f"run-{n}-{i}", "1.1.0", ["1.1.0"]))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 200 and all(json.loads(line)["figures"] == {"latency_ms.p95": 20.0} for line in lines)
    entry = json.loads(lines[0])
    assert {k: entry[k] for k in ("gate", "release", "versions", "decision", "measured_decision")} == {
        "gate": "api-latency", "release": "1.1.0", "versions": ["1.1.0"], "decision": "GO", "measured_decision": "GO"}


def test_a_line_cut_by_a_kill_is_skipped(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text('{"run_id": "a", "decision": "GO"}\n{"run_id": "b", "dec')
    assert H.read_entries(path) == [{"run_id": "a", "decision": "GO"}]
    assert H.read_entries(tmp_path / "missing.jsonl") == []


def lines(*runs):
    """(run_id, decision, value) per line, oldest first, as the index holds them."""
    return [{"run_id": r, "decision": d, "figures": {"latency_ms.p95": v}} for r, d, v in runs]


def entries(*runs):
    """The same lines newest first, as a baseline reads them."""
    return list(reversed(lines(*runs)))


def test_the_baseline_is_the_last_n_runs_with_the_decision_newest_first():
    index = entries(("r1", "GO", 100), ("r2", "GO", 10), ("r3", "NO-GO", 500), ("r4", "GO", 20), ("r5", "GO", 30),
                    ("r6", "GO", 40))
    found = H.baseline(index, H.HistoryOptions(3, "GO", "median"))
    assert found.run_ids == ["r6", "r5", "r4"] and found.figures == {"latency_ms.p95": 30.0}
    assert H.baseline(index, H.HistoryOptions(4, "GO", "max")).figures == {"latency_ms.p95": 40.0}
    assert H.baseline(index, H.HistoryOptions(5, "GO", "p90")).figures == {"latency_ms.p95": 76.0}
    assert H.baseline(index, H.HistoryOptions(5, "NO-GO", "median")).run_ids == ["r3"]
    # the running run is never its own history; a run with a line per host counts once
    assert H.baseline(index, H.HistoryOptions(1, "GO", "median"), exclude_run="r6").run_ids == ["r5"]
    two_hosts = entries(("r1", "GO", 10), ("r2", "GO", 20), ("r2", "GO", 40))
    found = H.baseline(two_hosts, H.HistoryOptions(1, "GO", "median"))
    assert found.run_ids == ["r2"] and found.figures == {"latency_ms.p95": 30.0}


def write_index(tmp_path, runs):
    path = H.gate_file(tmp_path, "sandbox", "api-latency")
    for entry in lines(*runs):
        H.append_entry(path, entry)


def test_too_few_runs_leave_no_value_or_the_fallback_with_the_reason(tmp_path):
    write_index(tmp_path, [("r1", "GO", 10), ("r2", "GO", 20)])
    options = H.HistoryOptions(5, "GO", "median")
    found = H.lookup(tmp_path, "sandbox", "api-latency", options, {})
    assert found.source == "none" and found.figures == {} and found.found == 2
    assert found.reason == "history has 2 of the 5 GO runs needed for gate api-latency in environment sandbox"
    found = H.lookup(tmp_path, "sandbox", "api-latency", options, {"latency_ms.p95": 250.0})
    assert found.source == "fallback" and found.values == {"latency_ms": {"p95": 250.0}}
    found = H.lookup(tmp_path, "sandbox", "api-latency", H.HistoryOptions(2, "GO", "median"), {})
    assert found.source == "history" and found.figures == {"latency_ms.p95": 15.0} and found.reason is None


def test_criteria_reading_missing_history_are_skipped_with_the_reason():
    criteria = [parse_criterion("result.latency_ms.p95 <= history.latency_ms.p95 * 1.2"),
                parse_criterion("result.errors == 0")]
    none = H.Baseline(H.HistoryOptions(), 2, source="none", reason="history has 2 of the 5 GO runs needed")
    active, skipped = H.split_criteria(criteria, none)
    assert [c.text for c in active] == ["result.errors == 0"]
    assert skipped == [{"criterion": "result.latency_ms.p95 <= history.latency_ms.p95 * 1.2", "outcome": "skipped",
                        "held": 0, "failed": 0, "errors": 0, "evaluated": 0,
                        "reason": "history has 2 of the 5 GO runs needed; the criterion was skipped "
                                  "(history_fallback gives a value to judge it against)"}]
    full = H.Baseline(H.HistoryOptions(), 5, ["r"], {"latency_ms.p95": 20.0})
    assert H.split_criteria(criteria, full) == (criteria, [])
    other = H.Baseline(H.HistoryOptions(), 5, ["r"], {"errors": 0.0})
    assert "no value of history.latency_ms.p95 in the last 5 GO runs" in H.split_criteria(criteria, other)[1][0]["reason"]
    assert H.split_criteria(criteria, None) == (criteria, [])


def test_history_paths_are_figures_of_the_criterion():
    criterion = parse_criterion("result.latency_ms.p95 <= history.latency_ms.p95 * 1.2")
    assert criterion.paths == ("result.latency_ms.p95", "history.latency_ms.p95")
    assert H.uses_history(criterion.paths) == ["latency_ms.p95"]
    assert H.nested({"a.b": 1.0, "a.c": 2.0, "d": 3.0}) == {"a": {"b": 1.0, "c": 2.0}, "d": 3.0}


def test_the_index_lookup_reads_one_gate_file_only(tmp_path):
    write_index(tmp_path, [("r1", "GO", 10)])
    H.append_entry(H.gate_file(tmp_path, "sandbox", "other"), {"run_id": "x", "decision": "GO", "figures": {}})
    H.append_entry(H.gate_file(tmp_path, "staging", "api-latency"), {"run_id": "y", "decision": "GO", "figures": {}})
    found = H.lookup(tmp_path, "sandbox", "api-latency", H.HistoryOptions(1, "GO", "median"), {})
    assert found.run_ids == ["r1"]
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == [
        ".history.sandbox.api-latency.jsonl", ".history.sandbox.other.jsonl", ".history.staging.api-latency.jsonl"]
