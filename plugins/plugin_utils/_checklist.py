# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The production deployment checklist's lines that the coverage report accounts for (pure Python).

The machine form of docs/checklist.md: the same lines, in the same order, with the same ids and words
(tests/unit/plugins/plugin_utils/test_checklist.py checks that line for line), so an installed
collection quotes them without docs/. Besides the words, each line says what covers it: the gates or
watch checks that judge it (``covered_by``), the free-text ``checklist_ref`` those gates carry
(``aliases``), the lines it is made of (``derived_from``), or why nothing can check it (``manual``).
How the coverage report uses them: docs/coverage.md.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

TESTING = "Pre-deployment testing checklist"
GO_NO_GO = "Deployment sequence GO/NO-GO"
SUCCESS = "Success criteria"
TARGETS = "Performance targets"
MANUAL = "Still requiring manual verification"
SECTIONS = (TESTING, GO_NO_GO, SUCCESS, TARGETS, MANUAL)


@dataclass(frozen=True)
class Line:
    """One checklist line: where it is, its words, and what covers it."""

    id: str
    section: str
    group: str
    text: str
    note: str = ""  # the checklist's own remark on the line (its status marks without the emoji)
    covered_by: tuple[str, ...] = ()  # the gates, checks or plays that judge it
    aliases: tuple[str, ...] = ()  # free-text checklist_ref values of the gates that judge it
    derived_from: tuple[str, ...] = ()  # ids of the lines whose outcome decides this one
    manual: str = ""  # why no gate can judge it (then it is manual even with no gate in the run)


# --- the plays of predeploy.yml that cover the testing section -----------------------------------------

_REDIS = "predeploy.yml play \"Redis & database layer\""
_QUEUE = "predeploy.yml play \"Job queue integrity\""
_TELEMETRY = "predeploy.yml play \"Telemetry & monitoring\""
_WEBHOOKS = "predeploy.yml play \"Webhooks\""
_EXTERNAL = "predeploy.yml play \"External integration\""
_WORKERS = "predeploy.yml play \"Worker & job processing\""
_DEVTOOLS = "predeploy.yml play \"Development tools\""
_DISRUPTIVE = "disruptive: runs only when disruptive checks are allowed"


def _testing(line_id: str, group: str, text: str, covered_by: tuple[str, ...], note: str = "",
             manual: str = "") -> Line:
    return Line(line_id, TESTING, group, text, note=note, covered_by=covered_by, manual=manual)


_REDIS_TEST = "Redis & Database Layer / Redis Connection Test"
_DATABASE = "Redis & Database Layer / Database Operations"
_JOB_QUEUE = "Redis & Database Layer / Job Queue Integrity"
_OTEL = "Telemetry & Monitoring / OTEL Direct Integration"
_HEALTH = "Telemetry & Monitoring / Service Health Monitoring"
_WEBHOOK = "Webhook System / Webhook Processing"
_EXT = "Webhook System / External Integration"
_OLLAMA = "Worker & Job Processing / Ollama Connector (NEW)"
_CONNECTORS = "Worker & Job Processing / Existing Connectors"
_NGROK = "Development Tools / Ngrok Health System"

