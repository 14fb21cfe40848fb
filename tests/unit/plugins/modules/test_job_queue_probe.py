"""Unit tests of emp.deploy.job_queue_probe: option checks, the contract score, and how claims are judged.
The probe against real Redis, the sandbox API and worker is in tests/integration/test_job_queue_probe*.py."""
from __future__ import annotations

import pytest
from doc_spec_check import assert_documentation_matches

from ansible_collections.emp.deploy.plugins.doc_fragments.redis import ModuleDocFragment
from ansible_collections.emp.deploy.plugins.module_utils import _job_queue as queue
from ansible_collections.emp.deploy.plugins.modules import job_queue_probe as module

DEFAULTS = {key: spec.get("default") for key, spec in {**module.REDIS_CONNECTION_ARGSPEC,
                                                       **module.PROBE_ARGSPEC}.items()}


def params(**overrides) -> dict:
    merged = dict(DEFAULTS, api_url="http://127.0.0.1:3331")
    merged.update(overrides)
    return merged


def test_documentation_matches_the_argument_spec():
    assert_documentation_matches(module.DOCUMENTATION, ModuleDocFragment.DOCUMENTATION, module.REDIS_CONNECTION_ARGSPEC,
                                 {**module.REDIS_CONNECTION_ARGSPEC, **module.PROBE_ARGSPEC})


def test_the_defaults_are_valid():
    assert module.validate_options(params()) is None


@pytest.mark.parametrize("overrides, message", [
    ({"api_url": None}, "api_url is required to submit probe jobs (submit_jobs is 1)"),
    ({"api_url": None, "submit_jobs": 0, "end_to_end": True}, "api_url is required to submit probe jobs (submit_jobs is 0, end_to_end is true)"),
    ({"api_url": "api.internal:3331"}, "api_url cannot be used: the URL scheme is"),
    ({"submit_priority": 0}, "submit_priority must be at least 1, got 0"),
    ({"claim_jobs": -1}, "claim_jobs must be between 0 and 1000, got -1"),
    ({"claimers": 65}, "claimers must be between 1 and 64, got 65"),
    ({"submit_jobs": 101}, "submit_jobs must be between 0 and 100, got 101"),
    ({"min_workers": -1}, "min_workers must be at least 0, got -1"),
    ({"api_timeout": 0}, "api_timeout must be greater than 0, got 0"),
    ({"timeout": -1}, "timeout must be greater than 0, got -1"),
    ({"service_prefix": "emp probe"}, "service_prefix must be 1 to 64 printable ASCII characters without spaces"),
    ({"end_to_end": True, "end_to_end_service": " "}, "end_to_end_service must name the service"),
    ({"end_to_end": True, "timeout": 30.0}, "timeout (30 s) must be longer than end_to_end_timeout (60 s)"),
    ({"submit_jobs": 0, "claim_jobs": 0, "check_workers": False}, "nothing to check"),
    ({"port": 0}, "port must be between 1 and 65535, got 0"),
])
def test_bad_options_are_named(overrides, message):
    problem = module.validate_options(params(**overrides))
    assert problem is not None and problem.startswith(message), problem


def test_a_bad_redis_url_is_never_quoted():
    problem = module.validate_options(params(url="redis://:s3cret#x@host:port/0", host=None, port=None))
    assert problem is not None and "s3cret" not in problem


def test_every_secret_is_collected_for_scrubbing():
    found = module.secrets_of(params(password="pw-1", api_token="tok-2", api_url="https://user:pw-3@api.internal/"))
    assert {"pw-1", "tok-2", "pw-3"} <= set(found)


def test_the_contract_score_and_its_offset():
    now = 1_800_000_000.7
    score = queue.contract_score(50, now)
    assert score == 50e15 - 1_800_000_000
    # the implied submission time is within a double's resolution of the real one (8 s at priority 50)
    offset = module._score_offset(repr(score), 50, now)  # pylint: disable=protected-access
    assert abs(offset) <= module._score_ulp_s(50)  # pylint: disable=protected-access
    assert module._score_ulp_s(1) < 2  # pylint: disable=protected-access
    # a score in milliseconds instead of seconds is off by years
    wrong = module._score_offset(repr(50e15 - now * 1000), 50, now)  # pylint: disable=protected-access
    assert wrong > 1e9


