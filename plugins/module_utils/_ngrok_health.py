# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Health checks through a tunnel's public URL: what a client on the internet would see."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from ansible_collections.emp.deploy.plugins.module_utils._http import TIMEOUT, UNREACHABLE, HttpClient, HttpFailure
from ansible_collections.emp.deploy.plugins.module_utils._ngrok import (
    LOOPBACK_HOSTS,
    find_error_code,
)

# Without this header ngrok's free plan answers browsers with an interstitial page (ERR_NGROK_6024).
SKIP_BROWSER_WARNING = {"ngrok-skip-browser-warning": "1"}
USER_AGENT = "emp.deploy.ngrok_tunnel"
BODY_LIMIT = 256 * 1024
EXCERPT_CHARS = 300
# A TCP tunnel whose upstream refuses accepts the connection, then closes it once the agent's dial
# fails: one round trip edge -> agent -> upstream later, which on a real edge (or a busy host) is
# easily more than a few hundred milliseconds. This is the default wait for that close.
TCP_SETTLE_S = 2.0


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 2)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(reason)


def probe_http(url: str, timeout: float, validate_certs: bool = True, expect_body: str | None = None) -> dict:
    """GET ``url`` once, as a client of the public URL would, and record what came back.

    ``reachable`` is false when nothing answered; ``broken`` is true when something answered with a
    truncated body, a broken gzip body or no HTTP at all.
    """
    host = (urlsplit(url).hostname or "").lower()
    started = time.monotonic()
    check: dict = {"method": "GET", "url": url}
    client = HttpClient(validate_certs=validate_certs, user_agent=USER_AGENT)
    try:
        answer = client.request("GET", url, deadline=timeout, headers=dict(SKIP_BROWSER_WARNING),
                                body_limit=BODY_LIMIT, use_proxy=host not in LOOPBACK_HOSTS)
    except HttpFailure as exc:
        nothing = exc.kind in (UNREACHABLE, TIMEOUT)
        error = ("timed out" if exc.kind == TIMEOUT else exc.reason) if nothing else exc.sentence("the public URL")
        check.update(reachable=not nothing, broken=not nothing, status=None, error=error, error_code=None,
                     elapsed_ms=_elapsed_ms(started))
        return check
    status, body = answer.status, answer.body
    text = body.decode("utf-8", "replace")
    check.update(reachable=True, broken=False, status=status, error=None,
                 error_code=find_error_code(answer.headers, text), elapsed_ms=_elapsed_ms(started),
                 body_bytes=len(body))
    if expect_body is not None:
        check["body_matched"] = expect_body in text
    if check["error_code"] or status >= 400 or check.get("body_matched") is False:
        check["body_excerpt"] = text[:EXCERPT_CHARS]
    return check


def _closed_within(sock: socket.socket, window: float) -> bool:
    """Whether the peer closes ``sock`` within ``window`` seconds (we never speak first)."""
    if window <= 0:
        return False
    sock.settimeout(window)
    try:
        return sock.recv(1) == b""
    except (socket.timeout, TimeoutError):
        return False  # still open, waiting for us to speak: the upstream accepted it
    except OSError:
        return True


def probe_tcp(public_url: str, timeout: float, settle: float = TCP_SETTLE_S) -> dict:
    """Connect to a tcp:// public address and see whether the agent keeps the connection open.

    The agent closes a connection whose upstream refused it; the probe waits up to ``settle``
    seconds for that close, and never longer than what is left of ``timeout``.
    """
    parts = urlsplit(public_url)
    started = time.monotonic()
    check: dict = {"method": "TCP", "url": public_url, "status": None, "error_code": None}
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
            check["connect_ms"] = _elapsed_ms(started)
            window = min(settle, timeout - (time.monotonic() - started))
            closed = _closed_within(sock, window)
    except (OSError, ValueError, TypeError) as exc:
        check.update(reachable=False, error=_reason(exc), elapsed_ms=_elapsed_ms(started))
        return check
    check.update(reachable=True, error=None, closed_at_once=closed, elapsed_ms=_elapsed_ms(started))
    return check