_TESTING_LINES = (
    _testing("testing/redis/graceful-degradation", _REDIS_TEST,
             "Start services with Redis down, verify graceful degradation", (f"{_REDIS} ({_DISRUPTIVE})",),
             note="TESTED"),
    _testing("testing/redis/reconnect", _REDIS_TEST, "Restart Redis mid-operation, ensure automatic reconnection",
             (f"{_REDIS} ({_DISRUPTIVE})",), note="TESTED"),
    _testing("testing/redis/retry-memory", _REDIS_TEST, "Test infinite retry logic doesn't cause memory leaks",
             (f"{_REDIS} ({_DISRUPTIVE}: memory before and after the Redis outage)",),
             note="TESTED (limited retries for API routes)"),
    _testing("testing/redis/all-services-reconnect", _REDIS_TEST,
             "Verify all three services (API, webhook, monitor) reconnect properly", (f"{_REDIS} ({_DISRUPTIVE})",),
             note="TESTED (monitor has MonitorRedisManager)"),
    _testing("testing/db/test-suite", _DATABASE, "Run full test suite with new database package structure", (),
             manual="the EMP repository's own test suite runs in its CI, not against the deployment target; "
                    "its result is signed off by the release owner"),
    _testing("testing/db/prisma-queries", _DATABASE, "Test Prisma client initialization and queries",
             (f"{_REDIS} (emp.deploy.db_probe smoke queries)",)),
    _testing("testing/db/migrations", _DATABASE, "Verify migration compatibility",
             (f"{_REDIS} (emp.deploy.db_probe expected_migrations)",)),
    _testing("testing/db/pooling", _DATABASE, "Test connection pooling under load",
             (f"{_REDIS} (emp.deploy.db_probe pool)",)),
    _testing("testing/queue/submit-storage", _JOB_QUEUE, "Submit test jobs, verify Redis storage/retrieval",
             (f"{_QUEUE} (emp.deploy.job_queue_probe)",)),
    _testing("testing/queue/claim-atomicity", _JOB_QUEUE, "Test job claiming atomicity with Redis functions",
             (f"{_QUEUE} (emp.deploy.job_queue_probe)",)),
    _testing("testing/queue/worker-heartbeat", _JOB_QUEUE, "Verify worker registration and heartbeat mechanisms",
             (f"{_QUEUE} (emp.deploy.job_queue_probe)",)),
    _testing("testing/otel/traces", _OTEL, "Verify traces appear in Dash0 dashboard",
             (f"{_TELEMETRY} (emp.deploy.otel_verify)",)),
    _testing("testing/otel/metrics", _OTEL, "Test metric collection and export",
             (f"{_TELEMETRY} (emp.deploy.otel_verify)",)),
    _testing("testing/otel/logs", _OTEL, "Confirm log aggregation works without FluentBit",
             (f"{_TELEMETRY} (emp.deploy.otel_verify)",)),
    _testing("testing/otel/performance", _OTEL, "Test performance impact of direct OTEL approach",
             (f"{_TELEMETRY} (latency with telemetry on and off, their ratio)",)),
    _testing("testing/health/all-healthy", _HEALTH, "All services report healthy status",
             (f"{_TELEMETRY} (emp.deploy.service_probe)",)),
    _testing("testing/health/websocket", _HEALTH, "WebSocket connections maintain stability",
             (f"{_TELEMETRY} (emp.deploy.service_probe WebSocket holds)",)),
    _testing("testing/health/api-sla", _HEALTH, "API response times within SLA (< 200ms)",
             (f"{_TELEMETRY} (emp.deploy.service_probe latency)",)),
    _testing("testing/webhook/registration", _WEBHOOK, "Test webhook registration and retrieval",
             (f"{_WEBHOOKS} (emp.deploy.webhook_probe)",), note="NEEDS MANUAL TESTING"),
    _testing("testing/webhook/init-order", _WEBHOOK, "Verify initialization order (processor before routes)",
             (f"{_WEBHOOKS} (emp.deploy.webhook_probe)",), note="VERIFIED (13 passing tests)"),
    _testing("testing/webhook/delivery", _WEBHOOK, "Test webhook delivery with actual external endpoints",
             (f"{_WEBHOOKS} (emp.deploy.webhook_probe)",), note="NEEDS MANUAL TESTING"),
    _testing("testing/webhook/retries", _WEBHOOK, "Test error handling and retry mechanisms",
             (f"{_WEBHOOKS} (emp.deploy.webhook_probe)",), note="VERIFIED (safe operation wrappers tested)"),
    _testing("testing/external/ngrok", _EXT, "Test ngrok tunnel connectivity",
             (f"{_EXTERNAL} (emp.deploy.ngrok_tunnel)",)),
    _testing("testing/external/urls", _EXT, "Verify webhook URLs are accessible externally",
             (f"{_EXTERNAL} (emp.deploy.webhook_probe through the tunnel)",)),
    _testing("testing/external/payload", _EXT, "Test webhook payload validation and processing",
             (f"{_EXTERNAL} (emp.deploy.webhook_probe)",)),
    _testing("testing/ollama/init", _OLLAMA, "Test new Ollama connector initialization",
             (f"{_WORKERS} (emp.deploy.worker_probe)",)),
    _testing("testing/ollama/assets", _OLLAMA, "Verify asset saving and attestation functionality",
             (f"{_WORKERS} (emp.deploy.worker_probe)",)),
    _testing("testing/ollama/errors", _OLLAMA, "Test error handling and fallback mechanisms",
             (f"{_WORKERS} (emp.deploy.worker_probe)",)),
    _testing("testing/ollama/memory", _OLLAMA, "Monitor for memory leaks during processing",
             (f"{_WORKERS} (emp.deploy.worker_probe)",)),
    _testing("testing/comfyui/functions", _CONNECTORS, "Test ComfyUI connector still functions",
             (f"{_WORKERS} (emp.deploy.worker_probe)",)),
    _testing("testing/comfyui/custom-nodes", _CONNECTORS, "Verify custom node installation works",
             (f"{_WORKERS} (emp.deploy.worker_probe)",)),
    _testing("testing/pm2/restarts", _CONNECTORS, "Test PM2 service management and restarts",
             (f"{_WORKERS} (emp.deploy.worker_probe)",)),
    _testing("testing/ngrok/auto-restart", _NGROK, "Test automatic tunnel startup/restart",
             (f"{_DEVTOOLS} (emp.deploy.ngrok_tunnel)",), note="IMPLEMENTED (ngrok-health-check.js)"),
    _testing("testing/ngrok/health", _NGROK, "Verify health check monitoring works",
             (f"{_DEVTOOLS} (emp.deploy.ngrok_tunnel)",), note="IMPLEMENTED (health endpoint checking)"),
    _testing("testing/ngrok/recovery", _NGROK, "Test tunnel failure recovery",
             (f"{_DEVTOOLS} (emp.deploy.ngrok_tunnel)",), note="IMPLEMENTED (auto-restart logic)"),
    _testing("testing/ngrok/no-conflicts", _NGROK, "Ensure no conflicts with existing tunnels",
             (f"{_DEVTOOLS} (emp.deploy.ngrok_tunnel)",), note="IMPLEMENTED (port checks)"),
)

