"""Rule actions end to end: exactly one note, one article reply, the attribute and the snooze,
whatever re-runs the rules; nothing at all in shadow mode.

Real receiver (gunicorn), real Celery workers, real Redis, the fake Intercom and fake Sanity of
the fault harness. The article the reply links is synced by the same stack (a Sanity publish,
its webhook, a sync job), so the link checked is the synced article's URL. The worst moment is
staged as in the article kill scenario: Intercom posts the reply and holds its answer, and the
worker's pool is SIGKILLed inside that call; the redelivered job must find the posted reply and
adopt it, and must not wait long for the dead job's conversation lock.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import RULES, FaultStack, Sender, fault_stack, wait_until
from tests.unit.articles.test_harness import article_doc
from workers.clients import help_center
from workers.jobs.dead_letters import DeadLetters

pytestmark = [pytest.mark.faults, pytest.mark.integration]

DOCUMENT = "faq-refunds"
# The reply rule comes first, so the first POST /conversations/{id}/reply of a job is the
# customer-visible reply (the one the SIGKILL scenario holds).
TRIAGE_RULES = RULES + """\
  - name: refund-reply
    when: {text_any: [refund, "charged twice"]}
    reply: {article: faq-refunds, text: "This should help:"}
    snooze: {minutes: 240}
  - name: refund-note
    when: {text_any: [refund, "charged twice"]}
    note: "Refund asked by {{ contact.name }} ({{ company.name }}, plan {{ company.plan }})"
    attributes: {Category: Billing}
"""
REPLY_ROUTE = "POST /conversations/{conversation_id}/reply"


def prepare(stack: FaultStack) -> str:
    """Rules with actions, the synced article, the Category attribute; the article's URL."""
    stack.rules_path.write_text(TRIAGE_RULES)
    stack.sanity.publish(article_doc(DOCUMENT, "How refunds work", text="Refunds take 5 days."))
    article_id = wait_until(lambda: help_center.synced_article(stack.redis, DOCUMENT), 60,
                            "the article to be synced")  # fmt: skip
    stack.intercom.seed({
        "conversation_attributes": [{"name": "Category"}],
        "companies": [{"company_id": "acme", "name": "Acme & Co", "plan": "enterprise"}],
    })  # fmt: skip
    return str(stack.intercom.get_article(article_id)["url"])


def new_conversation(stack: FaultStack, n: int) -> str:
    ids = stack.intercom.seed({
        "contacts": [{"id": f"tri-c{n}", "role": "user", "name": f"Sam {n}",
                      "email": f"sam{n}@acme.test", "companies": ["acme"]}],
        "conversations": [{"contact_ids": [f"tri-c{n}"],
                           "body": "<p>I was charged twice, can I get a refund?</p>"}],
    })  # fmt: skip
    return str(ids["conversations"][0])


def admin_parts(stack: FaultStack, conversation_id: str, part_type: str) -> list[dict[str, Any]]:
    conversation = stack.intercom.get_conversation(conversation_id)
    return [p for p in conversation["conversation_parts"]["conversation_parts"]
            if p["part_type"] == part_type and p["author"]["type"] == "admin"]  # fmt: skip


def assert_exactly_once(stack: FaultStack, conversation_id: str, url: str, n: int) -> None:
    notes = admin_parts(stack, conversation_id, "note")
    replies = admin_parts(stack, conversation_id, "comment")
    snoozes = admin_parts(stack, conversation_id, "snoozed")
    context = f"conversation {conversation_id}\n{stack.tails()}"
    assert len(notes) == 1, context
    assert notes[0]["body"] == f"<p>Refund asked by Sam {n} (Acme &amp; Co, plan enterprise)</p>"
    assert len(replies) == 1, context
    assert f'<a href="{url}">How refunds work</a>' in replies[0]["body"], replies
    assert len(snoozes) == 1, context
    conversation = stack.intercom.get_conversation(conversation_id)
    assert conversation["custom_attributes"] == {"Category": "Billing"}
    assert stack.intercom.snapshot()["conversation_tags"][conversation_id] == ["billing"]


