# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Redis connections for the probes: one argument spec, one connection factory, one error vocabulary."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ansible_collections.emp.deploy.plugins.module_utils._resp import (
    AUTH_CODES,
    ConnectFailed,
    ProtocolMismatch,
    ReplyError,
    ReplyTimeout,
    RespConnection,
    parse_redis_url,
)

# The probe's own connection announces itself so that client counts can leave it out.
PROBE_CLIENT_NAME = "emp-deploy-probe"

REDIS_CONNECTION_ARGSPEC: dict = dict(
    url=dict(type="str"),
    host=dict(type="str", default="127.0.0.1"),
    port=dict(type="int", default=6379),
    username=dict(type="str"),
    password=dict(type="str", no_log=True),
    db=dict(type="int", default=0),
    tls=dict(type="bool", default=False),
    ca_path=dict(type="path"),
    client_cert_path=dict(type="path"),
    client_key_path=dict(type="path"),
    validate_certs=dict(type="bool", default=True),
    connect_timeout=dict(type="float", default=5.0),
    command_timeout=dict(type="float", default=5.0),
    client_name=dict(type="str", default=PROBE_CLIENT_NAME),
)

REDIS_CONNECTION_MUTUALLY_EXCLUSIVE: list = [("url", "host"), ("url", "port"), ("url", "db"), ("url", "tls")]


def validate_connection_params(params: dict) -> str | None:
    """A sentence describing what is wrong with the connection options, or None."""
    for name in ("connect_timeout", "command_timeout"):
        if params[name] <= 0:
            return f"{name} must be greater than 0, got {params[name]}"
    url = params.get("url")
    if url:
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            return f"url must start with redis://, rediss:// or unix://, got scheme '{scheme or '(none)'}'"
        try:
            parse_redis_url(url)
        except ValueError as exc:
            return f"url is malformed ({exc}); expected redis://[[user]:password@]host[:port][/db]"
    elif not 0 < params["port"] < 65536:
        return f"port must be between 1 and 65535, got {params['port']}"
    return None


def describe_target(params: dict) -> str:
    """Where we connect, for messages: host:port or the URL without its credentials."""
    url = params.get("url")
    if not url:
        return f"{params['host']}:{params['port']}"
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def open_connection(params: dict) -> RespConnection:
    """A connected, authenticated connection with timeouts on every call and no retries."""
    if params.get("url"):
        settings = parse_redis_url(params["url"])
    else:
        settings = {"host": params["host"], "port": params["port"], "unix_path": None, "tls": params["tls"],
                    "db": params["db"], "username": None, "password": None}
    connection = RespConnection(
        host=settings["host"], port=settings["port"], unix_path=settings["unix_path"], tls=settings["tls"],
        ca_path=params.get("ca_path"), cert_path=params.get("client_cert_path"),
        key_path=params.get("client_key_path"), validate_certs=params["validate_certs"],
        connect_timeout=params["connect_timeout"], command_timeout=params["command_timeout"],
    )
    try:
        return connection.connect(
            username=params.get("username") or settings["username"],
            password=params.get("password") or settings["password"],
            db=settings["db"],
            client_name=params.get("client_name") or PROBE_CLIENT_NAME,
        )
    except Exception:
        connection.close()
        raise


def connection_secrets(params: dict) -> list:
    """Every secret the options carry, the URL's password included, to scrub from output."""
    secrets = [params.get("password")]
    if params.get("url"):
        try:
            secrets.append(parse_redis_url(params["url"])["password"])
        except ValueError:  # a malformed URL: fall back to its raw user-info part
            secrets.append(urlsplit(params["url"]).netloc.rpartition("@")[0].partition(":")[2])
    return [secret for secret in secrets if secret]


def scrub(text: str, secrets: list) -> str:
    """Removes every secret from a text meant for people (messages, problems)."""
    for secret in secrets:
        if secret:
            text = text.replace(str(secret), "********")
    return text


def explain_failure(exc: Exception, target: str, params: dict) -> str:
    """One sentence naming the target and the reason, never a password."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, ReplyError) and exc.code in AUTH_CODES:
        user = params.get("username") or (parse_redis_url(params["url"])["username"] if params.get("url") else None)
        sentence = f"authentication to Redis at {target} failed for user '{user or 'default'}': {reason}"
    elif isinstance(exc, ReplyTimeout):
        sentence = (f"Redis at {target} did not answer in time (connect_timeout {params['connect_timeout']}s, "
                    f"command_timeout {params['command_timeout']}s): {reason}")
    elif isinstance(exc, ProtocolMismatch):
        sentence = f"{target} does not speak the Redis protocol: it {reason}; is this the right port?"
    elif isinstance(exc, ConnectFailed):
        sentence = f"cannot connect to Redis at {target}: {reason}"
    elif isinstance(exc, ReplyError):
        sentence = f"Redis at {target} refused a probe command: {reason}"
    else:
        sentence = f"probing Redis at {target} failed: {type(exc).__name__}: {reason}"
    return scrub(sentence, connection_secrets(params))
