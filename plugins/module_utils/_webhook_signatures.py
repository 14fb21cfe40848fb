# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Webhook signature schemes verified by emp.deploy.webhook_probe and signed by the go_no_go
callback's notifications (stdlib only).

- emp: ``X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`` (EMP webhook service)
- github: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>``
- standard-webhooks: ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64
  HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``; the secret is ``whsec_<base64 key>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

SCHEMES = ("emp", "standard-webhooks", "github", "none")
STANDARD_PREFIX = "whsec_"
STANDARD_TOLERANCE_S = 300.0

VALID = "valid"
INVALID = "invalid"
MISSING = "missing"


def new_secret(scheme: str) -> str:
    """A random per-run secret in the form the scheme expects."""
    if scheme == "standard-webhooks":
        return STANDARD_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")
    return secrets.token_hex(32)


def _standard_key(secret: str) -> bytes:
    encoded = secret[len(STANDARD_PREFIX):] if secret.startswith(STANDARD_PREFIX) else secret
    # Unpadded base64 is common; extra padding is ignored by b64decode.
    return base64.b64decode(encoded + "==", validate=False)


def secret_problem(scheme: str, secret: str | None) -> str | None:
    """Why ``secret`` cannot be used with ``scheme``, or None when it can."""
    if scheme == "none":
        return None
    if not secret:
        return "signature_scheme=%s needs a secret, but secret is empty" % scheme
    if scheme == "standard-webhooks":
        try:
            key = _standard_key(secret)
        except (binascii.Error, ValueError):
            key = b""
        if not key or not secret.startswith(STANDARD_PREFIX):
            return ("signature_scheme=standard-webhooks needs a secret of the form whsec_<base64 key>; "
                    "the given secret is not")
    return None


def sign_standard(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) of one Standard Webhooks delivery."""
    signed = b"%s.%d.%s" % (msg_id.encode("utf-8"), timestamp, body)
    return "v1," + base64.b64encode(hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()).decode("ascii")


def _hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _verify_prefixed_hex(header_value: str | None, secret: str, body: bytes, header_name: str) -> tuple[str, str]:
    if not header_value:
        return MISSING, "no %s header" % header_name
    expected = "sha256=" + _hex_hmac(secret, body)
    if hmac.compare_digest(expected.encode("ascii"), header_value.strip().encode("utf-8", "replace")):
        return VALID, ""
    return INVALID, "%s does not match the HMAC-SHA256 of the body" % header_name


def _verify_standard(headers: dict[str, str], secret: str, body: bytes, now: float) -> tuple[str, str]:
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signature = headers.get("webhook-signature")
    if not (msg_id and stamp and signature):
        return MISSING, "no webhook-id, webhook-timestamp and webhook-signature headers"
    try:
        sent = float(stamp)
    except ValueError:
        return INVALID, "webhook-timestamp %r is not a number" % stamp
    if abs(now - sent) > STANDARD_TOLERANCE_S:
        return INVALID, "webhook-timestamp is %.0f s away from now (tolerance %.0f s)" % (
            now - sent, STANDARD_TOLERANCE_S)
    signed = b"%s.%s.%s" % (msg_id.encode("utf-8"), stamp.encode("utf-8"), body)
    expected = hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
    for candidate in signature.split():
        version, _comma, encoded = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, given):
            return VALID, ""
    return INVALID, "no v1 signature in webhook-signature matches"


def verify(scheme: str, secret: str, headers: dict[str, str], body: bytes, now: float | None = None
           ) -> tuple[str, str]:
    """(valid | invalid | missing, reason) for one delivery; ``headers`` have lower-case names."""
    if scheme == "emp":
        return _verify_prefixed_hex(headers.get("x-webhook-signature"), secret, body, "X-Webhook-Signature")
    if scheme == "github":
        return _verify_prefixed_hex(headers.get("x-hub-signature-256"), secret, body, "X-Hub-Signature-256")
    if scheme == "standard-webhooks":
        return _verify_standard(headers, secret, body, time.time() if now is None else now)
    raise ValueError("unknown signature scheme %r" % scheme)
