"""Gates that learn from history, through real ansible-playbook runs against the sandbox API (python -m
sandbox.api on a private redis-server, started from the sandbox's release catalogue):

- five GO runs of release 1.1.0 fill the history index; while it holds fewer than five, the history criterion is
  skipped with its reason (never a silent pass) and the fixed threshold decides;
- a sixth run of 1.1.0 is GO against its history;
- release 1.1.0-slow (every request delayed 300 ms, inside the fixed 1,000 ms threshold) says NO-GO on the history
  criterion while the fixed threshold holds;
- a gate whose only criterion reads a history too short, without history_fallback, saw no data: NO-GO; with
  history_fallback it is judged against the fallback;
- bad history options fail before any sampling.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, free_port, run_playbook, wait_for_port
from servers import RedisServer

pytestmark = pytest.mark.timeout(300)
SLOW_MS = 300

PLAY = """---
- name: Phase application · api
  hosts: sandbox
  gather_facts: false
  vars: {emp_phase: application, emp_component: api}
  tasks:
"""
PHASE = PLAY + """    - name: The API answers as fast as its last good releases
      emp.deploy.gate:
        name: api-latency
        component: api
        probe: {module: emp.deploy.service_probe, args: {url: "{{ api_url }}/health", requests: 10, concurrency: 2}}
        samples: 2
        interval: 0.2
        history: {runs: 5, decision: GO, aggregate: median}
        criteria:
          - result.latency_ms.p95 < 1000
          - result.latency_ms.p50 <=+150
"""


class SandboxApi:
    """The sandbox API of one catalogue release, restarted on another to release it."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.redis = RedisServer(work).start()
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self, version: str) -> None:
        self.stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox.api", "--host", "127.0.0.1", "--port", str(self.port),
             "--redis-url", self.redis.url, "--release-dir", str(ROOT / "sandbox/releases/api" / version),
             "--slow-delay-ms", str(SLOW_MS), "--log-file", str(self.work / "api.log")], cwd=str(ROOT))
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    server = SandboxApi(tmp_path_factory.mktemp("history-api"))
    try:
        yield server
    finally:
        server.stop()
        server.redis.stop()


def deploy(folder: Path, api: SandboxApi, release: str, run_id: str, playbook: str = PHASE) -> tuple[int, dict, str]:
    """One recorded run of the phase; returns its exit code, its api-latency gate record and its output."""
    path = folder / "deploy.yml"
    path.write_text(playbook)
    proc = run_playbook(path, extra_vars={"api_url": api.url, "emp_release": release},
                        env={"EMP_DEPLOY_REPORT_DIR": str(folder / "reports"), "EMP_DEPLOY_RUN_ID": run_id,
                             "EMP_DEPLOY_ROLLBACK": "off"})
    journal = [json.loads(line) for line in (folder / "reports" / run_id / "journal.jsonl").read_text().splitlines()]
    gates = [r for r in journal if r["type"] == "gate"]
    return proc.returncode, gates[-1] if gates else {}, proc.stdout + proc.stderr


def criterion(gate: dict, text: str) -> dict:
    return next(c for c in gate["criteria"] if c["criterion"] == text)


HISTORY_CRITERION = "result.latency_ms.p50 <= history.latency_ms.p50 + 150"


def test_a_slower_release_is_no_go_against_its_history_where_the_fixed_threshold_passes(api, tmp_path):
    api.release("1.1.0")
    for n in range(1, 6):
        rc, gate, out = deploy(tmp_path, api, "1.1.0", f"good-{n}")
        assert rc == 0 and gate["decision"] == "GO", out[-3000:]
        skipped = criterion(gate, HISTORY_CRITERION)
        assert skipped["outcome"] == "skipped" and skipped["evaluated"] == 0
        assert skipped["reason"].startswith(f"history has {n - 1} of the 5 GO runs needed for gate api-latency in "
                                            f"environment sandbox; the criterion was skipped")
        assert "1 criterion skipped: history has" in gate["reason"]
        assert gate["history"]["source"] == "none" and gate["history"]["found"] == n - 1

    index = tmp_path / "reports" / ".history.sandbox.api-latency.jsonl"
    lines = [json.loads(line) for line in index.read_text().splitlines()]
    assert [(e["run_id"], e["release"], e["decision"]) for e in lines] == [
        (f"good-{n}", "1.1.0", "GO") for n in range(1, 6)]
    assert set(lines[0]["figures"]) == {"latency_ms.p95", "latency_ms.p50"}

    rc, gate, out = deploy(tmp_path, api, "1.1.0", "good-6")
    assert rc == 0 and gate["decision"] == "GO", out[-3000:]
    assert criterion(gate, HISTORY_CRITERION)["outcome"] == "held"
    assert gate["history"]["run_ids"] == [f"good-{n}" for n in range(5, 0, -1)]
    assert gate["history"]["source"] == "history"

    api.release("1.1.0-slow")
    rc, gate, out = deploy(tmp_path, api, "1.1.0-slow", "slow")
    assert rc == 2 and gate["decision"] == "NO-GO", out[-3000:]
    assert criterion(gate, "result.latency_ms.p95 < 1000")["outcome"] == "held"  # the fixed threshold passes
    assert criterion(gate, HISTORY_CRITERION)["outcome"] == "failed"
    assert gate["history"]["run_ids"] == ["good-6"] + [f"good-{n}" for n in range(5, 1, -1)]
    baseline = gate["history"]["figures"]["latency_ms.p50"]
    assert gate["reason"].startswith(f"{HISTORY_CRITERION} did not hold in ")
    sample = gate["samples"][0]["figures"]
    assert sample["history.latency_ms.p50"] == baseline and sample["result.latency_ms.p50"] > baseline + 150
    # the reports people read say what the gate was judged against
    judged = (f"judged against the median of the last 5 GO runs (good-6, good-5, good-4, good-3, good-2): "
              f"history.latency_ms.p50 = {baseline:g}")
    assert judged in (tmp_path / "reports" / "slow" / "report.html").read_text()
    assert f"History: {judged}; history.latency_ms.p95 = " in (tmp_path / "reports" / "slow" / "incident.md").read_text()
    assert f"history: {judged}" in (tmp_path / "reports" / "slow" / "junit.xml").read_text()
    # the NO-GO is in the index too, and a later run's GO baseline leaves it out
    last = json.loads(index.read_text().splitlines()[-1])
    assert (last["run_id"], last["release"], last["decision"]) == ("slow", "1.1.0-slow", "NO-GO")


