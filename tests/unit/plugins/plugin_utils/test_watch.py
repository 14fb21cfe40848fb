"""Unit tests of the watch's schedule, accounting and verdict (plugins/plugin_utils/_watch.py), on a fake clock."""
from __future__ import annotations

import json

import pytest

from ansible_collections.emp.deploy.plugins.plugin_utils import _watch as w

T0 = 1_800_000_000.0  # the fake clock's start
HOUR = 3600.0


def state(window=24 * HOUR, alert=60.0, hourly=HOUR):
    return w.new_state("run-1", window, {w.ALERT: alert, w.HOURLY: hourly}, T0)


def run(st, now):
    """What a pass at `now` runs, recorded as the action records it."""
    layers = w.due_layers(st, now)
    w.mark_run(st, layers, now)
    if w.FINAL in layers:
        st["final"] = {"at": w.iso(now), "results": []}
        st["done"] = True
    return layers


def check(name="c", layer=w.ALERT, limit=3, **extra):
    return w.Check(name=name, layer=layer, component="webhooks", checklist_ref=None,
                   criteria=tuple(extra.pop("criteria", ["result.value < 1"])), consecutive_error_limit=limit, **extra)


# --- due layers ---------------------------------------------------------------------------------

def test_first_pass_runs_the_alert_layer_only():
    st = state()
    assert run(st, T0) == [w.ALERT]
    assert run(st, T0 + 30) == []
    assert run(st, T0 + 60) == [w.ALERT]


def test_hourly_layer_is_due_one_interval_after_the_start():
    st = state()
    run(st, T0)
    assert w.due_layers(st, T0 + HOUR - 1) == [w.ALERT]
    assert w.due_layers(st, T0 + HOUR) == [w.ALERT, w.HOURLY]


def test_missed_slots_coalesce_into_one_pass():
    st = state()
    run(st, T0)
    assert run(st, T0 + 5 * HOUR + 10) == [w.ALERT, w.HOURLY]
    assert st["last_run"][w.ALERT] == T0 + 5 * HOUR  # anchored to the grid, not to the late pass
    assert run(st, T0 + 5 * HOUR + 59) == []
    assert run(st, T0 + 5 * HOUR + 60) == [w.ALERT]


def test_end_of_window_runs_only_the_final_layer_once():
    st = state(window=10 * 60, alert=60, hourly=5 * 60)
    run(st, T0)
    assert run(st, T0 + 10 * 60) == [w.FINAL]
    assert st["done"]
    assert run(st, T0 + 11 * 60) == []
    assert w.next_due(st, T0 + 11 * 60) is None


def test_slot_at_the_end_belongs_to_the_final_layer():
    st = state(window=HOUR, alert=60, hourly=HOUR)
    assert w.slot(st, w.HOURLY, T0 + HOUR) is None  # the first hourly slot would be the end itself
    assert w.slot(st, w.ALERT, T0 + HOUR + 5) == T0 + HOUR - 60


def test_next_due_is_the_nearest_slot_or_the_end():
    st = state(window=150, alert=60, hourly=100)
    run(st, T0)
    assert w.next_due(st, T0 + 10) == T0 + 60
    run(st, T0 + 60)
    assert w.next_due(st, T0 + 70) == T0 + 100  # hourly
    run(st, T0 + 100)
    assert w.next_due(st, T0 + 101) == T0 + 120
    run(st, T0 + 120)
    assert w.next_due(st, T0 + 121) == T0 + 150  # the end: the final layer
    assert w.next_due(st, T0 + 149.5) == T0 + 150


def test_resume_from_the_saved_state_keeps_the_window(tmp_path):
    path = str(tmp_path / w.STATE_FILE)
    st = state()
    run(st, T0)
    st["passes"] = 1
    w.save_state(path, st)
    resumed = w.load_state(path)
    assert (resumed["started"], resumed["ends"], resumed["passes"]) == (st["started"], st["ends"], 1)
    assert w.due_layers(resumed, T0 + 30) == []
    assert w.due_layers(resumed, T0 + 61) == [w.ALERT]
    assert not list(tmp_path.glob(".watch-*")), "no partial file left behind"


def test_unreadable_or_foreign_state_is_a_clear_error(tmp_path):
    path = tmp_path / w.STATE_FILE
    path.write_text("{not json")
    with pytest.raises(w.WatchError, match="cannot read the watch state"):
        w.load_state(str(path))
    path.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(w.WatchError, match="schema version"):
        w.load_state(str(path))
    assert w.load_state(str(tmp_path / "missing.json")) is None


# --- accounting, alerts, verdict ------------------------------------------------------------------

def test_no_data_alert_after_more_than_the_limit_and_once_per_streak():
    st, c = state(), check(limit=2)
    assert [w.record_outcome(st, c, w.NO_DATA, None, "down", T0 + i) for i in range(5)] == [
        None, None, w.NO_DATA_ALERT, None, None]
    assert st["checks"]["c"]["consecutive_errors"] == 5
    assert w.record_outcome(st, c, "GO", 0.1, "ok", T0 + 6) is None  # measures again: re-armed
    assert st["checks"]["c"]["consecutive_errors"] == 0 and st["checks"]["c"]["alerted"] is None
    assert [w.record_outcome(st, c, w.NO_DATA, None, "down", T0 + 7 + i) for i in range(3)][-1] == w.NO_DATA_ALERT


