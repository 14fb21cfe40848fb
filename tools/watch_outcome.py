"""Checks that a watch ended as a demo expects, from the run's summary.json (make demo-watch).

    python tools/watch_outcome.py REPORT_DIR RUN_ID --check webhook_delivery_failures --component webhooks

Succeeds (exit 0) only when exactly that happened: the deploy decided GO; the summary's `watch` section
has its window, the checks it ran, one alert (of that check and component, with a reason and a time)
and the verdict FAILED; and its `rollback`, triggered by the watch, rolled back that component alone
and says ok. Otherwise it prints every difference and exits 1. Standard library only.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def problems(summary: dict[str, Any], check: str, component: str) -> list[str]:
    found: list[str] = []

    def expect(condition: bool, what: str) -> None:
        if not condition:
            found.append(what)

    expect(summary.get("decision") == "GO", f"the deploy decision is {summary.get('decision')!r}, not GO")
    watch = summary.get("watch")
    if not isinstance(watch, dict):
        return found + ["summary.json has no watch section"]
    expect(isinstance(watch.get("window_s"), (int, float)) and watch["window_s"] > 0,
           f"watch.window_s is {watch.get('window_s')!r}")
    expect(bool(watch.get("checks")), "watch.checks is empty")
    expect(watch.get("verdict") == "FAILED", f"watch.verdict is {watch.get('verdict')!r}, not FAILED")
    alerts = watch.get("alerts") or []
    pairs = [(a.get("check"), a.get("component")) for a in alerts]
    expect(pairs == [(check, component)], f"watch.alerts are {pairs}, not [({check!r}, {component!r})]")
    for alert in alerts:
        expect(bool(alert.get("reason")) and bool(alert.get("at")), f"alert {alert} lacks its reason or time")
    rollback = summary.get("rollback") or {}
    expect(rollback.get("trigger") == "watch", f"rollback.trigger is {rollback.get('trigger')!r}, not watch")
    expect(rollback.get("components") == [component],
           f"rollback.components are {rollback.get('components')!r}, not [{component!r}]")
    expect(rollback.get("ok") is True, f"rollback.ok is {rollback.get('ok')!r}")
    per_component = (rollback.get("per_component") or {}).get(component) or {}
    expect(per_component.get("ok") is True, f"rollback.per_component.{component} is {per_component!r}")
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_dir", type=Path)
    parser.add_argument("run_id")
    parser.add_argument("--check", required=True, help="the check whose alert is expected")
    parser.add_argument("--component", required=True, help="its component, the one rolled back")
    args = parser.parse_args(argv)
    path = args.report_dir / args.run_id / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"watch_outcome: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    found = problems(summary, args.check, args.component)
    if found:
        print(f"watch_outcome: {path} is not the expected outcome:", file=sys.stderr)
        for problem in found:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    watch, rollback = summary["watch"], summary["rollback"]
    alert = watch["alerts"][0]
    print(f"watch_outcome: run {args.run_id}: deploy GO; watch of {watch['window_s']:g} s, {len(watch['checks'])} checks, "
          f"alert {alert['check']} [{alert['component']}] at {alert['at']}; verdict {watch['verdict']}; "
          f"rollback of {component_list(rollback)} ok in {rollback.get('duration_s')} s")
    return 0


def component_list(rollback: dict[str, Any]) -> str:
    return ", ".join(rollback.get("components") or [])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