@pytest.mark.timeout(240)
def test_every_action_once_through_duplicates_and_a_customer_reply(
    real_redis_url: str, tmp_path: Path
) -> None:
    with fault_stack(real_redis_url, tmp_path) as stack:
        stack.start_receiver()
        stack.start_worker("triage", concurrency=2)
        url = prepare(stack)
        sender = Sender(stack.receiver)
        conversation = new_conversation(stack, 1)

        assert sender.intercom("conversation.user.created", conversation, "tri-n1") == 202
        stack.settle(timeout=90)
        assert_exactly_once(stack, conversation, url, 1)
        assert stack.intercom.get_conversation(conversation)["state"] == "snoozed"

        # Intercom delivers the same notification again: de-duplicated at the receiver.
        assert sender.intercom("conversation.user.created", conversation, "tri-n1") == 200
        # Another delivery about it (a replay; a new notification id): reads only.
        before = stack.intercom.stats()["requests"]
        assert sender.intercom("conversation.user.created", conversation, "tri-n2") == 202
        stack.settle(timeout=60)
        after = stack.intercom.stats()["requests"]
        writes = {k: after[k] - before.get(k, 0) for k in after
                  if not k.startswith("GET ") and after[k] != before.get(k, 0)}  # fmt: skip
        assert writes == {}, writes

        # The customer replies: the rules run again on the new text; nothing is repeated.
        stack.intercom.add_conversation_part(conversation, "<p>Any news on my refund?</p>")
        assert sender.intercom("conversation.user.replied", conversation, "tri-n3") == 202
        stack.settle(timeout=60)
        assert_exactly_once(stack, conversation, url, 1)
        assert stack.intercom.get_conversation(conversation)["state"] == "open"  # not re-snoozed
        assert stack.intercom.violations() == []
        assert DeadLetters(stack.redis).count() == 0


@pytest.mark.timeout(240)
def test_sigkill_inside_the_reply_call_leaves_exactly_one_reply(
    real_redis_url: str, tmp_path: Path
) -> None:
    with fault_stack(real_redis_url, tmp_path) as stack:
        stack.start_receiver()
        worker = stack.start_worker("triage-kill", concurrency=2)
        url = prepare(stack)
        conversation = new_conversation(stack, 2)
        # Intercom posts the next reply, then holds its answer: the worker is inside the call.
        stack.intercom.inject_delay(30.0, 1, path_prefix=f"/conversations/{conversation}/reply",
                                    method="POST")  # fmt: skip
        assert Sender(stack.receiver).intercom("conversation.user.created", conversation,
                                               "tri-kill-1") == 202  # fmt: skip
        wait_until(lambda: stack.intercom.stats()["delayed"] >= 1
                   and admin_parts(stack, conversation, "comment"), 60,
                   "the held reply to be posted")  # fmt: skip
        pool = stack.pool(worker)
        for pid in pool:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()

        # The job comes back (late acknowledgement), finds the reply it posted and adopts it.
        adopted = wait_until(lambda: [e for e in stack.events("triage.adopted")
                                      if e.get("conversation_id") == conversation], 90,
                             "the redelivered job to adopt the reply")  # fmt: skip
        wait_until(lambda: admin_parts(stack, conversation, "snoozed"), 60, "the snooze")
        finished = time.monotonic() - killed_at
        stack.settle(timeout=60)
        assert_exactly_once(stack, conversation, url, 2)
        assert [e["action"] for e in adopted] == ["reply"], adopted
        assert stack.intercom.stats()["requests"][REPLY_ROUTE] == 2  # the reply and the note
        # Not held up by the dead job's locks: well within a minute of the kill.
        assert finished < 60, f"{finished:.1f}s after the kill\n{stack.tails()}"
        print(f"killed pool {pool}; the redelivered job finished {finished:.1f}s later")


@pytest.mark.timeout(180)
def test_shadow_mode_writes_nothing_and_logs_every_action(
    real_redis_url: str, tmp_path: Path
) -> None:
    with fault_stack(real_redis_url, tmp_path) as stack:
        stack.start_receiver()
        stack.start_worker("triage-shadow", concurrency=2, RULES_MODE="shadow")
        url = prepare(stack)  # article sync is not affected by the rules mode
        conversation = new_conversation(stack, 3)
        before = stack.intercom.stats()["requests"]
        assert Sender(stack.receiver).intercom("conversation.user.created", conversation,
                                               "tri-shadow-1") == 202  # fmt: skip
        stack.settle(timeout=60)
        after = stack.intercom.stats()["requests"]
        changed = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        assert all(k.startswith("GET ") for k in changed), changed
        assert admin_parts(stack, conversation, "note") == []
        assert stack.intercom.get_conversation(conversation)["custom_attributes"] == {}
        lines = [e for e in stack.events("rules.shadow")
                 if e.get("conversation_id") == conversation]  # fmt: skip
        planned = sorted((e["rule"], e["action"]) for e in lines)
        assert planned == [("billing", "tag"), ("refund-note", "attributes"),
                           ("refund-note", "note"), ("refund-reply", "reply"),
                           ("refund-reply", "snooze")], lines  # fmt: skip
        assert [e.get("url") for e in lines if e["action"] == "reply"] == [url]
