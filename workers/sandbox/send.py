"""``intercom-sync send-test-webhook``: sign a sample event as the vendor would and send it.

The caller passes the secret of the stack it targets (a sandbox's own, else the configured one):
signing with anything else would earn a ``401`` from that stack.
"""

from __future__ import annotations

import json
import time
import uuid

import requests

from workers.jobs.signing import intercom_signature, sanity_signature_header
from workers.sandbox import samples

INTERCOM_TOPICS = {
    "conversation.user.created": samples.SAMPLE_CONVERSATION_ID,
    "conversation.user.replied": samples.SAMPLE_CONVERSATION_ID,
    "contact.user.created": samples.SAMPLE_CONTACT_ID,
    "contact.lead.created": samples.SAMPLE_CONTACT_ID,
    "contact.lead.signed_up": samples.SAMPLE_CONTACT_ID,
}


def _seed(url: str, path: str, payload: dict) -> str:
    """Put sample data into a sandbox fake; say what happened in one line."""
    try:
        answer = requests.post(url + path, json=payload, timeout=5)
    except requests.RequestException as exc:
        return f"could not reach the fake at {url} ({type(exc).__name__}); sending anyway"
    if answer.ok:
        return f"sample data stored in the fake at {url}"
    return f"the fake at {url} kept its data ({answer.status_code}); sending anyway"


def _has_document(url: str, document_id: str) -> bool:
    """Whether the fake Sanity at ``url`` already has the document (unreachable: say yes, so
    nothing is seeded)."""
    try:
        return requests.get(f"{url}/_fake/documents/{document_id}", timeout=5).status_code != 404
    except requests.RequestException:
        return True


def send_sanity(receiver: str, secret: str, *, sanity_url: str | None,
                title: str) -> requests.Response:  # fmt: skip
    """Publish the sample article in the fake Sanity (no webhook from it), then send the
    webhook Sanity would send for that publish, signed with ``secret``."""
    document = samples.sample_article(title)
    if sanity_url:
        print(_seed(sanity_url, "/_fake/documents", {"documents": [document], "notify": False}))
    body = json.dumps({"_id": document["_id"]}).encode()
    headers = {
        "content-type": "application/json",
        "sanity-webhook-signature": sanity_signature_header(secret, int(time.time() * 1000), body),
        "idempotency-key": f"test-{uuid.uuid4()}",
        "sanity-operation": "update",
        "sanity-document-id": document["_id"],
    }
    return requests.post(receiver.rstrip("/") + "/webhooks/sanity", data=body, headers=headers,
                         timeout=10)  # fmt: skip


def send_intercom(receiver: str, secret: str, *, intercom_url: str | None,
                  topic: str, sanity_url: str | None = None) -> requests.Response:  # fmt: skip
    """Store the sample contact and conversation in the fake Intercom, then send a signed
    ``topic`` notification about them. With ``sanity_url``, the sample article is published
    there first (its webhook syncs it), so the sample rule's article reply has its link."""
    if sanity_url and not _has_document(sanity_url, samples.SAMPLE_ARTICLE_ID):
        document = samples.sample_article()
        print(_seed(sanity_url, "/_fake/documents", {"documents": [document], "notify": True}))
    if intercom_url:
        print(_seed(intercom_url, "/_fake/seed", samples.sample_intercom_seed()))
    body = json.dumps(samples.sample_notification(topic, INTERCOM_TOPICS[topic])).encode()
    headers = {"content-type": "application/json",
               "X-Hub-Signature": intercom_signature(secret, body)}  # fmt: skip
    return requests.post(receiver.rstrip("/") + "/webhooks/intercom", data=body, headers=headers,
                         timeout=10)  # fmt: skip


__all__ = ["INTERCOM_TOPICS", "send_intercom", "send_sanity"]
