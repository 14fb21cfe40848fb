# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""HTTP for the OpenTelemetry probes: ansible.module_utils.urls with a timeout on every call.

Non-2xx answers are returned, not raised, because an OTLP exporter must read them (Retry-After,
partialSuccess, google.rpc.Status). Only transport failures raise ``TransportError``, whose
message names host:port and never carries request headers (they hold tokens).
"""

from __future__ import annotations

import email.utils
import socket
import time
import urllib.error
from urllib.parse import urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import SSLValidationError, open_url

USER_AGENT = "emp.deploy.otel_verify"


class TransportError(Exception):
    """The request got no HTTP answer: refused, timed out, TLS failure, bad URL."""


class HttpAnswer:
    def __init__(self, status: int, headers: dict, body: bytes, elapsed_s: float):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body
        self.elapsed_s = elapsed_s

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def hostport(url: str) -> str:
    """host:port of a URL, without credentials or path, for messages."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def where(url: str) -> str:
    """host:port/path of a URL, without credentials or query, for messages."""
    return hostport(url) + (urlsplit(url).path or "/")


class HttpClient:
    """Carries the TLS options; every call takes its own timeout."""

    def __init__(self, validate_certs: bool = True, ca_path: str | None = None):
        self.validate_certs = validate_certs
        self.ca_path = ca_path

    def request(self, method: str, url: str, *, timeout: float, body: bytes | None = None,
                headers: dict | None = None) -> HttpAnswer:
        started = time.monotonic()
        try:
            response = open_url(url, data=body, headers=headers or {}, method=method, timeout=max(timeout, 0.05),
                                validate_certs=self.validate_certs, ca_path=self.ca_path, http_agent=USER_AGENT,
                                follow_redirects="safe", use_netrc=False)
            return HttpAnswer(response.status, _lower(response.headers), response.read(),
                              time.monotonic() - started)
        except urllib.error.HTTPError as exc:
            try:
                body_read = exc.read()
            except (OSError, socket.timeout):
                body_read = b""
            return HttpAnswer(exc.code, _lower(exc.headers), body_read, time.monotonic() - started)
        except (urllib.error.URLError, socket.timeout, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (socket.timeout, TimeoutError)) or isinstance(exc, (socket.timeout, TimeoutError)):
                raise TransportError(f"{method} {where(url)} timed out after {timeout:.1f} s") from None
            raise TransportError(f"{method} {where(url)} failed: {reason}") from None
        except (UrlsConnectionError, SSLValidationError, OSError, ValueError) as exc:
            raise TransportError(f"{method} {where(url)} failed: {exc}") from None


def _lower(headers) -> dict:
    return {str(name).lower(): str(value) for name, value in (headers.items() if headers else [])}


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or HTTP-date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
