"""EMP delivery signature: X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the raw body>."""
from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Webhook-Signature"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
