"""Bounded in-memory storage of spans, metric data points and log records.

Every stored item is one ``Record``: the OTLP JSON of its resource, scope and item (a span, a
log record, or a metric carrying exactly one data point), plus the fields queries filter on.
Each signal keeps at most ``max_items`` records (oldest dropped first). A record becomes
visible to queries at ``visible_at`` (the ``delay`` fault sets it in the future).
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from google.protobuf.message import Message

from . import SIGNALS
from .codec import SIGNAL_SPECS, to_otlp_json

# OTLP JSON keys per signal: (resource list, scope list, items)
_JSON_KEYS = {
    "traces": ("resourceSpans", "scopeSpans", "spans"),
    "metrics": ("resourceMetrics", "scopeMetrics", "metrics"),
    "logs": ("resourceLogs", "scopeLogs", "logRecords"),
}
IngestKey = tuple[str, str, tuple[tuple[str, str], ...]]
_METRIC_KINDS = ("gauge", "sum", "histogram", "exponentialHistogram", "summary")


@dataclass
class Record:
    seq: int
    signal: str
    dataset: str
    received_at: float          # epoch seconds
    visible_at: float           # epoch seconds
    resource: dict[str, Any]
    scope: dict[str, Any]
    item: dict[str, Any]
    time_ns: int                # span start, log time, data point time
    trace_id: str = ""
    span_id: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)           # the item's own
    resource_attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def service_name(self) -> str:
        return str(self.resource_attributes.get("service.name", ""))

    def lookup(self, key: str) -> Any:
        """The value a Dash0-style filter key names; None when the record has no such key."""
        if key == "otel.trace.id":
            return self.trace_id
        if key == "otel.span.id":
            return self.span_id
        if key == "otel.span.name" and self.signal == "traces":
            return self.item.get("name", "")
        if key == "otel.metric.name" and self.signal == "metrics":
            return self.item.get("name", "")
        if key in self.attributes:
            return self.attributes[key]
        return self.resource_attributes.get(key)


def any_value(value: dict[str, Any] | None) -> Any:
    """An OTLP JSON AnyValue as a plain Python value."""
    if not value:
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return attributes_dict(value["kvlistValue"].get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def attributes_dict(key_values: Iterable[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv.get("key", ""): any_value(kv.get("value")) for kv in key_values or []}


class Store:
    def __init__(self, max_items: int = 50000):
        self.max_items = max_items
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._records: dict[str, deque[Record]] = {s: deque(maxlen=max_items) for s in SIGNALS}
        # items ever stored per (signal, dataset, resource attributes): monotonic, unlike the bounded
        # deques (dash0_spans & co are counters); delayed items count once visible
        self._ingested: dict[IngestKey, int] = {}
        self._pending: list[tuple[float, IngestKey]] = []
        # bumped by clear(): readers that fold records in incrementally (the exposition) start over
        self.generation = 0

    def clear(self) -> None:
        with self._lock:
            for records in self._records.values():
                records.clear()
            self._ingested.clear()
            self._pending.clear()
            self.generation += 1

    def ingested(self, now: float | None = None) -> dict[IngestKey, int]:
        """Items stored so far per (signal, dataset, sorted resource attribute pairs), visible ones only."""
        now = time.time() if now is None else now
        with self._lock:
            due = [key for visible_at, key in self._pending if visible_at <= now]
            self._pending = [(at, key) for at, key in self._pending if at > now]
            for key in due:
                self._ingested[key] = self._ingested.get(key, 0) + 1
            return dict(self._ingested)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {signal: len(records) for signal, records in self._records.items()}

    def add(self, signal: str, dataset: str, message: Message, *, skip: int = 0,
            visible_at: float | None = None) -> int:
        """Stores a decoded request; the first ``skip`` items are left out (rejected). Returns stored count."""
        now = time.time()
        records = list(self._flatten(signal, dataset, to_otlp_json(message), now,
                                     now if visible_at is None else visible_at))
        kept = records[skip:]
        with self._lock:
            for record in kept:
                record.seq = next(self._seq)
                self._records[signal].append(record)
                key = (signal, dataset, tuple(sorted((k, str(v)) for k, v in record.resource_attributes.items()
                                                     if v is not None)))
                if record.visible_at <= now:
                    self._ingested[key] = self._ingested.get(key, 0) + 1
                else:
                    self._pending.append((record.visible_at, key))
        return len(kept)

    def select(self, signal: str, predicate: Callable[[Record], bool], now: float | None = None
               ) -> list[Record]:
        """Visible records of a signal matching the predicate, in arrival order."""
        now = time.time() if now is None else now
        with self._lock:
            snapshot = list(self._records[signal])
        return [r for r in snapshot if r.visible_at <= now and predicate(r)]

    def since(self, signal: str, after_seq: int) -> tuple[int, list[Record]]:
        """The store's generation and the records of a signal stored after ``after_seq`` (visible or not), in
        arrival order; read from the newest end, so the cost is the new records', not the store's."""
        with self._lock:
            fresh = list(itertools.takewhile(lambda record: record.seq > after_seq, reversed(self._records[signal])))
            return self.generation, fresh[::-1]

    @staticmethod
    def _flatten(signal: str, dataset: str, data: dict[str, Any], now: float, visible_at: float
                 ) -> Iterable[Record]:
        resource_key, scope_key, items_key = _JSON_KEYS[signal]
        for resource_block in data.get(resource_key, []):
            resource = resource_block.get("resource", {})
            resource_attrs = attributes_dict(resource.get("attributes"))
            for scope_block in resource_block.get(scope_key, []):
                scope = scope_block.get("scope", {})
                for item in scope_block.get(items_key, []):
                    for one in _split_data_points(item) if signal == "metrics" else [item]:
                        yield Record(
                            seq=0, signal=signal, dataset=dataset, received_at=now, visible_at=visible_at,
                            resource=resource, scope=scope, item=one, time_ns=_time_ns(signal, one),
                            trace_id=one.get("traceId", ""), span_id=one.get("spanId", ""),
                            attributes=_item_attributes(signal, one), resource_attributes=resource_attrs)


def _split_data_points(metric: dict[str, Any]) -> list[dict[str, Any]]:
    """One metric dict per data point, so each record is exactly one counted item."""
    for kind in _METRIC_KINDS:
        if kind in metric:
            body = metric[kind]
            return [dict(metric, **{kind: dict(body, dataPoints=[point])}) for point in body.get("dataPoints", [])]
    return []


def metric_kind(metric: dict[str, Any]) -> str:
    return next((kind for kind in _METRIC_KINDS if kind in metric), "")


def data_point(metric: dict[str, Any]) -> dict[str, Any]:
    kind = metric_kind(metric)
    return metric[kind]["dataPoints"][0] if kind else {}


def _item_attributes(signal: str, item: dict[str, Any]) -> dict[str, Any]:
    if signal == "metrics":
        return attributes_dict(data_point(item).get("attributes"))
    return attributes_dict(item.get("attributes"))


def _time_ns(signal: str, item: dict[str, Any]) -> int:
    if signal == "traces":
        value = item.get("startTimeUnixNano")
    elif signal == "logs":
        value = item.get("timeUnixNano") or item.get("observedTimeUnixNano")
    else:
        value = data_point(item).get("timeUnixNano")
    return int(value or 0)


def group_otlp(signal: str, records: Iterable[Record]) -> list[dict[str, Any]]:
    """Records regrouped as OTLP JSON resource blocks (resourceSpans / resourceLogs items)."""
    resource_key, scope_key, items_key = _JSON_KEYS[signal]
    del resource_key
    blocks: dict[str, dict[str, Any]] = {}
    scopes: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        rkey = json.dumps(record.resource, sort_keys=True)
        block = blocks.get(rkey)
        if block is None:
            block = blocks[rkey] = {"resource": record.resource, scope_key: []}
        skey = (rkey, json.dumps(record.scope, sort_keys=True))
        scope = scopes.get(skey)
        if scope is None:
            scope = scopes[skey] = {"scope": record.scope, items_key: []}
            block[scope_key].append(scope)
        scope[items_key].append(record.item)
    return list(blocks.values())


def items_unit(signal: str) -> str:
    return SIGNAL_SPECS[signal].unit