def test_breach_alerts_once_until_the_check_passes_again():
    st, c = state(), check()
    assert w.record_outcome(st, c, "NO-GO", 2.0, "too high", T0) == w.BREACH
    assert w.record_outcome(st, c, "NO-GO", 2.0, "too high", T0 + 60) is None
    assert w.record_outcome(st, c, "GO", 0.5, "ok", T0 + 120) is None
    assert w.record_outcome(st, c, "NO-GO", 2.0, "too high", T0 + 180) == w.BREACH


def test_final_checks_raise_no_alert():
    st = state()
    assert w.record_outcome(st, check(layer=w.FINAL, limit=0), w.NO_DATA, None, "down", T0) is None
    assert w.record_outcome(st, check(name="f", layer=w.FINAL), "NO-GO", 2.0, "high", T0) is None


def test_enforced_breach_ends_the_watch_a_no_data_alert_does_not():
    st = state()
    w.add_alert(st, check(), w.NO_DATA_ALERT, "could not measure", T0, enforced=False)
    assert not st["done"] and w.verdict(st) == w.FAILED
    w.add_alert(st, check(), w.BREACH, "too high", T0 + 60, enforced=True)
    assert st["done"] and w.next_due(st, T0 + 61) is None


@pytest.mark.parametrize("alerts, final, expected", [
    ([], None, w.IN_PROGRESS),
    ([], [{"decision": "GO"}, {"decision": "GO"}], w.SUCCESS),
    ([], [{"decision": "GO"}, {"decision": "NO-GO"}], w.FAILED),
    ([], [{"decision": "GO"}, {"decision": w.NO_DATA}], w.FAILED),  # nothing passes for lack of data
    ([], [], w.FAILED),  # a window without a final check never succeeds
    ([{"kind": "no_data"}], [{"decision": "GO"}], w.FAILED),
    ([{"kind": "breach"}], None, w.FAILED),
])
def test_verdict(alerts, final, expected):
    st = state()
    st["alerts"] = alerts
    st["final"] = None if final is None else {"at": "x", "results": final}
    assert w.verdict(st) == expected


# --- options and measurements ---------------------------------------------------------------------

@pytest.mark.parametrize("raw, message", [
    ([], "non-empty list"),
    ([{"layer": "alert"}], "needs a name"),
    ([{"name": "a", "component": "x", "criteria": ["result.value"]}], "exactly one of query"),
    ([{"name": "a", "component": "x", "query": "up", "probe": {"module": "m"}, "criteria": ["x"]}], "exactly one of"),
    ([{"name": "a", "query": "up", "criteria": ["x"]}], "needs a component"),
    ([{"name": "a", "component": "x", "query": "up", "criteria": ["result.value <"]}], "does not template"),
    ([{"name": "a", "component": "x", "query": "up", "criteria": ["x"], "layer": "daily"}], "layer must be one of"),
    ([{"name": "a", "component": "x", "query": "up", "criteria": ["x"], "colour": 1}], "unknown key"),
    ([{"name": "a", "component": "x", "query": "up", "criteria": ["x"], "range": "soon"}], "range"),
    ([{"name": "a", "component": "x", "query": "up", "criteria": ["x"]}] * 2, "given twice"),
])
def test_bad_checks_are_named(raw, message):
    with pytest.raises(w.WatchError, match=message):
        w.parse_checks(raw, 3, 600.0)


def test_check_defaults_and_window_range():
    [c] = w.parse_checks([{"name": "a", "component": "x", "query": "up", "criteria": "result.value > 0",
                           "range": "window"}], 4, 600.0)
    assert (c.layer, c.range_s, c.reduce, c.consecutive_error_limit, c.baseline) == (w.ALERT, 600.0, "last", 4, "a")
    assert not c.reads_baseline


def test_baseline_problem_names_what_is_missing():
    c = check(criteria=["result.value >= baseline.value"], baseline="job_rate")
    assert "no baseline figure 'job_rate'" in w.baseline_problem(c, {})
    assert "was not captured: bad PromQL" in w.baseline_problem(c, {"job_rate": {"error": "bad PromQL: x"}})
    assert w.baseline_problem(c, {"job_rate": {"value": 2.0, "error": None}}) is None
    assert w.baseline_problem(check(), {}) is None  # a check that does not read its baseline


def test_baseline_without_a_figure_is_a_problem_only_for_a_criterion_on_its_value():
    empty = {"job_rate": {"value": None, "empty": True, "special": None, "labels": [], "error": None}}
    c = check(criteria=["result.value >= baseline.value * 0.95"], baseline="job_rate")
    assert "has no figure (its query returned no data" in w.baseline_problem(c, empty)
    nan = {"job_rate": dict(empty["job_rate"], empty=False, special="NaN")}
    assert "has no figure (it was NaN)" in w.baseline_problem(c, nan)
    # new error patterns compare labels: an empty baseline is "no error message before the deploy"
    labels = check(criteria=["baseline.labels | length >= 0"], baseline="job_rate")
    assert w.baseline_problem(labels, empty) is None


@pytest.mark.parametrize("result, words", [
    ({"empty": True, "series": [], "value": None, "special": None}, "no series"),
    ({"empty": False, "series": [{}], "value": None, "special": "NaN"}, "returned NaN"),
    ({"empty": False, "series": [{}, {}], "value": None, "special": None}, "2 series"),
])
def test_answers_that_cannot_be_judged(result, words):
    assert words in w.unmeasured_reason(result)
    assert w.unmeasured_reason({"empty": False, "series": [{}], "value": 0.0, "special": None}) is None


def test_durations():
    assert w.seconds("24h", "window") == 24 * HOUR
    assert w.seconds(90, "alert_interval") == 90.0
    for bad in ("0s", "soon", None):
        with pytest.raises(w.WatchError):
            w.seconds(bad, "window")
