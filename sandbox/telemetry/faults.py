"""The fault switchboard: what the backend does wrong, on demand.

Ingest faults apply per signal (traces, metrics, logs):

| mode          | OTLP answer                                  | stored? | self-metrics             |
|---------------|----------------------------------------------|---------|--------------------------|
| none          | 200                                          | yes     | receiver_accepted, sent  |
| drop          | 200 (looks fine)                             | never   | exporter_send_failed     |
| delay         | 200                                          | after delay_s | accepted, sent     |
| unavailable   | 503 + Retry-After: retry_after               | no      | receiver_refused         |
| throttle      | 429 + Retry-After: retry_after               | no      | receiver_refused         |
| partial       | 200 + partialSuccess(rejected)               | the rest | refused + accepted      |
| queue_full    | 200 (looks fine)                             | never   | exporter_enqueue_failed  |
| bad_request   | 400 + google.rpc.Status INVALID_ARGUMENT      | no      | receiver_refused         |

Backend-wide faults: ``wrong_token`` (the query API answers 401 to the configured token too)
and ``unhealthy`` (the health endpoint answers 503).

``times`` limits an ingest fault to the next N requests of each signal; then the signal is
healthy again (how tests prove Retry-After is honoured).
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from . import SIGNALS

INGEST_MODES = ("none", "drop", "delay", "unavailable", "throttle", "partial", "queue_full", "bad_request")
BACKEND_MODES = ("wrong_token", "unhealthy")
MODES = INGEST_MODES + BACKEND_MODES


@dataclass
class Fault:
    mode: str = "none"
    delay_s: float = 5.0
    retry_after: int = 1
    rejected: int = 1
    times: int | None = None          # None = until changed


class FaultError(ValueError):
    """A fault request that makes no sense (answered 400)."""


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ingest: dict[str, Fault] = {signal: Fault() for signal in SIGNALS}
        self.wrong_token = False
        self.unhealthy = False

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"signals": {s: asdict(f) for s, f in self._ingest.items()},
                    "wrong_token": self.wrong_token, "unhealthy": self.unhealthy}

    def apply(self, request: dict[str, Any]) -> dict[str, Any]:
        """Applies one fault request (the POST /_control/faults body); returns the new snapshot."""
        if not isinstance(request, dict):
            raise FaultError("a fault request is a JSON object")
        mode = request.get("mode", "none")
        if mode not in MODES:
            raise FaultError(f"unknown fault mode {mode!r}; known: {', '.join(MODES)}")
        signals = request.get("signals") or list(SIGNALS)
        if not isinstance(signals, list) or any(s not in SIGNALS for s in signals):
            raise FaultError(f"signals must be a list drawn from {', '.join(SIGNALS)}")
        fault = Fault(mode=mode if mode in INGEST_MODES else "none",
                      delay_s=_number(request, "delay_s", 5.0),
                      retry_after=int(_number(request, "retry_after", 1)),
                      rejected=int(_number(request, "rejected", 1)),
                      times=int(request["times"]) if request.get("times") is not None else None)
        with self._lock:
            if mode == "wrong_token":
                self.wrong_token = bool(request.get("enabled", True))
            elif mode == "unhealthy":
                self.unhealthy = bool(request.get("enabled", True))
            else:
                for signal in signals:
                    self._ingest[signal] = Fault(**asdict(fault))
                if mode == "none" and not request.get("signals"):
                    self.wrong_token = self.unhealthy = False
        return self.snapshot()

    def take(self, signal: str) -> Fault:
        """The fault this ingest request meets; counts down ``times``."""
        with self._lock:
            fault = self._ingest[signal]
            current = Fault(**asdict(fault))
            if fault.mode != "none" and fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._ingest[signal] = Fault()
            return current


def _number(request: dict[str, Any], key: str, default: float) -> float:
    value = request.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise FaultError(f"{key} must be a non-negative number, got {value!r}")
    return float(value)
