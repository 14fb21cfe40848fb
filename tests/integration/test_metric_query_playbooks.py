"""emp.deploy.metric_query through real ansible-playbook runs against a real Prometheus (Debian's 2.42).

Prometheus scrapes an exporter this test controls every second, and holds a past window backfilled with
promtool (known values every 60 s), so instant and range queries read figures the test wrote. Faults
the engine cannot produce on demand (a stalled listener, 503) come from tests/misbehaving_http.py; a
second Prometheus behind basic auth answers 401.
"""
from __future__ import annotations

import json
import math
import subprocess
import time

import pytest

from conftest import free_port, run_playbook, write_playbook
from misbehaving_http import MisbehavingServer, drip_headers
from prometheus_harness import MetricsExporter, PromHarness, openmetrics, prometheus_missing
from servers import LOAD_MARGIN_S

pytestmark = pytest.mark.skipif(prometheus_missing() is not None, reason=str(prometheus_missing()))

SECRET = "tok-" + "z" * 14  # a recognisable stand-in token that must never be printed
GAUGE = 42.5
STEP = 60
# Backfilled series, one sample every STEP seconds from the start of the window.
BF_GAUGE = [5.0, 3.0, 9.0, 4.0, 7.0, 2.0]
BF_COUNTER = [0.0, 10.0, 25.0, 40.0, 5.0, 20.0]  # drops at the fifth sample: a counter reset
BF_WITH_NAN = [1.0, math.nan, 3.0]
GROWTH_PER_S = 1.5


def expected_increase(values: list[float]) -> float:
    """What a counter grew by, a drop counting as a reset to 0 (the test's own arithmetic)."""
    total = 0.0
    for before, after in zip(values, values[1:]):
        total += after - before if after >= before else after
    return total


@pytest.fixture(scope="module")
def window_start() -> int:
    return (int(time.time()) // STEP) * STEP - 2 * 3600


@pytest.fixture(scope="module")
def exporter():
    started = time.monotonic()
    with MetricsExporter() as exp:
        exp.set("mq_gauge", GAUGE).set("mq_nan", math.nan).set("mq_pinf", math.inf).set("mq_ninf", -math.inf)
        exp.set("mq_multi", 1, {"n": "a"}).set("mq_multi", 2, {"n": "b"})
        # grows by half every second: any two scrapes a second or more apart differ by far more than 10 %
        exp.set("mq_growing", lambda: 100.0 * GROWTH_PER_S ** (time.monotonic() - started))
        yield exp


@pytest.fixture(scope="module")
def prom(tmp_path_factory, exporter, window_start):
    backfill = openmetrics({
        "bf_gauge": [(window_start + STEP * i, v) for i, v in enumerate(BF_GAUGE)],
        "bf_counter": [(window_start + STEP * i, v) for i, v in enumerate(BF_COUNTER)],
        "bf_nan": [(window_start + STEP * i, v) for i, v in enumerate(BF_WITH_NAN)],
    })
    with PromHarness(tmp_path_factory.mktemp("prom"), {"exp": [exporter.address]}, backfill=backfill) as harness:
        harness.wait_for_series("mq_multi", count=2)
        harness.wait_for_series("mq_growing")
        yield harness


@pytest.fixture(scope="module")
def prom_auth(tmp_path_factory):
    with PromHarness(tmp_path_factory.mktemp("prom-auth"), basic_auth=True) as harness:
        yield harness


def query_many(tmp_path, runs: list[dict], *, check: bool = False, verbosity: list[str] | None = None,
               play_extra: str = "") -> tuple[list[dict], subprocess.CompletedProcess]:
    """One playbook, one metric_query task per argument dict (failures ignored); each task's result."""
    tasks = []
    for index, args in enumerate(runs):
        out = tmp_path / f"result-{index}.json"
        tasks.append(f"""
- name: Query ({index})
  emp.deploy.metric_query: {json.dumps(args)}
  register: mq
  ignore_errors: true
- name: Save the result ({index})
  ansible.builtin.copy:
    content: "{{{{ mq | to_json }}}}"
    dest: "{out}"
    mode: "0600"
  check_mode: false
""")
    playbook = write_playbook(tmp_path, "".join(tasks))
    if play_extra:
        playbook.write_text(playbook.read_text().replace("  tasks:\n", play_extra + "  tasks:\n", 1))
    proc = run_playbook(playbook, check=check, args=verbosity)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]  # failures are ignored, nothing else is
    return [json.loads((tmp_path / f"result-{i}.json").read_text()) for i in range(len(runs))], proc


