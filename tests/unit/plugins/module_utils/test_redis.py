from __future__ import annotations

import redis

from ansible_collections.emp.deploy.plugins.module_utils import _redis

BASE = {key: spec.get("default") for key, spec in _redis.REDIS_CONNECTION_ARGSPEC.items()}


def params(**overrides):
    merged = dict(BASE)
    merged.update(overrides)
    return merged


def test_describe_target_hides_credentials():
    assert _redis.describe_target(params()) == "127.0.0.1:6379"
    assert _redis.describe_target(params(url="redis://user:pw@cache:6380/2")) == "redis://cache:6380/2"
    assert _redis.describe_target(params(url="unix:///run/redis.sock?db=1")) == "/run/redis.sock"


def test_validate_connection_params():
    assert _redis.validate_connection_params(params()) is None
    assert "connect_timeout must be greater than 0" in _redis.validate_connection_params(params(connect_timeout=0))
    assert "got scheme 'http'" in _redis.validate_connection_params(params(url="http://x"))
    assert "port must be between 1 and 65535" in _redis.validate_connection_params(params(port=70000))


class CapturingRedis:
    """Stands in for redis.Redis to see what the factory asks for (the integration tests connect for real)."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    @classmethod
    def from_url(cls, url, **kwargs):
        return cls(url=url, **kwargs)


def test_client_never_retries_and_bounds_every_call(monkeypatch):
    monkeypatch.setattr(_redis.redis, "Redis", CapturingRedis)
    kwargs = _redis.build_client(params(connect_timeout=1.5, command_timeout=2.5)).kwargs
    assert kwargs["retry"].get_retries() == 0
    assert kwargs["retry_on_timeout"] is False
    assert kwargs["socket_connect_timeout"] == 1.5 and kwargs["socket_timeout"] == 2.5
    assert kwargs["client_name"] == "emp-deploy-probe"
    assert "ssl" not in kwargs


def test_tls_options_reach_the_client(monkeypatch):
    monkeypatch.setattr(_redis.redis, "Redis", CapturingRedis)
    kwargs = _redis.build_client(params(tls=True, ca_path="/ca.pem", validate_certs=False)).kwargs
    assert kwargs["ssl"] is True and kwargs["ssl_ca_certs"] == "/ca.pem"
    assert kwargs["ssl_cert_reqs"] == "none" and kwargs["ssl_check_hostname"] is False
    via_url = _redis.build_client(params(url="rediss://h:6380/0", ca_path="/ca.pem")).kwargs
    assert via_url["ssl_cert_reqs"] == "required" and via_url["url"] == "rediss://h:6380/0"
    plain_url = _redis.build_client(params(url="unix:///run/redis.sock")).kwargs
    assert "ssl_cert_reqs" not in plain_url


def test_explain_failure_scrubs_the_password():
    secret = "hunter2-very-secret"
    exc = redis.exceptions.AuthenticationError(f"WRONGPASS invalid username-password pair {secret}")
    sentence = _redis.explain_failure(exc, "127.0.0.1:6379", params(password=secret))
    assert secret not in sentence
    assert sentence.startswith("authentication to Redis at 127.0.0.1:6379 failed for user 'default'")


def test_explain_failure_classes():
    p = params(connect_timeout=1.0, command_timeout=2.0)
    assert _redis.explain_failure(redis.exceptions.TimeoutError("Timeout reading"), "h:1", p).startswith(
        "Redis at h:1 did not answer in time (connect_timeout 1.0s, command_timeout 2.0s)")
    assert "does not speak the Redis protocol" in _redis.explain_failure(
        redis.exceptions.InvalidResponse("Protocol Error: b'H'"), "h:1", p)
    assert _redis.explain_failure(redis.exceptions.ConnectionError("Error 111"), "h:1", p) == \
        "cannot connect to Redis at h:1: Error 111"
    assert _redis.explain_failure(redis.exceptions.ResponseError("NOPERM"), "h:1", p).startswith(
        "Redis at h:1 refused a probe command")
