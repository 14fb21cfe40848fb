"""History lookup speed: a gate's baseline from the history index with 1,000 past runs, in milliseconds.

Baseline, measured in the same process and interleaved: what a gate would do without the index, reading every
run folder's journal.jsonl, keeping that gate's records and taking the last 5 GO runs' figures from their
samples. Both see the same 1,000 runs, each with 8 gates of a real shape (criteria, 5 samples with figures),
written by the collection's own writers (chained journal lines, the index's append_entry).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "collections"))

from ansible_collections.emp.deploy.plugins.plugin_utils import _history as H  # noqa: E402
from ansible_collections.emp.deploy.plugins.plugin_utils import _journal_chain as chain  # noqa: E402
from ansible_collections.emp.deploy.plugins.plugin_utils._report_model import read_journal  # noqa: E402

GATES = ("database-connections", "redis-connections", "telemetry-flowing", "webhooks-processing",
         "workers-processing-mock", "workers-processing-ollama-sim", "workers-memory", "api-latency")
LOOKED_UP = "api-latency"
ENVIRONMENT = "production"
OPTIONS = H.HistoryOptions(5, "GO", "median")
# the worst case: more runs asked for than there are, so every line of the gate's index is parsed
WORST = H.HistoryOptions(1000, "GO", "median")


def gate_record(run: int, name: str) -> dict:
    decision = "NO-GO" if run % 10 == 9 else "GO"
    samples = [{"index": i, "outcome": "passed", "ok": True, "error": None, "duration_ms": 210.5,
                "figures": {"result.latency_ms.p95": 40 + (run * 7 + i) % 13, "result.latency_ms.p50": 12 + i,
                            "result.error_rate": 0.0},
                "criteria": [{"criterion": "result.latency_ms.p95 < 200", "held": True},
                             {"criterion": "result.error_rate == 0", "held": True}]} for i in range(1, 6)]
    return {"type": "gate", "schema_version": 1, "run_id": f"run-{run:04d}", "ts": "2026-12-04T12:00:00.000Z",
            "id": f"{run}-{name}", "name": name, "component": "api", "phase": "application", "mode": "enforce",
            "decision": decision, "reason": "all 2 criteria held in 5 of 5 samples", "host": "sandbox",
            "counts": {"planned": 5, "taken": 5, "passed": 5, "failed": 0, "errors": 0, "no_data": 0},
            "criteria": [{"criterion": "result.latency_ms.p95 < 200", "outcome": "held", "held": 5},
                         {"criterion": "result.error_rate == 0", "outcome": "held", "held": 5}],
            "samples": samples, "ended": "2026-12-04T12:00:01.000Z", "duration_s": 1.2}


def write_history(report_dir: Path, runs: int) -> None:
    """Each run's folder with its journal (run_start, a gate record per gate, run_end) and its index lines."""
    for run in range(runs):
        run_id = f"run-{run:04d}"
        run_dir = report_dir / run_id
        run_dir.mkdir()
        state = chain.ChainState()
        with open(run_dir / "journal.jsonl", "wb") as handle:
            handle.write(chain.chained_line(state, {"type": "run_start", "schema_version": 1, "run_id": run_id,
                                                    "ts": "2026-12-04T12:00:00.000Z", "emp_release": "1.1.0"}))
            for name in GATES:
                record = gate_record(run, name)
                handle.write(chain.chained_line(state, record))
                H.append_entry(H.gate_file(report_dir, ENVIRONMENT, name), H.entry_of(record, run_id, "1.1.0", ["1.1.0"]))
            handle.write(chain.chained_line(state, {"type": "run_end", "schema_version": 1, "run_id": run_id,
                                                    "ts": "2026-12-04T12:00:02.000Z", "decision": "GO"}))


def lookup(report_dir: Path, options: H.HistoryOptions = OPTIONS) -> H.Baseline:
    return H.lookup(report_dir, ENVIRONMENT, LOOKED_UP, options, {})


def scan_journals(report_dir: Path) -> H.Baseline:
    """Without the index: every journal read and parsed, the gate's records turned into the same entries."""
    entries = []
    for run_dir in sorted(p for p in report_dir.iterdir() if p.is_dir()):
        for record in read_journal(run_dir / "journal.jsonl"):
            if record.get("type") == "gate" and record.get("name") == LOOKED_UP:
                entries.append(H.entry_of(record, run_dir.name, None, []))
    return H.baseline(reversed(entries), OPTIONS)


def timed(fn, *args) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def measure(report_dir: Path, rounds: int) -> dict[str, float]:
    """Median seconds of the journal scan, the lookup and the worst-case lookup, interleaved round by round."""
    times: dict[str, list[float]] = {"scan": [], "lookup": [], "worst": []}
    for _round in range(rounds):
        seconds, scanned = timed(scan_journals, report_dir)
        times["scan"].append(seconds)
        seconds, found = timed(lookup, report_dir)
        times["lookup"].append(seconds)
        times["worst"].append(timed(lookup, report_dir, WORST)[0])
        assert found.run_ids == scanned.run_ids and found.figures == scanned.figures  # the same answer
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="past runs in the report folder")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (medians are shown)")
    given = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_history(Path(tmp), given.runs)
        index_kib = H.gate_file(Path(tmp), ENVIRONMENT, LOOKED_UP).stat().st_size / 1024
        journals_mib = sum(p.stat().st_size for p in Path(tmp).glob("*/journal.jsonl")) / 1024 / 1024
        median = measure(Path(tmp), given.rounds)
        newest = lookup(Path(tmp)).run_ids
    fast, slow, worst = median["lookup"], median["scan"], median["worst"]
    print(f"history: {given.runs} runs x {len(GATES)} gates; index of {LOOKED_UP}: {index_kib:.0f} KiB; "
          f"journals: {journals_mib:.1f} MiB; {given.rounds} rounds (medians)")
    print(f"baseline  scan every journal:  {slow * 1000:8.1f} ms")
    print(f"lookup    history index:       {fast * 1000:8.1f} ms   (last {OPTIONS.runs} GO runs: {newest})")
    print(f"worst     every index line:    {worst * 1000:8.1f} ms   (more runs asked for than recorded)")
    print(f"ratio lookup/baseline time: {fast / slow:.4f} (worst case {worst / slow:.4f}); goal lookup < 50 ms: "
          f"{'met' if fast < 0.050 else 'NOT met'} (worst case {'within' if worst < 0.050 else 'over'} it)")


if __name__ == "__main__":
    main()
