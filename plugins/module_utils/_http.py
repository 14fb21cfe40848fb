# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one HTTP client of the collection's modules, over ansible.module_utils.urls.

Why it exists:

- A socket timeout bounds one read, so a peer that drips its answer one byte at a time restarts
  it with every byte and can hold a probe for as long as it likes. Here each request has a
  deadline for the whole exchange (connect, headers and body): the exchange runs in a worker
  thread that the caller stops waiting for at the deadline, and the worker itself stops reading
  the body at the deadline.
- A broken answer (a truncated body, a broken gzip body, something that is not HTTP at all, a URL
  that is not http or https) becomes an ``HttpFailure`` that names host:port, never a traceback,
  so every module can still return its structured result and clean up.
- Non-2xx answers are returned, not raised: callers read their bodies (error JSON, Retry-After,
  ngrok error pages).

Messages never carry request headers or URL credentials: headers hold tokens.
"""

from __future__ import annotations

import email.utils
import http.client
import socket
import ssl
import threading
import time
import zlib
from typing import Any, Union
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request, SSLValidationError, make_context

SCHEMES = ("http", "https")
READ_CHUNK = 64 * 1024
# Every exchange gets at least this long, so a nearly spent deadline still yields an answer or a clear timeout.
MIN_REQUEST_S = 0.05

# HttpFailure kinds
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
TRUNCATED = "truncated"
BAD_ENCODING = "bad_encoding"
NOT_HTTP = "not_http"
BAD_URL = "bad_url"
TLS = "tls"

# Plain http never uses a TLS context, but without one Request.open builds a fresh one (and loads
# the CA store, ~25 ms) on every call.
_PLAIN_CONTEXT = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class Deadline:
    """A point in time (monotonic clock) that several calls share."""

    def __init__(self, seconds: float) -> None:
        self.total = float(seconds)
        self.started = time.monotonic()
        self.ends = self.started + self.total

    def remaining(self) -> float:
        return max(0.0, self.ends - time.monotonic())

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.ends

    def within(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now, never later than this one."""
        return Deadline(min(float(seconds), self.remaining()))


DeadlineLike = Union[Deadline, float, int]


def as_deadline(value: DeadlineLike) -> Deadline:
    return value if isinstance(value, Deadline) else Deadline(float(value))


class HttpFailure(Exception):
    """No usable HTTP answer. ``kind`` says why (UNREACHABLE, TIMEOUT, TRUNCATED, BAD_ENCODING, NOT_HTTP,
    BAD_URL, TLS); ``reason`` is the detail alone, ``where`` the host:port and ``request`` "METHOD /path"."""

    def __init__(self, kind: str, where: str, request: str, reason: str, seconds: float | None = None) -> None:
        self.kind = kind
        self.where = where
        self.request = request
        self.reason = reason
        self.seconds = seconds
        super().__init__(self.sentence())

    @property
    def timed_out(self) -> bool:
        return self.kind == TIMEOUT

    def sentence(self, who: str = "the service") -> str:
        """The failure as a sentence; ``who`` names the peer ("the webhook service")."""
        detail = f" ({self.reason})" if self.reason else ""
        peer = f"{who} at {self.where}"
        if self.kind == TIMEOUT:
            return f"{peer} did not answer {self.request} within {self.seconds or 0:.1f} s{detail}"
        if self.kind == TRUNCATED:
            return f"{peer} sent a truncated body to {self.request}{detail}"
        if self.kind == BAD_ENCODING:
            return f"{peer} sent a broken gzip body to {self.request}{detail}"
        if self.kind == NOT_HTTP:
            return f"{peer} did not answer {self.request} with HTTP{detail}"
        if self.kind == BAD_URL:
            return f"cannot send {self.request} to {self.where}: {self.reason}"
        if self.kind == TLS:
            return f"TLS with {peer} failed ({self.request}): {self.reason}"
        return f"cannot reach {peer} ({self.request}): {self.reason}"


class HttpAnswer:
    """An HTTP answer, whatever its status; ``headers`` has lower-case names."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes, elapsed_s: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed_s = elapsed_s

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        """The media type alone, lower case (``text/html``), or empty."""
        return self.header("content-type").split(";", 1)[0].strip().lower()

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def hostport(url: str) -> str:
    """host:port of a URL, without credentials or path, for messages (IPv6 hosts in brackets)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def where(url: str) -> str:
    """host:port/path of a URL, without credentials or query, for messages."""
    return hostport(url) + (urlsplit(url).path or "/")


