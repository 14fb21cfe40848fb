"""The sandbox inventory's memory query (testing/redis/retry-memory) never sums a partial set of services.

Right after `up` the sandbox's Prometheus may have scraped two of the three services: a "before" figure of
two services (86 MB) against an "after" figure of three (134 MB) once made a healthy predeploy run NO-GO.
The opposite is worse: a service that crashed in the outage lowers the "after" sum, and the gate would pass
for lack of data. The query is rendered by Ansible from inventories/sandbox and run by emp.deploy.metric_query
against a real Prometheus scraping three exporters that play the services.
"""
from __future__ import annotations

import json
import time

import pytest

from conftest import run_playbook, write_playbook
from prometheus_harness import MetricsExporter, PromHarness, prometheus_missing

pytestmark = pytest.mark.skipif(prometheus_missing() is not None, reason=str(prometheus_missing()))

RSS = {"api": 48_200_000.0, "webhook": 47_900_000.0, "monitor": 38_100_000.0}
SERIES = 'process_resident_memory_bytes{job=~"api|webhook|monitor"}'


def memory_query(tmp_path, prometheus_url: str) -> dict:
    """metric_query of the inventory's predeploy_memory_query, as the predeploy role runs it."""
    out = tmp_path / "memory.json"
    playbook = write_playbook(tmp_path, """
- name: The services' memory, the inventory's query
  emp.deploy.metric_query:
    query: "{{ predeploy_memory_query }}"
    url: "{{ predeploy_metrics.url }}"
    timeout: 5
  register: memory
  failed_when: false
- name: Keep the result
  ansible.builtin.copy:
    content: "{{ memory | combine({'rendered_query': predeploy_memory_query}) | to_json }}"
    dest: "{{ out }}"
    mode: "0600"
""")
    # emp_sandbox as an extra var: the inventory's other figures are not needed, only its Prometheus
    proc = run_playbook(playbook, extra_vars={"out": str(out), "emp_sandbox": {"prometheus": prometheus_url}},
                        timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


def wait_until(predicate, harness: PromHarness, promql: str, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    result: list = []
    while time.monotonic() < deadline:
        result = harness.query(promql)["data"]["result"]
        if predicate(result):
            return result
        time.sleep(0.2)
    raise TimeoutError(f"{promql!r} never reached the expected state on {harness.url}: {result}")


def test_memory_query_is_empty_until_every_service_has_a_series(tmp_path):
    exporters = {job: MetricsExporter().set("process_resident_memory_bytes", value) for job, value in RSS.items()}
    try:
        with PromHarness(tmp_path / "prom", {job: [exp.address] for job, exp in exporters.items()}) as prom:
            prom.wait_for_series(SERIES, count=3)
            whole = memory_query(tmp_path, prom.url)
            assert whole["rendered_query"].startswith("sum(")
            assert whole["value"] == pytest.approx(sum(RSS.values()))

            # the monitor goes away (a crash): its series turns stale at the next failed scrape
            exporters.pop("monitor").close()
            wait_until(lambda result: len(result) == 2, prom, SERIES)
            # the plain sum now reports the two survivors: a smaller figure that would pass a growth check
            plain = prom.query(f"sum({SERIES})")["data"]["result"]
            assert float(plain[0]["value"][1]) == pytest.approx(RSS["api"] + RSS["webhook"])

            partial = memory_query(tmp_path, prom.url)
            assert partial["empty"] is True, partial
            assert partial["value"] is None
    finally:
        for exp in exporters.values():
            exp.close()