# --- the deployment sequence's GO/NO-GO lines: the deploy phase gates (roles/*/tasks) ---------------------

_GO_NO_GO_LINES = (
    Line("gonogo/database", GO_NO_GO, "Phase 1: Infrastructure / 1. Deploy database changes first",
         "All existing queries working, no connection errors",
         covered_by=("deploy.yml gate database-connections (role emp.deploy.database, emp.deploy.db_probe)",),
         aliases=("Deployment sequence / Phase 1 / 1. Deploy database changes first",)),
    Line("gonogo/redis", GO_NO_GO, "Phase 1: Infrastructure / 2. Deploy Redis connection improvements",
         "All services reconnect properly, no memory leaks",
         covered_by=("deploy.yml gate redis-connections (role emp.deploy.redis, emp.deploy.redis_health)",),
         aliases=("Deployment sequence / Phase 1 / 2. Deploy Redis connection improvements",)),
    Line("gonogo/telemetry", GO_NO_GO, "Phase 2: Telemetry Migration / 3. Deploy OTEL-only telemetry",
         "Traces, metrics, and logs appearing in Dash0",
         covered_by=("deploy.yml gate telemetry-flowing (role emp.deploy.telemetry, emp.deploy.otel_verify)",),
         aliases=("Deployment sequence / Phase 2 / 3. Deploy OTEL-only telemetry",)),
    Line("gonogo/webhooks", GO_NO_GO, "Phase 3: Application Layer / 4. Deploy webhook service changes",
         "Webhooks processing normally, no 404 errors",
         covered_by=("deploy.yml gate webhooks-processing (role emp.deploy.webhooks, emp.deploy.webhook_probe)",),
         aliases=("Deployment sequence / Phase 3 / 4. Deploy webhook service changes",)),
    Line("gonogo/workers", GO_NO_GO, "Phase 3: Application Layer / 5. Deploy worker improvements",
         "All worker types functioning, jobs processing",
         covered_by=("deploy.yml gates workers-processing-<type> and workers-memory (role emp.deploy.workers)",),
         aliases=("Deployment sequence / Phase 3 / 5. Deploy worker improvements",
                  "Worker & Job Processing / Monitor for memory leaks during processing; "
                  "Success criteria / no memory leaks")),
    Line("gonogo/ngrok", GO_NO_GO, "Phase 4: Development Tools / 6. Deploy ngrok health system",
         "Tunnel management working in dev environment",
         covered_by=("deploy.yml gates ngrok-tunnels-<name> (role emp.deploy.ngrok, emp.deploy.ngrok_tunnel)",),
         aliases=("Deployment sequence / Phase 4 / 6. Deploy ngrok health system",)),
)

