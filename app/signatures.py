"""Webhook signature checks on the raw request bytes, in constant time.

Both checks run before any JSON parsing: a body re-serialised by a parser is not what the sender
signed. Every configured secret is tried (comma-separated list during a rotation), and each
comparison is :func:`hmac.compare_digest`, so timing does not reveal how much of a guess matched.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from workers.jobs.signing import (
    hmac_key,
    intercom_signature,
    sanity_signature,
    sanity_signature_header,
)
from workers.settings import Secret

__all__ = [
    "SanityVerdict",
    "intercom_signature",
    "sanity_signature",
    "sanity_signature_header",
    "verify_intercom",
    "verify_sanity",
]

# Intercom sends exactly 40 lowercase hex digits; anything else (uppercase, sha256=, no prefix)
# is not a signature Intercom made, so it is refused rather than normalised.
_INTERCOM_HEADER = re.compile(r"^sha1=([0-9a-f]{40})\Z")

# Sanity's own toolkit re-encodes ``t=${parseInt(t)},v1=${sig}`` and compares the whole header,
# so it refuses spaces, padding, extra parts and leading zeros; this pattern refuses the same.
_SANITY_HEADER = re.compile(r"^t=([1-9][0-9]{0,15}),v1=([A-Za-z0-9_-]{1,128})\Z")
_SANITY_MIN_TIMESTAMP_MS = 1_609_459_200_000  # the toolkit's floor: ms timestamps after 2021
SANITY_FUTURE_TOLERANCE_MS = 5 * 60 * 1000


def _ascii(value: str) -> bytes:
    return value.encode("ascii", "replace")


def verify_intercom(body: bytes, header: str | None, secrets: Sequence[Secret]) -> bool:
    """True when ``header`` is ``sha1=<hex HMAC-SHA1(secret, body)>`` for one of ``secrets``."""
    match = _INTERCOM_HEADER.match(header) if header else None
    if match is None:
        return False
    # Exactly 40 lowercase hex digits: one text per digest, so comparing digests compares texts.
    given = bytes.fromhex(match.group(1))
    matched = False
    for secret in secrets:
        # No early exit: every secret is tried so timing does not tell which one matched.
        matched |= hmac.compare_digest(hmac_key(secret.reveal(), "sha1").digest(body), given)
    return matched


@dataclass(frozen=True)
class SanityVerdict:
    ok: bool
    reason: str = ""
    timestamp_ms: int | None = None


def verify_sanity(
    body: bytes,
    header: str | None,
    secrets: Sequence[Secret],
    *,
    now_ms: int,
    tolerance_s: int,
) -> SanityVerdict:
    """Check a ``sanity-webhook-signature`` header: format, freshness, then the HMAC.

    Sanity's toolkit checks no freshness window; without one a captured request could be replayed
    forever, so a timestamp older than ``tolerance_s`` (which must cover Sanity's retry window) or
    more than five minutes ahead is refused.
    """
    if not header:
        return SanityVerdict(False, "missing signature header")
    match = _SANITY_HEADER.match(header)
    if match is None:
        return SanityVerdict(False, "malformed signature header")
    timestamp = int(match.group(1))
    if timestamp < _SANITY_MIN_TIMESTAMP_MS:
        return SanityVerdict(False, "signature timestamp is not in milliseconds")
    if not body:
        return SanityVerdict(False, "empty body")
    if now_ms - timestamp > tolerance_s * 1000:
        return SanityVerdict(False, "signature timestamp too old", timestamp)
    if timestamp - now_ms > SANITY_FUTURE_TOLERANCE_MS:
        return SanityVerdict(False, "signature timestamp in the future", timestamp)
    given = _ascii(match.group(2))
    matched = False
    for secret in secrets:
        expected = sanity_signature(secret.reveal(), timestamp, body)
        matched |= hmac.compare_digest(_ascii(expected), given)
    if not matched:
        return SanityVerdict(False, "signature does not match", timestamp)
    return SanityVerdict(True, "", timestamp)
