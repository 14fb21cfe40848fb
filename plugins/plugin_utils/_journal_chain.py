# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The journal's hash chain: every line carries its position and the hash of the line before it.

Pure Python, no Ansible import. The writer (_run_recorder.Journal) calls ``chained_line``; the
verifier (the emp.deploy.verify action) calls ``verify_run``. The format is described in
docs/records.md ("Tamper evidence"):

- canonical JSON of a record: ``json.dumps(record, sort_keys=True, separators=(",", ":"),
  ensure_ascii=False)`` encoded as UTF-8; every line is written in exactly that form;
- a line's hash: SHA-256 of its canonical JSON (the ``prev_sha256`` and ``seq`` it carries included);
- ``seq``: the line's position in the file, from 1; ``prev_sha256``: the hash of line ``seq - 1``,
  64 zeros for line 1;
- a line cut by a kill (no newline, or not JSON) is ended by the next writer, whose line says so in
  ``cut`` (the cut line's number and the SHA-256 of its raw bytes) and chains to the last whole line;
- summary.json's ``journal_head``: ``lines`` (the journal's line count) and ``sha256`` (the hash of
  the last line), optionally ``hmac_sha256``: HMAC-SHA256 with the key in EMP_DEPLOY_RECORD_KEY over
  the canonical JSON of ``{"lines", "run_id", "sha256"}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

GENESIS = "0" * 64
SEQ_KEY = "seq"
PREV_KEY = "prev_sha256"
CUT_KEY = "cut"
HEAD_KEY = "journal_head"
# The environment variable that holds the key signing summary.json's head hash (never printed).
KEY_ENV = "EMP_DEPLOY_RECORD_KEY"


def canonical(record: t.Mapping[str, t.Any]) -> bytes:
    """The one byte form of a record that its hash covers (docs/records.md)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ChainState:
    """Where the file's chain stands: how many lines it holds, the last whole line's hash, and the
    bytes of a last line cut by a kill (no newline yet), which the next writer ends."""

    lines: int = 0
    head: str = GENESIS
    partial: bytes | None = None
    size: int = 0

    def advance(self, data: bytes) -> None:
        """Takes in more bytes of the file (appended by this or another writer)."""
        if self.partial is not None:
            data = self.partial + data
            self.partial = None
        *whole, rest = data.split(b"\n")
        self.lines += len(whole)
        for line in reversed(whole):
            if _is_record(line):
                self.head = digest(line)
                break
        if rest:
            self.partial = rest


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def read_state(path: Path) -> ChainState:
    state = ChainState()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return state
    state.advance(data)
    state.size = len(data)
    return state


def chained_line(state: ChainState, record: t.Mapping[str, t.Any]) -> bytes:
    """The bytes to append for ``record`` (a cut last line ended first), and the state moved past them."""
    prefix = b""
    entry = dict(record)
    if state.partial is not None:  # a kill cut the last write: end that line, and say so
        prefix = b"\n"
        state.lines += 1
        entry[CUT_KEY] = {"line": state.lines, "sha256": digest(state.partial)}
        state.partial = None
    entry[SEQ_KEY] = state.lines + 1
    entry[PREV_KEY] = state.head
    line = canonical(entry)
    state.lines += 1
    state.head = digest(line)
    data = prefix + line + b"\n"
    state.size += len(data)
    return data


# --- the head in summary.json ---------------------------------------------------------------------


def head_of(path: Path, run_id: t.Any, key: str | None) -> dict[str, t.Any]:
    """``journal_head`` of summary.json for the journal as it is now; signed when a key is given."""
    state = read_state(path)
    head: dict[str, t.Any] = {"lines": state.lines, "sha256": state.head if state.lines else None}
    if key:
        head["hmac_sha256"] = signature(key, run_id, head["lines"], head["sha256"])
    return head


def signature(key: str, run_id: t.Any, lines: t.Any, head: t.Any) -> str:
    message = canonical({"lines": lines, "run_id": run_id, "sha256": head})
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


# --- verifying --------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What verify_run found: ``status`` intact, truncated or tampered (or unverifiable), one sentence."""

    status: str
    msg: str
    lines: int = 0
    line: int | None = None  # the first line changed, removed or reordered (tampered)
    signed: bool | None = None  # None: no signature checked
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("intact", "truncated")


