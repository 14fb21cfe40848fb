# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A client of the Prometheus HTTP query API (Prometheus, Dash0's ``/api/prometheus``, Thanos, Mimir...).

Shared by the ``metric_query`` module and the ``watch`` action plugin (which queries in-process on the
controller). It speaks the API's envelope (``status``, ``data.resultType``, ``data.result``,
``errorType``, ``error``, ``warnings``) and keeps what matters for a gate:

- Sample values are strings on the wire because NaN and +/-Inf exist. They are kept as floats, and a
  value that is not finite is named (``special``: ``NaN``, ``+Inf``, ``-Inf``), never turned into a
  number a criterion could compare.
- No series is ``empty``, never a silent 0.
- Every failure is a ``PromError`` whose ``kind`` says what a caller may do about it: a bad query or
  refused credentials do not get better by asking again; an unavailable or slow backend is "could not
  measure".

Every request has a whole-request deadline (module_utils/_http.py). Messages never carry the token
or header values.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Union
from urllib.parse import urlencode, urlsplit

from ansible_collections.emp.deploy.plugins.module_utils._http import (
    TIMEOUT,
    TLS,
    UNREACHABLE,
    Deadline,
    HttpClient,
    HttpFailure,
    hostport,
    url_problem,
)

# PromError kinds
BAD_QUERY = "bad_query"
UNAUTHORIZED = "unauthorized"
UNAVAILABLE = "unavailable"
TIMED_OUT = "timeout"
BAD_RESPONSE = "bad_response"
KINDS = (BAD_QUERY, UNAUTHORIZED, UNAVAILABLE, TIMED_OUT, BAD_RESPONSE)
# The backend could not give a figure this time: the gate counts an error sample, asking later may work.
NOT_MEASURED = (UNAVAILABLE, TIMED_OUT, BAD_RESPONSE)

REDUCERS = ("last", "min", "max", "avg", "sum", "increase")
SPECIALS = ("NaN", "+Inf", "-Inf")
RESULT_TYPES = ("vector", "matrix", "scalar", "string")
# Prometheus answers at most 11,000 points per series in a range query.
MAX_POINTS = 11000
# The connection options of every user of this client (doc fragment emp.deploy.prometheus).
PROM_CONNECTION_ARGSPEC: dict = dict(
    url=dict(type="str", required=True),
    headers=dict(type="dict", default={}, no_log=True),
    bearer_token=dict(type="str", no_log=True),
    dataset=dict(type="str"),
    timeout=dict(type="float", default=10.0),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
)
# An API error body is read for its message only.
BODY_LIMIT = 64 * 1024 * 1024

Number = Union[float, str]  # a float, or one of SPECIALS


class PromError(Exception):
    """The API gave no figure. ``kind``: bad_query | unauthorized | unavailable | timeout | bad_response;
    ``status`` is the HTTP status when there was one, ``error_type`` the API's ``errorType``."""

    def __init__(self, kind: str, message: str, *, status: int | None = None, error_type: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.error_type = error_type

    @property
    def retryable(self) -> bool:
        return self.kind not in (BAD_QUERY, UNAUTHORIZED)

    @property
    def not_measured(self) -> bool:
        """True when the backend could not answer (the gate's "could not measure"), not a mistake of the caller."""
        return self.kind in NOT_MEASURED


@dataclass
class PromResult:
    """One answer. ``series``: [{"labels": {...}, "values": [[ts, value], ...]}], a value being a float or
    one of SPECIALS (a ``string`` result keeps its text). ``value`` is the one figure of the answer (a single
    sample, or a range reduced by ``reduce``), None when empty, ambiguous or not finite (``special`` then)."""

    result_type: str
    series: list[dict] = field(default_factory=list)
    empty: bool = True
    value: float | None = None
    special: str | None = None
    warnings: list[str] = field(default_factory=list)
    reduce: str | None = None
    # Why value is None although series came back (several series, a range without reduce...), else None.
    no_value_reason: str | None = None

    @property
    def samples(self) -> int:
        return sum(len(item["values"]) for item in self.series)

    def as_dict(self) -> dict[str, Any]:
        return {"result_type": self.result_type, "series": self.series, "empty": self.empty,
                "value": self.value, "special": self.special, "warnings": self.warnings,
                "reduce": self.reduce, "no_value_reason": self.no_value_reason}


# --- durations -------------------------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration: a number of seconds (300, "300", 1.5) or Prometheus units ("90s", "5m",
    "24h", "1h30m", "500ms", "1d", "1w"). Raises ValueError with a clear sentence; it must be > 0."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"a duration must be a number of seconds or a string like '5m', not {type(text).__name__}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        spec = text.strip()
        try:
            seconds = float(spec)
        except ValueError:
            seconds = _units_to_seconds(spec, text)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be greater than 0 seconds, not {text!r}")
    return seconds


