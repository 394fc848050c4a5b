"""Article sync through the real processes: the fake Sanity fires signed webhooks into the real
receiver (gunicorn), real Celery workers (two processes with several children each) sync to the
OpenAPI-validating fake Intercom, and their write-back re-publishes fire the webhook again.

One stack serves the whole module (starting it costs seconds); each test uses its own
documents, counts Intercom calls as differences, and waits until everything is idle.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import requests
from celery import Celery

from app.signatures import sanity_signature_header
from tests.conftest import make_settings
from tests.processes import Proc, base_env, celery_worker, gunicorn, quiet_for, wait_for
from tests.unit.articles.test_harness import WEBHOOK_SECRET, Fakes, article_doc, translation_group
from workers.jobs import routing
from workers.jobs.celery_app import configure_celery
from workers.jobs.enqueue import Enqueuer
from workers.ops.embedded_redis import free_port

pytestmark = pytest.mark.integration

POST, PUT = "POST /articles", "PUT /articles/{article_id}"


@dataclass
class Stack:
    fakes: Fakes
    redis: redis.Redis
    workers: list[Proc]
    receiver_url: str
    enqueuer: Enqueuer

    def events(self, event: str) -> list[dict[str, Any]]:
        """The workers' log events named ``event``, oldest first."""
        found = [line for w in self.workers for line in w.json_lines()
                 if line.get("event") == event]  # fmt: skip
        return sorted(found, key=lambda line: line.get("ts", ""))

    def outcomes(self, document_id: str) -> list[str]:
        return [e["outcome"] for e in self.events("article.synced")
                if e.get("document_id") == document_id]  # fmt: skip

    def wait_outcomes(self, document_id: str, count: int, timeout: float = 30) -> list[str]:
        wait_for(lambda: len(self.outcomes(document_id)) >= count, timeout,
                 f"{count} syncs of {document_id}")  # fmt: skip
        self.settle()
        return self.outcomes(document_id)

    def idle(self) -> bool:
        started = len(self.events("task.started"))
        ended = sum(len(self.events(e)) for e in ("task.succeeded", "task.retry", "task.parked"))
        return (self.fakes.sanity.stats()["webhooks"]["pending"] == 0 and started == ended
                and all(self.redis.llen(q) == 0 for q in routing.QUEUES))  # fmt: skip

    def settle(self, quiet: float = 0.6) -> None:
        """Wait until no webhook, job or task is pending for ``quiet`` seconds."""
        if not quiet_for(self.idle, quiet, timeout=30, poll=0.05):
            raise AssertionError("the stack did not settle within 30 s")

    def deliver(self, document: dict[str, Any], key: str, operation: str = "update") -> Any:
        """Post one signed Sanity delivery to the receiver, as Sanity would."""
        body = json.dumps(document).encode()
        headers = {"content-type": "application/json", "idempotency-key": key,
                   "sanity-operation": operation, "sanity-document-id": document["_id"],
                   "sanity-dataset": "production",
                   "sanity-webhook-signature": sanity_signature_header(
                       WEBHOOK_SECRET, int(time.time() * 1000), body)}  # fmt: skip
        return requests.post(self.receiver_url, data=body, headers=headers, timeout=5)


@pytest.fixture(scope="module")
def stack(real_redis_url: str) -> Iterator[Stack]:
    client = redis.Redis.from_url(real_redis_url)
    client.flushdb()
    port = free_port()
    receiver_url = f"http://127.0.0.1:{port}/webhooks/sanity"
    fakes = Fakes(webhook_url=receiver_url)
    env = base_env(REDIS_URL=real_redis_url, **fakes.env())
    settings = make_settings(**fakes.env(REDIS_URL=real_redis_url))
    enqueuer = Enqueuer(configure_celery(Celery("articles-e2e"), settings), client)
    try:
        with gunicorn(port, env), celery_worker(env, concurrency=3, name="a1") as w1, \
                celery_worker(env, concurrency=3, name="a2") as w2:  # fmt: skip
            stack = Stack(fakes, client, [w1, w2], receiver_url, enqueuer)
            yield stack
            assert fakes.violations() == [], "requests that break Intercom's OpenAPI description"
            assert stack.events("task.parked") == []
    finally:
        fakes.stop()
        client.flushdb()
        client.close()


def _delta(stack: Stack, before: dict[str, int]) -> dict[str, int]:
    after = stack.fakes.calls()
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def test_publish_creates_the_article_and_the_write_back_echo_costs_nothing(stack: Stack) -> None:
    sanity, before = stack.fakes.sanity, stack.fakes.calls()
    sanity.publish(article_doc("e2e-new", "Refunds"))
    # The publish and the write-back's re-publish both came through the receiver.
    assert stack.wait_outcomes("e2e-new", 2) == ["created", "unchanged"]
    assert _delta(stack, before) == {POST: 1}
    doc = sanity.document("e2e-new")
    assert doc["intercomArticleId"] in {a["id"] for a in stack.fakes.articles()}
    hooks = [d for d in sanity.stats()["deliveries"] if d["document_id"] == "e2e-new"]
    assert [(d["operation"], d["status"]) for d in hooks] == [("create", 202), ("update", 202)]

    before = stack.fakes.calls()
    sanity.edit("e2e-new", {"title": "Refunds, explained"})
    assert stack.wait_outcomes("e2e-new", 3)[-1] == "updated"
    assert _delta(stack, before) == {PUT: 1}

    before = stack.fakes.calls()
    sanity.unpublish("e2e-new")  # Sanity sends operation=delete: the draft policy applies
    assert stack.wait_outcomes("e2e-new", 4)[-1] == "unpublished"
    assert _delta(stack, before) == {PUT: 1}
    article = next(a for a in stack.fakes.articles() if a["id"] == doc["intercomArticleId"])
    assert (article["title"], article["state"]) == ("Refunds, explained", "draft")


