"""The fault checker against hand-made end states: it must name each kind of wrong outcome.

Why: every scenario's verdict is ``check(...) == []``; a checker that overlooked duplicates or
leftovers would make all of them pass for nothing. These states are built directly in the
fakes' state objects and in fakeredis (no processes), so each kind of problem is shown alone.
"""

from __future__ import annotations

import fakeredis
import pytest
from celery import Celery

from tests.conftest import make_settings
from tests.faults.checks import UNACKED, Expected, ExpectedArticle, check
from workers.articles.store import key as article_key
from workers.jobs import routing
from workers.jobs.celery_app import configure_celery
from workers.jobs.dead_letters import DeadLetters
from workers.jobs.enqueue import Enqueuer
from workers.jobs.errors import ValidationFailed
from workers.sandbox.fake_intercom import FakeIntercomState
from workers.sandbox.fake_sanity import FakeSanityState

pytestmark = pytest.mark.faults

AUTHOR = 1295


class World:
    """A fake Intercom and Sanity holding one synced document, one tagged conversation and
    one enriched contact, and the expectation they meet."""

    def __init__(self) -> None:
        self.intercom = FakeIntercomState()
        self.sanity = FakeSanityState()
        self.redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        article = self.add_article("doc-1 | revision 2", "<p>Revision 2 of doc-1.</p>")
        self.sanity.seed([{"_id": "doc-1", "_type": "supportArticle",
                           "intercomArticleId": article}])  # fmt: skip
        [self.conversation] = self.intercom.seed({"conversations": [{"body": "hi"}]})[
            "conversations"]
        tag = self.intercom.create_or_update_tag({"name": "billing"})
        self.intercom.tag_conversation(self.conversation, {"id": tag["id"], "admin_id": "1295"})
        self.intercom.seed({"contacts": [{"id": "ct-1", "role": "user", "external_id": "u1",
                                          "custom_attributes": {"tier": "gold"}}]})  # fmt: skip
        self.expected = Expected(
            articles={"doc-1": ExpectedArticle("doc-1 | revision 2", "Revision 2 of doc-1.")},
            conversation_tags={self.conversation: ["billing"]},
            contact_attributes={"ct-1": {"tier": "gold"}},
        )

    def add_article(self, title: str, body: str, state: str = "published") -> str:
        made = self.intercom.create_article({"title": title, "body": body, "state": state,
                                             "author_id": AUTHOR})  # fmt: skip
        return str(made["id"])

    def enqueuer(self) -> Enqueuer:
        app = configure_celery(Celery("checks-tests", set_as_current=False),
                               make_settings(REDIS_URL="redis://127.0.0.1:6379/0"))  # fmt: skip
        return Enqueuer(app, self.redis)

    def check(self) -> list[str]:
        return check(self.intercom, self.sanity, self.redis, self.expected)


@pytest.fixture
def world() -> World:
    return World()


def test_the_agreeing_state_has_no_problem(world: World) -> None:
    assert world.check() == []


def test_a_second_article_for_a_document_is_a_duplicate(world: World) -> None:
    world.add_article("doc-1 | revision 1", "<p>Revision 1 of doc-1.</p>")
    [problem] = world.check()
    assert problem.startswith("duplicate: document doc-1 has 2 articles")


def test_a_document_without_article_is_lost_and_an_unexplained_article_is_stray(
    world: World,
) -> None:
    world.expected.articles["doc-2"] = ExpectedArticle("doc-2 | revision 1", "Revision 1")
    world.add_article("Untitled", "<p>?</p>")
    problems = world.check()
    assert any(p.startswith("lost: document doc-2 has no article") for p in problems)
    assert any(p.startswith("stray article") and "'Untitled'" in p for p in problems)


def test_an_old_revision_a_wrong_state_or_a_wrong_mapping_is_reported(world: World) -> None:
    world.expected.articles["doc-1"] = ExpectedArticle("doc-1 | revision 3", "Revision 3",
                                                       state="draft")  # fmt: skip
    world.sanity.edit("doc-1", {"intercomArticleId": "42"})
    problems = world.check()
    assert [p.split(":")[0] for p in problems] == ["stale", "stale", "wrong state", "mapping"]


def test_missing_tags_duplicate_tags_and_missing_attributes_are_reported(world: World) -> None:
    world.expected.conversation_tags[world.conversation] = ["billing", "bug"]
    world.expected.contact_attributes["ct-1"] = {"tier": "gold", "seats": 3}
    # A second tag of the same name (case-insensitively): the fake's API never makes one, so
    # it is put into its state directly.
    world.intercom._tags["7999999"] = {"type": "tag", "id": "7999999", "name": "Billing"}
    problems = world.check()
    assert [p.split(":")[0] for p in problems] == ["tags", "duplicate", "attributes"]


def test_a_job_left_in_a_queue_or_unacknowledged_is_reported_unless_parked(
    world: World,
) -> None:
    enqueuer = world.enqueuer()
    enqueuer.enqueue(routing.ARTICLES_SYNC, ("doc-1",))
    message = world.redis.rpop("articles")
    world.redis.hset(UNACKED, "tag-1", b'[' + message + b', "", "articles"]')
    enqueuer.enqueue(routing.CONVERSATIONS_TAG, ("5000001",))
    problems = world.check()
    assert problems == ["left in conversations: conversations.tag(5000001) (not in the "
                        "dead-letter store)",
                        "left in unacked: articles.sync(doc-1) (not in the dead-letter store)"]

    # Parked with a reason, and expected so: a leftover copy of it is not a problem.
    DeadLetters(world.redis).park(routing.CONVERSATIONS_TAG, ["5000001"],
                                  ValidationFailed("400 no", service="intercom"), 1)  # fmt: skip
    world.expected.parked = {(routing.CONVERSATIONS_TAG, ("5000001",))}
    assert world.check() == ["left in unacked: articles.sync(doc-1) (not in the dead-letter "
                             "store)"]  # fmt: skip


def test_unexpected_reasonless_or_missing_dead_letters_are_reported(world: World) -> None:
    store = DeadLetters(world.redis)
    store.park(routing.CONTACTS_ENRICH, ["ct-1"], ValidationFailed("400", service="x"), 1)
    world.redis.hset("intercom-sync:dlq:" + store.list()[0].id, "error", "")
    world.expected.parked = {(routing.ARTICLES_SYNC, ("doc-9",))}
    problems = world.check()
    assert [p.split(":")[0] for p in problems] == [
        "dead letter without a reason", "parked", "expected in the dead-letter store, missing"]


def test_an_intent_left_behind_is_an_unfinished_create(world: World) -> None:
    world.redis.set(article_key("intent", "doc-1"), "{}")
    assert world.check() == ["unfinished create: article group doc-1 still has an intent"]
