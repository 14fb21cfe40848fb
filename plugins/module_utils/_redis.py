# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Redis connections for the probes: one argument spec, one connection factory, one error vocabulary."""

from __future__ import annotations

from ansible_collections.emp.deploy.plugins.module_utils._resp import (
    ConnectFailed,
    ConnectionLost,
    Deadline,
    ProtocolMismatch,
    ReplyError,
    ReplyTimeout,
    RespConnection,
    UrlError,
    format_host_port,
    parse_redis_url,
    url_secret_candidates,
)

# The probe's own connection announces itself so that people (and other probes) can tell it apart.
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

URL_FORM = "redis://[[user]:password@]host[:port][/db]"
# what an authentication failure looks like: a wrong password, no password, or AUTH refused
AUTH_CODES = ("WRONGPASS", "NOAUTH")


def _client_name_problem(name: str | None) -> str | None:
    # Redis refuses names with spaces, newlines or other characters outside printable ASCII
    if name and not all("!" <= char <= "~" for char in name):
        return f"client_name may hold only printable ASCII characters without spaces, got {name!r}"
    return None


def validate_connection_params(params: dict) -> str | None:
    """A sentence describing what is wrong with the connection options, or None. Never quotes the URL."""
    for name in ("connect_timeout", "command_timeout"):
        if params[name] <= 0:
            return f"{name} must be greater than 0, got {params[name]}"
    url = params.get("url")
    if url:
        scheme = url.partition("://")[0] if "://" in url else ""
        if scheme.lower() not in ("redis", "rediss", "unix"):
            return f"url must start with redis://, rediss:// or unix://, got scheme '{scheme[:20] or '(none)'}'"
        try:
            parse_redis_url(url)
        except UrlError as exc:
            return f"url is malformed: {exc}; expected {URL_FORM}"
    elif not 0 < params["port"] < 65536:
        return f"port must be between 1 and 65535, got {params['port']}"
    return _client_name_problem(params.get("client_name"))


def connection_settings(params: dict) -> dict:
    """Host, port or socket path, TLS, database and credentials, from the URL or the options."""
    if params.get("url"):
        settings = parse_redis_url(params["url"])
    else:
        settings = {"host": params["host"].strip("[]"), "port": params["port"], "unix_path": None,
                    "tls": params["tls"], "db": params["db"], "username": None, "password": None}
    settings["username"] = params.get("username") or settings["username"]
    settings["password"] = params.get("password") or settings["password"]
    return settings


def describe_target(params: dict) -> str:
    """Where we connect, for messages: host:port, [IPv6]:port, or the URL without its credentials."""
    url = params.get("url")
    if not url:
        return format_host_port(params["host"].strip("[]"), params["port"])
    scheme = url.partition("://")[0].lower()
    try:
        settings = parse_redis_url(url)
    except UrlError:
        return f"{scheme}://(a URL that cannot be read)"
    if settings["unix_path"]:
        return settings["unix_path"]
    return f"{scheme}://{format_host_port(settings['host'], settings['port'])}/{settings['db']}"


def user_name(params: dict) -> str:
    try:
        return connection_settings(params)["username"] or "default"
    except UrlError:
        return "default"


def open_connection(params: dict, deadline: Deadline | None = None) -> RespConnection:
    """A connected, authenticated connection, every step within its timeout and the deadline, no retries."""
    settings = connection_settings(params)
    connection = RespConnection(
        host=settings["host"], port=settings["port"], unix_path=settings["unix_path"], tls=settings["tls"],
        ca_path=params.get("ca_path"), cert_path=params.get("client_cert_path"),
        key_path=params.get("client_key_path"), validate_certs=params["validate_certs"],
        connect_timeout=params["connect_timeout"], command_timeout=params["command_timeout"], deadline=deadline,
    )
    try:
        return connection.connect(username=settings["username"], password=settings["password"],
                                  db=settings["db"], client_name=params.get("client_name") or None)
    except BaseException:
        connection.close()
        raise


def connection_secrets(params: dict) -> list:
    """Every secret the options carry, the URL's password included, to scrub from output."""
    secrets = [params.get("password")]
    if params.get("url"):
        try:
            secrets.append(parse_redis_url(params["url"])["password"])
        except UrlError:  # a URL that cannot be read: everything that may be its password
            secrets += url_secret_candidates(params["url"])
    # longest first, so that a secret containing another is replaced whole
    return sorted({secret for secret in secrets if secret}, key=len, reverse=True)


def scrub(text: str, secrets: list) -> str:
    """Removes every secret from a text meant for people (messages, problems)."""
    for secret in secrets:
        if secret:
            text = text.replace(str(secret), "********")
    return text


def acl_name(command: str) -> str:
    """CLIENT LIST -> client|list, the name ACL SETUSER uses."""
    return command.lower().replace(" ", "|")


def _explain_reply_error(exc: ReplyError, target: str, params: dict) -> str:
    command = exc.command or "a command"
    if exc.code in AUTH_CODES or exc.command == "AUTH":
        return f"authentication to Redis at {target} failed for user '{user_name(params)}': {exc}"
    if exc.code == "NOPERM":
        user = user_name(params)
        denied = f"permission denied: user '{user}' is authenticated at Redis {target} but may not"
        if "key" in str(exc).lower():
            return (f"{denied} read the keys {command} needs ({exc}); "
                    f"grant read access with ACL SETUSER {user} %R~<pattern>")
        return (f"{denied} run {command}, which the probe needs ({exc}); "
                f"grant it with ACL SETUSER {user} +{acl_name(command)}")
    return f"Redis at {target} refused {command}: {exc}"


def explain_failure(exc: BaseException, target: str, params: dict) -> str:
    """One sentence naming the target and the reason, never a password."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, ReplyError):
        sentence = _explain_reply_error(exc, target, params)
    elif isinstance(exc, (ReplyTimeout, ConnectionLost)):
        sentence = f"Redis at {target} {reason}"
    elif isinstance(exc, ProtocolMismatch):
        sentence = f"{target} does not speak the Redis protocol: it {reason}; is this the right port?"
    elif isinstance(exc, ConnectFailed):
        sentence = f"cannot connect to Redis at {target}: {reason}"
    else:
        sentence = f"probing Redis at {target} failed: {type(exc).__name__}: {reason}"
    return scrub(sentence, connection_secrets(params))


def scan_members(conn, key: str, limit: int, batch: int = 500) -> tuple[list, bool]:
    """Up to `limit` distinct members of a set by SSCAN (never SMEMBERS, which reads a huge set whole), and
    whether the scan stopped before the end of the set."""
    seen: dict = {}  # SSCAN may return a member twice; a dict keeps the order the scan met them in
    cursor = "0"
    while True:
        cursor, found = conn.execute("SSCAN", key, cursor, "COUNT", batch)
        seen.update(dict.fromkeys(found))
        if cursor == "0" or len(seen) >= limit:
            break
    members = list(seen)
    return members[:limit], cursor != "0" or len(members) > limit
