"""The ingested OTLP metrics in Prometheus text format, for the Prometheus engine behind the Dash0 stand-in.

The sandbox Prometheus scrapes ``GET /dash0/metrics`` of the query listener (job ``dash0``,
``honor_labels``), so the PromQL the stand-in forwards is evaluated by the real engine over what the
services exported with OTLP. Per series (metric name + labels) the newest data point is exposed:

- names and label names in the classic Prometheus spelling (characters other than ``[A-Za-z0-9_:]``
  become ``_``: ``emp.jobs.completed`` -> ``emp_jobs_completed``, ``service.name`` -> ``service_name``);
- labels: the resource attributes, then the data point's attributes (which win);
- gauges and sums as one sample; histograms as ``_bucket{le=...}`` (cumulative), ``_sum``, ``_count``;
  exponential histograms and summaries as ``_sum`` and ``_count``;
- a series stays exposed once seen, even after the bounded store dropped its data points (``Exposition``
  folds the new points in at each scrape instead of reading the whole store);
- ``dash0_spans``, ``dash0_logs``, ``dash0_metrics_datapoints``: counters of the items ingested per
  resource (what Dash0 offers as ``dash0.spans`` & co), monotonic even when the bounded store drops
  old items; ``/_control/reset`` sets them back to 0.
"""
from __future__ import annotations

import math
import re
import threading
import time
from typing import Any, Iterable

from .store import Record, Store, data_point, metric_kind

SYNTHETIC = (("traces", "dash0_spans"), ("logs", "dash0_logs"), ("metrics", "dash0_metrics_datapoints"))
Labels = tuple[tuple[str, str], ...]


def prom_name(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_:]", "_", name)
    return f"_{name}" if not name or name[0].isdigit() else name


def label_name(name: str) -> str:
    return prom_name(name).replace(":", "_")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(attributes: dict[str, Any]) -> dict[str, str]:
    return {label_name(k): v if isinstance(v, str) else str(v) for k, v in attributes.items()
            if v is not None and not label_name(k).startswith("__")}


def _samples(record: Record) -> Iterable[tuple[str, dict[str, str], float]]:
    """(series name, extra labels, value) of one data point."""
    base = prom_name(record.item.get("name", ""))
    kind = metric_kind(record.item)
    point = data_point(record.item)
    if kind in ("gauge", "sum"):
        value = point.get("asDouble", point.get("asInt"))
        if value is not None:
            yield base, {}, float(value)
        return
    if kind == "histogram":
        cumulative = 0
        for bound, count in zip(point.get("explicitBounds") or [], point.get("bucketCounts") or []):
            cumulative += int(count)
            yield f"{base}_bucket", {"le": _number(float(bound))}, float(cumulative)
        yield f"{base}_bucket", {"le": "+Inf"}, float(point.get("count", 0))
    if kind in ("histogram", "exponentialHistogram", "summary"):
        yield f"{base}_count", {}, float(point.get("count", 0))
        yield f"{base}_sum", {}, float(point.get("sum", 0.0))


class Exposition:
    """The newest value of every series of the ingested metrics, folded in incrementally: each scrape (every
    second) reads only the data points stored since the one before, not the whole store (up to 50,000 points,
    which cost a CPU core on a sandbox left running). A series stays once seen, even after the bounded store
    dropped its points, as it would in a real backend; ``Store.clear`` starts it over."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._generation = -1
        self._seen_seq = 0
        self._waiting: list[Record] = []  # stored but not yet visible (the delay fault)
        self._series: dict[str, dict[tuple[str, Labels], tuple[int, float]]] = {}  # dataset -> key -> (seq, value)

    def latest(self, dataset: str, now: float | None = None) -> dict[tuple[str, Labels], float]:
        """Series -> value of the newest visible data point (by arrival) of ``dataset``."""
        now = time.time() if now is None else now
        with self._lock:
            generation, fresh = self.store.since("metrics", self._seen_seq)
            if generation != self._generation:  # cleared (or first use): fold in everything the store holds
                generation, fresh = self.store.since("metrics", 0)
                self._generation, self._waiting, self._series = generation, [], {}
            if fresh:
                self._seen_seq = fresh[-1].seq
            candidates, self._waiting = self._waiting + fresh, []
            for record in candidates:
                if record.visible_at > now:
                    self._waiting.append(record)
                else:
                    self._fold(record)
            return {key: value for key, (_seq, value) in self._series.get(dataset, {}).items()}

    def _fold(self, record: Record) -> None:
        series = self._series.setdefault(record.dataset, {})
        point_labels = _labels(record.resource_attributes)
        point_labels.update(_labels(record.attributes))
        for name, extra, value in _samples(record):
            key = (name, tuple(sorted({**point_labels, **extra}.items())))
            if key not in series or series[key][0] < record.seq:  # newest arrival wins, whenever it turned visible
                series[key] = (record.seq, value)


def render(store: Store, dataset: str, exposition: Exposition | None = None) -> str:
    """Prometheus text exposition (0.0.4, untyped samples) of ``dataset`` (through ``exposition``'s incremental
    fold when given, else from the whole store)."""
    series = dict((exposition or Exposition(store)).latest(dataset))
    names = dict(SYNTHETIC)
    for (signal, item_dataset, resource), count in store.ingested().items():
        if item_dataset == dataset:
            key = (names[signal], tuple(sorted(_labels(dict(resource)).items())))
            series[key] = series.get(key, 0.0) + count
    lines = []
    for (name, pairs), value in sorted(series.items()):
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
        lines.append(f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}")
    return "\n".join(lines) + "\n" if lines else ""
