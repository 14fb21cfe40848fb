"""Report rendering: the reports of a synthetic run of 200 gates x 30 samples (goal < 1 s).

Baseline, measured in the same process and interleaved: reading the same journal and writing all of
it back as indented JSON (what the summary writer does with a run's records), the least work any
renderer that reads every sample must do. Also the page weight, and Chromium's time to load the
200-gate report against a one-line page (both with a fresh profile, no network), whose difference
is the report's own rendering cost in a browser (issue: < 2 s).
With --screenshots DIR it also saves the GO and NO-GO screenshots that docs/reports.md shows.
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
sys.path[:0] = [str(ROOT / "collections"), str(ROOT / "tests")]

import chromium  # noqa: E402  (tests/chromium.py)
import report_journals as rj  # noqa: E402  (tests/report_journals.py)
from ansible_collections.emp.deploy.plugins.plugin_utils import _reports  # noqa: E402


def baseline(run_dir: Path) -> None:
    records = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text(encoding="utf-8").splitlines()]
    (run_dir / "baseline.json").write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")


def render(run_dir: Path) -> None:
    outcome = _reports.write_reports(run_dir, index=False)
    if outcome.errors:
        raise SystemExit(f"render failed: {outcome.errors}")
    for name in ("report.html", "junit.xml", "incident.md"):  # write again each round
        (run_dir / name).unlink()


def timed(fn, run_dir: Path) -> float:
    started = time.perf_counter()
    fn(run_dir)
    return time.perf_counter() - started


def browser_load(page: Path) -> float:
    started = time.perf_counter()
    dummy, console = chromium.load(page)
    if console:
        raise SystemExit(f"console messages in {page}: {console}")
    return time.perf_counter() - started


def screenshots(target: Path, tmp: Path) -> None:
    for builder, name in ((rj.go_run(), "report-go.png"), (rj.nogo_run(), "report-nogo.png")):
        run_dir = tmp / "shots" / builder.run_id
        builder.write(run_dir)
        _reports.write_reports(run_dir, index=False)
        chromium.load(run_dir / "report.html", target / name, width=1000, height=1250)
        print(f"screenshot {target / name} ({(target / name).stat().st_size // 1024} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gates", type=int, default=200)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--browser-rounds", type=int, default=3)
    parser.add_argument("--screenshots", type=Path, help="save the GO and NO-GO screenshots into this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emp-bench-report-") as scratch:
        tmp = Path(scratch)
        run_dir = tmp / "reports" / "bench-run"
        rj.big_run(args.gates, args.samples, run_id="bench-run").write(run_dir)
        journal_kib = (run_dir / "journal.jsonl").stat().st_size / 1024
        render(run_dir)  # warm up imports and caches for both
        baseline(run_dir)
        ours, base = [], []
        for dummy in range(args.rounds):
            base.append(timed(baseline, run_dir))
            ours.append(timed(render, run_dir))
        _reports.write_reports(run_dir, index=False)
        sizes = {name: (run_dir / name).stat().st_size / 1024 for name in ("report.html", "junit.xml", "incident.md")}
        ours_m, base_m = statistics.median(ours), statistics.median(base)
        print(f"run: {args.gates} gates x {args.samples} samples, journal {journal_kib:.0f} KiB, {args.rounds} rounds (median)")
        print(f"  baseline (read the journal, dump it as indented JSON): {base_m * 1000:7.1f} ms")
        print(f"  reports (report.html + junit.xml + incident.md):       {ours_m * 1000:7.1f} ms   "
              f"ratio {ours_m / base_m:.2f}x baseline   goal < 1000 ms: {'met' if ours_m < 1 else 'NOT met'}")
        print("  sizes: " + ", ".join(f"{name} {kib:.0f} KiB" for name, kib in sizes.items())
              + f"   (report.html limit 2048 KiB: {'met' if sizes['report.html'] < 2048 else 'NOT met'})")
        if chromium.binary():
            empty = tmp / "empty.html"
            empty.write_text("<!DOCTYPE html><html><body><p>empty</p></body></html>")
            page, blank = [], []
            for dummy in range(args.browser_rounds):
                blank.append(browser_load(empty))
                page.append(browser_load(run_dir / "report.html"))
            page_m, blank_m = statistics.median(page), statistics.median(blank)
            print(f"  chromium load, one-line page (baseline): {blank_m:5.2f} s; the 200-gate report: {page_m:5.2f} s; "
                  f"the report's own cost {page_m - blank_m:5.2f} s (goal < 2 s: {'met' if page_m - blank_m < 2 else 'NOT met'})")
        else:
            print("  chromium not installed (tools/system-deps): browser load not measured")
        if args.screenshots:
            screenshots(args.screenshots, tmp)


if __name__ == "__main__":
    main()
