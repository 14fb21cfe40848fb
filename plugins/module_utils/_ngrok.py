# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pure helpers for ngrok tunnels: upstream addresses, tunnel plans, error pages, the agent config.

Nothing here touches the network or the file system, so every rule can be unit tested.

Why upstreams are parsed instead of compared as strings: the old health script compared the
cloud API's ``forwards_to`` (``http://localhost:3331``) with a string it built itself, while the
agent reports ``config.addr`` as the tunnel was created (``3331``, ``localhost:3331``,
``127.0.0.1:3331``, ``http://localhost:3331``). The strings rarely matched, so it restarted
healthy tunnels and missed wrong ones. Here both sides become (scheme, host, port) with every
loopback name folded into one.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, NamedTuple
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain", "ip6-localhost"})
PROTOS = ("http", "tcp")
ERROR_CODE_PATTERN = re.compile(r"ERR_NGROK_\d+")
ERROR_HEADER = "ngrok-error-code"

# The ngrok errors a health check can meet, in words an on-call engineer can act on.
NGROK_ERRORS = {
    "ERR_NGROK_3200": "the endpoint is offline (no agent serves this URL any more)",
    "ERR_NGROK_8012": "the agent could not connect to the upstream (connection refused)",
    "ERR_NGROK_3004": "the upstream returned an invalid or incomplete HTTP response",
    "ERR_NGROK_6024": "ngrok showed its browser warning page instead of forwarding the request",
    "ERR_NGROK_4018": "the agent has no authtoken",
    "ERR_NGROK_105": "the agent's authtoken is malformed",
}


class Upstream(NamedTuple):
    """Where a tunnel forwards to, normalised so that equal upstreams compare equal."""

    scheme: str  # http, https or tcp
    host: str  # loopback names folded to "localhost"
    port: int

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.scheme in ("http", "tcp") else f"{self.scheme}://{host}:{self.port}"

    @property
    def connect_host(self) -> str:
        """Where to open a TCP connection to test that the upstream listens."""
        return "127.0.0.1" if self.host == "localhost" else self.host


class TunnelPlan(NamedTuple):
    action: str  # none, create or replace
    reason: str


def normalize_host(host: str) -> str:
    host = host.strip("[]").lower()
    return "localhost" if host in LOOPBACK_HOSTS else host


def proto_family(proto: str | None) -> str:
    """ngrok v3 reports http tunnels as https; both are the http family."""
    proto = (proto or "").lower()
    return "http" if proto in ("http", "https") else proto


def parse_upstream(addr: Any, proto: str) -> Upstream:
    """Parses what ngrok accepts as ``addr``: ``3331``, ``host:3331``, ``http(s)://host[:port]``, ``tcp://host:port``.

    Raises ValueError with a sentence naming the address.
    """
    family = proto_family(proto)
    if family not in PROTOS:
        raise ValueError(f"proto must be one of {', '.join(PROTOS)}, got '{proto}'")
    text = str(addr if addr is not None else "").strip()
    if not text:
        raise ValueError("addr is empty: give the upstream port or address, e.g. 3331 or localhost:3331")
    default_scheme = "tcp" if family == "tcp" else "http"
    port: int | None
    try:
        if text.isdigit():
            scheme, host, port = default_scheme, "localhost", int(text)
        elif "://" in text:
            parts = urlsplit(text)
            scheme, host, port = parts.scheme.lower(), parts.hostname or "", parts.port
            allowed = ("tcp",) if family == "tcp" else ("http", "https")
            if scheme not in allowed:
                raise ValueError(f"a {family} tunnel forwards to {' or '.join(s + '://' for s in allowed)} addresses")
            if port is None:
                port = {"http": 80, "https": 443}.get(scheme)
        else:
            parts = urlsplit("//" + text)
            scheme, host, port = default_scheme, parts.hostname or "", parts.port
    except ValueError as exc:
        raise ValueError(f"addr '{text}' is not an upstream address: {exc}") from None
    if not host or port is None:
        raise ValueError(f"addr '{text}' is not an upstream address: expected a port, host:port or a URL")
    if not 0 < port < 65536:
        raise ValueError(f"addr '{text}' is not an upstream address: port {port} is out of range")
    return Upstream(scheme, normalize_host(host), port)


def tunnel_upstream(tunnel: Mapping[str, Any]) -> Upstream | None:
    """The upstream of a tunnel as the local agent API lists it (``config.addr``), or None if unreadable.

    Not ``forwards_to``: that field belongs to the cloud API, which the old script read.
    """
    config = tunnel.get("config") or {}
    try:
        return parse_upstream(config.get("addr"), tunnel.get("proto") or "http")
    except ValueError:
        return None


def summarize_tunnel(tunnel: Mapping[str, Any]) -> dict:
    upstream = tunnel_upstream(tunnel)
    return {
        "name": tunnel.get("name"),
        "public_url": tunnel.get("public_url"),
        "proto": tunnel.get("proto"),
        "addr": (tunnel.get("config") or {}).get("addr"),
        "upstream": upstream.label if upstream else None,
        "uri": tunnel.get("uri"),
    }


def plan_tunnel(current: Mapping[str, Any] | None, proto: str, upstream: Upstream, restart: bool = False) -> TunnelPlan:
    """What state=present (or restarted) has to do to the tunnel of that name."""
    if current is None:
        return TunnelPlan("create", "no tunnel of that name is running")
    found = tunnel_upstream(current)
    if proto_family(current.get("proto")) != proto_family(proto):
        return TunnelPlan("replace", f"it is a {current.get('proto')} tunnel, {proto} is wanted")
    if found is None:
        return TunnelPlan("replace", f"its upstream '{(current.get('config') or {}).get('addr')}' cannot be read")
    if found != upstream:
        return TunnelPlan("replace", f"it forwards to {found.label}, {upstream.label} is wanted")
    if restart:
        return TunnelPlan("replace", "state=restarted recreates it")
    return TunnelPlan("none", f"it already forwards to {upstream.label}")


def find_conflicts(tunnels: list, name: str, proto: str, upstream: Upstream) -> list:
    """Other tunnels that already forward to the same upstream with the same protocol."""
    conflicts = []
    for tunnel in tunnels:
        if tunnel.get("name") == name or proto_family(tunnel.get("proto")) != proto_family(proto):
            continue
        if tunnel_upstream(tunnel) == upstream:
            conflicts.append(summarize_tunnel(tunnel))
    return conflicts


def find_error_code(headers: Mapping[str, str] | None, body: str | bytes | None) -> str | None:
    """The ERR_NGROK code of an ngrok error page: its header first, else the first code in the body."""
    for key, value in (headers or {}).items():
        if key.lower() == ERROR_HEADER and value:
            return str(value).strip()
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    match = ERROR_CODE_PATTERN.search(body or "")
    return match.group(0) if match else None


def describe_error(code: str) -> str:
    return NGROK_ERRORS.get(code, "an ngrok error")


def health_url(public_url: str, path: str) -> str:
    return public_url.rstrip("/") + "/" + path.lstrip("/")


def judge_http_health(check: Mapping[str, Any], expect_status: list | None, expect_body: str | None,
                      upstream: Upstream | None = None) -> list:
    """Problem sentences for one HTTP health check; empty when it passed."""
    url = check.get("url")
    if check.get("broken"):
        return [f"GET {url} failed: {check.get('error')}"]
    if not check.get("reachable"):
        return [f"GET {url} failed: {check.get('error')}; the agent no longer serves this public URL"]
    status = check.get("status")
    code = check.get("error_code")
    if code:
        detail = describe_error(code)
        if code == "ERR_NGROK_8012" and upstream is not None:
            detail = f"the agent could not connect to the upstream {upstream.label} (connection refused)"
        return [f"GET {url} answered {status} with ngrok error {code}: {detail}"]
    problems = []
    if expect_status:
        if status not in expect_status:
            problems.append(f"GET {url} answered {status}, expected {' or '.join(str(s) for s in expect_status)}")
    elif status is None or status >= 500:
        problems.append(f"GET {url} answered {status}, a server error")
    if expect_body is not None and not check.get("body_matched"):
        problems.append(f"GET {url} answered {status} but its body does not contain '{expect_body}'")
    return problems


def judge_tcp_health(check: Mapping[str, Any]) -> list:
    target = check.get("url")
    if not check.get("reachable"):
        return [f"connecting to {target} failed: {check.get('error')}; the agent no longer serves this public address"]
    if check.get("closed_at_once"):
        return [f"{target} accepted the connection and closed it at once; the upstream most likely refused it"]
    return []


def web_addr_from_api_url(api_url: str) -> str:
    """The ``agent.web_addr`` that makes the agent serve its API at ``api_url``."""
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"api_url '{api_url}' is not an http:// URL of the agent, e.g. http://127.0.0.1:4040")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def api_base(api_url: str) -> str:
    """``http://127.0.0.1:4040``, ``.../`` and ``.../api`` all mean the same agent."""
    base = api_url.rstrip("/")
    return base[: -len("/api")] if base.endswith("/api") else base


def render_agent_config(authtoken: str, web_addr: str) -> str:
    """A v3 agent configuration. JSON-quoted scalars are valid YAML, whatever the token holds."""
    return (
        "# Written by emp.deploy.ngrok_tunnel. Tunnels are managed through the agent API.\n"
        'version: "3"\n'
        "agent:\n"
        f"  authtoken: {json.dumps(authtoken)}\n"
        f"  web_addr: {json.dumps(web_addr)}\n"
    )


def parse_version_output(text: str) -> str | None:
    match = re.search(r"ngrok version (\S+)", text or "")
    return match.group(1) if match else None
