"""Sandbox webhook service: the EMP webhook-service contract on loopback.

Routes, storage keys, delivery format, signature and retry policy follow
docs/emp-contracts.md ("Webhook service"). Start it with
``python -m sandbox.webhook --redis-url URL [--port N] [--release-dir DIR] ...``.
"""
from __future__ import annotations

SERVICE_NAME = "webhook-service"  # the /health "service" field
CLIENT_NAME = "emp-webhook"       # Redis CLIENT SETNAME
TELEMETRY_NAME = "emp-webhook"    # OpenTelemetry service.name
USER_AGENT = "EMP-Job-Queue-Webhook/1.0"

EVENT_TYPES = (
    "job_submitted", "update_job_progress", "complete_job", "job_failed", "cancel_job",
    "worker_status", "machine_status", "workflow_submitted", "workflow_completed", "workflow_failed",
)

# Redis pub/sub channel -> webhook event type. The API publishes job_cancelled, the
# webhook contract calls the event cancel_job.
CHANNEL_EVENTS = {
    "job_submitted": "job_submitted",
    "update_job_progress": "update_job_progress",
    "complete_job": "complete_job",
    "job_failed": "job_failed",
    "job_cancelled": "cancel_job",
    "cancel_job": "cancel_job",
    "worker_status": "worker_status",
    "machine_status": "machine_status",
    "workflow_submitted": "workflow_submitted",
    "workflow_completed": "workflow_completed",
    "workflow_failed": "workflow_failed",
}

DEFAULT_RETRY = {"max_attempts": 3, "initial_delay_ms": 1000, "backoff_multiplier": 2, "max_delay_ms": 30000}
MAX_CONSECUTIVE_FAILURES = 10
