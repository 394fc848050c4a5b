"""Sample content for the sandbox and ``send-test-webhook``: invented people and companies."""

from __future__ import annotations

import time
from typing import Any

SAMPLE_ARTICLE_ID = "sandbox-article-refunds"
SAMPLE_CONVERSATION_ID = "900000000000001"
SAMPLE_CONTACT_ID = "6761d4041c1e12de4c5499ff"
#: The conversation attribute the sample rule sets; the sandbox's fake Intercom has it from the
#: start, as a teammate would have created it in Intercom's settings.
SAMPLE_CONVERSATION_ATTRIBUTE = "Category"

SAMPLE_RULES = """\
rules:
  - tag: billing
    when:
      text_any: [refund, "charged twice", invoice]
  - tag: bug
    when:
      text_regex: "(doesn't|does not|won't) (work|load)|does nothing"
  - tag: enterprise
    when:
      company.plan: enterprise
"""
# What the sandbox adds to the sample rules: a rule with every action, for the sample
# conversation (its article is the sample article, which send-test-webhook also publishes).
SAMPLE_TRIAGE_RULES = """\
  - name: refund-request
    when:
      text_any: [refund, "charged twice"]
    note: "Refund asked by {{ contact.name }} ({{ company.name }}, plan {{ company.plan }})"
    reply: {article: ARTICLE, text: "This should help:"}
    attributes: {Category: Billing}
    snooze: {minutes: 240}
""".replace("ARTICLE", SAMPLE_ARTICLE_ID)
SANDBOX_RULES = SAMPLE_RULES + SAMPLE_TRIAGE_RULES


def sample_article(title: str = "How refunds work") -> dict[str, Any]:
    """A ``supportArticle`` document as an editor would publish it."""
    return {
        "_id": SAMPLE_ARTICLE_ID,
        "_type": "supportArticle",
        "title": title,
        "slug": {"_type": "slug", "current": "how-refunds-work"},
        "excerpt": "When and how we refund a payment.",
        "language": "en",
        "body": [
            {"_type": "block", "_key": "b1", "style": "h2", "markDefs": [],
             "children": [{"_type": "span", "_key": "s1", "text": "Refunds", "marks": []}]},
            {"_type": "block", "_key": "b2", "style": "normal",
             "markDefs": [{"_key": "l1", "_type": "link", "href": "https://example.com/terms"}],
             "children": [
                 {"_type": "span", "_key": "s2", "text": "Refunds reach your card in ",
                  "marks": []},
                 {"_type": "span", "_key": "s3", "text": "5 to 10 days", "marks": ["strong"]},
                 {"_type": "span", "_key": "s4", "text": ". See our ", "marks": []},
                 {"_type": "span", "_key": "s5", "text": "terms", "marks": ["l1"]},
                 {"_type": "span", "_key": "s6", "text": ".", "marks": []},
             ]},
        ],
    }  # fmt: skip


def sample_intercom_seed() -> dict[str, Any]:
    """A contact of an enterprise company and their new conversation, for the fake Intercom."""
    now = int(time.time())
    return {
        "companies": [{"company_id": "acme-example", "name": "Acme Example",
                       "plan": "enterprise"}],
        "contacts": [{"id": SAMPLE_CONTACT_ID, "role": "user", "external_id": "usr_sandbox_1",
                      "email": "sam@acme.example", "name": "Sam Sandbox",
                      "companies": ["acme-example"]}],
        "conversations": [{
            "id": SAMPLE_CONVERSATION_ID,
            "created_at": now,
            "contact_ids": [SAMPLE_CONTACT_ID],
            "body": "<p>I was charged twice this month, can I get a refund?</p>",
        }],
    }  # fmt: skip


def sample_notification(topic: str, item_id: str) -> dict[str, Any]:
    """An Intercom ``notification_event`` envelope for ``topic`` about ``item_id``."""
    now = int(time.time())
    kind = topic.split(".")[0]
    return {
        "type": "notification_event", "app_id": "sandbox", "topic": topic,
        "id": f"notif_sandbox_{time.time_ns()}", "delivery_attempts": 1,
        "created_at": now, "first_sent_at": now,
        "data": {"type": "notification_event_data",
                 "item": {"type": "contact" if kind == "contact" else kind, "id": item_id}},
    }  # fmt: skip
