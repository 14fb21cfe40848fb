"""A small PromQL subset for the Dash0 stand-in's /api/prometheus/api/v1/query.

Grammar (instant queries only)::

    expr      := aggregate | function | selector
    aggregate := ("sum"|"count"|"min"|"max"|"avg") [grouping] "(" expr ")" [grouping]
    grouping  := ("by"|"without") "(" label ("," label)* ")"
    function  := ("increase"|"rate"|"count_over_time"|"last_over_time"|"max_over_time"
                  |"sum_over_time") "(" selector "[" duration "]" ")"
    selector  := [name] ["{" [matcher ("," matcher)*] "}"]
    matcher   := label ("="|"!="|"=~"|"!~") string  |  string   (a quoted metric name)

Names and labels may be quoted (Prometheus 3 UTF-8 syntax: ``{"dash0.spans", "service.name"="x"}``);
dots and other characters invalid in classic names are compared as underscores, so
``dash0_spans{service_name="x"}`` and ``{"dash0.spans","service.name"="x"}`` are the same query.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

LOOKBACK_S = 300.0
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<duration>\d+(?:ms|s|m|h|d|w|y)(?:\d+(?:ms|s|m|h|d|w|y))*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:.]*)
  | (?P<op>=~|!~|!=|=)
  | (?P<punct>[{}()\[\],])
""", re.VERBOSE)
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
AGGREGATIONS = ("sum", "count", "min", "max", "avg")
RANGE_FUNCTIONS = ("increase", "rate", "count_over_time", "last_over_time", "max_over_time", "sum_over_time")


class PromQLError(ValueError):
    """The query is outside the subset or malformed (answered 400 bad_data)."""


def normalize(name: str) -> str:
    """A metric or label name as classic Prometheus spells it (dots become underscores)."""
    return re.sub(r"[^A-Za-z0-9_:]", "_", name)


