from __future__ import annotations

from ansible_collections.emp.deploy.plugins.module_utils import _redis, _resp

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
    assert "url is malformed" in _redis.validate_connection_params(params(url="redis://h:notaport/0"))


def test_connection_secrets_include_the_url_password():
    assert _redis.connection_secrets(params(password="a", url="redis://u:b%40c@h:1/0")) == ["a", "b@c"]
    assert _redis.connection_secrets(params(url="redis://:pw@h:bad/0")) == ["pw"]
    assert _redis.connection_secrets(params()) == []


def test_explain_failure_scrubs_the_password():
    secret = "hunter2-very-secret"
    exc = _resp.ReplyError(f"WRONGPASS invalid username-password pair {secret}")
    sentence = _redis.explain_failure(exc, "127.0.0.1:6379", params(password=secret))
    assert secret not in sentence
    assert sentence.startswith("authentication to Redis at 127.0.0.1:6379 failed for user 'default'")


def test_explain_failure_classes():
    p = params(connect_timeout=1.0, command_timeout=2.0)
    assert _redis.explain_failure(_resp.ReplyTimeout("no reply within 2.0s"), "h:1", p).startswith(
        "Redis at h:1 did not answer in time (connect_timeout 1.0s, command_timeout 2.0s)")
    assert _redis.explain_failure(_resp.ProtocolMismatch(b"HTTP/1.0 400 Bad\r\n"), "h:1", p) == \
        "h:1 does not speak the Redis protocol: it answered 'HTTP/1.0 400 Bad' instead of a Redis reply; " \
        "is this the right port?"
    assert _redis.explain_failure(_resp.ConnectFailed("Connection refused"), "h:1", p) == \
        "cannot connect to Redis at h:1: Connection refused"
    assert _redis.explain_failure(_resp.ReplyError("NOPERM no permissions"), "h:1", p).startswith(
        "authentication to Redis at h:1 failed")
    assert _redis.explain_failure(_resp.ReplyError("ERR unknown command"), "h:1", p).startswith(
        "Redis at h:1 refused a probe command")