def window(start: int, values: list) -> dict:
    return {"start": start, "end": start + STEP * (len(values) - 1), "step": f"{STEP}s"}


@pytest.mark.compat
def test_instant_and_range_queries_read_the_figures_prometheus_holds(tmp_path, prom, window_start):
    reducers = {"last": BF_GAUGE[-1], "min": min(BF_GAUGE), "max": max(BF_GAUGE),
                "avg": sum(BF_GAUGE) / len(BF_GAUGE), "sum": sum(BF_GAUGE)}
    runs = [{"query": "mq_gauge"}]
    runs += [{"query": "bf_gauge", "reduce": how, **window(window_start, BF_GAUGE)} for how in reducers]
    runs += [{"query": "bf_counter", "reduce": "increase", **window(window_start, BF_COUNTER)},
             {"query": "bf_gauge", "range": "3h", "step": 60, "reduce": "max"},
             {"query": "bf_gauge", **window(window_start, BF_GAUGE)}]
    # the url comes from the probes group's module_defaults
    results, dummy = query_many(tmp_path, runs,
                                play_extra=f"  module_defaults:\n    group/emp.deploy.probes:\n      url: {prom.url}\n")
    instant = results[0]
    assert instant["failed"] is False and instant["changed"] is False and instant["healthy"] is True
    assert (instant["value"], instant["empty"], instant["special"], instant["result_type"]) == (GAUGE, False, None, "vector")
    assert instant["series"][0]["labels"]["job"] == "exp" and instant["window"] is None
    assert instant["msg"] == f"instant query at {prom.url[7:]}/: value {GAUGE:g} (1 series, 1 samples)"
    for result, (how, expected) in zip(results[1:], reducers.items()):
        assert result["healthy"] is True and result["result_type"] == "matrix", result
        assert result["value"] == pytest.approx(expected), how
        assert [v for dummy, v in result["series"][0]["values"]] == BF_GAUGE
        assert result["window"]["start"] == window_start and result["window"]["step"] == STEP
    increase, relative, unreduced = results[len(reducers) + 1:]
    assert increase["value"] == pytest.approx(expected_increase(BF_COUNTER))
    assert relative["value"] == max(BF_GAUGE) and relative["window"]["step"] == 60
    assert relative["window"]["end"] - relative["window"]["start"] == 3 * 3600
    assert unreduced["value"] is None and "set reduce" in unreduced["no_value_reason"]
    assert unreduced["samples"] == len(BF_GAUGE)


def test_empty_nan_infinities_and_several_series_are_named(tmp_path, prom, window_start):
    runs = [{"url": prom.url, "query": query} for query in
            ("mq_absent_metric", "0/0", "mq_nan", "1/0", "mq_pinf", "-1/0", "mq_ninf", "mq_multi")]
    runs += [{"url": prom.url, "query": "bf_nan", "reduce": "avg", **window(window_start, BF_WITH_NAN)},
             {"url": prom.url, "query": "mq_absent_metric", "range": "10m", "reduce": "max"},
             {"url": prom.url, "query": "mq_multi", "reduce": "max"}]
    results, dummy = query_many(tmp_path, runs)
    absent, nan, nan_scraped, pinf, pinf_scraped, ninf, ninf_scraped, multi, range_nan, range_empty, ambiguous = results
    for result in (absent, range_empty):
        assert result["healthy"] is True and result["empty"] is True and result["value"] is None, result
        assert result["series"] == [] and result["special"] is None
    assert "empty (no series)" in absent["msg"]
    for result, special in ((nan, "NaN"), (nan_scraped, "NaN"), (pinf, "+Inf"), (pinf_scraped, "+Inf"),
                            (ninf, "-Inf"), (ninf_scraped, "-Inf"), (range_nan, "NaN")):
        assert result["value"] is None and result["special"] == special and result["empty"] is False, result
    assert nan["result_type"] == "scalar" and nan_scraped["result_type"] == "vector"
    assert range_nan["series"][0]["values"][1][1] == "NaN"
    assert multi["value"] is None and len(multi["series"]) == 2 and "2 series came back" in multi["no_value_reason"]
    assert ambiguous["failed"] is True and ambiguous["error_kind"] == "ambiguous" and len(ambiguous["series"]) == 2
    assert "reduce max needs one series, but the query returned 2 series" in ambiguous["msg"]


