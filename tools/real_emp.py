# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Builds and runs the real EMP API and webhook service from a checkout of stakeordie/emp-job-queue, on
loopback, against a redis-server of its own, for `make demo-real` and the tests marked real_emp.

    real_emp.py build  --source DIR                  pnpm (from the npm registry when missing), install, build
    real_emp.py up     --source DIR [--state-dir S]  redis-server + functions (the repository's CLI) + API + webhooks
    real_emp.py status [--json]                      addresses and pids (the inventory reads status.json)
    real_emp.py deploy SERVICE VERSION               the command strategy's deploy: restart the service
    real_emp.py rollback SERVICE VERSION             ... its rollback (redis: restart and reinstall the functions)
    real_emp.py current-version SERVICE              ... its version check
    real_emp.py down                                 stops everything it started, by recorded process group

Nothing from the checkout is copied here: the services run from their own dist/ folders. The API's
AUTH_TOKEN is generated per `up` and kept in the state directory (mode 0600), never printed.
A redis "version" whose name contains `nopersist` restarts Redis without persistence: the functions
are lost, which is what the demo's NO-GO shows.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE = ROOT / ".tmp" / "real-emp"
FILTERS = ["--filter", "api...", "--filter", "webhook-service..."]
SERVICES = ("redis", "api", "webhook")
START_TIMEOUT_S = 60
STOP_GRACE_S = 8
# Telemetry goes nowhere unless a collector is given: the services require the variable, not a collector.
NO_COLLECTOR = "http://127.0.0.1:{port}"

GET_SOURCES = """EMP_SOURCE is not set: make demo-real needs a checkout of the public EMP job queue.

    git clone https://github.com/stakeordie/emp-job-queue /path/outside/this/repo/emp-job-queue
    make demo-real EMP_SOURCE=/path/outside/this/repo/emp-job-queue

Keep the checkout outside this repository and never commit anything from it. Node.js 20 is needed;
pnpm is installed from the npm registry into the state directory when it is missing."""


class RealEmpError(Exception):
    """Something the operator must fix; the message says what."""


# --- processes -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_time(pid: int) -> str | None:
    """The /proc start time of a pid, so a reused pid is never signalled."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def spawn(argv: list[str], cwd: Path, env: dict, log: Path) -> dict:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=str(cwd), env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return {"pid": proc.pid, "pgid": proc.pid, "start": start_time(proc.pid), "log": str(log)}


def alive(record: dict) -> bool:
    return start_time(record["pid"]) == record.get("start") and record.get("start") is not None


def group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def stop(record: dict) -> None:
    """SIGTERM to the process group, SIGKILL after a grace period; only a group we started."""
    if not record or not alive(record):
        return
    pgid = record["pgid"]
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and group_members(pgid):
        time.sleep(0.1)
    if group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.2)
    if group_members(pgid):
        raise RealEmpError(f"process group {pgid} ({record.get('log')}) survived SIGKILL")


def http_json(url: str, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310  # loopback URLs we built
        return json.loads(answer.read().decode("utf-8"))


def wait_until(what: str, check, log: str | None, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, ValueError, urllib.error.URLError) as exc:
            last = exc
        time.sleep(0.25)
    tail = ""
    if log and Path(log).is_file():
        tail = "\n" + "\n".join(Path(log).read_text(errors="replace").splitlines()[-15:])
    raise RealEmpError(f"{what} not ready after {timeout} s ({last}); last lines of {log}:{tail}")


# --- state ---------------------------------------------------------------------------------------

class State:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    def read(self, name: str, default=None):
        path = self.path(name)
        return json.loads(path.read_text()) if path.is_file() else default

    def write(self, name: str, value, private: bool = False) -> None:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
        if private:
            tmp.chmod(0o600)
        tmp.replace(path)

    @property
    def config(self) -> dict:
        config = self.read("config.json")
        if not config:
            raise RealEmpError(f"nothing runs from {self.root}: run `up` first")
        return config


# --- build ---------------------------------------------------------------------------------------

def pnpm_version(source: Path) -> str:
    manager = json.loads((source / "package.json").read_text()).get("packageManager", "")
    if not manager.startswith("pnpm@"):
        raise RealEmpError(f"{source}/package.json names no pnpm version in packageManager ({manager!r})")
    return manager.split("@", 1)[1].split("+", 1)[0]


def ensure_pnpm(source: Path, state: State) -> str:
    """pnpm from PATH when it is the repository's version, else installed from the npm registry into the state dir."""
    wanted = pnpm_version(source)
    local = state.path("pnpm/node_modules/.bin/pnpm")
    for candidate in (shutil.which("pnpm"), str(local)):
        if candidate and Path(candidate).exists():
            found = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=60, check=False)
            if found.returncode == 0 and found.stdout.strip() == wanted:
                return candidate
    if not shutil.which("npm"):
        raise RealEmpError("npm is missing: install Node.js 20 (with npm) to build the EMP services")
    print(f"installing pnpm@{wanted} from the npm registry into {local.parent.parent.parent}", flush=True)
    subprocess.run(["npm", "install", "--prefix", str(state.path("pnpm")), "--no-audit", "--no-fund",
                    f"pnpm@{wanted}"], check=True, timeout=300)
    return str(local)


