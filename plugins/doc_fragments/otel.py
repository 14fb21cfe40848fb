# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Options shared by modules that query a telemetry backend (Dash0, Tempo, Jaeger) over HTTP."""

    DOCUMENTATION = r"""
options:
  backend:
    description:
      - Where arrival is proven.
      - V(dash0) uses the Dash0 query API, C(POST /api/spans) and C(POST /api/logs) filtered on
        C(otel.trace.id), and PromQL at C(/api/prometheus/api/v1/query) for the metric.
      - V(tempo) uses C(GET /api/traces/{trace id}) (and C(GET /api/search) for O(expect_services)).
      - V(jaeger) uses the api/v3 HTTP API, C(GET /api/v3/traces/{trace id}) (and
        C(GET /api/v3/traces?query.service_name=...) for O(expect_services)).
      - Tempo and Jaeger hold traces only; metrics and logs canaries are then checked at ingest only.
      - V(none) checks ingest only (the collector's answer), which proves nothing about the backend.
    type: str
    choices: [dash0, tempo, jaeger, none]
    default: dash0
  query_url:
    description:
      - Base URL of the backend's query API, for example C(https://api.eu-west-1.aws.dash0.com) or
        C(http://tempo:3200). Required unless O(backend=none).
    type: str
  query_headers:
    description:
      - HTTP headers sent with every query, typically C(Authorization) (V(Bearer <token>)) and
        C(Dash0-Dataset). They are secrets, never logged or returned.
    type: dict
    default: {}
  validate_certs:
    description: Verify TLS certificates of every HTTPS endpoint.
    type: bool
    default: true
  ca_path:
    description: PEM file of the CA certificates to trust for HTTPS endpoints.
    type: path
  request_timeout:
    description:
      - Seconds any single HTTP request may take as a whole (connect, headers and body). Never more than
        what is left of O(timeout).
    type: float
    default: 10.0
"""
