"""Signature checks against the vendors' own vectors (tests/fixtures/vendor/vectors)."""

from __future__ import annotations

import hmac
import random
import re

import pytest

from app.signatures import (
    intercom_signature,
    sanity_signature_header,
    verify_intercom,
    verify_sanity,
)
from tests.conftest import VECTORS, load_json
from workers.jobs.signing import HmacKey
from workers.settings import Secret

SANITY = load_json(VECTORS / "sanity-webhook-signatures.json")
INTERCOM = load_json(VECTORS / "intercom-webhook-signatures.json")
TOLERANCE = 1800


def _sanity_ok(case: dict, now_ms: int) -> bool:
    body = bytes.fromhex(case["body_utf8_hex"]) if "body_utf8_hex" in case else case[
        "body"
    ].encode()
    verdict = verify_sanity(
        body,
        case["header"],
        [Secret(case["secret"])] if case["secret"] else [],
        now_ms=now_ms,
        tolerance_s=TOLERANCE,
    )
    return verdict.ok


@pytest.mark.parametrize("case", SANITY["cases"], ids=lambda c: c["name"])
def test_sanity_vectors_accepted(case: dict) -> None:
    assert case["verify"]["isValidSignature"] is True
    assert _sanity_ok(case, now_ms=case["timestamp"] + 1000)


@pytest.mark.parametrize("case", SANITY["cases"], ids=lambda c: c["name"])
def test_our_sanity_encoder_matches_the_package(case: dict) -> None:
    body = bytes.fromhex(case["body_utf8_hex"])
    assert sanity_signature_header(case["secret"], case["timestamp"], body) == case["header"]


@pytest.mark.parametrize("case", SANITY["tampered"], ids=lambda c: c["name"])
def test_sanity_tampered_vectors_treated_like_the_package(case: dict) -> None:
    """Every variant the package rejects, we reject; its control case we accept."""
    # 'now' is the signing time, so only the header, body and secret decide the verdict.
    stamp = re.search(r"t=-?0*(\d+)", case["header"])
    now = int(stamp.group(1)) + 1000 if stamp else 1633519811129
    assert _sanity_ok(case, now_ms=now) is (not case["rejected"])


def test_sanity_freshness_window() -> None:
    case = SANITY["cases"][0]
    t = case["timestamp"]
    assert _sanity_ok(case, now_ms=t + TOLERANCE * 1000 - 1)
    assert not _sanity_ok(case, now_ms=t + TOLERANCE * 1000 + 1)
    assert _sanity_ok(case, now_ms=t - 5 * 60 * 1000 + 1)
    assert not _sanity_ok(case, now_ms=t - 5 * 60 * 1000 - 1)


def test_sanity_rotation_accepts_any_listed_secret() -> None:
    case = SANITY["cases"][0]
    body = case["body"].encode()
    secrets = [Secret("old-one"), Secret(case["secret"])]
    ok = verify_sanity(body, case["header"], secrets, now_ms=case["timestamp"], tolerance_s=60)
    assert ok.ok
    wrong = [Secret("old-one"), Secret("new-one")]
    bad = verify_sanity(body, case["header"], wrong, now_ms=case["timestamp"], tolerance_s=60)
    assert not bad.ok and bad.reason == "signature does not match"


@pytest.mark.parametrize("case", INTERCOM["cases"], ids=lambda c: c["file"])
def test_intercom_vectors_accepted(case: dict) -> None:
    body = (VECTORS / case["file"]).read_bytes()
    assert intercom_signature(case["secret"], body) == case["header"]
    assert verify_intercom(body, case["header"], [Secret(case["secret"])])


def _intercom_rejections(case: dict) -> dict[str, tuple[bytes, str | None, str]]:
    body = (VECTORS / case["file"]).read_bytes()
    header = case["header"]
    flipped = header[:-1] + ("0" if header[-1] != "0" else "1")
    reserialised = body.replace(b'","', b'", "', 1)
    assert reserialised != body
    return {
        "header missing": (body, None, case["secret"]),
        "one hex digit changed": (body, flipped, case["secret"]),
        "sha256= prefix or no prefix": (body, "sha256=" + header[5:], case["secret"]),
        "no prefix": (body, header[5:], case["secret"]),
        "uppercase hex is not what Intercom sends; decide and test your policy": (
            body, "sha1=" + header[5:].upper(), case["secret"]),
        "body re-serialised (whitespace or key order changed) after signing": (
            reserialised, header, case["secret"]),
        "signed with a different secret": (body, header, case["secret"] + "x"),
    }  # fmt: skip


def test_intercom_must_reject_list_is_covered() -> None:
    covered = _intercom_rejections(INTERCOM["cases"][0])
    for item in INTERCOM["must_reject"]:
        assert item["why"] in covered


@pytest.mark.parametrize("case", INTERCOM["cases"], ids=lambda c: c["file"])
def test_intercom_rejections(case: dict) -> None:
    for why, (body, header, secret) in _intercom_rejections(case).items():
        assert not verify_intercom(body, header, [Secret(secret)]), why


def test_intercom_rotation() -> None:
    case = INTERCOM["cases"][0]
    body = (VECTORS / case["file"]).read_bytes()
    assert verify_intercom(body, case["header"], [Secret("previous"), Secret(case["secret"])])
    assert not verify_intercom(body, case["header"], [])


@pytest.mark.parametrize("digest", ["sha1", "sha256"])
def test_hmac_key_equals_the_standard_library(digest: str) -> None:
    """Keys shorter than, equal to and longer than the hash's block (hashed first), messages
    given whole or in parts."""
    rng = random.Random(7)
    for key_length in (0, 1, 20, 63, 64, 65, 100, 200):
        key = rng.randbytes(key_length)
        for length in (0, 1, 55, 64, 1000):
            message = rng.randbytes(length)
            expected = hmac.digest(key, message, digest)
            assert HmacKey(key, digest).digest(message) == expected
            cut = length // 3
            assert HmacKey(key, digest).digest(message[:cut], message[cut:]) == expected


def test_hmac_key_states_are_not_consumed() -> None:
    key = HmacKey(b"secret", "sha256")
    first = key.digest(b"one")
    key.digest(b"two")
    assert key.digest(b"one") == first == hmac.digest(b"secret", b"one", "sha256")
