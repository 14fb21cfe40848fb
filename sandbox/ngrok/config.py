"""Reading ngrok agent configuration: v3 files (and the v2 layout), merged in order."""
from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

try:  # PyYAML ships with ansible-core; plain JSON configs still work without it.
    import yaml
except ImportError:  # pragma: no cover - depends on the interpreter
    yaml = None

DEFAULT_WEB_ADDR = ("127.0.0.1", 4040)
PROTOS = ("http", "tcp")
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
# Real authtokens are long base62-ish strings; anything else is refused as ngrok refuses it.
AUTHTOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{8,}$")


class ConfigError(Exception):
    """A configuration ngrok would refuse; the message reads like ngrok's."""


@dataclass(frozen=True)
class Upstream:
    """Where a tunnel forwards to. ``display`` is what the API reports as ``config.addr``."""

    scheme: str  # http, https or tcp
    host: str
    port: int
    display: str

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class TunnelSpec:
    name: str
    proto: str  # http or tcp
    upstream: Upstream
    inspect: bool = True
    listen_port: int | None = None  # a public port pinned by the configuration
    source: str = "api"  # config, api or command_line


@dataclass
class AgentConfig:
    authtoken: str | None = None
    web_addr: tuple[str, int] | None = DEFAULT_WEB_ADDR  # None: web interface disabled
    web_addr_explicit: bool = False
    tunnels: dict[str, TunnelSpec] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    version: str | None = None


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "ngrok" / "ngrok.yml"


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- addresses
def _split_hostport(text: str, what: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit("//" + text)
        return parts.hostname or "", parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid {what} '{text}': {exc}") from None


def parse_upstream(addr: Any, proto: str) -> Upstream:
    """Accepts what ngrok accepts for ``addr``: ``3331``, ``host:3331``, ``http(s)://host[:port]``, ``tcp://host:port``."""
    if proto not in PROTOS:
        raise ConfigError(f"unsupported protocol '{proto}': the sandbox stand-in serves {', '.join(PROTOS)}")
    text = str(addr if addr is not None else "").strip()
    if not text:
        raise ConfigError("addr is required: an upstream port or address, e.g. 3331 or localhost:3331")
    default_scheme = "tcp" if proto == "tcp" else "http"
    if re.fullmatch(r"\d+", text):
        scheme, host, port, display = default_scheme, "localhost", int(text), f"localhost:{text}"
    elif "://" in text:
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"invalid addr '{text}': {exc}") from None
        scheme, host, display = parts.scheme.lower(), parts.hostname or "", text
        allowed = ("tcp",) if proto == "tcp" else ("http", "https")
        if scheme not in allowed:
            raise ConfigError(f"invalid addr '{text}': a {proto} tunnel forwards to {' or '.join(allowed)}:// addresses")
        if port is None:
            port = {"http": 80, "https": 443}.get(scheme)
    else:
        host, port = _split_hostport(text, "addr")
        scheme, display = default_scheme, text
    if not host or port is None:
        raise ConfigError(f"invalid addr '{text}': expected a port or host:port")
    if not 0 < port < 65536:
        raise ConfigError(f"invalid addr '{text}': port {port} is out of range")
    return Upstream(scheme=scheme, host=host, port=port, display=display)


def pinned_port(value: Any) -> int | None:
    """A public port the configuration asks for: only a loopback URL/address with a port pins one."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
            host, port = parts.hostname or "", parts.port
        except ValueError as exc:
            raise ConfigError(f"invalid url '{text}': {exc}") from None
    else:
        host, port = _split_hostport(text, "address")
    if port is None or not is_loopback(host):
        return None  # a real ngrok domain: the stand-in cannot serve it, so it assigns a port
    if not 0 < port < 65536:
        raise ConfigError(f"invalid url '{text}': port {port} is out of range")
    return port


def parse_web_addr(value: Any) -> tuple[str, int] | None:
    if value is False or (isinstance(value, str) and value.lower() == "false"):
        return None
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        host, port = "127.0.0.1", int(text)
    else:
        host, port = _split_hostport(text, "web_addr")
        host = host or "127.0.0.1"
    if port is None or not 0 <= port < 65536:
        raise ConfigError(f"invalid web_addr '{text}': expected host:port")
    if not is_loopback(host):
        raise ConfigError(f"web_addr '{text}': the sandbox stand-in serves its API on loopback only")
    return ("127.0.0.1" if host.lower() in LOOPBACK_NAMES else host.strip("[]"), port)


# --------------------------------------------------------------------------- files
def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"open {path}: no such file or directory") from None
    except OSError as exc:
        raise ConfigError(f"open {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text) if yaml is not None else json.loads(text or "{}")
    except Exception as exc:  # yaml.YAMLError or ValueError; the message is all we need
        raise ConfigError(f"Error reading configuration file '{path}': {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Error reading configuration file '{path}': the top level must be a map")
    return data


def merge(base: dict, extra: dict) -> dict:
    """Later files win; maps merge key by key, endpoint lists add up."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        elif isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged


