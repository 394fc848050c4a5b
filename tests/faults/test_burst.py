"""A burst of 5,000 signed webhooks while no worker runs; then a worker starts and drains it.

Why: a deploy, a crash loop or a stuck host can leave the receiver up and the workers down
while Intercom keeps sending (it may send thousands a second). The receiver must take all of
it into Redis (2xx only once the job is there, each vendor key once), and the worker that
comes back must work the whole backlog off under the shared rate limit to the same end state
as if it had never stopped: every event applied once, nothing left queued.

The burst mixes the three sources, including the vendors' redeliveries (same key or
notification id again), which must be answered as duplicates and queue nothing. Intercom's
OpenAPI request check is off here: it costs more per request than the whole job.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from tests.faults.harness import BOTH, Sender, World, fault_stack
from tests.faults.test_worker_kill import run_seed
from tests.jobs import queued_jobs
from workers.jobs import routing

pytestmark = [pytest.mark.faults, pytest.mark.integration]

BURST = 5000


@pytest.mark.timeout(240)
def test_five_thousand_webhooks_while_no_worker_runs_are_all_applied_once(
    real_redis_url: str, tmp_path: Path
) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    with fault_stack(real_redis_url, tmp_path, openapi=False, budget=10_000) as stack:
        stack.start_receiver()
        world = World(stack, "burst")
        sender = Sender(stack.receiver)
        deliveries: list[tuple[str, Callable[[], int]]] = []  # (key, send)

        documents = world.document_ids(400)  # Sanity: each document's publish, 100 redelivered
        for document_id in documents:
            body = world.publish(document_id, notify=False)
            key = f"fake-webhook:{body['_rev']}:{document_id}"
            send = partial(sender.sanity, body, key, "create")
            deliveries += [(key, send)] * (2 if document_id in documents[::4] else 1)
        conversations = world.conversations(1500)  # "created", 500 redelivered, 500 replies
        for n, conversation_id in enumerate(conversations):
            key = f"created-{conversation_id}"
            send = partial(sender.intercom, "conversation.user.created", conversation_id, key)
            deliveries += [(key, send)] * (2 if n % 3 == 0 else 1)
            if n % 3 == 1:
                world.reply(conversation_id, BOTH[n % 2])
                key = f"replied-{conversation_id}"
                deliveries.append((key, partial(sender.intercom, "conversation.user.replied",
                                                conversation_id, key)))
        contacts = world.contacts(1500)  # "created", 500 redelivered
        for n, contact_id in enumerate(contacts):
            key = f"created-{contact_id}"
            send = partial(sender.intercom, "contact.user.created", contact_id, key)
            deliveries += [(key, send)] * (2 if n % 3 == 0 else 1)
        assert len(deliveries) == BURST
        rng.shuffle(deliveries)

        started = time.monotonic()
        sender.many([send for _key, send in deliveries], threads=8)
        took = time.monotonic() - started
        unique = len({key for key, _send in deliveries})
        assert sender.answers.statuses == {202: unique, 200: BURST - unique}
        assert sender.answers.refused == [] and sender.answers.failed_attempts() == 0
        # Everything answered 202 is in Redis, once, and nothing ran yet.
        queued = {queue: len(queued_jobs(stack.redis, queue)) for queue in routing.QUEUES}
        assert queued == {"articles": 400, "conversations": 2000, "contacts": 1500,
                          "maintenance": 0}  # fmt: skip

        drain_started = time.monotonic()
        stack.start_worker("burst", concurrency=4)
        stack.settle(timeout=180)
        drained_in = time.monotonic() - drain_started
        problems = stack.check(world.expected)
        context = (f"seed {seed}; {BURST} webhooks sent in {took:.1f}s, {unique} jobs queued, "
                   f"drained in {drained_in:.1f}s")  # fmt: skip
        assert problems == [], f"{context}:\n" + "\n".join(problems[:50]) + "\n" + stack.tails()
        stats = stack.intercom.stats()
    print(f"{context}; Intercom: {stats['requests_total']} requests, "
          f"{stats['served_429']} answered 429")
    assert stats["served_429"] == 0  # the backlog went out under the shared limit
