"""The scenarios' webhook sender: concurrent Sanity deliveries of one body stay distinct.

Why: the receiver accepts a Sanity signature value once, and a value is the body plus its
millisecond. A burst scenario sends one document's body under many idempotency keys from
several threads; stamps shared between threads would turn distinct events into replays, and the
scenario would fail on the sender's clock rather than on the receiver.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.harness import Sender

pytestmark = pytest.mark.faults


def test_one_body_sent_from_eight_threads_gets_a_signature_per_delivery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sender = Sender("http://127.0.0.1:9")
    signatures: list[str] = []

    def post(path: str, body: bytes, headers: Callable[[], dict[str, str]]) -> int:
        signatures.append(headers()["sanity-webhook-signature"])  # list.append is atomic
        return 202

    monkeypatch.setattr(sender, "_post", post)
    document = {"_id": "doc-1", "_type": "supportArticle"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: sender.sanity(document, f"burst:{n}"), range(2000)))
    assert len(signatures) == 2000
    assert len(set(signatures)) == 2000