def parse_duration(text: str) -> float:
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise PromQLError(f"bad duration {text!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


@dataclass
class Selector:
    name: str | None
    matchers: list[tuple[str, str, str]] = field(default_factory=list)
    range_s: float | None = None


@dataclass
class Function:
    name: str
    arg: Selector


@dataclass
class Aggregate:
    op: str
    arg: "Selector | Function | Aggregate"
    by: list[str] | None = None
    without: list[str] | None = None


Expr = "Selector | Function | Aggregate"


def _tokens(query: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if not match:
            raise PromQLError(f"unexpected character {query[pos]!r} at position {pos}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "ws":
            out.append((kind, match.group()))
    return out


def _unquote(text: str) -> str:
    return bytes(text[1:-1], "utf-8").decode("unicode_escape")


class _Parser:
    def __init__(self, query: str):
        self.tokens = _tokens(query)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        tok_kind, tok_value = self.peek()
        if (value is not None and tok_value != value) or (kind is not None and tok_kind != kind):
            raise PromQLError(f"expected {value or kind}, found {tok_value or 'end of query'!r}")
        self.pos += 1
        return tok_value

    def parse(self):
        expr = self.expr()
        if self.peek()[0] != "eof":
            raise PromQLError(f"unexpected {self.peek()[1]!r} after the expression")
        return expr

    def expr(self):
        kind, value = self.peek()
        if kind == "ident" and value in AGGREGATIONS and self.peek(1)[1] in ("(", "by", "without"):
            return self.aggregate()
        if kind == "ident" and value in RANGE_FUNCTIONS and self.peek(1)[1] == "(":
            self.take()
            self.take("(")
            arg = self.selector(allow_range=True)
            self.take(")")
            if arg.range_s is None:
                raise PromQLError(f"{value}() needs a range vector, e.g. {value}(x[5m])")
            return Function(value, arg)
        if kind == "ident" and self.peek(1)[1] == "(":
            raise PromQLError(f"function {value!r} is not supported by the sandbox")
        return self.selector(allow_range=False)

    def aggregate(self) -> Aggregate:
        op = self.take()
        node = Aggregate(op, arg=None)  # type: ignore[arg-type]
        self.grouping(node)
        self.take("(")
        node.arg = self.expr()
        self.take(")")
        self.grouping(node)
        return node

    def grouping(self, node: Aggregate) -> None:
        if self.peek()[1] in ("by", "without"):
            which = self.take()
            self.take("(")
            labels = []
            while self.peek()[1] != ")":
                labels.append(normalize(self.label()))
                if self.peek()[1] == ",":
                    self.take(",")
            self.take(")")
            setattr(node, which, labels)

    def label(self) -> str:
        kind, value = self.peek()
        if kind == "string":
            self.take()
            return _unquote(value)
        return self.take(kind="ident")

    def selector(self, allow_range: bool) -> Selector:
        selector = Selector(name=None)
        if self.peek()[0] == "ident":
            selector.name = self.take()
        if self.peek()[1] == "{":
            self.take("{")
            while self.peek()[1] != "}":
                self.matcher(selector)
                if self.peek()[1] == ",":
                    self.take(",")
                elif self.peek()[1] != "}":
                    raise PromQLError(f"expected ',' or '}}', found {self.peek()[1]!r}")
            self.take("}")
        if selector.name is None and not selector.matchers:
            raise PromQLError("a selector needs a metric name or at least one matcher")
        if self.peek()[1] == "[":
            if not allow_range:
                raise PromQLError("range vectors are only supported inside a range function")
            self.take("[")
            selector.range_s = parse_duration(self.take(kind="duration"))
            self.take("]")
        return selector

    def matcher(self, selector: Selector) -> None:
        label = self.label()
        if self.peek()[0] != "op":  # a bare quoted metric name inside the braces
            if selector.name is not None:
                raise PromQLError("metric name given twice")
            selector.name = label
            return
        op = self.take(kind="op")
        value = _unquote(self.take(kind="string"))
        selector.matchers.append((normalize(label), op, value))


def parse(query: str):
    if not query or not query.strip():
        raise PromQLError("empty query")
    return _Parser(query).parse()


# --------------------------------------------------------------------------- evaluation
@dataclass
class Series:
    labels: dict[str, str]            # normalized names, including __name__
    samples: list[tuple[float, float]]  # (epoch seconds, value), ascending
    counter_history: bool = False     # the full history is known (value before it is 0)

    def value_at(self, when: float) -> float | None:
        """The latest sample at or before ``when``; stale after LOOKBACK_S unless the history is whole."""
        latest: tuple[float, float] | None = None
        for stamp, value in self.samples:
            if stamp > when:
                break
            latest = (stamp, value)
        if self.counter_history:
            return latest[1] if latest else 0.0
        if latest is None or latest[0] < when - LOOKBACK_S:
            return None
        return latest[1]


SeriesSource = Callable[[str], Iterable[Series]]


def _matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for label, op, expected in matchers:
        actual = labels.get(label, "")
        if op == "=" and actual != expected:
            return False
        if op == "!=" and actual == expected:
            return False
        if op in ("=~", "!~"):
            try:
                hit = re.fullmatch(expected, actual) is not None
            except re.error as exc:
                raise PromQLError(f"bad regex {expected!r}: {exc}") from exc
            if hit != (op == "=~"):
                return False
    return True


def _select(selector: Selector, source: SeriesSource) -> list[Series]:
    name = selector.name
    matchers = list(selector.matchers)
    if name is None:
        names = [m for m in matchers if m[0] == "__name__" and m[1] == "="]
        if not names:
            raise PromQLError("a selector without a metric name needs __name__=\"...\"")
        name = names[0][2]
    return [s for s in source(normalize(name)) if _matches(s.labels, matchers)]


def evaluate(expr, source: SeriesSource, when: float) -> list[tuple[dict[str, str], float]]:
    if isinstance(expr, Selector):
        out = []
        for series in _select(expr, source):
            value = series.value_at(when)
            if value is not None:
                out.append((dict(series.labels), value))
        return out
    if isinstance(expr, Function):
        return _evaluate_function(expr, source, when)
    return _evaluate_aggregate(expr, source, when)


def _evaluate_function(expr: Function, source: SeriesSource, when: float) -> list[tuple[dict[str, str], float]]:
    window = expr.arg.range_s or 0.0
    out = []
    for series in _select(expr.arg, source):
        labels = {k: v for k, v in series.labels.items() if k != "__name__"}
        in_window = [(t, v) for t, v in series.samples if when - window < t <= when]
        if expr.name in ("increase", "rate"):
            if series.counter_history:
                end = series.value_at(when) or 0.0
                start = series.value_at(when - window) or 0.0
            elif len(in_window) >= 2:
                start, end = in_window[0][1], in_window[-1][1]
            else:
                continue
            delta = max(0.0, end - start)
            out.append((labels, delta / window if expr.name == "rate" else delta))
            continue
        if not in_window:
            continue
        values = [value for stamp, value in in_window]
        result = {"count_over_time": float(len(values)), "last_over_time": values[-1],
                  "max_over_time": max(values), "sum_over_time": math.fsum(values)}[expr.name]
        out.append((labels, result))
    return out


def _evaluate_aggregate(expr: Aggregate, source: SeriesSource, when: float) -> list[tuple[dict[str, str], float]]:
    groups: dict[tuple, tuple[dict[str, str], list[float]]] = {}
    for labels, value in evaluate(expr.arg, source, when):
        if expr.by is not None:
            key_labels = {k: labels[k] for k in expr.by if k in labels}
        elif expr.without is not None:
            key_labels = {k: v for k, v in labels.items() if k not in expr.without and k != "__name__"}
        else:
            key_labels = {}
        key = tuple(sorted(key_labels.items()))
        groups.setdefault(key, (key_labels, []))[1].append(value)
    reducers = {"sum": math.fsum, "count": lambda v: float(len(v)), "min": min, "max": max,
                "avg": lambda v: math.fsum(v) / len(v)}
    return [(labels, float(reducers[expr.op](values))) for labels, values in groups.values()]


def format_value(value: float) -> str:
    """Prometheus API sample values are strings; integral floats print without a fraction."""
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return repr(value)
