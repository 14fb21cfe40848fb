# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ngrok agent: its local API (through ansible.module_utils.urls, always with a timeout),
its binary, its configuration file and starting it detached."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from urllib.parse import quote

from ansible.module_utils.basic import env_fallback

from ansible_collections.emp.deploy.plugins.module_utils._http import NOT_HTTP, TIMEOUT, UNREACHABLE, HttpClient, HttpFailure, hostport
from ansible_collections.emp.deploy.plugins.module_utils._ngrok import (
    ERROR_CODE_PATTERN,
    api_base,
    describe_error,
    parse_version_output,
)

USER_AGENT = "emp.deploy.ngrok_tunnel"
LOG_TAIL_LINES = 20

NGROK_AGENT_ARGSPEC: dict = dict(
    api_url=dict(type="str", default="http://127.0.0.1:4040"),
    timeout=dict(type="float", default=10.0),
    ngrok_binary=dict(type="str"),
    config_path=dict(type="path"),
    authtoken=dict(type="str", no_log=True, fallback=(env_fallback, ["NGROK_AUTHTOKEN"])),
    start_agent=dict(type="bool", default=False),
    agent_start_timeout=dict(type="float", default=15.0),
    agent_log_path=dict(type="path"),
)


class AgentApiError(Exception):
    """The agent answered, but not with what was asked for."""

    def __init__(self, message: str, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class AgentUnreachable(AgentApiError):
    """Nothing answers at the API address (refused, timed out, or not HTTP)."""


def _agent_failure(exc: HttpFailure, where: str, request: str) -> AgentApiError:
    """Nothing (or not HTTP) answering is AgentUnreachable, which may start the agent; a broken answer is not."""
    if exc.kind == TIMEOUT:
        reason = "timed out" + (f" ({exc.reason})" if exc.reason else "")
    elif exc.kind in (UNREACHABLE, NOT_HTTP):
        reason = exc.reason
    else:
        return AgentApiError(exc.sentence("the ngrok agent API"))
    return AgentUnreachable(f"the ngrok agent API at {where} does not answer ({request}): {reason}")


def _error_detail(body: object) -> str:
    """ngrok's API errors look like {error_code, status_code, msg, details: {err}}."""
    if isinstance(body, dict):
        details: dict = body["details"] if isinstance(body.get("details"), dict) else {}
        return str(details.get("err") or body.get("msg") or body)
    return str(body)[:300]


class AgentApi:
    """The agent's local API at ``api_url`` (``/api/tunnels``, ``/api/status``)."""

    def __init__(self, api_url: str, timeout: float) -> None:
        self.base = api_base(api_url)
        self.timeout = timeout
        self.where = hostport(self.base)
        # The API serves loopback only: a proxy from the environment must never see it.
        self._http = HttpClient(user_agent=USER_AGENT, use_proxy=False)

    def _call(self, method: str, path: str, payload: dict | None = None) -> tuple[int, object]:
        url = self.base + path
        data = json.dumps(payload).encode() if payload is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            answer = self._http.request(method, url, deadline=self.timeout, body=data, headers=headers)
        except HttpFailure as exc:
            raise _agent_failure(exc, self.where, f"{method} {path}") from None
        status, raw = answer.status, answer.body
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            raise AgentApiError(f"{method} {url} answered {status} with a body that is not JSON: is {self.where} "
                                "an ngrok agent's web address?", status) from None
        if status >= 400:
            raise AgentApiError(f"{method} {url} answered {status}: {_error_detail(body)}", status, body)
        return status, body

    def list_tunnels(self) -> list:
        _status, body = self._call("GET", "/api/tunnels")
        if not isinstance(body, dict) or not isinstance(body.get("tunnels"), list):
            raise AgentApiError(f"GET {self.base}/api/tunnels did not return a tunnel list: is {self.where} an ngrok agent?")
        return body["tunnels"]

    def status(self) -> dict | None:
        """GET /api/status; None when this agent does not offer it."""
        try:
            _status, body = self._call("GET", "/api/status")
        except AgentApiError as exc:
            if isinstance(exc, AgentUnreachable):
                raise
            return None
        return body if isinstance(body, dict) else None

    def create(self, name: str, addr: str, proto: str) -> dict:
        _status, body = self._call("POST", "/api/tunnels", {"name": name, "addr": addr, "proto": proto})
        if not isinstance(body, dict):
            raise AgentApiError(f"POST {self.base}/api/tunnels returned no tunnel")
        return body

    def delete(self, name: str) -> None:
        try:
            self._call("DELETE", "/api/tunnels/" + quote(name, safe=""))
        except AgentApiError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise


# --------------------------------------------------------------------------- binary
def resolve_binary(module, ngrok_binary: str | None) -> str | None:
    """Absolute path of the ngrok binary, or None. A path that was given but is unusable fails the task."""
    if ngrok_binary and os.sep in ngrok_binary:
        path = os.path.abspath(os.path.expanduser(ngrok_binary))
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            module.fail_json(msg=f"ngrok_binary {path} does not exist or is not executable; this module never "
                                 "downloads ngrok: install it or point ngrok_binary at it")
        return path
    return module.get_bin_path(ngrok_binary or "ngrok")


def agent_version(binary: str, timeout: float) -> str | None:
    try:
        # Not run_command: it has no timeout, and a wedged binary must not hang the task.
        completed = subprocess.run(  # pylint: disable=ansible-bad-function
            [binary, "version"], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_version_output(completed.stdout + completed.stderr)


# --------------------------------------------------------------------------- configuration
def write_private_file(path: str, content: str) -> None:
    """Atomically replaces ``path`` with ``content``, readable by its owner only (it holds the authtoken)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".ngrok-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def file_needs_update(path: str, content: str) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            same = handle.read() == content
        return not same or (os.stat(path).st_mode & 0o077) != 0
    except OSError:
        return True


# --------------------------------------------------------------------------- process
def default_log_path(config_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(config_path)), "ngrok-agent.log")


def spawn_agent(binary: str, config_path: str, log_path: str, start_all: bool) -> subprocess.Popen:
    """Starts ``ngrok start`` in its own session, logging to ``log_path``, so it outlives this task."""
    command = [binary, "start", "--all" if start_all else "--none", "--config", config_path,
               "--log", "stdout", "--log-format", "logfmt"]
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, "ab") as log_file:
        # Not run_command: that waits for the process, and the agent must keep running after the task.
        return subprocess.Popen(  # pylint: disable=ansible-bad-function
            command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            cwd=os.path.dirname(os.path.abspath(config_path)), start_new_session=True, close_fds=True)


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:]).strip()
    except OSError:
        return ""


def explain_agent_exit(returncode: int, tail: str) -> str:
    codes = sorted(set(ERROR_CODE_PATTERN.findall(tail)))
    named = "; ".join(f"{code}: {describe_error(code)}" for code in codes)
    return f"the ngrok agent exited with status {returncode}" + (f" ({named})" if named else "") + \
        (f". Its last output:\n{tail}" if tail else "")


def wait_until_ready(api: AgentApi, process: subprocess.Popen, timeout: float, log_path: str) -> float:
    """Polls the API until it lists tunnels. Returns the seconds waited; raises AgentApiError with the reason."""
    started = time.monotonic()
    delay = 0.05
    while True:
        try:
            api.list_tunnels()
            return time.monotonic() - started
        except AgentUnreachable:
            pass
        returncode = process.poll()
        if returncode is not None:
            raise AgentApiError(explain_agent_exit(returncode, log_tail(log_path)))
        waited = time.monotonic() - started
        if waited >= timeout:
            raise AgentApiError(f"the ngrok agent (pid {process.pid}) started but its API at {api.where} did not "
                                f"answer within {timeout:g} s; check that agent.web_addr in the configuration "
                                f"matches api_url. Its last output:\n{log_tail(log_path)}")
        time.sleep(min(delay, max(timeout - waited, 0.01)))
        delay = min(delay * 2, 0.5)


def port_listening(host: str, port: int, timeout: float) -> tuple[bool, str | None]:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, None
    except OSError as exc:
        return False, exc.strerror or str(exc)
