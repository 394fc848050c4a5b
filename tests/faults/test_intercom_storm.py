"""The fake Intercom answers 429s, 5xx (JSON and load-balancer HTML) and too late, in bursts,
while a backlog of article syncs, conversation tags and contact enrichments is worked off.

Why bursts and not a steady error rate: real outages come in waves, and the dangerous moments
are the edges: a 429 that empties everyone's budget at once, a create whose answer never
arrives although Intercom made the article (the retry must adopt it, not make a second one), a
tag or contact update that happened but timed out. Each burst is injected, then new work is
created that must pass through it, and the next burst waits until this one was used up, so no
fault is left unused. One request gets a permanent 400: its job must be parked with a reason
(and only it), and ``intercom-sync dlq replay`` must then bring it to its end state too.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.checks import Expected
from tests.faults.harness import Sender, World, fault_stack, wait_until
from tests.faults.test_worker_kill import run_seed
from tests.processes import BIN, base_env
from workers.jobs import routing
from workers.jobs.dead_letters import DeadLetters
from workers.sandbox.fake_intercom import FakeIntercomState

pytestmark = [pytest.mark.faults, pytest.mark.integration]

# The Intercom client gives up on an answer after 20 s: these are answered after it did.
TIMEOUT = 21.0
TIMEOUT_ROUTES = [("POST", "/articles"), ("PUT", "/articles/"), ("PUT", "/contacts/"),
                  ("POST", "/conversations/")]  # fmt: skip
# The bursts in order: the late answers early, so their 20 s overlap the rest of the storm.
KINDS = ["5xx", "timeout", "429", "html", "5xx", "html"]


def burst(state: FakeIntercomState, rng: random.Random, round_number: int) -> dict[str, int]:
    """Queue one burst of faults (answers late count as ``"timeout"``); what was queued."""
    kind = KINDS[round_number % len(KINDS)]
    if kind == "timeout":  # one late answer on each route where a lost answer hurts
        for method, prefix in TIMEOUT_ROUTES:
            state.inject_delay(TIMEOUT, 1, path_prefix=prefix, method=method)
        return {"timeout": len(TIMEOUT_ROUTES)}
    if kind == "429":
        state.inject_fault(429, 2)
        return {"429": 2}
    statuses = ([500] * rng.randint(3, 8) if kind == "5xx"
                else [rng.choice([502, 503, 504]) for _ in range(rng.randint(3, 6))])
    for status in statuses:  # 502-504 come as the HTML page a load balancer sends
        state.inject_fault(status, 1)
    return {str(status): statuses.count(status) for status in set(statuses)}


def used_up(state: FakeIntercomState) -> bool:
    stats = state.stats()
    return not stats["pending_faults"] and not stats["pending_delays"]


@pytest.mark.timeout(240)
def test_intercom_errors_in_bursts_end_with_every_event_applied_once(
    real_redis_url: str, tmp_path: Path
) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    with fault_stack(real_redis_url, tmp_path) as stack:
        state = stack.intercom
        state.set_latency(0.03, 0.02)
        stack.start_receiver()
        world = World(stack, "storm")
        sender = Sender(stack.receiver)

        def synced() -> list[str]:
            """Documents that have their article (an edit of one is a PUT)."""
            return sorted(d for d in world.revisions
                          if (stack.sanity.document(d) or {}).get("intercomArticleId"))  # fmt: skip

        def work(documents: int, edits: int, conversations: int, contacts: int) -> None:
            """New articles, edits, conversations and contacts, with their webhooks."""
            for document_id in world.document_ids(documents):
                world.publish(document_id)
            done = synced()
            for document_id in rng.sample(done, min(edits, len(done))):
                world.edit(document_id)
            sender.many([lambda c=c: sender.intercom("conversation.user.created", c, f"c-{c}")
                         for c in world.conversations(conversations)]
                        + [lambda c=c: sender.intercom("contact.user.created", c, f"c-{c}")
                           for c in world.contacts(contacts)])  # fmt: skip

        # One contact's update is refused for good (400): its job is parked at once.
        victim = world.contacts(1)[0]
        state.inject_fault(400, 1, path_prefix=f"/contacts/{victim}", method="PUT")
        work(40, 0, 40, 30)
        sender.intercom("contact.user.created", victim, f"c-{victim}")
        # The soft time limit (80 % of 28 s) must outlast the client's 20 s read timeout, and
        # the four answers held that long must leave processes for the rest of the storm.
        stack.start_worker("storm", concurrency=6, TASK_TIME_LIMIT="28")
        # Every burst's traffic includes edits, so the late answer to an update has a PUT.
        wait_until(lambda: len(synced()) >= 6, 60, "the first articles")
        bursts = []
        for round_number in range(len(KINDS)):
            bursts.append(burst(state, rng, round_number))
            work(4, 6, 4, 3)  # traffic for the burst, whatever route it hits
            wait_until(lambda: used_up(state), 60, f"burst {bursts[-1]} to be used up")
            time.sleep(rng.uniform(0.1, 0.8))  # a calm of random length between bursts
        stack.settle(timeout=150)

        parked = Expected(world.expected.articles, world.expected.conversation_tags,
                          {k: v for k, v in world.expected.contact_attributes.items()
                           if k != victim},
                          {(routing.CONTACTS_ENRICH, (victim,))})  # fmt: skip
        context = f"seed {seed}; bursts {bursts}"
        problems = stack.check(parked)
        assert problems == [], f"{context}:\n" + "\n".join(problems) + "\n" + stack.tails()
        [entry] = DeadLetters(stack.redis).list()
        assert (entry.error_type, entry.status) == ("ValidationFailed", 400), entry

        # The operator replays it: now everything, the victim included, reaches its end.
        replayed = subprocess.run([str(BIN / "intercom-sync"), "dlq", "replay", entry.id],
                                  env=base_env(REDIS_URL=real_redis_url), capture_output=True,
                                  text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
        assert replayed.returncode == 0, replayed.stderr
        stack.settle(timeout=60)
        problems = stack.check(world.expected)
        assert problems == [], f"{context}, after replay:\n" + "\n".join(problems)
        stats = state.stats()
        adopted = stack.events("article.adopted")
    print(f"{context}; Intercom answered {stats['responses']}")
    # The storm really hit: every fault queued was served, and no 429 came from our own pace.
    injected: dict[str, int] = {}
    for queued in bursts:
        for kind, count in queued.items():
            injected[kind] = injected.get(kind, 0) + count
    assert stats["delayed"] == injected.pop("timeout"), context
    assert stats["responses"].get("400") == 1
    assert {s: stats["responses"].get(s) for s in injected} == injected, context
    assert stats["served_429"] == injected["429"] and stats["rate_limited"] == 0, context
    assert adopted, f"{context}: the create whose answer came late was not adopted"
    assert sender.answers.refused == []
