"""Webhooks delivered twice or three times, out of order, late, and many at once for one
document, to a receiver and two workers.

Why: both vendors retry a delivery whose answer they did not see, and neither promises order,
so the same event arrives more than once and an old revision may arrive after a newer one, or
after the document was unpublished. Tasks take ids and re-read the current state, the receiver
de-duplicates by the vendors' own keys, and jobs of one document or conversation run one at a
time; together they must make every event count exactly once. Here the test is Sanity's
delivery service (the fake's own webhook is off), so it decides the order and the repeats.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import BOTH, Sender, World, fault_stack
from tests.faults.test_worker_kill import run_seed

pytestmark = [pytest.mark.faults, pytest.mark.integration]

Delivery = tuple[str, Callable[[], int]]  # (the vendor's idempotency key, send it)


def sanity_delivery(sender: Sender, body: dict[str, Any], key: str,
                    operation: str = "update") -> Delivery:  # fmt: skip
    return key, lambda: sender.sanity(body, key, operation)


def intercom_delivery(sender: Sender, topic: str, item: str, notification: str) -> Delivery:
    return notification, lambda: sender.intercom(topic, item, notification)


def send_shuffled(sender: Sender, deliveries: list[Delivery], rng: random.Random) -> None:
    """All deliveries, shuffled, eight at a time; each key must be accepted (202) exactly
    once and answered as a duplicate (200) every other time."""
    before = dict(sender.answers.statuses)
    rng.shuffle(deliveries)
    sender.many([send for _key, send in deliveries])
    unique = len({key for key, _send in deliveries})
    got = {s: n - before.get(s, 0) for s, n in sender.answers.statuses.items()}
    assert got == {202: unique, 200: len(deliveries) - unique}, got
    assert sender.answers.refused == []


@pytest.mark.timeout(180)
def test_duplicate_reordered_and_late_deliveries_apply_each_event_once(
    real_redis_url: str, tmp_path: Path
) -> None:
    seed = run_seed()
    rng = random.Random(seed)

    def copies(low: int = 1, high: int = 3) -> int:
        return rng.randint(low, high)

    with fault_stack(real_redis_url, tmp_path) as stack:
        stack.sanity.configure_webhook(enabled=False)
        stack.intercom.set_latency(0.02, 0.01)
        stack.start_receiver()
        stack.start_worker("dup-a", concurrency=3)
        stack.start_worker("dup-b", concurrency=3)
        world = World(stack, "dup")
        sender = Sender(stack.receiver)
        deliveries: list[Delivery] = []
        late: list[Delivery] = []  # first delivered after the document moved on

        # Each document published and edited once or twice; each revision delivered one to
        # three times, shuffled, so older revisions often arrive after newer ones.
        documents = world.document_ids(40)
        for document_id in documents:
            revisions = [world.publish(document_id, notify=False)]
            revisions += [world.edit(document_id) for _ in range(copies(1, 2))]
            for number, body in enumerate(revisions):
                delivery = sanity_delivery(sender, body, f"fake-webhook:{body['_rev']}:"
                                           f"{document_id}", "create" if number == 0 else "update")
                if number == 0 and document_id in documents[:8]:
                    late.append(delivery)  # its first delivery failed; the retry comes later
                else:
                    deliveries += [delivery] * copies()
        # A busy document's changes come as separate transactions: twelve distinct deliveries
        # of one document at once, jobs racing on two workers.
        for document_id in rng.sample(documents[8:], 4):
            body = stack.sanity.document(document_id) or {}
            deliveries += [sanity_delivery(sender, body, f"burst:{document_id}:{n}")
                           for n in range(12)]  # fmt: skip
        # Conversations: "created" repeated; half get a reply (another tag) whose
        # notification may arrive before the "created" one.
        conversations = world.conversations(40)
        for n, conversation_id in enumerate(conversations):
            deliveries += [intercom_delivery(sender, "conversation.user.created",
                                             conversation_id, f"created-{conversation_id}")
                           ] * copies()  # fmt: skip
            if n % 2:
                world.reply(conversation_id, BOTH[n % 4 // 2])
                deliveries += [intercom_delivery(sender, "conversation.user.replied",
                                                 conversation_id, f"replied-{conversation_id}")
                               ] * copies()  # fmt: skip
        for contact_id in world.contacts(20):
            deliveries += [intercom_delivery(sender, "contact.user.created", contact_id,
                                             f"created-{contact_id}")] * copies(2, 3)
        send_shuffled(sender, deliveries, rng)
        stack.settle(timeout=90)
        first = stack.check(world.expected)

        # Then editors unpublish some documents and edit others; the deliveries that were
        # late arrive now, after newer revisions and after unpublishing, with the new ones.
        deliveries = list(late)
        unpublished = documents[:4] + rng.sample(documents[8:], 4)
        edited = documents[4:8] + rng.sample([d for d in documents[8:] if d not in unpublished], 4)
        for document_id in unpublished:
            body = stack.sanity.document(document_id) or {}
            world.unpublish(document_id)
            deliveries += [sanity_delivery(sender, body, f"unpublish:{document_id}",
                                           "delete")] * copies()  # fmt: skip
        for document_id in edited:
            body = world.edit(document_id)
            deliveries += [sanity_delivery(sender, body, f"edit:{body['_rev']}")] * copies()
        send_shuffled(sender, deliveries, rng)
        stack.settle(timeout=90)
        problems = stack.check(world.expected)
        context = f"seed {seed}"
        assert first == [], f"{context}, first round:\n" + "\n".join(first) + "\n" + stack.tails()
        assert problems == [], f"{context}:\n" + "\n".join(problems) + "\n" + stack.tails()
    outcomes = [e["outcome"] for e in stack.events("article.synced")]
    print(f"{context}: answers {sender.answers.statuses}; sync outcomes "
          f"{ {o: outcomes.count(o) for o in set(outcomes)} }")
