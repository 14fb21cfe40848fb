"""The collector's own Prometheus metrics (what ``:8888/metrics`` shows on a real collector).

Counter families, per signal unit (spans, metric_points, log_records):
``otelcol_receiver_accepted_*``, ``otelcol_receiver_refused_*``, ``otelcol_exporter_sent_*``,
``otelcol_exporter_send_failed_*``, ``otelcol_exporter_enqueue_failed_*``. Collectors before
v0.106 (OpenCensus) wrote them without a suffix, newer ones with ``_total``: ``suffix`` picks.
"""
from __future__ import annotations

import threading
import time

from . import SIGNALS
from .codec import SIGNAL_SPECS

RECEIVER = 'receiver="otlp",transport="http"'
EXPORTER = 'exporter="otlp/dash0"'
FAMILIES = {
    "otelcol_receiver_accepted": (RECEIVER, "Number of {unit} successfully pushed into the pipeline."),
    "otelcol_receiver_refused": (RECEIVER, "Number of {unit} that could not be pushed into the pipeline."),
    "otelcol_exporter_sent": (EXPORTER, "Number of {unit} successfully sent to destination."),
    "otelcol_exporter_send_failed": (EXPORTER, "Number of {unit} in failed attempts to send to destination."),
    "otelcol_exporter_enqueue_failed": (EXPORTER, "Number of {unit} failed to be added to the sending queue."),
}


class SelfMetrics:
    def __init__(self, suffix: str = "", instance_id: str = "sandbox") -> None:
        self.suffix = suffix
        self.instance_id = instance_id
        self.started = time.time()
        self._lock = threading.Lock()
        self._counters = {(family, signal): 0 for family in FAMILIES for signal in SIGNALS}

    def add(self, family: str, signal: str, amount: int) -> None:
        if amount:
            with self._lock:
                self._counters[(family, signal)] += amount

    def reset(self) -> None:
        with self._lock:
            for key in self._counters:
                self._counters[key] = 0

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        with self._lock:
            counters = dict(self._counters)
        for family, (labels, help_text) in FAMILIES.items():
            for signal in SIGNALS:
                unit = SIGNAL_SPECS[signal].unit
                name = f"{family}_{unit}{self.suffix}"
                lines.append(f"# HELP {name} {help_text.format(unit=unit.replace('_', ' '))}")
                lines.append(f"# TYPE {name} counter")
                lines.append(f'{name}{{{labels},service_instance_id="{self.instance_id}"}} '
                             f"{counters[(family, signal)]}")
        lines.append(f"# HELP otelcol_process_uptime{self.suffix} Uptime of the process")
        lines.append(f"# TYPE otelcol_process_uptime{self.suffix} counter")
        lines.append(f'otelcol_process_uptime{self.suffix}{{service_instance_id="{self.instance_id}"}} '
                     f"{time.time() - self.started:.3f}")
        return "\n".join(lines) + "\n"