# --- success criteria and performance targets: the final criteria of the 24 h watch ------------------------

_STABLE = "Success criteria / All services running stable for 24 hours; Service Uptime 99.9%"
_JOB_RATE = "Success criteria / Job processing rate matches baseline; Performance targets / No degradation vs baseline"
_WEBHOOK_SUCCESS = "Success criteria / Webhook delivery success rate > 95%"
_MEMORY = "Performance targets / Memory Usage - no growth > 10% over 24 hours"
_ERRORS = ("Success criteria / No increase in error rates; Post-deployment monitoring / Error rates < 0.1% for "
           "critical paths")
_WATCH = "watch.yml final check"
_SUCCESS_GROUP = "Deployment Considered Successful When"
_TARGETS_GROUP = "Performance Targets"

_SUCCESS_LINES = (
    Line("success/stable-24h", SUCCESS, _SUCCESS_GROUP, "All services running stable for 24 hours",
         covered_by=(f"{_WATCH}s stable_api, stable_monitor, stable_webhook, stable_worker",), aliases=(_STABLE,)),
    Line("success/job-rate", SUCCESS, _SUCCESS_GROUP, "Job processing rate matches baseline",
         covered_by=(f"{_WATCH} job_rate (against the baseline deploy.yml captured)",), aliases=(_JOB_RATE,)),
    Line("success/webhook-success", SUCCESS, _SUCCESS_GROUP, "Webhook delivery success rate > 95%",
         covered_by=(f"{_WATCH} webhook_success",), aliases=(_WEBHOOK_SUCCESS,)),
    Line("success/no-memory-leaks", SUCCESS, _SUCCESS_GROUP, "No memory leaks detected",
         covered_by=(f"{_WATCH}s memory_growth_api, memory_growth_monitor, memory_growth_webhook, "
                     f"memory_growth_worker",), aliases=(_MEMORY,)),
    Line("success/telemetry-flowing", SUCCESS, _SUCCESS_GROUP, "Telemetry data flowing normally to Dash0",
         covered_by=(f"{_WATCH} telemetry_flowing_final (when watch_otel_verify_args is set)",),
         aliases=("Success criteria / Telemetry data flowing normally to Dash0",)),
    Line("success/no-error-increase", SUCCESS, _SUCCESS_GROUP, "No increase in error rates",
         covered_by=(f"{_WATCH}s error_rate_api, error_rate_webhook (against the baseline)",), aliases=(_ERRORS,)),
    Line("success/manual-tests", SUCCESS, _SUCCESS_GROUP, "All manual tests passing",
         manual="manual tests are run and signed off by people; this report lists which lines stay manual"),
    Line("target/api-p95", TARGETS, _TARGETS_GROUP, "API Response Time: < 200ms P95",
         covered_by=(f"{_WATCH} api_latency_p95",), aliases=("Performance targets / API Response Time < 200ms P95",)),
    Line("target/job-processing", TARGETS, _TARGETS_GROUP, "Job Processing: No degradation vs baseline",
         covered_by=(f"{_WATCH} job_rate (against the baseline deploy.yml captured)",), aliases=(_JOB_RATE,)),
    Line("target/memory-growth", TARGETS, _TARGETS_GROUP, "Memory Usage: No growth > 10% over 24 hours",
         covered_by=(f"{_WATCH}s memory_growth_api, memory_growth_monitor, memory_growth_webhook, "
                     f"memory_growth_worker",), aliases=(_MEMORY,)),
    Line("target/webhook-delivery", TARGETS, _TARGETS_GROUP, "Webhook Delivery: > 95% success rate",
         covered_by=(f"{_WATCH} webhook_success",), aliases=(_WEBHOOK_SUCCESS,)),
    Line("target/uptime", TARGETS, _TARGETS_GROUP, "Service Uptime: 99.9% during deployment window",
         covered_by=(f"{_WATCH}s stable_api, stable_monitor, stable_webhook, stable_worker",), aliases=(_STABLE,)),
)

