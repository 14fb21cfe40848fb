"""Collector self-metrics parsing and Retry-After handling (pure functions, no network)."""
from __future__ import annotations

import email.utils
import time

import pytest

from ansible_collections.emp.deploy.plugins.module_utils._otel_collector import (
    counter_growth,
    failure_counters,
    parse_sample_line,
)
from ansible_collections.emp.deploy.plugins.module_utils._http import hostport, retry_after_seconds, where

OLD_STYLE = """
# HELP otelcol_exporter_send_failed_spans Number of spans in failed attempts to send to destination.
# TYPE otelcol_exporter_send_failed_spans counter
otelcol_exporter_send_failed_spans{exporter="otlp/dash0",service_instance_id="a"} 3
otelcol_exporter_send_failed_spans{exporter="otlp/backup",service_instance_id="a"} 2
otelcol_exporter_enqueue_failed_log_records{exporter="otlp/dash0"} 0
otelcol_process_uptime 12.5
"""
NEW_STYLE = """
otelcol_exporter_send_failed_spans_total{exporter="otlp/dash0",otel_scope_name="go.opentelemetry.io/collector/exporter/exporterhelper"} 7 1700000000000
otelcol_exporter_send_failed_metric_points_total{exporter="otlp/dash0",note="a } brace and spaces"} 1e+00
otelcol_exporter_sent_spans_total{exporter="otlp/dash0"} 100
"""


def test_old_style_counters_are_summed_over_exporters():
    counters, saw = failure_counters(OLD_STYLE)
    assert saw is True
    assert counters == {"otelcol_exporter_send_failed_spans": 5.0, "otelcol_exporter_enqueue_failed_log_records": 0.0}


def test_total_suffix_is_the_same_family():
    counters = failure_counters(NEW_STYLE)[0]
    assert counters == {"otelcol_exporter_send_failed_spans": 7.0, "otelcol_exporter_send_failed_metric_points": 1.0}


def test_non_collector_text_is_recognised():
    assert failure_counters("node_cpu_seconds_total 1\n")[1] is False


@pytest.mark.parametrize("line, expected", [
    ("a_total 3", ("a_total", 3.0)),
    ('a{x="1 2"} 4 1700000000', ("a", 4.0)),
    ('a{x="}\\"{"} NaN', ("a", float("nan"))),
    ("# TYPE a counter", None),
    ("", None),
    ("broken", None),
])
def test_sample_lines(line, expected):
    parsed = parse_sample_line(line)
    if expected is None or expected[1] == expected[1]:
        assert parsed == expected
    else:
        assert parsed[0] == expected[0] and parsed[1] != parsed[1]


def test_growth_per_family():
    report = counter_growth({"otelcol_exporter_send_failed_spans": 5.0},
                            {"otelcol_exporter_send_failed_spans": 6.0,
                             "otelcol_exporter_enqueue_failed_spans": 0.0})
    assert report == {"otelcol_exporter_send_failed_spans": {"before": 5, "after": 6, "growth": 1},
                      "otelcol_exporter_enqueue_failed_spans": {"before": 0, "after": 0, "growth": 0}}


@pytest.mark.parametrize("header, expected", [("3", 3.0), ("0", 0.0), (None, None), ("", None), ("soon", None),
                                              ("-1", None)])
def test_retry_after_seconds(header, expected):
    assert retry_after_seconds(header) == expected


def test_retry_after_http_date():
    now = time.time()
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds(header, now=now) == pytest.approx(30, abs=1.0)
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_messages_never_carry_credentials():
    assert hostport("https://user:secret@collector.internal/v1/traces") == "collector.internal:443"
    assert where("http://user:secret@127.0.0.1:4318/v1/traces?token=x") == "127.0.0.1:4318/v1/traces"
