"""How Intercom and Sanity sign webhooks: used to verify them (receiver) and to send them
(the sandbox's fake Sanity, ``send-test-webhook``, tests and benchmarks)."""

from __future__ import annotations

import base64
import hmac


def intercom_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature`` value Intercom sends for ``body``."""
    return "sha1=" + hmac.digest(secret.encode(), body, "sha1").hex()


def sanity_signature(secret: str, timestamp_ms: int, body: bytes) -> str:
    """The ``v1`` value: base64url without padding of HMAC-SHA256(secret, ``"<t>.<body>"``)."""
    # hmac.digest: OpenSSL's one-shot HMAC, the same bytes as hmac.new(...).digest(), cheaper.
    mac = hmac.digest(secret.encode(), str(timestamp_ms).encode() + b"." + body, "sha256")
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sanity_signature_header(secret: str, timestamp_ms: int, body: bytes) -> str:
    """The whole ``sanity-webhook-signature`` header, as ``@sanity/webhook`` encodes it."""
    return f"t={timestamp_ms},v1={sanity_signature(secret, timestamp_ms, body)}"