class _Line:
    """One line as the check needs it: its bytes and its chain fields (the parsed record is not kept:
    a journal of 100,000 records held in memory costs more in garbage collection than the check itself)."""

    __slots__ = ("raw", "is_record", "seq", "prev", "cut", "chained")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        record = _parse(raw)
        self.is_record = record is not None
        record = record or {}
        self.seq, self.prev, self.cut = record.get(SEQ_KEY), record.get(PREV_KEY), record.get(CUT_KEY)
        self.chained = PREV_KEY in record and SEQ_KEY in record

    def hash(self) -> str:
        return digest(self.raw)

    def canonical_hash(self) -> str:
        record = _parse(self.raw)
        return digest(canonical(record)) if record is not None else digest(self.raw)


def _parse(raw: bytes) -> dict[str, t.Any] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def verify_run(run_dir: Path, key: str | None = None) -> Verdict:
    """Checks a run folder's journal chain against itself and summary.json's head (and its HMAC)."""
    path = run_dir / "journal.jsonl"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Verdict("unverifiable", f"cannot read {path}: {exc.strerror or exc}")
    *whole, rest = data.split(b"\n")
    partial = rest or None
    summary_head, problem = _summary_head(run_dir)
    if problem:
        return Verdict("tampered", problem, len(whole))
    run_id = _summary_run_id(run_dir)
    if _fast_chain(whole, summary_head):
        return _against_head(_RawLines(whole), [], partial, summary_head, key, run_id)
    lines = [_Line(raw) for raw in whole]  # the full check: it names the first line that breaks the chain
    verdict = _walk(lines)
    if verdict is not None:
        return verdict
    cuts = [n for n, line in enumerate(lines, start=1) if not line.is_record]
    return _against_head(lines, cuts, partial, summary_head, key, run_id)


# the chain fields as the canonical writer puts them (sorted keys, no spaces); inside a JSON string a quote is
# escaped, so these bytes can only be keys
_PREV_FIELD = re.compile(rb'"prev_sha256":"([0-9a-f]{64})"')
_SEQ_FIELD = re.compile(rb'"seq":([0-9]+)[,}]')


def _fast_chain(whole: list[bytes], head: dict[str, t.Any] | None) -> bool:
    """True when every line chains to the one before it by its raw bytes, with no cut line: the common,
    intact case, checked without parsing each line (the hashes authenticate the bytes). Anything else
    (a break, a cut, a line re-spaced by hand) is left to the full check, which names the line."""
    expected = GENESIS.encode("ascii")
    for number, raw in enumerate(whole, start=1):
        prev, seq = _PREV_FIELD.search(raw), _SEQ_FIELD.search(raw)
        if prev is None or seq is None or prev.group(1) != expected or int(seq.group(1)) != number \
                or b'"cut":' in raw:
            return False
        expected = hashlib.sha256(raw).hexdigest().encode("ascii")
    # lines the head does not cover are vouched for by nothing after them: they must at least be records
    claimed = head.get("lines") if isinstance(head, dict) else None
    covered = claimed if isinstance(claimed, int) and claimed > 0 else 0
    return bool(whole) and all(_parse(raw) is not None for raw in whole[covered:])


class _RawLines:
    """The lines of a journal that passed the fast check, made into _Line only where asked for."""

    def __init__(self, whole: list[bytes]) -> None:
        self._whole = whole

    def __len__(self) -> int:
        return len(self._whole)

    def __getitem__(self, index: int) -> _Line:
        return _Line(self._whole[index])


def _walk(lines: list[_Line]) -> Verdict | None:
    """The first line that breaks the chain (changed, removed, reordered), or None."""
    count = len(lines)
    if count == 0:
        return Verdict("unverifiable", "the journal holds no line")
    previous: _Line | None = None  # the last whole line
    before: _Line | None = None  # the whole line before that
    for number, line in enumerate(lines, start=1):
        if not line.is_record:
            cut = (lines[number].cut if number < count else None) or {}
            if isinstance(cut, dict) and cut.get("line") == number and cut.get("sha256") == line.hash():
                continue  # a write cut by a kill, ended and declared by the next writer
            return Verdict("tampered", f"line {number} is not a journal record (changed)", count, number)
        if not line.chained:
            return Verdict("unverifiable" if number == 1 else "tampered",
                           f"line {number} carries no hash chain (seq, prev_sha256): written by an emp.deploy "
                           f"before the chain, or changed", count, number)
        if line.seq != number:
            return _out_of_place(lines, number, line.seq)
        anchor = before if _declares_cut(line, number, lines) else previous
        if not _chains_to(line.prev, anchor):
            return Verdict("tampered", f"line {number - 1} was changed (line {number} holds the hash of "
                                       f"another line {number - 1})", count, number - 1)
        before, previous = previous, line
    return None


