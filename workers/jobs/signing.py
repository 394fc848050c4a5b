"""How Intercom and Sanity sign webhooks: used to verify them (receiver) and to send them
(the sandbox's fake Sanity, ``send-test-webhook``, tests and benchmarks)."""

from __future__ import annotations

import base64
import functools
import hashlib

# RFC 2104's pads, as the standard library's ``hmac`` module applies them.
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class HmacKey:
    """HMAC (RFC 2104) under one key, with the padded key's inner and outer hash states computed
    once: each message then costs two copies of a hash state and the hashing itself.

    The receiver verifies every webhook under the same one or two secrets, and a keyed HMAC made
    from scratch (``hmac.digest``) costs more than the hashing of a webhook's body: OpenSSL
    looks the algorithm up and pads the key again each time.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes, digest: str) -> None:
        self._inner = hashlib.new(digest)
        self._outer = hashlib.new(digest)
        block = self._inner.block_size
        if len(key) > block:
            key = hashlib.new(digest, key).digest()
        key = key.ljust(block, b"\0")
        self._inner.update(key.translate(_IPAD))
        self._outer.update(key.translate(_OPAD))

    def digest(self, *parts: bytes) -> bytes:
        """The HMAC of the concatenation of ``parts`` (each hashed in place, none joined)."""
        inner = self._inner.copy()
        for part in parts:
            inner.update(part)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


@functools.lru_cache(maxsize=64)
def hmac_key(secret: str, digest: str) -> HmacKey:
    """The :class:`HmacKey` of ``secret``, made once per secret and algorithm (a rotation lists
    two secrets; tests and benchmarks sign with a few more)."""
    return HmacKey(secret.encode(), digest)


def intercom_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature`` value Intercom sends for ``body``."""
    return "sha1=" + hmac_key(secret, "sha1").digest(body).hex()


def sanity_signature(secret: str, timestamp_ms: int, body: bytes) -> str:
    """The ``v1`` value: base64url without padding of HMAC-SHA256(secret, ``"<t>.<body>"``)."""
    mac = hmac_key(secret, "sha256").digest(str(timestamp_ms).encode(), b".", body)
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sanity_signature_header(secret: str, timestamp_ms: int, body: bytes) -> str:
    """The whole ``sanity-webhook-signature`` header, as ``@sanity/webhook`` encodes it."""
    return f"t={timestamp_ms},v1={sanity_signature(secret, timestamp_ms, body)}"