def _tunnel_from_map(name: str, raw: Any) -> TunnelSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"tunnel '{name}': expected a map of options")
    proto = str(raw.get("proto") or "").lower()
    if not proto:
        raise ConfigError(f"tunnel '{name}': 'proto' is required")
    upstream = parse_upstream(raw.get("addr"), proto)
    pin = None
    for key in ("url", "domain", "hostname", "remote_addr"):
        pin = pin or pinned_port(raw.get(key))
    return TunnelSpec(name=name, proto=proto, upstream=upstream, inspect=bool(raw.get("inspect", True)),
                      listen_port=pin, source="config")


def _tunnel_from_endpoint(raw: Any, index: int) -> TunnelSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"endpoints[{index}]: expected a map")
    name = raw.get("name")
    if not name:
        raise ConfigError(f"endpoints[{index}]: 'name' is required")
    url = raw.get("url")
    proto = "tcp" if isinstance(url, str) and url.lower().startswith("tcp://") else "http"
    upstream_raw = raw.get("upstream")
    if not isinstance(upstream_raw, dict) or upstream_raw.get("url") in (None, ""):
        raise ConfigError(f"endpoint '{name}': 'upstream.url' is required")
    upstream = parse_upstream(upstream_raw.get("url"), proto)
    return TunnelSpec(name=str(name), proto=proto, upstream=upstream, listen_port=pinned_port(url),
                      source="config")


def parse_config(data: dict, files: list[str] | None = None) -> AgentConfig:
    config = AgentConfig(files=list(files or []))
    version = data.get("version")
    if version is not None or data:
        if str(version) not in ("2", "3"):
            raise ConfigError(f"Invalid configuration property value for 'version', '{version if version is not None else ''}': "
                              "must be one of \"2\" or \"3\"")
        config.version = str(version)
    agent = data.get("agent") or {}
    if not isinstance(agent, dict):
        raise ConfigError("'agent' must be a map")
    # v3 keeps these under agent:, v2 at the top level; ngrok still reads both.
    token = agent.get("authtoken", data.get("authtoken"))
    config.authtoken = str(token) if token not in (None, "") else None
    web_addr = agent.get("web_addr", data.get("web_addr"))
    if web_addr is not None:
        config.web_addr = parse_web_addr(web_addr)
        config.web_addr_explicit = True

    tunnels = data.get("tunnels") or {}
    if not isinstance(tunnels, dict):
        raise ConfigError("'tunnels' must be a map of tunnel names to their options")
    for name, raw in tunnels.items():
        config.tunnels[str(name)] = _tunnel_from_map(str(name), raw)
    endpoints = data.get("endpoints") or []
    if not isinstance(endpoints, list):
        raise ConfigError("'endpoints' must be a list")
    for index, raw in enumerate(endpoints):
        spec = _tunnel_from_endpoint(raw, index)
        if spec.name in config.tunnels:
            raise ConfigError(f"endpoint '{spec.name}' is defined twice")
        config.tunnels[spec.name] = spec
    return config


def load_config(paths: list[str] | None) -> AgentConfig:
    """Reads and merges the given files; without any, ngrok's default file if it exists."""
    if not paths:
        default = default_config_path()
        if not default.exists():
            return AgentConfig()
        paths = [str(default)]
    data: dict = {}
    for path in paths:
        data = merge(data, read_config_file(path))
    return parse_config(data, [str(Path(p).resolve()) for p in paths])


def check_authtoken(token: str | None) -> str | None:
    """The ngrok error code for an unusable authtoken, or None."""
    if not token:
        return "ERR_NGROK_4018"
    if not AUTHTOKEN_PATTERN.match(token):
        return "ERR_NGROK_105"
    return None
