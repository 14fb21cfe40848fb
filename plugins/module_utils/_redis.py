# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Redis connections for the probes: one argument spec, one client factory, one error vocabulary."""

from __future__ import annotations

import socket
import traceback
from urllib.parse import urlsplit, urlunsplit

REDIS_IMPORT_ERROR: str | None
try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:
    REDIS_IMPORT_ERROR = traceback.format_exc()
    HAS_REDIS = False
else:
    REDIS_IMPORT_ERROR = None
    HAS_REDIS = True

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


def _tls_kwargs(params: dict) -> dict:
    kwargs = {
        "ssl_cert_reqs": "required" if params["validate_certs"] else "none",
        "ssl_check_hostname": params["validate_certs"],
    }
    if params.get("ca_path"):
        kwargs["ssl_ca_certs"] = params["ca_path"]
    if params.get("client_cert_path"):
        kwargs["ssl_certfile"] = params["client_cert_path"]
    if params.get("client_key_path"):
        kwargs["ssl_keyfile"] = params["client_key_path"]
    return kwargs


def build_client(params: dict):
    """A single-connection client with timeouts on every call and no hidden retries.

    redis-py 6+ retries with backoff by default, which would hide an outage and stretch
    the connect timeout several-fold: a probe must see the first failure as it happens.
    """
    kwargs = {
        "socket_connect_timeout": params["connect_timeout"],
        "socket_timeout": params["command_timeout"],
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "health_check_interval": 0,
        "single_connection_client": True,
        "client_name": params.get("client_name") or PROBE_CLIENT_NAME,
        "decode_responses": True,
        "protocol": 2,
    }
    if params.get("username"):
        kwargs["username"] = params["username"]
    if params.get("password"):
        kwargs["password"] = params["password"]
    url = params.get("url")
    if url:
        if urlsplit(url).scheme == "rediss":
            kwargs.update(_tls_kwargs(params))
        return redis.Redis.from_url(url, **kwargs)
    if params["tls"]:
        kwargs["ssl"] = True
        kwargs.update(_tls_kwargs(params))
    return redis.Redis(host=params["host"], port=params["port"], db=params["db"], **kwargs)


def scrub(text: str, secrets: list) -> str:
    """Removes every secret from a text meant for people (messages, problems)."""
    for secret in secrets:
        if secret:
            text = text.replace(str(secret), "********")
    return text


RESP_FIRST_BYTES = b"+-:$*_,#!=(%~>|"


def sniff_foreign_protocol(params: dict) -> str | None:
    """What a TCP peer that dropped the Redis handshake answers to a bare PING, if not RESP.

    A port that is not Redis (an HTTP server, say) closes the connection on the handshake,
    which redis-py reports as a bare 'connection closed': name what answers instead.
    """
    if params.get("url") or params.get("tls"):
        return None
    try:
        with socket.create_connection((params["host"], params["port"]), timeout=params["connect_timeout"]) as sock:
            sock.settimeout(params["command_timeout"])
            sock.sendall(b"PING\r\n")
            first = sock.recv(128)
    except OSError:
        return None
    if not first or first[:1] in RESP_FIRST_BYTES:
        return None
    return first.splitlines()[0].decode("ascii", "replace")[:80]


def explain_failure(exc: Exception, target: str, params: dict) -> str:
    """One sentence naming the target and the reason, never the password."""
    reason = str(exc) or type(exc).__name__
    closed_early = isinstance(exc, redis.exceptions.ConnectionError) and "closed by server" in reason
    foreign_answer = sniff_foreign_protocol(params) if closed_early else None
    if isinstance(exc, redis.exceptions.AuthenticationError) or any(
            marker in reason for marker in ("WRONGPASS", "NOAUTH", "invalid password", "invalid username-password")):
        user = params.get("username") or "default"
        sentence = f"authentication to Redis at {target} failed for user '{user}': {reason}"
    elif isinstance(exc, redis.exceptions.TimeoutError):
        sentence = (f"Redis at {target} did not answer in time (connect_timeout {params['connect_timeout']}s, "
                    f"command_timeout {params['command_timeout']}s): {reason}")
    elif isinstance(exc, redis.exceptions.ConnectionError) and "Protocol Error" in reason or isinstance(
            exc, redis.exceptions.InvalidResponse):
        sentence = f"{target} does not speak the Redis protocol ({reason}); is this the right port?"
    elif foreign_answer:
        sentence = (f"{target} does not speak the Redis protocol: it closed the connection and answers "
                    f"'{foreign_answer}'; is this the right port?")
    elif isinstance(exc, redis.exceptions.ConnectionError):
        sentence = f"cannot connect to Redis at {target}: {reason}"
    elif isinstance(exc, redis.exceptions.ResponseError):
        sentence = f"Redis at {target} refused a probe command: {reason}"
    else:
        sentence = f"probing Redis at {target} failed: {type(exc).__name__}: {reason}"
    return scrub(sentence, [params.get("password")])