@pytest.mark.compat
def test_failures_are_classified(tmp_path, prom, prom_auth):
    unavailable = (503, "application/json", b'{"status":"error","errorType":"unavailable","error":"too many queries"}')
    with MisbehavingServer([("POST", "/stall/api/v1/query", drip_headers()),
                            ("POST", "/busy/api/v1/query", unavailable)]) as server:
        runs = [
            {"url": prom.url, "query": "rate(mq_gauge[5m]"},
            {"url": prom_auth.url, "query": "vector(1)", "bearer_token": SECRET},
            {"url": prom_auth.url, "query": "vector(1)", "headers": prom_auth.auth_headers},
            {"url": server.url + "/stall", "query": "vector(1)", "timeout": 2, "bearer_token": SECRET},
            {"url": f"http://127.0.0.1:{free_port()}", "query": "vector(1)"},
            {"url": server.url + "/busy", "query": "vector(1)"},
        ]
        results, proc = query_many(tmp_path, runs)
    bad, refused_token, basic_auth, stalled, refused, busy = results
    assert bad["failed"] is True and bad["error_kind"] == "bad_query" and bad["status"] == 400
    assert bad["msg"].startswith("bad PromQL: ") and "unclosed left parenthesis" in bad["msg"]
    assert "series" not in bad and "value" not in bad
    assert refused_token["failed"] is True and refused_token["error_kind"] == "unauthorized"
    assert refused_token["status"] == 401 and "refused the credentials (HTTP 401)" in refused_token["msg"]
    assert basic_auth["failed"] is False and basic_auth["value"] == 1.0
    assert stalled["failed"] is True and "did not answer POST /stall/api/v1/query within 2.0 s" in stalled["msg"]
    assert stalled["duration_ms"] < (2.0 + LOAD_MARGIN_S) * 1000
    assert refused["failed"] is True and "cannot reach the Prometheus API" in refused["msg"]
    assert busy["failed"] is True and "unavailable (HTTP 503, unavailable: too many queries)" in busy["msg"]
    for result in (stalled, refused, busy):  # could not measure: nothing a gate could take for a figure
        assert "error_kind" not in result and "value" not in result and result["healthy"] is False
        assert result["error"] == result["msg"]
    assert SECRET not in proc.stdout + proc.stderr


BAD_INPUT = [
    ({"range": "1h", "start": 1}, "parameters are mutually exclusive: range|start"),
    ({"range": "5 minutes"}, "range: invalid duration '5 minutes'"),
    ({"range": "-5m"}, "range: invalid duration '-5m'"),
    ({"step": "1m"}, "step applies to a range query only"),
    ({"start": 2000, "end": 1000}, "end (1000.0) must be after start (2000.0)"),
    ({"end": 1000}, "missing parameter(s) required by 'end': start"),
    ({"start": "yesterday"}, "start 'yesterday' is neither seconds since the epoch nor an RFC 3339 time"),
    ({"start": "2026-01-01T00:00:00"}, "has no time zone"),
    ({"range": "30d", "step": "1s"}, "use a step of at least 236 s"),
    ({"reduce": "median"}, "value of reduce must be one of: last, min, max, avg, sum, increase, got: median"),
    ({"timeout": "soon"}, "argument 'timeout' is of type"),
    ({"timeout": 0}, "timeout must be a number of seconds greater than 0"),
    ({"query": " "}, "query must be a PromQL expression"),
    ({"bogus": 1}, "Unsupported parameters for (emp.deploy.metric_query) module: bogus"),
    ({"url": "ftp://127.0.0.1/x"}, "the URL scheme is 'ftp', not http:// or https://"),
    ({"headers": {"X-Key": ["a-list-not-a-string"]}}, "headers['X-Key'] must be a string"),
]


def test_bad_input_is_refused_with_a_clear_sentence(tmp_path):
    runs = [{"url": f"http://127.0.0.1:{free_port()}", "query": "vector(1)", **args} for args, dummy in BAD_INPUT]
    results, dummy = query_many(tmp_path, runs)
    for result, (args, words) in zip(results, BAD_INPUT):
        assert result["failed"] is True and words in result["msg"], (args, result["msg"])


def test_check_mode_measures_as_a_normal_run(tmp_path, prom):
    (result,), dummy = query_many(tmp_path, [{"url": prom.url, "query": "mq_gauge"}], check=True)
    assert result["value"] == GAUGE and result["changed"] is False and "skipped" not in result


