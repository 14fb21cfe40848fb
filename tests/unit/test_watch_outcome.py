"""tools/watch_outcome.py (make demo-watch's own check): it passes only the exact expected outcome."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "watch_outcome.py"
_spec = importlib.util.spec_from_file_location("watch_outcome", TOOL)
assert _spec is not None and _spec.loader is not None
outcome = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(outcome)

GOOD = {
    "decision": "GO",
    "watch": {"window_s": 180.0, "checks": {"webhook_delivery_failures": {"runs": 9}}, "verdict": "FAILED",
              "alerts": [{"check": "webhook_delivery_failures", "component": "webhooks", "reason": "result.value <= 0.05 did not hold",
                          "at": "2026-12-03T15:57:26.643Z"}]},
    "rollback": {"trigger": "watch", "components": ["webhooks"], "ok": True, "duration_s": 3.9,
                 "per_component": {"webhooks": {"ok": True}}},
}


def run(tmp_path: Path, summary: dict | None, capsys) -> tuple[int, str]:
    if summary is not None:
        (tmp_path / "r1").mkdir()
        (tmp_path / "r1" / "summary.json").write_text(json.dumps(summary))
    rc = outcome.main([str(tmp_path), "r1", "--check", "webhook_delivery_failures", "--component", "webhooks"])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_the_expected_outcome_passes(tmp_path, capsys):
    rc, text = run(tmp_path, GOOD, capsys)
    assert rc == 0 and "alert webhook_delivery_failures [webhooks]" in text and "verdict FAILED" in text


@pytest.mark.parametrize("change, words", [
    (lambda s: s.pop("watch"), "no watch section"),
    (lambda s: s["watch"].update(verdict="SUCCESS"), "watch.verdict is 'SUCCESS'"),
    (lambda s: s["watch"].update(verdict="IN_PROGRESS"), "not FAILED"),
    (lambda s: s["watch"]["alerts"].append(dict(s["watch"]["alerts"][0], check="otel_export_failures",
                                                component="telemetry")), "watch.alerts are"),
    (lambda s: s["watch"].update(alerts=[]), "watch.alerts are []"),
    (lambda s: s["watch"]["alerts"][0].pop("reason"), "lacks its reason"),
    (lambda s: s["watch"].update(checks={}), "watch.checks is empty"),
    (lambda s: s.update(decision="NO-GO"), "the deploy decision is 'NO-GO'"),
    (lambda s: s["rollback"].update(ok=False), "rollback.ok is False"),
    (lambda s: s["rollback"].update(components=["webhooks", "workers"]), "rollback.components are"),
    (lambda s: s["rollback"].update(trigger="deploy"), "rollback.trigger is 'deploy'"),
    (lambda s: s.pop("rollback"), "rollback.components are None"),
])
def test_anything_else_fails_naming_the_difference(tmp_path, capsys, change, words):
    summary = copy.deepcopy(GOOD)
    change(summary)
    rc, text = run(tmp_path, summary, capsys)
    assert rc == 1 and words in text, text


def test_a_missing_summary_fails(tmp_path, capsys):
    rc, text = run(tmp_path, None, capsys)
    assert rc == 1 and "cannot read" in text
