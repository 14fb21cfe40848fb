from __future__ import annotations

import pytest

from ansible_collections.emp.deploy.plugins.modules import redis_health as module
from servers import LOAD_MARGIN_S

DEFAULTS = {key: spec.get("default") for key, spec in {**module.REDIS_CONNECTION_ARGSPEC, **module.THRESHOLD_ARGSPEC}.items()}


def params(**overrides):
    merged = dict(DEFAULTS)
    merged.update(overrides)
    assert module.validate_options(merged) is None
    return merged


def report(**overrides):
    base = {
        "server": {"version": "7.0.15"},
        "latency_ms": {"samples": 10, "p95": 1.0},
        "memory": {"ratio": 0.1, "used_bytes": 100, "ratio_basis": "maxmemory"},
        "clients": {"connected": 3, "expected": {}},
        "functions": {},
        "queue": {"pending": 0},
        "workers": {"live_count": 1, "active_count": 1, "scanned": 1, "truncated": False, "live_estimate": 1},
    }
    base.update(overrides)
    return base


def test_count_clients_by_name_leaves_out_the_probe():
    clients = [{"id": "1", "name": "emp-api"}, {"id": "2", "name": "emp-api"}, {"id": "3", "name": ""},
               {"id": "4", "name": "emp-deploy-probe"}, {"id": "5", "name": "emp-deploy-probe"}]
    # its own connection by id, other probes by name
    assert module.count_clients_by_name(clients, module.probe_matcher(4, "emp-deploy-probe")) == ({"emp-api": 2}, 1)


def test_an_unnamed_probe_leaves_out_only_its_own_connection():
    clients = [{"id": "3", "name": ""}, {"id": "7", "name": ""}, {"id": "8", "name": "emp-api"}]
    assert module.count_clients_by_name(clients, module.probe_matcher(7, "")) == ({"emp-api": 1}, 1)
    section = module.clients_section({"connected_clients": 3}, clients, module.probe_matcher(7, ""), {})
    assert section["connected"] == 2 and section["connected_total"] == 3


def test_patterns_count_together():
    by_name = {"emp-worker:a": 1, "emp-worker:b": 2, "emp-api": 1}
    assert module.count_matching(by_name, "emp-worker*") == 3
    assert module.count_matching(by_name, "emp-api") == 1
    assert module.count_matching(by_name, "emp-monitor") == 0


def test_memory_section_basis():
    assert module.memory_section({"used_memory": 50, "maxmemory": 100})["ratio"] == 0.5
    system = module.memory_section({"used_memory": 50, "maxmemory": 0, "total_system_memory": 1000})
    assert system["ratio"] == 0.05 and system["ratio_basis"] == "system"
    unknown = module.memory_section({"used_memory": 50})
    assert unknown["ratio"] is None and unknown["ratio_basis"] is None


def test_functions_answer_shapes():
    resp2 = [["library_name", "jobMatching", "engine", "LUA", "functions",
              [["name", "findMatchingJob", "description", None, "flags", []]]]]
    assert [module._pairs_to_dict(raw)["library_name"] for raw in resp2] == ["jobMatching"]


@pytest.mark.parametrize("overrides, sample, expected", [
    ({"max_latency_p95_ms": 0.5}, {}, "p95 PING latency 1.00 ms > 0.5 ms over 10 samples"),
    ({"max_memory_ratio": 0.05}, {}, "memory ratio 0.100 (100 of maxmemory) > 0.05"),
    ({"max_connected_clients": 2}, {}, "3 connected clients > 2"),
    ({"min_connected_clients": 4}, {}, "3 connected clients < 4 (not counting this probe)"),
    ({"expected_client_names": {"emp-api": 2}}, {"clients": {"connected": 1, "expected": {"emp-api": 1}}},
     "client 'emp-api' has 1 connection, expected at least 2"),
    ({"max_queue_depth": 0}, {"queue": {"pending": 4}}, "queue 'jobs:pending' holds 4 jobs > 0"),
    ({"min_live_workers": 2}, {}, "1 of 1 active workers have a live heartbeat, expected at least 2"),
    ({"max_client_growth": 0}, {"growth": {"delta": 2, "start": 1, "end": 3, "window_s": 5.0}},
     "connected clients grew by 2 (1 -> 3) in 5.0 s > 0"),
    ({"expected_functions": {"jobMatching": ["findMatchingJob"]}}, {"functions": None},
     "FUNCTION LIST is not available on Redis 7.0.15: functions need Redis 7 or later"),
])
def test_each_threshold_names_its_figure(overrides, sample, expected):
    assert module.threshold_problems(report(**sample), params(**overrides)) == [expected]


def test_no_thresholds_no_problems():
    assert module.threshold_problems(report(), params()) == []