def build(source: Path, state: State) -> None:
    check_source(source)
    pnpm = ensure_pnpm(source, state)
    env = {**os.environ, "CI": "true"}
    started = time.monotonic()
    subprocess.run([pnpm, "install", "--frozen-lockfile", *FILTERS], cwd=str(source), env=env, check=True,
                   timeout=1800)
    subprocess.run([pnpm, *FILTERS, "run", "build"], cwd=str(source), env=env, check=True, timeout=1800)
    for artefact in artefacts(source).values():
        if not artefact.is_file():
            raise RealEmpError(f"the build did not produce {artefact}")
    print(f"built the API and the webhook service in {time.monotonic() - started:.1f} s", flush=True)


def check_source(source: Path) -> None:
    if not (source / "pnpm-workspace.yaml").is_file() or not (source / "apps/api").is_dir():
        raise RealEmpError(f"{source} is not a checkout of stakeordie/emp-job-queue (no pnpm-workspace.yaml, apps/api)")
    if source.resolve().is_relative_to(ROOT):
        raise RealEmpError(f"{source} is inside this repository: keep the EMP sources outside it")


def artefacts(source: Path) -> dict:
    return {"functions_cli": source / "packages/core/dist/cli/redis-functions.js",
            "api": source / "apps/api/dist/src/index.js",
            "webhook": source / "apps/webhook-service/dist/index.js"}


# --- services ------------------------------------------------------------------------------------

def redis_argv(config: dict, persistent: bool) -> list[str]:
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(config["ports"]["redis"]),
            "--dir", str(Path(config["state_dir"]) / "redis"), "--appendonly", "no", "--protected-mode", "yes"]
    # persistence: an RDB on shutdown and at start (functions included); without it a restart loses them
    argv += ["--save", "3600 1", "--dbfilename", "dump.rdb"] if persistent else ["--save", ""]
    return argv


def start_redis(state: State, persistent: bool = True) -> dict:
    config = state.config
    redis_dir = state.path("redis")
    redis_dir.mkdir(parents=True, exist_ok=True)
    if not persistent:
        (redis_dir / "dump.rdb").unlink(missing_ok=True)
    record = spawn(redis_argv(config, persistent), redis_dir, dict(os.environ), state.path("logs/redis.log"))
    port = config["ports"]["redis"]
    wait_until(f"redis-server on port {port}", lambda: redis_cli(config, "PING") == "PONG", record["log"])
    return record


