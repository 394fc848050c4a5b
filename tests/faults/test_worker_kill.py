"""Workers SIGKILLed at random points of a backlog, and a broken guard that the checker catches.

Why SIGKILL and not SIGTERM: a container killed for memory, a host lost, a deploy that gives up
waiting all end a worker without a chance to clean up. Acknowledgement is late, so a job whose
pool process dies is put back on its queue and runs again; a job held by a main process that
dies comes back after the broker's visibility timeout. Either way it must run to the same end
state: one article per document, with its latest content, nothing left queued.

The first kill is aimed at the worst moment (Intercom created an article, its answer has not
arrived), the others at random moments drawn from a seeded ``random.Random``; the seed is in
every failure message, and ``FAULTS_SEED`` replays a run.

The same scenario run with a guard broken in the worker (``broken_guard``) must make the
checker report the duplicate or the loss: that is what proves the checker can fail.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.faults.checks import UNACKED
from tests.faults.harness import (
    VISIBILITY,
    World,
    drained,
    fault_stack,
    hold_next_create,
    kill_pool_during_held_create,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration]

BROKEN = ["--include", "tests.faults.broken_guard"]


def run_seed() -> int:
    """``FAULTS_SEED`` when set (to replay a failure), else a fresh one."""
    return int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(2**32))


@pytest.mark.timeout(300)
def test_sigkill_of_pool_processes_and_of_the_worker_loses_and_duplicates_nothing(
    real_redis_url: str, tmp_path: Path
) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    with fault_stack(real_redis_url, tmp_path) as stack:
        # Every answer takes a little while, so a kill lands mid-request as often as not.
        stack.intercom.set_latency(0.08, 0.04)
        stack.start_receiver()
        world = World(stack, "kill")
        documents = world.document_ids(200)
        for document_id in documents:  # Sanity's webhooks queue 200 syncs: the backlog
            world.publish(document_id)
        to_edit = rng.sample(documents, 80)

        hold_next_create(stack)
        first = stack.start_worker("kill-a", concurrency=3)
        killed = kill_pool_during_held_create(stack, first)
        for _ in range(rng.randint(4, 6)):  # pool processes at random moments, edits between
            time.sleep(rng.uniform(0.2, 1.2))
            for document_id in [to_edit.pop() for _ in range(5)]:
                world.edit(document_id)
            killed.append(stack.kill_child(first, rng.choice) or 0)
        stack.kill_worker(first)  # the main process too, with what it holds
        killed_at = time.monotonic()
        held_by_first = int(stack.redis.hlen(UNACKED))  # no other worker runs yet

        second = stack.start_worker("kill-b", concurrency=3)
        for _ in range(rng.randint(1, 3)):
            time.sleep(rng.uniform(0.2, 1.2))
            for document_id in [to_edit.pop() for _ in range(4)]:
                world.edit(document_id)
            killed.append(stack.kill_child(second, rng.choice) or 0)
        for document_id in to_edit:
            world.edit(document_id)
        wait_until(lambda: drained(stack), 120, "the backlog to drain")
        if held_by_first:
            # What the dead main process held returns once the visibility timeout has passed,
            # at the next worker start (or a running worker's periodic sweep): restart one.
            wait_until(lambda: time.monotonic() > killed_at + VISIBILITY + 2, VISIBILITY + 30,
                       "the visibility timeout of the killed worker's jobs")  # fmt: skip
            stack.start_worker("kill-c", concurrency=3)
        # A killed job's article group stays locked until its lock expires (time limit + 60 s).
        stack.settle(timeout=150)
        problems = stack.check(world.expected)
        adopted = stack.events("article.adopted")
        context = (f"seed {seed} (FAULTS_SEED={seed} repeats its choices); killed pids {killed}; "
                   f"{held_by_first} message(s) held by the killed worker")  # fmt: skip
        assert problems == [], f"{context}:\n" + "\n".join(problems) + "\n" + stack.tails()
    # The scenario did what it claims: kills happened and the worst one needed the guard.
    assert len([pid for pid in killed if pid]) >= 6, context
    assert adopted, f"{context}: no re-run adopted the article of a lost answer"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("guard", "symptoms"), [
    ("adoption", ("duplicate:",)),
    ("requeue", ("lost:", "mapping:", "unfinished create:")),
])  # fmt: skip
def test_the_checker_reports_what_a_broken_guard_lets_through(
    guard: str, symptoms: tuple[str, ...], real_redis_url: str, tmp_path: Path
) -> None:
    """A lost create answer, with one guard broken in the worker: the checker must say so.

    ``requeue``: the pool is SIGKILLed while Intercom holds a create's answer, as in the
    scenario above; the killed jobs are acknowledged instead of run again, so documents end
    without their article or without its id. ``adoption``: the answer is held past the task's
    time limit, so the job gives up after Intercom created the article; its retry does not
    adopt that article and creates a second one. (Killing the pool would do the same, but the
    retry would then wait a minute for the dead job's group lock to expire.)
    """
    with fault_stack(real_redis_url, tmp_path) as stack:
        stack.intercom.set_latency(0.05)
        stack.start_receiver()
        world = World(stack, f"broken-{guard}")
        for document_id in world.document_ids(12):
            world.publish(document_id)
        # Twelve syncs queued; then no more webhooks (no write-back echoes), so no later job
        # waits a minute for the group lock of a killed one.
        wait_until(lambda: stack.sanity.wait_for_webhooks(0.1), 30, "the webhooks")
        stack.sanity.configure_webhook(enabled=False)
        hold_next_create(stack, seconds=30.0 if guard == "adoption" else 8.0)
        worker = stack.start_worker("broken", concurrency=3, extra=BROKEN,
                                    FAULTS_BROKEN_GUARD=guard)  # fmt: skip
        assert f"faults.broken_guard: {guard} guard broken" in worker.output()
        if guard == "requeue":
            assert kill_pool_during_held_create(stack, worker)
        else:
            wait_until(lambda: stack.events("task.retry"), 60, "the held create to time out")
        stack.settle(timeout=60)
        problems = stack.check(world.expected)
    print(f"{guard} guard broken; the checker reported:", *problems, sep="\n  ")
    assert any(p.startswith(symptoms) for p in problems), (
        f"the checker did not report the {guard} guard's failure: {problems}")