ONLY_HISTORY = PLAY + """    - name: Judged by history alone
      emp.deploy.gate:
        name: api-history-only
        component: api
        probe: {module: emp.deploy.service_probe, args: {url: "{{ api_url }}/health", requests: 5}}
        samples: 2
        interval: 0.1
        history: {runs: 3}
        criteria: ["result.latency_ms.p95 <=+10%"]
"""


def test_a_gate_judged_by_a_too_short_history_alone_is_not_go(api, tmp_path):
    api.release("1.1.0")
    rc, gate, out = deploy(tmp_path, api, "1.1.0", "first", ONLY_HISTORY)
    assert rc == 2 and gate["decision"] == "NO-GO", out[-3000:]
    assert gate["counts"]["no_data"] == 2 and gate["counts"]["passed"] == 0
    assert "no data: 2 of 2 samples produced nothing to evaluate (history has 0 of the 3 GO runs needed" in gate["reason"]
    assert criterion(gate, "result.latency_ms.p95 <= history.latency_ms.p95 * 1.1")["outcome"] == "skipped"

    with_fallback = ONLY_HISTORY.replace("history: {runs: 3}", "history: {runs: 3}\n        history_fallback: {latency_ms.p95: 400}")
    rc, gate, out = deploy(tmp_path, api, "1.1.0", "fallback", with_fallback)
    assert rc == 0 and gate["decision"] == "GO", out[-3000:]
    assert gate["history"]["source"] == "fallback" and gate["history"]["figures"] == {"latency_ms.p95": 400.0}
    assert gate["history"]["reason"] == ("history has 0 of the 3 GO runs needed for gate api-history-only in "
                                         "environment sandbox: history_fallback used")
    assert gate["samples"][0]["figures"]["history.latency_ms.p95"] == 400.0


def test_a_no_log_gate_withholds_the_history_figures_too(api, tmp_path):
    api.release("1.1.0")
    secret = ONLY_HISTORY.replace("history: {runs: 3}", "history: {runs: 3}\n        history_fallback: {latency_ms.p95: 437.25}")
    secret = secret.replace("      emp.deploy.gate:\n", "      no_log: true\n      register: judged\n      emp.deploy.gate:\n", 1)
    kept = tmp_path / "registered.json"
    secret += f"""    - name: Keep what the play can read of it
      ansible.builtin.copy:
        content: "{{{{ judged.emp_gate.history | to_json }}}}"
        dest: {kept}
        mode: "0600"
"""
    rc, gate, out = deploy(tmp_path, api, "1.1.0", "secret", secret)
    assert rc == 0 and gate["decision"] == "GO" and gate["redacted"] is True, out[-3000:]
    # the journal keeps only the decision of a no_log gate; the play's own copy of the result withholds the figures
    assert "history" not in gate and "samples" not in gate
    registered = json.loads(kept.read_text())
    assert registered["figures"] == {"latency_ms.p95": "withheld (no_log)"} and registered["source"] == "fallback"
    run = tmp_path / "reports" / "secret"
    for name in ("journal.jsonl", "summary.json", "report.html", "junit.xml"):
        assert "437.25" not in (run / name).read_text(), name
    assert "437.25" not in out


@pytest.mark.parametrize("old, new, message", [
    ("history: {runs: 3}", "history: {runs: 0}", "history.runs: 0 is not between 1 and 1000"),
    ("history: {runs: 3}", "history: {runs: 3, aggregate: mean}", "history.aggregate: 'mean' is not one of median, p90, max"),
    ("history: {runs: 3}", "history: {runs: 3}\n        history_fallback: {latency_ms.p95: fast}",
     "history_fallback.latency_ms.p95: 'fast' is not a finite number"),
    ("history: {runs: 3}", "samples: 2", "criterion 'result.latency_ms.p95 <= history.latency_ms.p95 * 1.1' reads "
                                         "history, but the gate has no history option"),
])
def test_bad_history_options_fail_before_any_sampling(api, tmp_path, old, new, message):
    api.release("1.1.0")
    rc, gate, out = deploy(tmp_path, api, "1.1.0", "bad", ONLY_HISTORY.replace(old, new))
    assert rc == 2 and not gate, out[-3000:]
    assert message in " ".join(out.split())
    assert "sample 1/" not in out
