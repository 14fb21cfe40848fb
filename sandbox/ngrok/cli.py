"""Command line of the ngrok stand-in, shaped like the real agent's for the commands it plays."""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from . import VERSION
from .agent import Agent, ApiError
from .config import (
    AgentConfig,
    ConfigError,
    TunnelSpec,
    check_authtoken,
    default_config_path,
    load_config,
    parse_upstream,
    pinned_port,
    read_config_file,
)

log = logging.getLogger("ngrok")

AUTH_ERRORS = {
    "ERR_NGROK_4018": [
        "authentication failed: Usage of ngrok requires a verified account and authtoken.",
        "",
        "Sign up for an account: https://dashboard.ngrok.com/signup",
        "Install your authtoken: https://dashboard.ngrok.com/get-started/your-authtoken",
    ],
    "ERR_NGROK_105": [
        "authentication failed: The authtoken you specified does not look like a proper ngrok authtoken.",
        "",
        "Get your authtoken: https://dashboard.ngrok.com/get-started/your-authtoken",
    ],
}
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR,
              "crit": logging.CRITICAL}
# When web_addr is not configured, ngrok tries the next ports if 4040 is taken.
DEFAULT_WEB_PORT_TRIES = 10


class Failure(Exception):
    """Ends the command with these ERROR: lines and exit status 1."""

    def __init__(self, *lines: str) -> None:
        super().__init__(lines[0] if lines else "")
        self.lines = list(lines)


def print_error(lines: list[str]) -> None:
    for line in lines:
        print(f"ERROR:  {line}" if line else "ERROR:", file=sys.stderr)
    sys.stderr.flush()


# --------------------------------------------------------------------------- logging
class _LogfmtFormatter(logging.Formatter):
    LEVELS = {"DEBUG": "dbug", "INFO": "info", "WARNING": "warn", "ERROR": "eror", "CRITICAL": "crit"}

    def __init__(self, style: str) -> None:
        super().__init__()
        self.style_name = style

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created).astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")
        level = self.LEVELS.get(record.levelname, record.levelname.lower())
        message = record.getMessage()
        if self.style_name == "json":
            return json.dumps({"t": stamp, "lvl": level, "msg": message})
        return f"t={stamp} lvl={level} msg={json.dumps(message)}"


def setup_logging(target: str | None, style: str, level: str) -> None:
    log.handlers.clear()
    log.propagate = False
    if target in (None, "false", "none"):
        log.addHandler(logging.NullHandler())
        return
    if target == "stdout":
        handler: logging.Handler = logging.StreamHandler(sys.stdout)
    elif target == "stderr":
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(target, encoding="utf-8")
    handler.setFormatter(_LogfmtFormatter(style))
    log.addHandler(handler)
    log.setLevel(LOG_LEVELS.get(level, logging.INFO))


# --------------------------------------------------------------------------- arguments
def _config_paths(values: list[str] | None) -> list[str]:
    """--config may repeat and may hold comma-separated paths, as ngrok's does."""
    paths: list[str] = []
    for value in values or []:
        paths += [part for part in value.split(",") if part]
    return paths


def _add_agent_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", metavar="FILE",
                        help="configuration file(s), merged in order (default: ngrok's default file)")
    parser.add_argument("--authtoken", help="authtoken (else $NGROK_AUTHTOKEN, else the configuration)")
    parser.add_argument("--log", default=None, metavar="TARGET", help="stdout, stderr, false or a file path")
    parser.add_argument("--log-format", default="logfmt", choices=("logfmt", "json", "term"))
    parser.add_argument("--log-level", default="info", choices=tuple(LOG_LEVELS))
    parser.add_argument("--region", help="accepted and ignored")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ngrok",
        description="ngrok agent stand-in of the emp.deploy sandbox: loopback only, no cloud, no downloads. "
                    "Stand-in only: PUT /api/_sandbox/tunnels/NAME/fault {\"fault\": \"offline\"|null} "
                    "makes a listed tunnel answer ERR_NGROK_3200.")
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command")

    sub.add_parser("version", help="print the version")

    start = sub.add_parser("start", help="start tunnels by name from the configuration file(s)")
    start.add_argument("names", nargs="*", help="tunnel / endpoint names from the configuration")
    start.add_argument("--all", action="store_true", help="start every tunnel and endpoint in the configuration")
    start.add_argument("--none", action="store_true", help="start no tunnel; only the agent and its API")
    _add_agent_flags(start)

    for proto in ("http", "tcp"):
        command = sub.add_parser(proto, help=f"start one {proto} tunnel named command_line")
        command.add_argument("addr", help="upstream: a port, host:port or URL")
        command.add_argument("--url", help="public URL; only a 127.0.0.1:PORT URL pins the port")
        _add_agent_flags(command)

    config = sub.add_parser("config", help="check or edit the configuration file")
    config_sub = config.add_subparsers(dest="config_command")
    check = config_sub.add_parser("check", help="check the configuration file(s)")
    check.add_argument("--config", action="append", metavar="FILE")
    add = config_sub.add_parser("add-authtoken", help="save an authtoken to the configuration file")
    add.add_argument("token")
    add.add_argument("--config", action="append", metavar="FILE")
    return parser