def test_translation_group_through_the_receiver_is_one_article(stack: Stack) -> None:
    sanity, before = stack.fakes.sanity, stack.fakes.calls()
    sanity.seed([article_doc("e2e-fr", "Rembourser", locale="fr"),
                 translation_group("e2e-grp", {"en": "e2e-en", "fr": "e2e-fr"})])  # fmt: skip
    sanity.publish(article_doc("e2e-en", "Refunds"))
    stack.wait_outcomes("e2e-en", 1)
    stack.settle()
    assert _delta(stack, before) == {POST: 1}
    article = next(a for a in stack.fakes.articles()
                   if a["id"] == sanity.document("e2e-fr")["intercomArticleId"])  # fmt: skip
    assert article["title"] == "Refunds"
    assert article["translated_content"]["fr"]["title"] == "Rembourser"
    assert sanity.document("e2e-en")["intercomArticleId"] == article["id"]


def test_concurrent_duplicate_jobs_on_several_workers_create_one_article(stack: Stack) -> None:
    stack.fakes.sanity.seed([article_doc("e2e-race", "Race")])  # no webhook
    before = stack.fakes.calls()
    for _ in range(24):
        stack.enqueuer.enqueue(routing.ARTICLES_SYNC, ("e2e-race",))
    outcomes = stack.wait_outcomes("e2e-race", 25, timeout=60)  # 24 jobs + the echo
    assert outcomes.count("created") == 1 and set(outcomes) == {"created", "unchanged"}
    assert _delta(stack, before) == {POST: 1}
    per_worker = [sum(1 for line in w.json_lines() if line.get("event") == "article.synced"
                      and line.get("document_id") == "e2e-race")
                  for w in stack.workers]  # fmt: skip
    assert all(count > 0 for count in per_worker), per_worker  # both processes took part


def test_out_of_order_and_duplicate_deliveries_end_with_the_latest_document(stack: Stack) -> None:
    sanity = stack.fakes.sanity
    sanity.configure_webhook(enabled=False)  # the test delivers by hand, out of order
    try:
        v1 = sanity.publish(article_doc("e2e-order", "Version 1"))
        v2 = sanity.edit("e2e-order", {"title": "Version 2"})
        answers = [stack.deliver(v2, "k-v2").status_code, stack.deliver(v1, "k-v1").status_code,
                   stack.deliver(v2, "k-v2").status_code, stack.deliver(v1, "k-v1").status_code,
                   stack.deliver(v1, "k-del", operation="delete").status_code]  # fmt: skip
        assert answers == [202, 202, 200, 200, 202]  # duplicates are answered, not queued
        outcomes = stack.wait_outcomes("e2e-order", 3)
    finally:
        sanity.configure_webhook(enabled=True)
    assert sorted(outcomes) == ["created", "unchanged", "unchanged"]
    mapped = sanity.document("e2e-order")["intercomArticleId"]
    (article,) = [a for a in stack.fakes.articles() if a["id"] == mapped]
    assert (article["title"], article["state"]) == ("Version 2", "published")


def test_reconcile_repairs_missed_webhooks(stack: Stack) -> None:
    sanity = stack.fakes.sanity
    sanity.configure_webhook(enabled=False)  # every delivery below is lost
    try:
        sanity.publish(article_doc("e2e-missed", "Missed"))
        stack.enqueuer.enqueue(routing.ARTICLES_RECONCILE, ())  # what beat does every 10 min
        wait_for(lambda: "created" in stack.outcomes("e2e-missed"), 30, "reconcile's sync")
        stack.settle()
    finally:
        sanity.configure_webhook(enabled=True)
    summary = stack.events("articles.reconciled")[-1]
    assert summary["enqueued"] >= 1 and summary["missing"] >= 1
    assert sanity.document("e2e-missed")["intercomArticleId"]


def test_document_with_every_construct_is_an_article_readers_see_in_full(stack: Stack) -> None:
    """Images in formats Intercom refuses, nested lists, h3-h6, blockquotes, callouts, tables,
    code, video embeds, underline ...: the fake Intercom answers 400 for what Intercom refuses
    and stores what it keeps, so no 400, no parked job and every word readable."""
    from tests.unit.articles.test_article_bodies import every_construct
    from tests.unit.articles.test_portable_text import assert_words_in_order

    blocks = every_construct()
    sanity, before = stack.fakes.sanity, stack.fakes.calls()
    sanity.publish({**article_doc("e2e-every", "Everything"), "body": blocks})
    assert stack.wait_outcomes("e2e-every", 2) == ["created", "unchanged"]
    assert _delta(stack, before) == {POST: 1}
    assert [e for e in stack.events("task.parked")] == []
    mapped = sanity.document("e2e-every")["intercomArticleId"]
    (article,) = [a for a in stack.fakes.articles() if a["id"] == mapped]
    assert_words_in_order(blocks, article["body"])
    created = [e for e in stack.events("article.synced")
               if e.get("document_id") == "e2e-every" and e["outcome"] == "created"]  # fmt: skip
    assert "heading h3 sent as h2" in created[0]["degradations"]
