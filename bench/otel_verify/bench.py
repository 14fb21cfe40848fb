"""bench/otel_verify: time to prove each signal arrived, canary round trip vs fixed wait.

Candidate: emp.deploy.otel_verify's own code path (run_probe) -- send the canary, then query the
backend until it is visible (polling from 0.2 s, backing off to poll_interval).
Baseline: the system's old end-to-end test -- send the same canary, sleep a fixed 10 s, query once.

Both run in the same process against the same sandbox telemetry backend (python -m
sandbox.telemetry playing collector + Dash0), in three ingestion-latency scenarios set with the
backend's delay fault: immediate, 2 s (a busy pipeline), and 12 s (slower than the fixed wait).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "collections"), str(ROOT / "tests")]

from ansible_collections.emp.deploy.plugins.module_utils._otel_backends import Canary, Dash0Backend  # noqa: E402
from ansible_collections.emp.deploy.plugins.module_utils._http import HttpClient  # noqa: E402
from ansible_collections.emp.deploy.plugins.module_utils._otlp import (  # noqa: E402
    SIGNAL_PATHS,
    build_canary,
    encode_canary,
    new_span_id,
    new_trace_id,
)
from ansible_collections.emp.deploy.plugins.modules import otel_verify  # noqa: E402
from telemetry_harness import TelemetryProcess  # noqa: E402

SIGNALS = ("traces", "metrics", "logs")


def probe_params(backend, signal: str, timeout: float) -> dict:
    params = {key: spec.get("default") for key, spec in otel_verify.ARGUMENT_SPEC.items()}
    params.update(endpoint=backend.otlp, query_url=backend.query, query_headers=backend.auth, signals=[signal],
                  timeout=timeout, service_name="emp-api")
    assert otel_verify.validate_options(params) is None
    return params


def canary_round_trip(backend, signal: str, timeout: float) -> tuple[float, bool]:
    """Wall time of one otel_verify run for one signal, and whether it proved arrival."""
    started = time.monotonic()
    result = otel_verify.run_probe(probe_params(backend, signal, timeout))
    return time.monotonic() - started, bool(result["signals"][signal]["visible"])


def fixed_wait(backend, signal: str, wait_s: float) -> tuple[float, bool]:
    """The old approach: send, sleep wait_s, query once."""
    http = HttpClient()
    run_id, trace_id, span_id, now = new_trace_id()[:16], new_trace_id(), new_span_id(), time.time_ns()
    started = time.monotonic()
    body, content_type = encode_canary(signal, build_canary(signal, "emp-api", {}, run_id, trace_id, span_id, now,
                                                            "emp_deploy_canary"), "http/protobuf")
    answer = http.request("POST", backend.otlp + SIGNAL_PATHS[signal], deadline=10, body=body,
                          headers={"Content-Type": content_type})
    assert answer.ok, answer.status
    time.sleep(wait_s)
    query = otel_verify.default_metric_query("emp_deploy_canary").replace("{run_id}", run_id)
    found = Dash0Backend(http, backend.query, backend.auth).find(signal, Canary(run_id, trace_id, span_id, now, query),
                                                                 deadline=10)
    return time.monotonic() - started, bool(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="canary round trips per signal and scenario")
    parser.add_argument("--baseline-wait", type=float, default=10.0,
                        help="the baseline's fixed wait in seconds (the old test used 10)")
    args = parser.parse_args()
    if args.baseline_wait != 10.0:
        print(f"NOTE: the baseline's fixed wait is scaled to {args.baseline_wait:g} s instead of the old test's 10 s "
              "(--baseline-wait); ratios shrink or grow with it.")
    scenarios = [("immediate", 0.0, SIGNALS), ("2 s ingestion delay", 2.0, SIGNALS),
                 ("12 s ingestion delay", 12.0, ("traces",))]
    print(f"bench/otel_verify: canary round trip (send until visible, {args.rounds} runs, median) vs baseline "
          f"'send, wait {args.baseline_wait:g} s, query once' (1 run), same sandbox backend, same run")
    print(f"{'scenario':<22} {'signal':<8} {'canary s':>9} {'found':>6} {'baseline s':>11} {'found':>6} "
          f"{'baseline/canary':>16}")
    with tempfile.TemporaryDirectory(prefix="bench-otel-") as tmp, TelemetryProcess(tmp) as backend:
        for name, delay, signals in scenarios:
            for signal in signals:
                backend.reset()
                if delay:
                    backend.fault(mode="delay", delay_s=delay, signals=[signal])
                runs = [canary_round_trip(backend, signal, timeout=delay + 10) for dummy in range(args.rounds)]
                canary_s = statistics.median(seconds for seconds, found in runs)
                canary_found = all(found for seconds, found in runs)
                baseline_s, baseline_found = fixed_wait(backend, signal, args.baseline_wait)
                ratio = f"{baseline_s / canary_s:.1f}x" if baseline_found else "n/a (missed)"
                print(f"{name:<22} {signal:<8} {canary_s:>9.3f} {str(canary_found):>6} {baseline_s:>11.3f} "
                      f"{str(baseline_found):>6} {ratio:>16}")
    print("ratio = baseline time / canary time (higher is better for the canary). 'missed' = the fixed wait "
          "queried before the data was visible: the old test would have reported a false NO-GO.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
