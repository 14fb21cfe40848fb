"""The agent: its tunnels, their endpoints, and the local API served on web_addr."""
from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from . import VERSION
from .config import AgentConfig, ConfigError, TunnelSpec, parse_upstream, pinned_port
from .tunnels import Endpoint, Tunnel, open_endpoint

log = logging.getLogger("ngrok")

FAULTS = (None, "offline")


class ApiError(Exception):
    """An error the agent API answers with ngrok's JSON error shape."""

    def __init__(self, status: int, error_code: int, msg: str, err: str) -> None:
        super().__init__(err)
        self.status = status
        self.body = {"error_code": error_code, "status_code": status, "msg": msg, "details": {"err": err}}


def invalid_tunnel(err: str) -> ApiError:
    return ApiError(400, 102, "invalid tunnel configuration", err)


def not_found(name: str) -> ApiError:
    return ApiError(404, 100, "tunnel not found", f'tunnel "{name}" not found')


def spec_from_request(body: object) -> TunnelSpec:
    """POST /api/tunnels takes the same fields as a tunnel definition in the configuration."""
    if not isinstance(body, dict):
        raise invalid_tunnel("the request body must be a JSON object")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise invalid_tunnel("a tunnel name is required")
    proto = body.get("proto")
    if not isinstance(proto, str) or not proto:
        raise invalid_tunnel(f'tunnel "{name}": proto is required (http or tcp)')
    if body.get("addr") in (None, ""):
        raise invalid_tunnel(f'tunnel "{name}": addr is required')
    if not isinstance(body.get("addr"), (str, int)) or isinstance(body.get("addr"), bool):
        raise invalid_tunnel(f'tunnel "{name}": addr must be a string or a port number')
    inspect = body.get("inspect", True)
    if isinstance(inspect, str):
        inspect = inspect.lower() not in ("false", "0", "no")
    try:
        upstream = parse_upstream(body["addr"], proto.lower())
        pin = None
        for key in ("url", "domain", "hostname", "remote_addr"):
            pin = pin or pinned_port(body.get(key))
    except ConfigError as exc:
        raise invalid_tunnel(f'tunnel "{name}": {exc}') from None
    return TunnelSpec(name=name, proto=proto.lower(), upstream=upstream, inspect=bool(inspect), listen_port=pin)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.started_at = time.time()
        self._lock = threading.RLock()
        self._tunnels: dict[str, Tunnel] = {}
        # Endpoints by the tunnel name that last used them; kept after the tunnel is deleted.
        self._endpoints: dict[str, Endpoint] = {}
        self._api: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ tunnels
    def tunnels(self) -> list[Tunnel]:
        with self._lock:
            return list(self._tunnels.values())

    def get(self, name: str) -> Tunnel:
        with self._lock:
            if name not in self._tunnels:
                raise not_found(name)
            return self._tunnels[name]

    def _endpoint_for(self, spec: TunnelSpec) -> Endpoint:
        previous = self._endpoints.get(spec.name)
        if previous is not None and previous.proto == spec.proto and spec.listen_port in (None, previous.port):
            return previous
        if spec.listen_port is not None:
            for name, endpoint in list(self._endpoints.items()):
                if endpoint.port != spec.listen_port:
                    continue
                if endpoint.tunnel is not None:
                    raise invalid_tunnel(f"the url 127.0.0.1:{spec.listen_port} is already bound to tunnel "
                                         f'"{endpoint.tunnel.name}"')
                endpoint.close()  # an offline leftover; the new tunnel takes its port
                del self._endpoints[name]
        try:
            endpoint = open_endpoint(spec.proto, spec.listen_port or 0)
        except OSError as exc:
            raise ApiError(502, 103, "failed to start tunnel",
                           f"listen tcp 127.0.0.1:{spec.listen_port or 0}: {exc.strerror or exc}") from None
        if previous is not None:
            previous.close()
        return endpoint

    def start(self, spec: TunnelSpec) -> Tunnel:
        with self._lock:
            if spec.name in self._tunnels:
                raise invalid_tunnel(f'tunnel "{spec.name}" already exists')
            endpoint = self._endpoint_for(spec)
            tunnel = Tunnel(spec, endpoint)
            endpoint.tunnel = tunnel
            self._endpoints[spec.name] = endpoint
            self._tunnels[spec.name] = tunnel
        log.info('started tunnel: name=%s addr=%s url=%s', spec.name, spec.upstream.display, tunnel.public_url)
        return tunnel

    def stop(self, name: str) -> None:
        with self._lock:
            tunnel = self.get(name)
            del self._tunnels[name]
            endpoint = tunnel.endpoint
            endpoint.tunnel = None
            if endpoint.proto == "tcp":  # TCP addresses simply stop accepting; HTTP ones answer 3200
                endpoint.close()
                del self._endpoints[name]
        log.info("stopped tunnel: name=%s url=%s", name, tunnel.public_url)

    def set_fault(self, name: str, fault: str | None) -> Tunnel:
        if fault not in FAULTS:
            raise ApiError(400, 100, "invalid fault", f"fault must be one of {list(FAULTS)}, got {fault!r}")
        tunnel = self.get(name)
        tunnel.fault = fault
        log.info("sandbox fault: name=%s fault=%s", name, fault)
        return tunnel

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        web = self.config.web_addr
        return {
            "status": "online",
            "uri": "/api/status",
            "version": VERSION,
            "agent_version": VERSION,
            "session": {"status": "online", "started_at": self.started_at, "region": "local"},
            "web_addr": f"{web[0]}:{self.api_port}" if web else None,
            "tunnels": len(self._tunnels),
            "config_files": self.config.files,
            "uptime_s": round(time.time() - self.started_at, 3),
        }

    # ------------------------------------------------------------------ API server
    @property
    def api_port(self) -> int | None:
        return self._api.server_address[1] if self._api else None

    def serve_api(self, host: str, port: int) -> None:
        server = ThreadingHTTPServer((host, port), ApiHandler)
        server.daemon_threads = True
        server.agent = self  # type: ignore[attr-defined]
        self._api = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="agent-api",
                         daemon=True).start()
        log.info("starting web service: addr=%s:%s", host, self.api_port)

    def shutdown(self) -> None:
        if self._api is not None:
            self._api.shutdown()
            self._api.server_close()
        with self._lock:
            for endpoint in self._endpoints.values():
                endpoint.close()
            self._endpoints.clear()
            self._tunnels.clear()


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ngrok-sandbox"

    def version_string(self) -> str:
        return self.server_version

    @property
    def agent(self) -> Agent:
        return self.server.agent  # type: ignore[attr-defined]

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server signature
        log.debug("api %s", format % args)

    def _send(self, status: int, body: object | None = None) -> None:
        data = b"" if body is None else (json.dumps(body) + "\n").encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _read_json(self) -> object:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            return json.loads(raw or b"null")
        except ValueError as exc:
            raise ApiError(400, 100, "failed to parse request body", f"invalid JSON: {exc}") from None

    def _route(self) -> tuple[list[str], str]:
        path = urlsplit(self.path).path.rstrip("/")
        return [unquote(part) for part in path.split("/")[1:]], path

    def _dispatch(self, method: str) -> None:
        try:
            parts, _path = self._route()
            self._handle(method, parts)
        except ApiError as exc:
            self._send(exc.status, exc.body)

    def _handle(self, method: str, parts: list[str]) -> None:
        agent = self.agent
        if method == "GET" and parts in ([], [""]):
            body = b"<html><body><h1>ngrok agent (emp.deploy sandbox stand-in)</h1></body></html>\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if parts[:1] != ["api"]:
            raise ApiError(404, 100, "not found", f"no resource at {self.path}")
        rest = parts[1:]
        if rest == [] and method == "GET":
            self._send(200, {"uri": "/api", "tunnels": "/api/tunnels", "status": "/api/status"})
        elif rest == ["status"] and method == "GET":
            self._send(200, agent.status())
        elif rest == ["tunnels"] and method == "GET":
            self._send(200, {"tunnels": [t.as_json() for t in agent.tunnels()], "uri": "/api/tunnels"})
        elif rest == ["tunnels"] and method == "POST":
            self._send(201, agent.start(spec_from_request(self._read_json())).as_json())
        elif len(rest) == 2 and rest[0] == "tunnels" and method == "GET":
            self._send(200, agent.get(rest[1]).as_json())
        elif len(rest) == 2 and rest[0] == "tunnels" and method == "DELETE":
            agent.stop(rest[1])
            self._send(204)
        elif len(rest) == 4 and rest[:2] == ["_sandbox", "tunnels"] and rest[3] == "fault" and method == "PUT":
            body = self._read_json()
            fault = body.get("fault") if isinstance(body, dict) else body
            self._send(200, agent.set_fault(rest[2], fault).as_json())
        elif rest and rest[0] in ("status", "tunnels", "_sandbox"):
            raise ApiError(405, 100, "method not allowed", f"{method} is not allowed on {self.path}")
        else:
            raise ApiError(404, 100, "not found", f"no resource at {self.path}")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")