def test_the_token_never_appears_in_any_output(tmp_path, prom_auth):
    with MisbehavingServer([("POST", "/api/v1/query", (500, "text/plain", f"echo {SECRET}".encode()))]) as server:
        runs = [{"url": prom_auth.url, "query": "vector(1)", "bearer_token": SECRET},
                {"url": server.url, "query": "vector(1)", "bearer_token": SECRET},
                {"url": server.url, "query": "vector(1)", "headers": {"X-Api-Key": SECRET}}]
        results, proc = query_many(tmp_path, runs, verbosity=["-vvv"])
    assert all(result["failed"] for result in results)
    assert SECRET not in proc.stdout + proc.stderr
    assert SECRET not in json.dumps(results)
    assert "echo ********" in results[1]["msg"]


def gate(name: str, args: dict, criteria: list[str], samples: int = 2, interval: float = 0.5) -> dict:
    return {"name": f"gate {name}", "register": f"r_{name.replace('-', '_')}", "ignore_errors": True,
            "emp.deploy.gate": {"name": name, "component": "metrics", "samples": samples, "interval": interval,
                                "probe": {"module": "emp.deploy.metric_query", "args": args},
                                "criteria": criteria}}


@pytest.mark.compat
def test_gates_decide_on_metric_queries(tmp_path, prom):
    down = {"url": f"http://127.0.0.1:{free_port()}", "query": "vector(1)", "timeout": 2}
    gates = [
        gate("go", {"url": prom.url, "query": "mq_gauge"}, ["not result.empty", f"result.value == {GAUGE}"]),
        gate("nogo", {"url": prom.url, "query": "mq_gauge"}, ["result.value < 10"]),
        gate("down", down, ["result.value < 10"]),
        gate("bad-query", {"url": prom.url, "query": "rate(mq_gauge[5m]"}, ["result.value < 10"], samples=3),
        gate("empty", {"url": prom.url, "query": "mq_absent_metric"}, ["result.value < 100"]),
        gate("nan", {"url": prom.url, "query": "0/0"}, ["result.value < 100"]),
        gate("baseline-flat", {"url": prom.url, "query": "mq_gauge"},
             ["result.value <= baseline.value * 1.10"], samples=3, interval=2),
        gate("baseline-growing", {"url": prom.url, "query": "mq_growing"},
             ["result.value <= baseline.value * 1.10"], samples=3, interval=2),
    ]
    names = [g["emp.deploy.gate"]["name"] for g in gates]
    out = tmp_path / "gates.json"
    save = {"name": "Save the gate records", "ansible.builtin.copy": {
        "content": "{{ {" + ", ".join(f"'{n}': r_{n.replace('-', '_')}.emp_gate" for n in names) + "} | to_json }}",
        "dest": str(out), "mode": "0600"}}
    playbook = tmp_path / "gates.yml"
    playbook.write_text(json.dumps([{"name": "Metric gates", "hosts": "sandbox", "gather_facts": False,
                                     "tasks": gates + [save]}]))
    proc = run_playbook(playbook, env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports")})
    assert out.exists(), proc.stdout[-4000:] + proc.stderr[-2000:]
    records = json.loads(out.read_text())
    decisions = {name: records[name]["decision"] for name in names}
    assert decisions == {"go": "GO", "nogo": "NO-GO", "down": "NO-GO", "bad-query": "NO-GO", "empty": "NO-GO",
                         "nan": "NO-GO", "baseline-flat": "GO", "baseline-growing": "NO-GO"}, records
    down_record = records["down"]
    assert down_record["counts"]["errors"] == 2 and down_record["counts"]["passed"] == 0
    assert "could not measure in any of 2 samples: cannot reach the Prometheus API" in down_record["reason"]
    bad = records["bad-query"]  # a failure, not a could-not-measure error: the gate stops at the first sample
    assert bad["counts"]["failed"] == 1 and bad["counts"]["taken"] == 1 and bad["stopped_early"] is True
    assert "bad PromQL: " in bad["reason"]
    for name in ("empty", "nan"):
        assert records[name]["counts"]["passed"] == 0, records[name]
    growing = records["baseline-growing"]
    assert growing["counts"]["failed"] >= 1 and "result.value <= baseline.value * 1.10 did not hold" in growing["reason"]
    assert records["baseline-flat"]["counts"]["passed"] == 3
