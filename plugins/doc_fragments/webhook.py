# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Options for modules that talk to the EMP webhook service (and, for job triggers, the API)."""

    DOCUMENTATION = r"""
options:
  service_url:
    description:
      - Base URL of the EMP webhook service, for example C(http://webhook.internal:3332).
      - The module calls its contract routes under this URL (C(/health), C(/webhooks), C(/webhooks/:id), ...).
    type: str
    required: true
  request_timeout:
    description:
      - Seconds one HTTP request to the webhook service or the API may take as a whole (connect, headers
        and body), and never longer than what is left of the module's overall timeout.
    type: float
    default: 10.0
  validate_certs:
    description:
      - Verify the TLS certificate of an C(https://) O(service_url) or O(api_url).
      - Set to V(false) only for throwaway test services.
    type: bool
    default: true
  api_url:
    description:
      - Base URL of the EMP API, for example C(http://api.internal:3331). Needed for O(trigger=job), which
        submits jobs with C(POST /api/jobs).
    type: str
  api_token:
    description:
      - Bearer token sent as C(Authorization) to O(api_url) when the API enforces authentication.
      - It never appears in results, messages or problems.
    type: str
"""