# --- the list of what still needs people: decided by the testing lines that automate it ----------------------

_MANUAL_GROUP = "Test Coverage Summary"
_MANUAL_LINES = (
    Line("manual/otel-migration", MANUAL, _MANUAL_GROUP, "Telemetry/OTEL Migration: No automated tests, HIGH RISK",
         derived_from=("testing/otel/traces", "testing/otel/metrics", "testing/otel/logs",
                       "testing/otel/performance")),
    Line("manual/webhook-delivery", MANUAL, _MANUAL_GROUP, "Actual Webhook Delivery: External endpoint testing needed",
         derived_from=("testing/webhook/delivery", "testing/external/urls")),
    Line("manual/database-integration", MANUAL, _MANUAL_GROUP,
         "Database Package Integration: End-to-end testing required",
         derived_from=("testing/db/test-suite", "testing/db/prisma-queries", "testing/db/migrations",
                       "testing/db/pooling")),
    Line("manual/ollama", MANUAL, _MANUAL_GROUP, "Ollama Connector: New connector needs production-like testing",
         derived_from=("testing/ollama/init", "testing/ollama/assets", "testing/ollama/errors",
                       "testing/ollama/memory")),
    Line("manual/load", MANUAL, _MANUAL_GROUP, "Performance Under Load: Load testing not automated",
         manual="no load test runs here: db_probe's pooling check loads the connection pool and the gates sample "
                "latency under the current traffic, neither is a load test of the services"),
)

LINES: tuple[Line, ...] = _TESTING_LINES + _GO_NO_GO_LINES + _SUCCESS_LINES + _MANUAL_LINES

BY_ID: dict[str, Line] = {line.id: line for line in LINES}


def _lines_by_ref() -> dict[str, tuple[str, ...]]:
    refs: dict[str, list[str]] = {line.id: [line.id] for line in LINES}
    for line in LINES:
        for alias in line.aliases:
            refs.setdefault(alias, []).append(line.id)
    return {ref: tuple(ids) for ref, ids in refs.items()}


# checklist_ref (an id, or the free text a deploy gate or watch check carries) -> the ids of its lines
BY_REF: dict[str, tuple[str, ...]] = _lines_by_ref()


def lines_of(ref: t.Any) -> tuple[str, ...]:
    """The ids of the lines a gate's checklist_ref names; empty for a ref this checklist does not know."""
    if not isinstance(ref, str):
        return ()
    return BY_REF.get(ref.strip(), ())


def is_line_id(ref: t.Any) -> bool:
    return isinstance(ref, str) and ref.strip() in BY_ID
