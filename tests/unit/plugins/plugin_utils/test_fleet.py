"""Fleet rollout logic on its own (docs/fleet.md): emp_batch and emp_max_fail_percentage parsing, batch sizes,
per-batch decisions from host evidence, rollback targets, and the recorder's batch bookkeeping."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ansible_collections.emp.deploy.plugins.plugin_utils import _fleet as fleet
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils import _run_recorder as rr


@pytest.mark.parametrize("value, parsed", [
    (1, [1]), ("3", [3]), ("10%", ["10%"]), (" 100 % ", ["100%"]), ([1, "10%", "50%", "100%"], [1, "10%", "50%", "100%"]),
    ((2, "5"), [2, 5]),
])
def test_batch_sizes_parse(value, parsed):
    assert fleet.parse_batch(value) == parsed


@pytest.mark.parametrize("value, message", [
    ("abc", "emp_batch: 'abc' is not a batch size"),
    (0, "emp_batch: 0 is not a batch size: a batch has at least 1 host"),
    (-2, "emp_batch: -2 is not a batch size"),
    ("150%", "emp_batch: '150%' is not a percentage of hosts between 1% and 100%"),
    ("0%", "emp_batch: '0%' is not a percentage of hosts between 1% and 100%"),
    ([], "emp_batch: an empty list has no batch"),
    ([1, True], "emp_batch[1]: True is not a batch size"),
    (2.5, "emp_batch: 2.5 is not a batch size"),
    ({"a": 1}, "emp_batch: {'a': 1} is not a batch size"),
    (None, "emp_batch: None is not a batch size"),
])
def test_bad_batch_sizes_are_refused_with_a_clear_message(value, message):
    with pytest.raises(fleet.FleetOptionError) as error:
        fleet.parse_batch(value)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("value, parsed", [(0, 0), (25, 25), ("100", 100)])
def test_max_fail_percentage_parses(value, parsed):
    assert fleet.parse_max_fail_percentage(value) == parsed


@pytest.mark.parametrize("value, message", [
    (-1, "out of range (0 to 100)"), (101, "out of range (0 to 100)"), ("x", "is not a whole percentage"),
    (True, "is not a whole percentage"), (12.5, "is not a whole percentage"), ("20%", "is not a whole percentage"),
])
def test_bad_max_fail_percentage_is_refused(value, message):
    with pytest.raises(fleet.FleetOptionError) as error:
        fleet.parse_max_fail_percentage(value)
    assert message in str(error.value) and str(error.value).startswith("emp_max_fail_percentage: ")


def test_batch_sizes_split_hosts_as_ansible_does():
    assert fleet.batch_sizes([1, "10%", "50%", "100%"], 200) == [1, 20, 100, 79]
    assert fleet.batch_sizes([1, "5%", "25%", "100%"], 200) == [1, 10, 50, 139]
    assert fleet.batch_sizes([3], 7) == [3, 3, 1]
    assert fleet.batch_sizes(["1%"], 5) == [1, 1, 1, 1, 1]  # a percentage rounds down, to at least one host


@pytest.mark.parametrize("serial, batched", [
    ([], False), ([0], False), (["0"], False), ([2], True), (["10%"], True), ("3", True), ([None], False), (["abc"], False),
])
def test_a_play_runs_in_batches_only_with_a_positive_serial(serial, batched):
    assert fleet.is_fleet_serial(serial) is batched


def batch(hosts, max_fail=0) -> fleet.Batch:
    return fleet.Batch("application", "webhooks", "Phase 3", 1, list(hosts), max_fail)


def test_a_batch_is_go_when_every_host_has_gate_evidence_and_none_said_no_go():
    b = batch(["a", "b"])
    b.host("a").gates.append(R.GO)
    b.host("b").gates.append(R.GO)
    outcome = b.outcome()
    assert (outcome["decision"], outcome["hosts_go"], outcome["reason"]) == (R.GO, 2, "2 of 2 hosts said GO")


def test_a_batch_without_evidence_from_a_host_is_not_go():
    b = batch(["a", "b"])
    b.host("a").gates.append(R.GO)
    outcome = b.outcome()
    assert outcome["decision"] == R.NO_GO and outcome["no_data_hosts"] == ["b"]
    assert "nothing passes for lack of data" in outcome["reason"]
    assert batch(["a"]).outcome()["decision"] == R.NO_GO  # no host produced anything


def test_a_no_go_host_beyond_max_fail_percentage_makes_the_batch_no_go():
    b = batch(["a", "b", "c", "d"], max_fail=25)
    for name in "abcd":
        b.host(name).gates.append(R.GO)
    b.host("a").nogo.append("gate g: bad")
    assert b.outcome()["decision"] == R.GO  # 1 of 4 = 25 %: tolerated, as Ansible's max_fail_percentage
    assert "1 NO-GO within 25 %" in b.reason
    b.host("b").nogo.append("gate g: bad")
    outcome = b.outcome()
    assert outcome["decision"] == R.NO_GO and outcome["nogo_hosts"] == ["a", "b"]
    assert outcome["reason"].startswith("2 of 4 hosts said NO-GO (more than 25 %); a: gate g: bad")


def test_rollback_targets_are_the_released_hosts_newest_batch_first():
    first, second, third = batch(["a"]), batch(["b", "c"]), batch(["d", "e", "f"])
    for b, released in ((first, "a"), (second, "bc"), (third, "de")):
        for name in released:
            b.host(name).released = True
    other = fleet.Batch("infrastructure", "redis", "Phase 1", 1, ["a"], 0)
    hosts, sizes = fleet.rollback_targets([first, second, third, other], ["webhooks"])
    assert hosts == {"webhooks": ["d", "e", "b", "c", "a"]} and sizes == {"webhooks": [2, 2, 1]}


# --- the recorder's batch bookkeeping ------------------------------------------------------------------


def recorder(tmp_path: Path) -> rr.RunRecorder:
    rec = rr.RunRecorder(rr.validate_options({"report_dir": str(tmp_path / "reports")}), "run-1")
    rec.start(playbook="deploy.yml", check_mode=False, rollback_run=False)
    rec.start_phase("application", "webhooks", "Phase 3")
    return rec


def gate(host: str, decision: str = R.GO) -> dict:
    return {"id": f"g:{host}", "name": "g", "component": "webhooks", "mode": R.ENFORCE, "decision": decision,
            "reason": "figures", "host": host}


def release(host: str) -> dict:
    return {"component": "webhooks", "name": "webhook", "version": "2.0.0", "previous": "1.0.0", "changed": True,
            "host": host}


def test_the_recorder_decides_each_batch_and_rolls_back_only_released_hosts(tmp_path):
    rec = recorder(tmp_path)
    rec.start_batch(["a"], 0)
    rec.add_release(release("a"), "a")
    rec.add_gate(gate("a"), "a")
    rec.start_batch(["b", "c"], 0)
    rec.add_release(release("b"), "b")
    rec.add_release(release("c"), "c")
    rec.add_gate(gate("b"), "b")
    rec.add_gate(gate("c", R.NO_GO), "c")
    rec.end_phase()
    assert [(b.number, b.decision) for b in rec.batches] == [(1, R.GO), (2, R.NO_GO)]
    assert rec.rollback_components() == ["webhooks"]
    assert rec.fleet_rollback_targets(["webhooks"]) == ({"webhooks": ["b", "c", "a"]}, {"webhooks": [2, 1]})
    summary = rec.finish(*rec.decision(set()), {})
    assert [b["decision"] for b in summary["batches"]] == [R.GO, R.NO_GO]
    kinds = [json.loads(line)["type"] for line in (rec.run_dir / "journal.jsonl").read_text().splitlines()]
    assert kinds.count(R.BATCH_START) == 2 and kinds.count(R.BATCH_END) == 2


def test_a_tolerated_host_no_go_rolls_nothing_back(tmp_path):
    rec = recorder(tmp_path)
    rec.start_batch(["a", "b", "c", "d"], 25)
    for name in "abcd":
        rec.add_gate(gate(name, R.NO_GO if name == "a" else R.GO), name)
    rec.end_phase()
    assert rec.enforced_nogo() == [] and rec.rollback_components() == []
    assert rec.decision(set()) == (R.GO, [])


def test_host_events_of_a_batch_are_fsynced_per_task_not_per_event(tmp_path, monkeypatch):
    rec = recorder(tmp_path)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(rr.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    rec.start_batch([f"h{i}" for i in range(50)], 0)  # one fsync: batch_start
    for i in range(50):
        rec.add_gate(gate(f"h{i}"), f"h{i}")  # none
    assert len(synced) == 1
    rec.step_started("next task")  # the previous task's 50 gate records reach the disk at once
    assert len(synced) == 2
    rec.end_batch()  # batch_end, then nothing left unsynced
    assert len(synced) == 3


def test_a_run_without_batches_keeps_fsyncing_every_record(tmp_path, monkeypatch):
    rec = recorder(tmp_path)
    synced = []
    monkeypatch.setattr(rr.os, "fsync", synced.append)
    rec.add_gate(gate("a"), "a")
    rec.add_release(release("a"), "a")
    assert len(synced) == 2
