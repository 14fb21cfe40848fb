"""The journal's hash chain (_journal_chain.py) as the recorder writes it and emp.deploy.verify checks it:
intact, changed, removed, reordered, truncated, a cut write resumed, and the HMAC of the head."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.emp.deploy.plugins.plugin_utils import _journal_chain as chain
from ansible_collections.emp.deploy.plugins.plugin_utils._run_recorder import Journal, journal_head, write_json_atomically

KEY = "test-audit-key"


def write_run(run_dir: Path, count: int = 6, key: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> Path:
    journal = Journal(run_dir / "journal.jsonl")
    for number in range(count):
        journal.write({"schema_version": 1, "type": "gate", "run_id": "r1", "n": number, "name": f"gate é {number}"})
    journal.close()
    if monkeypatch is not None:
        monkeypatch.setenv(chain.KEY_ENV, key or "")
    write_json_atomically(run_dir / "summary.json",
                          {"run_id": "r1", chain.HEAD_KEY: journal_head(run_dir / "journal.jsonl", "r1")})
    return run_dir / "journal.jsonl"


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def rewrite(path: Path, lines: list[bytes], end: bytes = b"\n") -> None:
    path.write_bytes(b"\n".join(lines) + end)


def test_an_intact_run_verifies_and_each_line_is_canonical_and_chained(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    verdict = chain.verify_run(tmp_path)
    assert (verdict.status, verdict.ok, verdict.lines) == ("intact", True, 6), verdict.msg
    records = [json.loads(line) for line in lines_of(path)]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[0]["prev_sha256"] == chain.GENESIS
    for raw, record in zip(lines_of(path), records):
        assert chain.canonical(record) == raw
    assert records[3]["prev_sha256"] == chain.digest(lines_of(path)[2])
    head = json.loads((tmp_path / "summary.json").read_text())[chain.HEAD_KEY]
    assert head == {"lines": 6, "sha256": chain.digest(lines_of(path)[-1])}


def test_a_changed_line_is_named(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    lines = lines_of(path)
    lines[2] = lines[2].replace(b'"n":2', b'"n":7')
    rewrite(path, lines)
    verdict = chain.verify_run(tmp_path)
    assert (verdict.status, verdict.line) == ("tampered", 3)
    assert "line 3 was changed" in verdict.msg


def test_a_changed_last_line_is_caught_by_the_summary_head(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    lines = lines_of(path)
    lines[-1] = lines[-1].replace(b'"n":5', b'"n":9')
    rewrite(path, lines)
    verdict = chain.verify_run(tmp_path)
    assert (verdict.status, verdict.line) == ("tampered", 6), verdict.msg


def test_a_respaced_line_keeps_its_content_and_verifies(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    lines = lines_of(path)
    lines[1] = json.dumps(json.loads(lines[1]), indent=None).encode()  # ", " and ": " separators
    rewrite(path, lines)
    assert chain.verify_run(tmp_path).status == "intact"


@pytest.mark.parametrize("line", [1, 3])
def test_a_removed_line_is_named(tmp_path: Path, line: int) -> None:
    path = write_run(tmp_path)
    lines = lines_of(path)
    del lines[line - 1]
    rewrite(path, lines)
    verdict = chain.verify_run(tmp_path)
    assert (verdict.status, verdict.line) == ("tampered", line)
    assert f"line {line} was removed" in verdict.msg, verdict.msg


def test_removed_last_lines_are_named_from_the_head(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    rewrite(path, lines_of(path)[:4])
    verdict = chain.verify_run(tmp_path)
    assert (verdict.status, verdict.line) == ("tampered", 5)
    assert "line 5 was removed" in verdict.msg


def test_reordered_lines_are_named(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    lines = lines_of(path)
    lines[3], lines[4] = lines[4], lines[3]
    rewrite(path, lines)
    verdict = chain.verify_run(tmp_path)
    assert (verdict.status, verdict.line) == ("tampered", 4)
    assert "line 4 was reordered" in verdict.msg


def test_a_partial_last_line_is_truncated_not_tampered(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    (tmp_path / "summary.json").unlink()  # killed mid-write: no summary yet
    data = path.read_bytes()
    path.write_bytes(data + b'{"schema_version":1,"type":"ga')
    verdict = chain.verify_run(tmp_path)
    assert (verdict.status, verdict.ok) == ("truncated", True)
    assert "truncated after line 6" in verdict.msg


def test_a_cut_write_resumed_by_the_next_writer_verifies(tmp_path: Path) -> None:
    path = write_run(tmp_path, count=3)
    with open(path, "ab") as handle:
        handle.write(b'{"schema_version":1,"ty')
    journal = Journal(path)  # the watcher of a killed run ends the record
    journal.write({"schema_version": 1, "type": "run_end", "run_id": "r1"})
    journal.close()
    write_json_atomically(tmp_path / "summary.json", {"run_id": "r1", chain.HEAD_KEY: journal_head(path, "r1")})
    records = [json.loads(line) for line in lines_of(path)[4:]]
    assert records[0]["cut"] == {"line": 4, "sha256": chain.digest(b'{"schema_version":1,"ty')}
    assert records[0]["seq"] == 5
    verdict = chain.verify_run(tmp_path)
    assert verdict.status == "intact", verdict.msg
    assert any("line 4 was cut" in note for note in verdict.notes)


def test_a_garbled_line_without_a_cut_declaration_is_tampering(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    lines = lines_of(path)
    lines[1] = b"not json"
    rewrite(path, lines)
    verdict = chain.verify_run(tmp_path)
    assert (verdict.status, verdict.line) == ("tampered", 2)


def test_two_writers_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    first, second = Journal(path), Journal(path)
    for number in range(4):
        (first if number % 2 else second).write({"type": "x", "n": number})
    first.close()
    second.close()
    write_json_atomically(tmp_path / "summary.json", {"run_id": None, chain.HEAD_KEY: journal_head(path, None)})
    assert chain.verify_run(tmp_path).status == "intact"


def test_the_head_signature_checks_with_the_right_key_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_run(tmp_path, key=KEY, monkeypatch=monkeypatch)
    head = json.loads((tmp_path / "summary.json").read_text())[chain.HEAD_KEY]
    assert len(head["hmac_sha256"]) == 64
    right = chain.verify_run(tmp_path, KEY)
    assert (right.status, right.signed) == ("intact", True)
    wrong = chain.verify_run(tmp_path, "another key")
    assert (wrong.status, wrong.signed) == ("tampered", False)
    assert KEY not in wrong.msg and "another key" not in wrong.msg
    unchecked = chain.verify_run(tmp_path)
    assert unchecked.signed is None and any(chain.KEY_ENV in note for note in unchecked.notes)


def test_a_key_given_for_an_unsigned_head_fails(tmp_path: Path) -> None:
    write_run(tmp_path)
    assert chain.verify_run(tmp_path, KEY).status == "tampered"


def test_a_journal_without_the_chain_is_unverifiable(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").write_text('{"schema_version": 1, "type": "run_start"}\n')
    verdict = chain.verify_run(tmp_path)
    assert (verdict.status, verdict.ok) == ("unverifiable", False)


def test_a_missing_journal_is_unverifiable(tmp_path: Path) -> None:
    verdict = chain.verify_run(tmp_path)
    assert verdict.status == "unverifiable" and "cannot read" in verdict.msg


def test_records_holding_chain_like_keys_of_their_own_still_verify(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.write({"type": "gate", "samples": [{"seq": 9, "prev_sha256": "f" * 64}]})  # before the top-level keys
    journal.write({"type": "watch_pass", "watch": {"seq": 1}})  # after them
    journal.close()
    path = tmp_path / "journal.jsonl"
    write_json_atomically(tmp_path / "summary.json", {"run_id": None, chain.HEAD_KEY: journal_head(path, None)})
    assert chain.verify_run(tmp_path).status == "intact"
    lines = lines_of(path)
    lines[0] = lines[0].replace(b'"seq":9', b'"seq":8')
    rewrite(path, lines)
    assert (chain.verify_run(tmp_path).status, chain.verify_run(tmp_path).line) == ("tampered", 1)


def test_a_forged_last_line_that_is_no_record_fails_without_a_head(tmp_path: Path) -> None:
    path = write_run(tmp_path, count=2)
    (tmp_path / "summary.json").unlink()
    forged = b'"seq":3,"prev_sha256":"' + chain.digest(lines_of(path)[-1]).encode() + b'"'
    path.write_bytes(path.read_bytes() + forged + b"\n")
    verdict = chain.verify_run(tmp_path)
    assert (verdict.status, verdict.line) == ("tampered", 3)