# --------------------------------------------------------------------------- commands
def resolve_authtoken(flag: str | None, config: AgentConfig) -> str:
    token = flag or os.environ.get("NGROK_AUTHTOKEN") or config.authtoken
    code = check_authtoken(token)
    if code:
        raise Failure(*AUTH_ERRORS[code], "", code, f"https://ngrok.com/docs/errors/{code.lower()}", "")
    return token  # type: ignore[return-value]


def load(paths: list[str]) -> AgentConfig:
    try:
        return load_config(paths)
    except ConfigError as exc:
        raise Failure(str(exc)) from None


def select_tunnels(config: AgentConfig, names: list[str], start_all: bool, start_none: bool) -> list[TunnelSpec]:
    if start_all and (names or start_none):
        raise Failure("--all cannot be combined with --none or tunnel names")
    if start_all:
        return list(config.tunnels.values())
    if start_none:
        if names:
            raise Failure("--none cannot be combined with tunnel names")
        return []
    if not names:
        raise Failure("Specify the tunnels to start: --all, --none or one or more names from the configuration")
    missing = [name for name in names if name not in config.tunnels]
    if missing:
        raise Failure(f"Tunnel '{missing[0]}' is not defined in the config files.",
                      f"Tunnels available: {', '.join(config.tunnels) or '(none)'}",
                      f"Config files read: [{' '.join(config.files)}]")
    return [config.tunnels[name] for name in names]


def start_api(agent: Agent, config: AgentConfig) -> None:
    if config.web_addr is None:
        return
    host, port = config.web_addr
    tries = 1 if config.web_addr_explicit or port == 0 else DEFAULT_WEB_PORT_TRIES
    for offset in range(tries):
        try:
            agent.serve_api(host, port + offset)
            return
        except OSError as exc:
            error = exc
    raise Failure(f"failed to start web interface: listen tcp {host}:{port}: bind: {error.strerror or error}")


def print_console(agent: Agent) -> None:
    """Without --log ngrok draws its console; this prints its key lines once."""
    lines = ["ngrok (emp.deploy sandbox stand-in)", "",
             f"{'Session Status':<30}online", f"{'Version':<30}{VERSION}"]
    if agent.api_port:
        lines.append(f"{'Web Interface':<30}http://{agent.config.web_addr[0]}:{agent.api_port}")
    for tunnel in agent.tunnels():
        lines.append(f"{'Forwarding':<30}{tunnel.public_url} -> {tunnel.spec.upstream.display}")
    print("\n".join(lines), flush=True)


def run_agent(args: argparse.Namespace, config: AgentConfig, specs: list[TunnelSpec]) -> int:
    setup_logging(args.log, args.log_format, args.log_level)
    resolve_authtoken(args.authtoken, config)  # checked first, as ngrok authenticates before anything else
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    agent = Agent(config)
    try:
        log.info("starting ngrok agent: version=%s config=%s", VERSION, ",".join(config.files) or "(none)")
        start_api(agent, config)
        log.info("client session established: region=local")
        for spec in specs:
            try:
                agent.start(spec)
            except ApiError as exc:
                raise Failure(f"failed to start tunnel '{spec.name}': {exc}") from None
        if args.log in (None,):
            print_console(agent)
        stop.wait()
        log.info("received stop request, shutting down")
        return 0
    finally:
        agent.shutdown()


def cmd_start(args: argparse.Namespace) -> int:
    config = load(_config_paths(args.config))
    return run_agent(args, config, select_tunnels(config, args.names, args.all, args.none))


def cmd_single(args: argparse.Namespace) -> int:
    config = load(_config_paths(args.config))
    try:
        upstream = parse_upstream(args.addr, args.command)
        spec = TunnelSpec(name="command_line", proto=args.command, upstream=upstream,
                          listen_port=pinned_port(args.url), source="command_line")
    except ConfigError as exc:
        raise Failure(str(exc)) from None
    return run_agent(args, config, [spec])


def cmd_config(args: argparse.Namespace) -> int:
    paths = _config_paths(args.config) or [str(default_config_path())]
    if args.config_command == "check":
        for path in paths:
            load([path])
            print(f"Valid configuration file at {Path(path).resolve()}")
        return 0
    if args.config_command == "add-authtoken":
        path = Path(paths[0])
        data = read_config_file(path) if path.exists() else {}
        data.setdefault("version", "3")
        agent = data.get("agent") if isinstance(data.get("agent"), dict) else {}
        agent["authtoken"] = args.token
        data["agent"] = agent
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import yaml

            text = yaml.safe_dump(data, default_flow_style=False, sort_keys=False)
        except ImportError:  # pragma: no cover - depends on the interpreter
            text = json.dumps(data, indent=2) + "\n"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        print(f"Authtoken saved to configuration file: {path.resolve()}")
        return 0
    raise Failure("usage: ngrok config check|add-authtoken [--config FILE]")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version or args.command == "version":
        print(f"ngrok version {VERSION}")
        return 0
    handlers = {"start": cmd_start, "http": cmd_single, "tcp": cmd_single, "config": cmd_config}
    if args.command not in handlers:
        parser.print_help()
        return 0
    try:
        return handlers[args.command](args)
    except Failure as exc:
        log.error("%s", " ".join(line for line in exc.lines if line))
        print_error(exc.lines)
        return 1
    except ConfigError as exc:
        print_error([str(exc)])
        return 1