def _declares_cut(line: _Line, number: int, lines: list[_Line]) -> bool:
    """A line that ended a cut line which happens to parse (a whole record whose newline was lost)."""
    cut = line.cut
    return (isinstance(cut, dict) and number > 1 and cut.get("line") == number - 1
            and lines[number - 2].is_record and cut.get("sha256") == lines[number - 2].hash())


def _chains_to(claimed: t.Any, previous: _Line | None) -> bool:
    if previous is None:
        return claimed == GENESIS
    # lines are written canonical, so the raw bytes' hash is the canonical one (the fast path); a line
    # re-spaced by hand keeps its content and its canonical hash: only the content counts
    return claimed == previous.hash() or claimed == previous.canonical_hash()


def _out_of_place(lines: list[_Line], number: int, seq: t.Any) -> Verdict:
    count = len(lines)
    later = {line.seq for line in lines[number:] if line.is_record}
    if isinstance(seq, int) and seq > number and number not in later:
        what = f"line {number} was removed" if seq == number + 1 else f"lines {number} to {seq - 1} were removed"
        return Verdict("tampered", f"{what} (line {number} now holds the line written as {seq})", count, number)
    return Verdict("tampered", f"line {number} was reordered or copied (it holds the line written as {seq!r})",
                   count, number)


def _against_head(lines: t.Sequence[_Line] | _RawLines, cuts: list[int], partial: bytes | None,
                  head: dict[str, t.Any] | None, key: str | None, run_id: t.Any) -> Verdict:
    count = len(lines)
    notes = [f"line {n} was cut by a kill while it was written; the next writer ended it" for n in cuts]
    if head is None:
        notes.append("no journal_head in summary.json (the run has not ended, or its summary predates the "
                     "chain): the last line cannot be checked against it")
        return _truncated_or_intact(count, partial, notes, None)
    claimed = head.get("lines")
    if not isinstance(claimed, int) or claimed < 1:
        return Verdict("tampered", f"summary.json's journal_head is malformed ({claimed!r} lines)", count)
    if claimed > count:
        return Verdict("tampered", f"line {count + 1} was removed (summary.json counts {claimed} lines, the journal "
                                   f"holds {count})", count, count + 1)
    if not _chains_to(head.get("sha256"), lines[claimed - 1]):
        return Verdict("tampered", f"line {claimed} was changed (its hash is not summary.json's head)", count, claimed)
    signed = _check_signature(head, key, run_id, notes)
    if signed is False:
        return Verdict("tampered", "summary.json's head signature does not match (the key differs, or the head "
                                   "was rewritten)", count, None, signed=False, notes=notes)
    if claimed < count:
        notes.append(f"lines {claimed + 1} to {count} came after summary.json's head (a watch still running, or "
                     f"one that ended without merging): chained, but not covered by the head")
    return _truncated_or_intact(count, partial, notes, signed)


def _check_signature(head: t.Mapping[str, t.Any], key: str | None, run_id: t.Any, notes: list[str]) -> bool | None:
    sent = head.get("hmac_sha256")
    if not key:
        if sent:
            notes.append(f"the head is signed; set {KEY_ENV} to check the signature")
        return None
    if not sent:
        return False
    return hmac.compare_digest(str(sent), signature(key, run_id, head.get("lines"), head.get("sha256")))


def _truncated_or_intact(count: int, partial: bytes | None, notes: list[str], signed: bool | None) -> Verdict:
    if partial is not None:
        return Verdict("truncated", f"truncated after line {count}: the last line was cut while it was written "
                                    f"(a killed run, not a changed record); lines 1 to {count} are intact",
                       count, None, signed, notes)
    sign = {True: ", head signature valid", False: "", None: ""}[signed]
    return Verdict("intact", f"intact: {count} lines, chain and head hash match{sign}", count, None, signed, notes)


def _summary_head(run_dir: Path) -> tuple[dict[str, t.Any] | None, str | None]:
    path = run_dir / "summary.json"
    if not path.exists():
        return None, None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"summary.json cannot be read ({exc})"
    head = summary.get(HEAD_KEY) if isinstance(summary, dict) else None
    return (head if isinstance(head, dict) else None), None


def _summary_run_id(run_dir: Path) -> t.Any:
    try:
        return json.loads((run_dir / "summary.json").read_text(encoding="utf-8")).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