def redis_cli(config: dict, *args: str) -> str:
    done = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(config["ports"]["redis"]), *args],
                          capture_output=True, text=True, timeout=10, check=False)
    return done.stdout.strip()


def install_functions(state: State) -> None:
    """The repository's own CLI loads jobMatching: the API does not."""
    config = state.config
    env = {**os.environ, "REDIS_URL": config["urls"]["redis"]}
    done = subprocess.run(["node", str(artefacts(Path(config["source"]))["functions_cli"]), "install"],
                          cwd=str(Path(config["source"]) / "packages/core"), env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    state.path("logs").mkdir(parents=True, exist_ok=True)
    with open(state.path("logs/functions.log"), "a", encoding="utf-8") as log:
        log.write(done.stdout + done.stderr)
    if done.returncode != 0 or "findMatchingJob" not in redis_cli(config, "FUNCTION", "LIST"):
        raise RealEmpError(f"the functions CLI did not load findMatchingJob (exit {done.returncode}); "
                           f"see {state.path('logs/functions.log')}")


def service_env(config: dict, service: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("REDIS", "HUB_REDIS"))}
    common = {"NODE_ENV": "production", "CORS_ORIGINS": "http://127.0.0.1",
              "OTEL_COLLECTOR_ENDPOINT": config["collector"], "BUILD_DATE": config["build_date"]}
    if service == "api":
        token = Path(config["token_file"]).read_text().strip()
        return {**env, **common, "API_PORT": str(config["ports"]["api"]), "REDIS_URL": config["urls"]["redis"],
                "AUTH_TOKEN": token}
    return {**env, **common, "WEBHOOK_SERVICE_PORT": str(config["ports"]["webhook"]),
            "HUB_REDIS_URL": config["urls"]["redis"], "EMPROPS_API_URL": config["emprops_api_url"]}


def start_node_service(state: State, service: str) -> dict:
    config = state.config
    script = artefacts(Path(config["source"]))[service]
    cwd = script.parent.parent.parent if service == "api" else script.parent.parent
    record = spawn(["node", str(script)], cwd, service_env(config, service), state.path(f"logs/{service}.log"))
    url = config["urls"][service] + "/health"
    if service == "webhook":
        wait_until(f"the webhook service at {url}", lambda: http_json(url)["redis"]["connected"] is True, record["log"])
    else:
        wait_until(f"the API at {url}", lambda: http_json(url)["status"] == "ok", record["log"])
    return record


def start(state: State, service: str, version: str, persistent: bool = True) -> None:
    processes = state.read("processes.json", {})
    processes[service] = start_redis(state, persistent) if service == "redis" else start_node_service(state, service)
    state.write("processes.json", processes)
    versions = state.read("versions.json", {})
    versions[service] = version
    state.write("versions.json", versions)


def restart(state: State, service: str, version: str) -> None:
    processes = state.read("processes.json", {})
    persistent = "nopersist" not in version
    if service == "redis" and persistent and alive(processes.get("redis", {})):
        redis_cli(state.config, "SAVE")  # the RDB carries the functions across the restart
    stop(processes.get(service, {}))
    start(state, service, version, persistent)


def up(source: Path, state: State, collector: str | None) -> None:
    check_source(source)
    missing = [str(path) for path in artefacts(source).values() if not path.is_file()]
    if missing:
        raise RealEmpError(f"not built yet ({', '.join(missing)}): run `build` first")
    if state.read("processes.json"):
        down(state)
    previous = state.read("config.json", {}) or {}
    ports = previous.get("ports") or {name: free_port() for name in SERVICES}
    token_file = state.path("auth-token")
    state.root.mkdir(parents=True, exist_ok=True)
    token_file.write_text(secrets.token_urlsafe(24) + "\n")
    token_file.chmod(0o600)
    config = {
        "source": str(source.resolve()), "state_dir": str(state.root.resolve()), "ports": ports,
        "urls": {"redis": f"redis://127.0.0.1:{ports['redis']}/0", "api": f"http://127.0.0.1:{ports['api']}",
                 "webhook": f"http://127.0.0.1:{ports['webhook']}"},
        "collector": collector or NO_COLLECTOR.format(port=free_port()), "collector_configured": bool(collector),
        "emprops_api_url": NO_COLLECTOR.format(port=free_port()),
        "build_date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token_file": str(token_file),
        "commit": git_commit(source),
    }
    state.write("config.json", config)
    state.write("processes.json", {})
    start(state, "redis", "initial")
    install_functions(state)
    label = f"emp-{config['commit'][:12]}"
    start(state, "api", label)
    start(state, "webhook", label)
    write_status(state)


