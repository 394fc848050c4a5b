"""Redis stopped and started again while webhooks arrive and jobs run, with append-only
persistence as the production compose file runs it.

Why: Redis is the queue, the de-duplication store and every worker's shared state, so an
outage touches every step at once. What must hold: the receiver answers 2xx only for a job
that is in Redis (a webhook refused with 5xx or a dropped connection is sent again, as Intercom
and Sanity do), a graceful restart keeps what was acknowledged (the append-only file), and a
job that was running when Redis went away is neither lost nor run to a different end. The
scenario owns its Redis (not the shared one): it has to stop it.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from tests.faults.checks import UNACKED
from tests.faults.harness import (
    Sender,
    World,
    fault_stack,
    redis_run_id,
    wait_until,
)
from tests.faults.test_worker_kill import run_seed
from workers.ops.embedded_redis import EmbeddedRedis

pytestmark = [pytest.mark.faults, pytest.mark.integration]


@pytest.mark.timeout(300)
def test_redis_restarted_mid_run_with_append_only_persistence_loses_nothing(
    tmp_path: Path,
) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    directory = tmp_path / "redis"
    directory.mkdir()
    with EmbeddedRedis(appendonly=True, directory=directory) as server, \
            fault_stack(server.url, tmp_path) as stack:  # fmt: skip
        stack.intercom.set_latency(0.05, 0.02)
        stack.start_receiver()
        world = World(stack, "restart")
        documents = world.document_ids(80)
        conversations = world.conversations(90)
        contacts = world.contacts(60)
        # While its consumer reconnects, Celery's main process does not see jobs finish, so a
        # job that ended just before the outage can still reach its soft time limit on the
        # main process's clock, and the signal then hits an idle pool process. A limit longer
        # than the outage and the reconnect back-off (as the production 300 s is) keeps that
        # from happening; the 8 s of the other fault runs does not.
        stack.start_worker("restart", concurrency=3, TASK_TIME_LIMIT="20")
        sender = Sender(stack.receiver)

        def editor() -> None:  # publishes through Sanity, whose webhooks retry by themselves
            for document_id in documents:
                world.publish(document_id)
                time.sleep(0.03)
            for document_id in documents[::3]:
                world.edit(document_id)
                time.sleep(0.03)

        def intercom() -> None:  # Intercom's deliveries, re-sent after a 5xx or no answer
            def created(topic: str, item: str) -> int:
                time.sleep(0.05)
                return sender.intercom(topic, item, f"{topic}:{item}")

            sender.many([lambda c=c: created("conversation.user.created", c)
                         for c in conversations]
                        + [lambda c=c: created("contact.user.created", c)
                           for c in contacts], threads=3)  # fmt: skip

        traffic = [threading.Thread(target=editor), threading.Thread(target=intercom)]
        for thread in traffic:
            thread.start()
        run_ids = [redis_run_id(stack.redis)]
        outages = []
        for _ in range(2):
            time.sleep(rng.uniform(0.5, 1.5))
            wait_until(lambda: stack.redis.hlen(UNACKED), 30, "jobs in flight")
            outage = round(rng.uniform(0.5, 1.5), 2)
            server.stop()  # SIGTERM: Redis writes its append-only file and exits
            time.sleep(outage)
            server.start()
            outages.append(outage)
            run_ids.append(redis_run_id(stack.redis))
        for thread in traffic:
            thread.join(timeout=120)
        # A lock whose release could not ride out an outage expires by itself (90 s at most);
        # the jobs that find it taken retry with back-off until then.
        stack.settle(timeout=200)
        problems = stack.check(world.expected)
        answers = sender.answers
        deliveries = stack.sanity.stats()["deliveries"]
        context = (f"seed {seed}; outages {outages} s; receiver answers {answers.statuses}, "
                   f"{answers.connection_errors} connection errors, {answers.resent} resent")
        assert problems == [], f"{context}:\n" + "\n".join(problems) + "\n" + stack.tails()
    print(context)
    assert len(set(run_ids)) == 3, run_ids  # Redis really restarted, twice
    assert answers.refused == []
    # Each delivery ended accepted (a 200 "duplicate" when an attempt had queued the job but
    # its answer was lost with the connection).
    assert all(d["status"] in (200, 202) for d in deliveries), [
        d for d in deliveries if d["status"] not in (200, 202)]
    assert any(d["attempts"] > 1 for d in deliveries) or answers.failed_attempts(), (
        f"{context}: no webhook met the outage")
