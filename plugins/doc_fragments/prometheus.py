# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """How to reach a Prometheus-compatible query API (Prometheus, Dash0, Thanos, VictoriaMetrics, Mimir)."""

    DOCUMENTATION = r"""
options:
  url:
    description:
      - Root of the Prometheus HTTP API, without C(/api/v1), for example C(http://prometheus:9090),
        Dash0's C(https://api.eu-west-1.aws.dash0.com/api/prometheus), or the root of Thanos Query,
        VictoriaMetrics or Mimir (C(https://mimir.internal/prometheus)).
      - C(/api/v1/query) or C(/api/v1/query_range) is appended; queries are sent as a form C(POST).
    type: str
    required: true
  headers:
    description:
      - HTTP headers sent with every query, for example C(X-Scope-OrgID) for Mimir or an API key header.
        Their values are treated as secrets, never logged or returned.
    type: dict
    default: {}
  bearer_token:
    description:
      - Token sent as C(Authorization) V(Bearer <token>), as Dash0 expects. Never logged or returned.
    type: str
  dataset:
    description: Dash0 dataset to query, sent as header C(Dash0-Dataset).
    type: str
  timeout:
    description:
      - Seconds one query may take as a whole (connect, headers and body); a peer that answers one byte
        at a time cannot stretch it. The engine is asked to give up a little earlier (C(timeout) form field).
    type: float
    default: 10.0
  validate_certs:
    description: Verify the TLS certificate of an HTTPS O(url).
    type: bool
    default: true
  ca_path:
    description: PEM file of the CA certificates to trust for an HTTPS O(url).
    type: path
"""
