"""Verify speed: _journal_chain.verify_run over a journal of realistic records, in lines per second.

Baseline, measured in the same process and interleaved: reading the same file and json.loads of every
line (what any reader of the journal does anyway). The ratio says what the chain check costs on top.
The journal is written by the collection's own chain writer (chained_line), with gate records of a
real shape (criteria, samples, counts), so line sizes are those of a deploy run's journal.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "collections"))

from ansible_collections.emp.deploy.plugins.plugin_utils import _journal_chain as chain  # noqa: E402


def record(n: int) -> dict:
    return {"schema_version": 1, "ts": f"2026-12-03T12:{n // 60 % 60:02d}:{n % 60:02d}.123Z", "type": "gate",
            "run_id": "20261203T121500Z-a1b2c3", "id": f"gate-{n}", "name": f"redis-latency-{n % 9}",
            "component": "redis", "mode": "enforce", "decision": "GO", "reason": "all 2 criteria held in 3 of 3 samples",
            "counts": {"planned": 3, "taken": 3, "passed": 3, "failed": 0, "errors": 0, "no_data": 0},
            "criteria": [{"expr": "result.p99_ms < 50", "held": 3}, {"expr": "result.errors == 0", "held": 3}],
            "duration_s": 1.5 + n % 7}


def write_run(run_dir: Path, lines: int) -> int:
    state = chain.ChainState()
    with open(run_dir / "journal.jsonl", "wb") as handle:
        for n in range(lines):
            handle.write(chain.chained_line(state, record(n)))
    (run_dir / "summary.json").write_text(json.dumps({"run_id": "20261203T121500Z-a1b2c3",
                                                      chain.HEAD_KEY: chain.head_of(run_dir / "journal.jsonl",
                                                                                    "20261203T121500Z-a1b2c3", "k")}))
    return (run_dir / "journal.jsonl").stat().st_size


def baseline(run_dir: Path) -> int:
    return sum(1 for line in (run_dir / "journal.jsonl").read_bytes().split(b"\n") if line and json.loads(line))


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        size = write_run(run_dir, args.lines)
        verdict = chain.verify_run(run_dir, "k")
        assert verdict.status == "intact" and verdict.signed, verdict.msg  # measure the real, passing check
        verify_s, parse_s = [], []
        for _round in range(args.rounds):
            parse_s.append(timed(baseline, run_dir))
            verify_s.append(timed(chain.verify_run, run_dir, "k"))
    verify, parse = statistics.median(verify_s), statistics.median(parse_s)
    print(f"journal: {args.lines} lines, {size / args.lines:.0f} bytes/line, {args.rounds} rounds (medians)")
    print(f"baseline  json.loads of every line: {args.lines / parse:>10,.0f} lines/s ({parse * 1000:.0f} ms)")
    print(f"verify    chain + head + HMAC:      {args.lines / verify:>10,.0f} lines/s ({verify * 1000:.0f} ms)")
    print(f"ratio verify/baseline time: {verify / parse:.2f}  (goal: verify >= 100,000 lines/s: "
          f"{'met' if args.lines / verify >= 100_000 else 'NOT met'})")


if __name__ == "__main__":
    main()