def url_problem(url: str, schemes: tuple[str, ...] = SCHEMES) -> str | None:
    """Why ``url`` cannot be requested (a scheme not in ``schemes``, no host, bad port), or None."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in schemes:
        shown = f"'{parts.scheme}'" if parts.scheme else "none"
        return f"the URL scheme is {shown}, not {' or '.join(s + '://' for s in schemes)}"
    if not parts.hostname:
        return "the URL has no host"
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError:
        return "the URL has an invalid port"
    return None


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


class HttpClient:
    """TLS, proxy, redirect and header settings shared by every request; each request has its own deadline."""

    def __init__(self, *, validate_certs: bool = True, ca_path: str | None = None, user_agent: str = "emp.deploy",
                 follow_redirects: str = "none", use_proxy: bool = True) -> None:
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.use_proxy = use_proxy
        self._request = Request(validate_certs=validate_certs, ca_path=ca_path, http_agent=user_agent,
                                follow_redirects=follow_redirects, use_netrc=False, decompress=False)
        self._tls_context: ssl.SSLContext | None = None

    def context_for(self, url: str) -> ssl.SSLContext:
        if urlsplit(url).scheme.lower() != "https":
            return _PLAIN_CONTEXT
        if self._tls_context is None:  # built once: loading the CA store is the slow part
            self._tls_context = make_context(cafile=self.ca_path, validate_certs=self.validate_certs)
        return self._tls_context

    def request(self, method: str, url: str, *, deadline: DeadlineLike, body: bytes | None = None,
                headers: dict[str, str] | None = None, body_limit: int | None = None,
                use_proxy: bool | None = None) -> HttpAnswer:
        """One exchange, done by ``deadline`` (a Deadline or seconds) or HttpFailure(TIMEOUT).

        ``body_limit`` reads at most that many body bytes (the rest is not an error).
        """
        deadline = as_deadline(deadline)
        request = f"{method} {urlsplit(url).path or '/'}"
        problem = url_problem(url)
        if problem:
            raise HttpFailure(BAD_URL, hostport(url), request, problem)
        exchange = _Exchange(self, method, url, request, body, headers or {}, deadline, body_limit,
                             self.use_proxy if use_proxy is None else use_proxy)
        worker = threading.Thread(target=exchange.run, name="emp-deploy-http", daemon=True)
        worker.start()
        if not exchange.done.wait(max(deadline.remaining(), MIN_REQUEST_S)):
            exchange.abandoned = True  # the worker closes whatever it still gets
            raise exchange.timeout()
        if exchange.error is not None or exchange.answer is None:
            raise exchange.error or exchange.failure(NOT_HTTP, "no answer")
        return exchange.answer


class _Exchange:
    """One request/answer, run in a worker thread; records how far it got for the timeout message."""

    def __init__(self, client: HttpClient, method: str, url: str, request: str, body: bytes | None,
                 headers: dict[str, str], deadline: Deadline, body_limit: int | None, use_proxy: bool) -> None:
        self.client = client
        self.method = method
        self.url = url
        self.where = hostport(url)
        self.request = request
        self.body = body
        self.headers = headers
        self.deadline = deadline
        self.seconds = max(deadline.remaining(), MIN_REQUEST_S)  # what this request was given
        self.body_limit = body_limit
        self.use_proxy = use_proxy
        self.done = threading.Event()
        self.abandoned = False
        self.answer: HttpAnswer | None = None
        self.error: HttpFailure | None = None
        self.received: int | None = None  # body bytes so far; None while the headers are awaited
        self.expected: int | None = None
        self.http_error: HTTPError | None = None

    def failure(self, kind: str, reason: str) -> HttpFailure:
        return HttpFailure(kind, self.where, self.request, reason, self.seconds)

    def timeout(self) -> HttpFailure:
        if self.received is None:
            return self.failure(TIMEOUT, "")
        of = f" of {self.expected}" if self.expected is not None else ""
        return self.failure(TIMEOUT, f"{self.received}{of} body bytes arrived in time")

    def run(self) -> None:
        started = time.monotonic()
        try:
            status, headers, response = self.open()
            try:
                # A HEAD answer, 204 and 304 have no body, whatever Content-Length says.
                no_body = self.method.upper() == "HEAD" or status in (204, 304)
                body = b"" if no_body else self.read_body(response, headers)
            finally:
                response.close()
            self.answer = HttpAnswer(status, headers, self.decode(body, headers), time.monotonic() - started)
        except HttpFailure as exc:
            self.error = exc
        except Exception as exc:  # pylint: disable=broad-except  # whatever it is, the caller gets a sentence
            self.error = self.failure(NOT_HTTP, f"{type(exc).__name__}: {exc}")
        finally:
            self.done.set()

    def open(self) -> tuple[int, dict[str, str], Any]:
        """Connects, sends, reads the status line and headers: (status, headers, response to read)."""
        timeout = max(self.deadline.remaining(), MIN_REQUEST_S)
        try:
            response = self.client._request.open(
                self.method, self.url, data=self.body, headers=self.headers, timeout=timeout,
                use_proxy=self.use_proxy, context=self.client.context_for(self.url))
            status = response.status
        except HTTPError as exc:  # 3xx (not followed), 4xx and 5xx are answers too
            if exc.fp is None:
                raise self.failure(NOT_HTTP, f"HTTP {exc.code} without a body") from None
            # Keep the error alive while its body is read: collecting it closes the response.
            self.http_error = exc
            response, status = exc.fp, exc.code
        except URLError as exc:
            raise self.classify(exc.reason) from None
        except Exception as exc:  # pylint: disable=broad-except
            raise self.classify(exc) from None
        headers = {str(name).lower(): str(value) for name, value in (response.headers or {}).items()}
        return status, headers, response

    def classify(self, reason: object) -> HttpFailure:
        """HttpFailure for whatever connecting or reading the headers raised."""
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return self.timeout()
        if isinstance(reason, (ssl.SSLError, ssl.CertificateError, SSLValidationError)):
            return self.failure(TLS, str(reason))
        if isinstance(reason, http.client.RemoteDisconnected):
            return self.failure(NOT_HTTP, "it closed the connection without an answer")
        if isinstance(reason, http.client.HTTPException):
            return self.failure(NOT_HTTP, f"{type(reason).__name__}: {_short(str(reason))}")
        if isinstance(reason, (OSError, UrlsConnectionError)):
            return self.failure(UNREACHABLE, str(reason))
        if isinstance(reason, ValueError):
            return self.failure(BAD_URL, str(reason))
        return self.failure(UNREACHABLE, str(reason))

    def read_body(self, response: Any, headers: dict[str, str]) -> bytes:
        """Reads in pieces and checks the deadline between them: one slow byte cannot restart a timeout."""
        length = headers.get("content-length", "")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.expected = int(length) if length.isdigit() and not chunked else None
        self.received = 0
        pieces = []
        limit = self.body_limit
        while not self.abandoned:
            want = READ_CHUNK if limit is None else min(READ_CHUNK, limit - self.received)
            if want <= 0:
                break
            if self.deadline.expired:
                raise self.timeout()
            try:
                piece = response.read1(want)
            except http.client.IncompleteRead:
                raise self.truncated("the chunked body ended early") from None
            except (socket.timeout, TimeoutError):
                raise self.timeout() from None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise self.truncated(f"the connection broke: {exc}") from None
            if not piece:
                break
            pieces.append(piece)
            self.received += len(piece)
        if self.expected is not None and self.received < self.expected and not self.abandoned \
                and (limit is None or self.received < limit):
            raise self.truncated("then the connection closed")
        return b"".join(pieces)

    def truncated(self, how: str) -> HttpFailure:
        of = f" of {self.expected}" if self.expected is not None else ""
        return self.failure(TRUNCATED, f"{self.received}{of} bytes, {how}")

    def decode(self, body: bytes, headers: dict[str, str]) -> bytes:
        """The body without its gzip Content-Encoding (decoded here, so a broken one is a clear failure)."""
        if headers.get("content-encoding", "").strip().lower() not in ("gzip", "x-gzip") or not body:
            return body
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            decoded = decoder.decompress(body)
        except zlib.error as exc:
            raise self.failure(BAD_ENCODING, str(exc)) from None
        cut_by_limit = self.body_limit is not None and self.received is not None and self.received >= self.body_limit
        if not decoder.eof and not cut_by_limit:
            raise self.failure(BAD_ENCODING, "the gzip stream ends early")
        return decoded


def _short(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