@pytest.mark.parametrize("overrides, message", [
    ({"latency_samples": 0}, "latency_samples must be between 1 and 100000"),
    ({"wait_timeout": -1}, "wait_timeout must not be negative"),
    ({"heartbeat_key_template": "hb"}, "heartbeat_key_template must contain '{id}'"),
    ({"expected_functions": {"jobMatching": 3}}, "expected_functions['jobMatching'] must be a list"),
    ({"max_workers_scanned": 0}, "max_workers_scanned must be at least 1"),
])
def test_invalid_options(overrides, message):
    merged = dict(DEFAULTS)
    merged.update(overrides)
    assert message in module.validate_options(merged)


def test_wait_until_healthy_counts_an_outage(monkeypatch):
    outcomes = iter([module.ProbeError("down"), module.ProbeError("down"), (report(), [])])

    def fake_probe_once(_params, with_growth, deadline):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(module, "probe_once", fake_probe_once)
    _report, problems, wait = module.wait_until_healthy(params(wait_interval=0.01, wait_timeout=5), with_growth=False,
                                                        deadline=module.Deadline(60))
    assert problems == []
    assert wait["attempts"] == 3 and wait["outage_observed"] is True and wait["recovered"] is True
    assert wait["outage_s"] >= 0.01


def workers(active: int, scanned: int, live: int) -> dict:
    truncated = scanned < active
    return {"active_count": active, "scanned": scanned, "live_count": live, "truncated": truncated,
            "live_estimate": round(live * active / scanned) if truncated else live}


@pytest.mark.parametrize("sample, minimum, expected", [
    (workers(3, 3, 2), 3, "2 of 3 active workers have a live heartbeat, expected at least 3"),
    (workers(3, 3, 3), 3, None),
    # a bounded scan: the sample alone holds enough live workers
    (workers(200000, 10000, 4986), 4000, None),
    # a bounded scan: even every unscanned worker live would not be enough
    (workers(12000, 10000, 100), 11000, "at most 2100 of 12000 active workers can have a live heartbeat "
                                        "(100 live among the 10000 scanned, max_workers_scanned), expected at least 11000"),
    # a bounded scan that cannot decide: a problem, never a pass
    (workers(200000, 10000, 4986), 50000,
     "min_live_workers 50000 cannot be judged: the scan stopped at max_workers_scanned (10000 of 200000 active "
     "workers) and found 4986 live among them, an estimate of about 99720 live in all from that sample; raise "
     "max_workers_scanned to 200000 to judge it"),
    (workers(200000, 10000, 0), None, None),
])
def test_min_live_workers_on_a_bounded_scan(sample, minimum, expected):
    assert module.live_workers_problem(sample, minimum) == expected


def test_effective_timeout_adds_up_the_waits():
    assert module.effective_timeout(params()) == 35.0
    assert module.effective_timeout(params(wait_for_reconnect=True, wait_timeout=120)) == 155.0
    assert module.effective_timeout(params(max_client_growth=0, growth_window_s=10)) == 45.0
    assert module.effective_timeout(params(timeout=3, wait_for_reconnect=True)) == 3.0


@pytest.mark.parametrize("overrides, message", [
    ({"timeout": 0}, "timeout must be greater than 0, got 0"),
    ({"timeout": 5, "max_client_growth": 0, "growth_window_s": 10},
     "timeout (5 s) must be longer than growth_window_s (10 s), which max_client_growth waits"),
    ({"client_name": "two words"}, "client_name may hold only printable ASCII characters without spaces"),
])
def test_invalid_timeout_and_client_name(overrides, message):
    merged = dict(DEFAULTS)
    merged.update(overrides)
    assert message in module.validate_options(merged)


def test_a_wait_cut_by_the_overall_timeout_says_so(monkeypatch):
    def always_down(_params, with_growth, deadline):
        raise module.ProbeError("cannot connect to Redis at 127.0.0.1:1: Connection refused")

    monkeypatch.setattr(module, "probe_once", always_down)
    started = module.time.monotonic()
    _report, problems, wait = module.wait_until_healthy(params(wait_interval=0.01, wait_timeout=60),
                                                        with_growth=False, deadline=module.Deadline(0.3))
    assert module.time.monotonic() - started < 0.3 + LOAD_MARGIN_S  # the deadline, not the wait_timeout of 60 s
    assert wait["recovered"] is False
    assert problems[0].startswith("Redis at 127.0.0.1:6379 did not recover within the probe's overall timeout of 0.3 s (")


def test_service_health_problems_are_threshold_problems():
    sample = report(services={"webhook": {"healthy": False}},
                    service_problems=["service 'webhook' health has redis.connected=false, expected true"])
    assert module.threshold_problems(sample, params()) == ["service 'webhook' health has redis.connected=false, expected true"]
    assert "service_problems" not in sample  # the sentences go to problems, not into the result twice


def test_service_health_options_are_checked():
    bad = dict(DEFAULTS, service_health=[{"name": "api", "url": "redis://x/health", "expect": {}, "headers": {}}])
    assert module.validate_options(bad).startswith("service_health 'api': the URL scheme")
    assert module.validate_options(dict(DEFAULTS, service_health_timeout=0)) == \
        "service_health_timeout must be greater than 0, got 0"
