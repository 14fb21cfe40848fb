# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Health checks through a tunnel's public URL: what a client on the internet would see."""

from __future__ import annotations

import http.client
import socket
import time
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from ansible.module_utils.urls import open_url

from ansible_collections.emp.deploy.plugins.module_utils._ngrok import (
    LOOPBACK_HOSTS,
    find_error_code,
)

# Without this header ngrok's free plan answers browsers with an interstitial page (ERR_NGROK_6024).
SKIP_BROWSER_WARNING = {"ngrok-skip-browser-warning": "1"}
USER_AGENT = "emp.deploy.ngrok_tunnel"
BODY_LIMIT = 256 * 1024
EXCERPT_CHARS = 300
# A TCP tunnel whose upstream refuses accepts the connection, then closes it within a moment.
TCP_SETTLE_S = 0.3


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 2)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(reason)


def probe_http(url: str, timeout: float, validate_certs: bool = True, expect_body: str | None = None) -> dict:
    """GET ``url`` once, as a client of the public URL would, and record what came back."""
    host = (urlsplit(url).hostname or "").lower()
    started = time.monotonic()
    check: dict = {"method": "GET", "url": url}
    try:
        try:
            response = open_url(url, method="GET", headers=dict(SKIP_BROWSER_WARNING), timeout=timeout,
                                validate_certs=validate_certs, follow_redirects="none", http_agent=USER_AGENT,
                                use_proxy=host not in LOOPBACK_HOSTS)
            status, headers, body = response.getcode(), dict(response.headers), response.read(BODY_LIMIT)
        except HTTPError as exc:  # 3xx, 4xx and 5xx are answers too
            status, headers = exc.code, dict(exc.headers or {})
            body = exc.read(BODY_LIMIT) if exc.fp is not None else b""
    except (URLError, OSError, http.client.HTTPException) as exc:
        check.update(reachable=False, status=None, error=_reason(exc), error_code=None, elapsed_ms=_elapsed_ms(started))
        return check
    text = body.decode("utf-8", "replace")
    check.update(reachable=True, status=status, error=None, error_code=find_error_code(headers, text),
                 elapsed_ms=_elapsed_ms(started), body_bytes=len(body))
    if expect_body is not None:
        check["body_matched"] = expect_body in text
    if check["error_code"] or status >= 400 or check.get("body_matched") is False:
        check["body_excerpt"] = text[:EXCERPT_CHARS]
    return check


def probe_tcp(public_url: str, timeout: float) -> dict:
    """Connect to a tcp:// public address and see whether the agent keeps the connection open."""
    parts = urlsplit(public_url)
    started = time.monotonic()
    check: dict = {"method": "TCP", "url": public_url, "status": None, "error_code": None}
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
            check["connect_ms"] = _elapsed_ms(started)
            sock.settimeout(TCP_SETTLE_S)
            try:
                closed = sock.recv(1) == b""
            except (socket.timeout, TimeoutError):
                closed = False  # still open, waiting for us to speak: the upstream accepted it
            except OSError:
                closed = True
    except (OSError, ValueError, TypeError) as exc:
        check.update(reachable=False, error=_reason(exc), elapsed_ms=_elapsed_ms(started))
        return check
    check.update(reachable=True, error=None, closed_at_once=closed, elapsed_ms=_elapsed_ms(started))
    return check