def test_seed_priority_is_above_every_pending_job():
    assert queue.seed_priority(None) == 100
    top = queue.contract_score(5000, 1_800_000_000)
    assert queue.contract_score(queue.seed_priority(repr(top)), 1_800_000_100) > top


class FakeClaimer:  # the outcome of a finished claimer thread, as judge_claims reads it
    def __init__(self, worker_id, claims, exhausted=True, error=None, calls=None):
        self.worker_id, self.claims, self.exhausted, self.error = worker_id, claims, exhausted, error
        self.calls = len(claims) + 1 if calls is None else calls
        self.max_calls = 100


def state(ids, claimed_by):
    jobs = {job_id: {"pending": job_id not in claimed_by, "status": "assigned" if job_id in claimed_by else "pending",
                     "worker_id": claimed_by.get(job_id)} for job_id in ids}
    active: dict = {}
    for job_id, owner in claimed_by.items():
        active.setdefault(owner, set()).add(job_id)
    return jobs, active


def test_every_job_claimed_once_holds():
    ids = ["a", "b", "c"]
    claimers = [FakeClaimer("w0", ["a", "c"]), FakeClaimer("w1", ["b"])]
    jobs, active = state(ids, {"a": "w0", "c": "w0", "b": "w1"})
    figures, problems = queue.judge_claims(ids, claimers, jobs, active)
    assert problems == [] and figures["claimed_once"] == 3 and figures["claims"] == 3


def test_double_lost_unclaimed_and_foreign_claims_are_named_with_figures():
    ids = ["a", "b", "c", "d"]
    claimers = [FakeClaimer("w0", ["a", "x"]), FakeClaimer("w1", ["a"])]
    jobs, active = state(ids, {"a": "w1"})
    jobs["b"]["pending"] = False  # gone from the queue, handed to nobody
    figures, problems = queue.judge_claims(ids, claimers, jobs, active)
    assert (figures["claimed_more_than_once"], figures["lost"], figures["unclaimed"], figures["foreign_claims"]) \
        == (1, 1, 2, 1)
    assert problems[0].startswith("1 of 4 synthetic jobs claimed twice by 2 concurrent claimers")
    assert problems[1].startswith("1 of 4 synthetic jobs lost: gone from jobs:pending but handed to no claimer (b)")
    assert "handed 1 job that is not the probe's" in problems[2]
    assert problems[3].startswith("2 of 4 synthetic jobs were never claimed")


def test_a_claim_without_its_record_is_named():
    ids = ["a"]
    jobs, active = state(ids, {"a": "w0"})
    jobs["a"]["status"] = "pending"
    _figures, problems = queue.judge_claims(ids, [FakeClaimer("w0", ["a"])], jobs, active)
    assert problems == ["1 of 1 claimed synthetic jobs lack their claim record (job hash status=assigned with the "
                        "claimer's worker_id, gone from jobs:pending, listed in jobs:active:<worker>) (a)"]


def test_claimers_stopped_by_the_timeout_are_not_blamed_on_the_function():
    ids = ["a", "b"]
    jobs, active = state(ids, {"a": "w0"})
    _figures, problems = queue.judge_claims(ids, [FakeClaimer("w0", ["a"], exhausted=False, calls=1)], jobs, active)
    assert problems == ["1 of 2 synthetic jobs were still pending when the claimers stopped: the probe's timeout ran out"]


def test_heartbeat_age_reads_the_hash_then_the_key():
    now = queue.parse_iso("2026-01-01T00:01:00.000Z")
    assert queue.heartbeat_age(now, "2026-01-01T00:00:30.000Z", None) == 30.0
    assert queue.heartbeat_age(now, "", "2026-01-01T00:00:50.000Z") == 10.0
    assert queue.heartbeat_age(now, "yesterday", None) is None
