from __future__ import annotations

import pytest

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
    assert _redis.describe_target(params(url="redis://:pa#ss@cache:6380/2")) == "redis://cache:6380/2"
    assert _redis.describe_target(params(url="redis://:se#cret@cache:bad/2")) == "redis://(a URL that cannot be read)"


def test_describe_target_keeps_ipv6_brackets():
    assert _redis.describe_target(params(url="redis://[::1]:6390/0")) == "redis://[::1]:6390/0"
    assert _redis.describe_target(params(host="::1", port=6390)) == "[::1]:6390"
    assert _redis.describe_target(params(host="[::1]", port=6390)) == "[::1]:6390"


def test_validate_connection_params():
    assert _redis.validate_connection_params(params()) is None
    assert "connect_timeout must be greater than 0" in _redis.validate_connection_params(params(connect_timeout=0))
    assert "got scheme 'http'" in _redis.validate_connection_params(params(url="http://x"))
    assert "port must be between 1 and 65535" in _redis.validate_connection_params(params(port=70000))
    assert "url is malformed" in _redis.validate_connection_params(params(url="redis://h:notaport/0"))
    assert _redis.validate_connection_params(params(client_name="")) is None
    assert _redis.validate_connection_params(params(client_name="emp probe")) == \
        "client_name may hold only printable ASCII characters without spaces, got 'emp probe'"


@pytest.mark.parametrize("url", [
    "redis://:Qx#7Zk@127.0.0.1:notaport/0",
    "redis://user:Qx#7Zk/Wv@host:99999/0",
    "redis://:Qx#7Zk@host/notadb",
    "redis://:Qx#7Zk@ho st/0",
    "redis://:Qx7Zk@host:notaport/0",
])
def test_a_malformed_url_never_shows_its_password(url):
    message = _redis.validate_connection_params(params(url=url))
    assert message.startswith("url is malformed: ")
    for fragment in ("Qx", "7Zk", "Wv"):
        assert fragment not in message


def test_connection_secrets_include_the_url_password():
    assert _redis.connection_secrets(params(password="a", url="redis://u:b%40c@h:1/0")) == ["b@c", "a"]
    assert "pw" in _redis.connection_secrets(params(url="redis://:pw@h:bad/0"))
    assert _redis.connection_secrets(params(url="redis://:pa#ss@h:1/0")) == ["pa#ss"]
    assert _redis.connection_secrets(params()) == []


def test_explain_failure_scrubs_the_password():
    secret = "hunter2-very-secret"
    exc = _resp.ReplyError(f"WRONGPASS invalid username-password pair {secret}", command="AUTH")
    sentence = _redis.explain_failure(exc, "127.0.0.1:6379", params(password=secret))
    assert secret not in sentence
    assert sentence.startswith("authentication to Redis at 127.0.0.1:6379 failed for user 'default'")


def test_explain_failure_classes():
    p = params(connect_timeout=1.0, command_timeout=2.0)
    assert _redis.explain_failure(_resp.ReplyTimeout("did not answer in time: no reply to PING within 2 s "
                                                     "(command_timeout)"), "h:1", p) == \
        "Redis at h:1 did not answer in time: no reply to PING within 2 s (command_timeout)"
    assert _redis.explain_failure(_resp.ProtocolMismatch(b"HTTP/1.0 400 Bad\r\n"), "h:1", p) == \
        "h:1 does not speak the Redis protocol: it answered 'HTTP/1.0 400 Bad' instead of a Redis reply; " \
        "is this the right port?"
    assert _redis.explain_failure(_resp.ConnectFailed("Connection refused"), "h:1", p) == \
        "cannot connect to Redis at h:1: Connection refused"
    assert _redis.explain_failure(_resp.ConnectionLost("closed the connection without answering PING"), "h:1", p) == \
        "Redis at h:1 closed the connection without answering PING"
    assert _redis.explain_failure(_resp.ReplyError("NOAUTH Authentication required.", command="PING"), "h:1", p) \
        .startswith("authentication to Redis at h:1 failed for user 'default'")
    assert _redis.explain_failure(_resp.ReplyError("ERR unknown command", command="FOO"), "h:1", p).startswith(
        "Redis at h:1 refused FOO: ERR unknown command")


def test_noperm_is_a_permission_problem_naming_the_command():
    exc = _resp.ReplyError("NOPERM User probe has no permissions to run the 'client|list' command",
                           command="CLIENT LIST")
    sentence = _redis.explain_failure(exc, "h:1", params(username="probe"))
    assert sentence == ("permission denied: user 'probe' is authenticated at Redis h:1 but may not run CLIENT LIST, "
                        "which the probe needs (NOPERM User probe has no permissions to run the 'client|list' "
                        "command); grant it with ACL SETUSER probe +client|list")
    keys = _resp.ReplyError("NOPERM No permissions to access a key", command="ZCARD")
    assert "may not read the keys ZCARD needs" in _redis.explain_failure(keys, "h:1", params(username="probe"))
    assert "authentication" not in sentence