def git_commit(source: Path) -> str:
    done = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                          timeout=10, check=False)
    return done.stdout.strip() or "unknown"


def write_status(state: State) -> dict:
    config = state.config
    processes = state.read("processes.json", {})
    status = {**config["urls"], "collector": config["collector"] if config["collector_configured"] else "",
              "token_file": config["token_file"], "commit": config["commit"], "state_dir": config["state_dir"],
              "cli": f"{sys.executable} {Path(__file__).resolve()} --state-dir {config['state_dir']}",
              "versions": state.read("versions.json", {}),
              "services": {name: {"pid": record["pid"], "running": alive(record), "log": record["log"]}
                           for name, record in processes.items()}}
    state.write("status.json", status)
    return status


def down(state: State) -> None:
    processes = state.read("processes.json", {})
    for service in ("webhook", "api", "redis"):  # the applications first, Redis last
        stop(processes.get(service, {}))
    state.write("processes.json", {})
    state.path("status.json").unlink(missing_ok=True)


# --- command line --------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("EMP_REAL_STATE") or DEFAULT_STATE))
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "up"):
        command = commands.add_parser(name)
        command.add_argument("--source", type=Path, default=os.environ.get("EMP_SOURCE") or None)
        if name == "up":
            command.add_argument("--collector", default=os.environ.get("EMP_OTEL_COLLECTOR") or None,
                                 help="OTLP gRPC collector the services export to (none: telemetry is not gated)")
    status = commands.add_parser("status")
    status.add_argument("--json", action="store_true")
    for name in ("deploy", "rollback"):
        command = commands.add_parser(name)
        command.add_argument("service", choices=SERVICES)
        command.add_argument("version", nargs="?", default=os.environ.get("EMP_RELEASE_VERSION"))
    commands.add_parser("current-version").add_argument("service", choices=SERVICES)
    commands.add_parser("down")
    commands.add_parser("explain")
    args = parser.parse_args(argv)
    state = State(args.state_dir.resolve())
    try:
        return run(args, state)
    except RealEmpError as exc:
        print(f"real_emp: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"real_emp: {' '.join(map(str, exc.cmd[:4]))} ... exited with {exc.returncode}", file=sys.stderr)
        return 1


def run(args, state: State) -> int:
    if args.command == "explain" or (args.command in ("build", "up") and not args.source):
        print(GET_SOURCES, file=sys.stderr)
        return 2
    if args.command == "build":
        build(args.source, state)
    elif args.command == "up":
        up(args.source, state, args.collector)
        print(json.dumps(state.read("status.json"), indent=2))
    elif args.command == "status":
        status = write_status(state) if state.read("config.json") else {}
        print(json.dumps(status, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in status.items()))
    elif args.command in ("deploy", "rollback"):
        if not args.version:
            raise RealEmpError("no version: give one or set EMP_RELEASE_VERSION")
        restart(state, args.service, args.version)
        if args.service == "redis" and args.command == "rollback":
            install_functions(state)  # a rollback restores what the bad restart lost
        write_status(state)
        print(f"{args.service} {args.version} running")
    elif args.command == "current-version":
        print(state.read("versions.json", {}).get(args.service, "none"))
    elif args.command == "down":
        down(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