def _units_to_seconds(spec: str, original: object) -> float:
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(spec):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not spec or pos != len(spec):
        raise ValueError(f"invalid duration {original!r}: use seconds or units ms, s, m, h, d, w, y (e.g. '90s', '5m', '1h30m', '24h')")
    return seconds


# --- values ----------------------------------------------------------------------------------------

def sample_value(text: Any) -> Number:
    """A wire value ("1.5", "NaN", "+Inf", "-Inf") as a float, or the name of a value that is not finite.
    Raises ValueError for anything else."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"a sample value must be a string, not {type(text).__name__}")
    number = float(text)
    return number if math.isfinite(number) else special_name(number)


def special_name(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    return "+Inf" if number > 0 else "-Inf"


def as_float(value: Number) -> float:
    """A float for a sample value, specials included (NaN, inf), for arithmetic only."""
    return float(value)  # float() reads "NaN", "+Inf" and "-Inf" too


def split_value(number: float | None) -> tuple[float | None, str | None]:
    """(value, special): a finite float stays the value; NaN/+Inf/-Inf become the special, value None."""
    if number is None:
        return None, None
    if math.isfinite(number):
        return number, None
    return None, special_name(number)


def reduce_values(values: list, how: str) -> float | None:
    """One figure for a series' values (floats or SPECIALS), oldest first: last | min | max | avg | sum |
    increase (counter-aware, as PromQL's increase without extrapolation: a drop is a reset). None when
    there are no values; NaN when any value is NaN (so it is named, never hidden)."""
    if how not in REDUCERS:
        raise ValueError(f"reduce must be one of {', '.join(REDUCERS)}, not {how!r}")
    numbers = [as_float(value) for value in values]
    if not numbers:
        return None
    if how == "last":
        return numbers[-1]
    if any(math.isnan(number) for number in numbers):
        return math.nan
    if how == "min":
        return min(numbers)
    if how == "max":
        return max(numbers)
    if how == "increase":
        return _increase(numbers)
    if math.inf in numbers and -math.inf in numbers:
        return math.nan
    if any(math.isinf(number) for number in numbers):
        return next(number for number in numbers if math.isinf(number))
    total = math.fsum(numbers)
    return total if how == "sum" else total / len(numbers)


def _increase(numbers: list[float]) -> float:
    if any(math.isinf(number) for number in numbers):
        return math.nan
    total = 0.0
    for before, after in zip(numbers, numbers[1:]):
        total += after - before if after >= before else after  # a counter reset starts again from 0
    return total


# --- client ----------------------------------------------------------------------------------------

class PromClient:
    """Queries one Prometheus-compatible API root (``http://host:9090``, ``https://.../api/prometheus``)."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, bearer_token: str | None = None,
                 dataset: str | None = None, timeout: float = 10.0, validate_certs: bool = True,
                 ca_path: str | None = None, user_agent: str = "emp.deploy") -> None:
        problem = url_problem(url or "")
        if problem:
            raise ValueError(f"url {hostport(url or '')}: {problem}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds greater than 0, not {timeout!r}")
        self.url = url.rstrip("/")
        self.where = hostport(url)
        self.timeout = float(timeout)
        self.headers = {str(name): str(value) for name, value in (headers or {}).items()}
        self.headers.setdefault("Accept", "application/json")
        self.headers["Content-Type"] = "application/x-www-form-urlencoded"
        if bearer_token:
            self.headers["Authorization"] = f"Bearer {bearer_token}"
        if dataset:
            self.headers["Dash0-Dataset"] = dataset
        # Every header value may be a credential (API keys come in custom headers too).
        self._secrets = sorted({value for value in [bearer_token or "", *(headers or {}).values()]
                                if len(str(value)) >= 4}, key=len, reverse=True)
        self.http = HttpClient(validate_certs=validate_certs, ca_path=ca_path, user_agent=user_agent)

    def query(self, promql: str, *, at: float | None = None, reduce: str | None = None) -> PromResult:
        """An instant query (``/api/v1/query``), at ``at`` (epoch seconds) or now. ``reduce`` only matters
        for a range vector (``rate(x[5m])`` is not one, ``x[5m]`` is)."""
        form = {"query": promql}
        if at is not None:
            form["time"] = _timestamp(at)
        return self._send("/api/v1/query", promql, form, reduce)

    def query_range(self, promql: str, *, start: float, end: float, step: float,
                    reduce: str | None = None) -> PromResult:
        """A range query (``/api/v1/query_range``) from ``start`` to ``end`` (epoch seconds) every ``step``
        seconds; ``reduce`` (last|min|max|avg|sum|increase) makes a one-series answer one ``value``."""
        check_range(start, end, step)
        form = {"query": promql, "start": _timestamp(start), "end": _timestamp(end), "step": _timestamp(step)}
        return self._send("/api/v1/query_range", promql, form, reduce)

    # -- one exchange --

    def _send(self, path: str, promql: str, form: dict[str, str], reduce: str | None) -> PromResult:
        if not isinstance(promql, str) or not promql.strip():
            raise ValueError("query must be a non-empty PromQL string")
        if reduce is not None and reduce not in REDUCERS:
            raise ValueError(f"reduce must be one of {', '.join(REDUCERS)}, not {reduce!r}")
        deadline = Deadline(self.timeout)
        # The engine's own evaluation timeout, a little shorter, so a slow query ends there too.
        form["timeout"] = _timestamp(max(0.1, self.timeout * 0.9))
        body = urlencode(form).encode("utf-8")
        try:
            answer = self.http.request("POST", self.url + path, deadline=deadline, body=body,
                                       headers=self.headers, body_limit=BODY_LIMIT)
        except HttpFailure as exc:
            raise self._failure(exc) from None
        shown = urlsplit(self.url).path + path  # as the request line has it, for messages
        envelope = self._envelope(answer.status, answer.body, shown)
        if answer.status >= 300 or envelope.get("status") != "success":
            raise self._api_error(answer.status, envelope, shown)
        return self._result(envelope, reduce, shown)

    def _failure(self, exc: HttpFailure) -> PromError:
        who = "the Prometheus API"
        if exc.kind == TIMEOUT:
            return PromError(TIMED_OUT, self.scrub(exc.sentence(who)))
        if exc.kind == UNREACHABLE:
            return PromError(UNAVAILABLE, self.scrub(exc.sentence(who)))
        if exc.kind == TLS:
            return PromError(UNAVAILABLE, self.scrub(exc.sentence(who)))
        return PromError(BAD_RESPONSE, self.scrub(exc.sentence(who)))

    def _envelope(self, status: int, body: bytes, path: str) -> dict:
        """The JSON envelope; a body that is not one is a PromError named after the HTTP status."""
        try:
            envelope = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            envelope = None
        if isinstance(envelope, dict) and "status" in envelope:
            return envelope
        raise self._http_status_error(status, path, "" if envelope is not None else _snippet(body))

    def _http_status_error(self, status: int, path: str, snippet: str) -> PromError:
        """A PromError for an answer without the API's JSON envelope."""
        where = f"the Prometheus API at {self.where}"
        detail = f": {self.scrub(snippet)}" if snippet else ""
        if status in (401, 403):
            return PromError(UNAUTHORIZED, f"{where} refused the credentials (HTTP {status}) for POST {path}",
                             status=status)
        if status >= 500 or status == 429:
            return PromError(UNAVAILABLE, f"{where} is unavailable: HTTP {status} for POST {path}{detail}",
                             status=status)
        if status == 404:
            return PromError(BAD_RESPONSE, f"{where} answered HTTP 404 for POST {path}: is the url the API root "
                             "(http://host:9090, or Dash0's .../api/prometheus)?", status=status)
        if 200 <= status < 300:
            return PromError(BAD_RESPONSE, f"{where} did not answer POST {path} with the API's JSON{detail}",
                             status=status)
        return PromError(BAD_RESPONSE, f"{where} answered HTTP {status} for POST {path} without the API's "
                         f"JSON{detail}", status=status)

    def _api_error(self, status: int, envelope: dict, path: str) -> PromError:
        error_type = str(envelope.get("errorType") or "") or None
        error = self.scrub(str(envelope.get("error") or "").strip())
        if status in (401, 403):
            return PromError(UNAUTHORIZED, f"the Prometheus API at {self.where} refused the credentials "
                             f"(HTTP {status}) for POST {path}", status=status, error_type=error_type)
        if status in (400, 422) or error_type == "bad_data":
            return PromError(BAD_QUERY, f"bad PromQL: {error or error_type or f'HTTP {status}'}", status=status,
                             error_type=error_type)
        if error_type in ("timeout", "canceled"):
            return PromError(TIMED_OUT, f"the Prometheus API at {self.where} gave up on the query "
                             f"({error_type}: {error})", status=status, error_type=error_type)
        if status >= 500 or status == 429 or error_type in ("unavailable", "internal", "execution"):
            why = f"{error_type}: {error}" if error_type else error or f"HTTP {status}"
            return PromError(UNAVAILABLE, f"the Prometheus API at {self.where} is unavailable (HTTP {status}, "
                             f"{why})", status=status, error_type=error_type)
        return PromError(BAD_RESPONSE, f"the Prometheus API at {self.where} answered HTTP {status} for POST {path} "
                         f"with status {envelope.get('status')!r}", status=status, error_type=error_type)

    def _result(self, envelope: dict, reduce: str | None, path: str) -> PromResult:
        try:
            return build_result(envelope, reduce)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise PromError(BAD_RESPONSE, f"the Prometheus API at {self.where} answered POST {path} with an "
                            f"unexpected result: {self.scrub(str(exc))}") from None

    def scrub(self, text: str) -> str:
        """The text without any credential this client sends."""
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return text


def client_from(params: dict, user_agent: str = "emp.deploy") -> PromClient:
    """A PromClient from the options of PROM_CONNECTION_ARGSPEC (a module's params, the watch's prometheus dict)."""
    return PromClient(params["url"], headers=params.get("headers") or {}, bearer_token=params.get("bearer_token"),
                      dataset=params.get("dataset"),
                      timeout=10.0 if params.get("timeout") is None else params["timeout"],
                      validate_certs=params.get("validate_certs", True), ca_path=params.get("ca_path"),
                      user_agent=user_agent)


def check_range(start: float, end: float, step: float) -> None:
    """Raises ValueError unless start < end, step > 0 and the range has at most MAX_POINTS steps."""
    for name, number in (("start", start), ("end", end), ("step", step)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise ValueError(f"{name} must be a number of seconds, not {number!r}")
    if step <= 0:
        raise ValueError(f"step must be greater than 0 seconds, not {step}")
    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    points = (end - start) / step
    if points > MAX_POINTS:
        raise ValueError(f"a range of {end - start:.0f} s at a step of {step:g} s is {points:.0f} points per series; "
                         f"Prometheus answers at most {MAX_POINTS}: use a step of at least "
                         f"{math.ceil((end - start) / MAX_POINTS)} s")


def default_step(start: float, end: float) -> float:
    """A step giving about 250 points over the range (as dashboards do), at least 1 s."""
    return max(1.0, math.ceil((end - start) / 250.0))


def build_result(envelope: dict, reduce: str | None = None) -> PromResult:
    """A PromResult from a successful API envelope. Raises ValueError/TypeError/KeyError on another shape."""
    data = envelope["data"]
    result_type = data["resultType"]
    raw = data["result"]
    warnings = [str(item) for item in envelope.get("warnings") or []]
    if result_type in ("scalar", "string"):
        if not isinstance(raw, list) or len(raw) != 2:
            raise ValueError(f"a {result_type} result must be [timestamp, value], not {_short(raw)}")
        value: Any = sample_value(raw[1]) if result_type == "scalar" else str(raw[1])
        series = [{"labels": {}, "values": [[float(raw[0]), value]]}]
    elif result_type in ("vector", "matrix"):
        if not isinstance(raw, list):
            raise ValueError(f"a {result_type} result must be a list, not {_short(raw)}")
        series = [_series(item, result_type) for item in raw]
    else:
        raise ValueError(f"unknown resultType {result_type!r}")
    result = PromResult(result_type=result_type, series=series, empty=not series, warnings=warnings,
                        reduce=reduce)
    _set_value(result)
    return result


def _series(item: Any, result_type: str) -> dict:
    if not isinstance(item, dict):
        raise ValueError(f"a series must be an object, not {_short(item)}")
    labels = item.get("metric") or {}
    if not isinstance(labels, dict):
        raise ValueError(f"series labels must be an object, not {_short(labels)}")
    if "histogram" in item or "histograms" in item:
        raise ValueError("native histogram samples are not supported: query a float series "
                         "(histogram_quantile(), histogram_count()...)")
    pairs = [item["value"]] if result_type == "vector" else item["values"]
    if not isinstance(pairs, list):
        raise ValueError(f"series values must be a list, not {_short(pairs)}")
    values = []
    for pair in pairs:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError(f"a sample must be [timestamp, value], not {_short(pair)}")
        values.append([float(pair[0]), sample_value(pair[1])])
    return {"labels": {str(key): str(value) for key, value in labels.items()}, "values": values}


def _set_value(result: PromResult) -> None:
    """result.value/special: the one figure of the answer, or no_value_reason saying why there is none."""
    if result.empty:
        return
    if result.result_type == "string":
        result.no_value_reason = "the result is a string, not a number"
        return
    if len(result.series) > 1:
        result.no_value_reason = (f"{len(result.series)} series came back, not one: aggregate them in PromQL "
                                  "(sum(), max(), avg() ...) to get one value")
        return
    values = [value for dummy, value in result.series[0]["values"]]
    number: float | None
    if result.result_type != "matrix":  # one sample: it is the value, whatever reduce says
        number = as_float(values[0])
    elif result.reduce:
        number = reduce_values(values, result.reduce)
    elif len(values) == 1:
        number = as_float(values[0])
    else:
        result.no_value_reason = f"the series has {len(values)} samples: set reduce to make them one value"
        return
    result.value, result.special = split_value(number)


def _timestamp(seconds: float) -> str:
    return f"{float(seconds):.3f}".rstrip("0").rstrip(".")


def _snippet(body: bytes) -> str:
    return _short(body.decode("utf-8", "replace"))


def _short(value: Any, limit: int = 120) -> str:
    flat = " ".join(str(value).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
