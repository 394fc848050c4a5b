"""Rule actions against the fake Intercom (real HTTP, OpenAPI-checked requests), state in
fakeredis: each action once per conversation and rule, whatever re-runs the rules.

The properties are counted where they matter, on the fake: how many notes and replies the
conversation holds, how many reply calls were made, what was written in shadow mode. A lost
answer is made by a client that lets the call reach Intercom and then raises as a timeout
would; a refused call by the fake's injected faults.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from tests.unit.conversations.test_tagging import FakeIntercom, services_for, write_rules
from workers.clients import help_center
from workers.conversations import triage
from workers.conversations.rules import load_rules
from workers.conversations.tagging import tag_conversation
from workers.conversations.triage import ArticleNotSynced, Records, missing_attributes
from workers.jobs.errors import ConnectionFailed, ValidationFailed
from workers.jobs.logs import TextFormatter
from workers.ops.operations import conversation_attributes_check

DOCUMENT = "faq-refunds"
EVERY_ACTION = """
rules:
  - tag: billing
    when: {text_any: [refund]}
  - name: refund-request
    when: {text_any: [refund, "charged twice"]}
    note: "Refund asked by {{ contact.name }} ({{ company.name }}, plan {{ company.plan }})"
    reply: {article: DOCUMENT, text: "This should help:"}
    attributes: {Category: Billing}
    snooze: {minutes: 240}
""".replace("DOCUMENT", DOCUMENT)
TEXT_REPLY = """
rules:
  - name: ack
    when: {text_any: [refund]}
    reply: "We are on it, {{ contact.name }}."
    close: true
"""


@pytest.fixture
def fake() -> Any:
    intercom = FakeIntercom()
    yield intercom
    intercom.server.stop()


@pytest.fixture
def redis_fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def seed(fake: FakeIntercom, *, company_name: str = "Acme & Sons <EU>",
         synced: bool = True) -> tuple[str, str]:  # fmt: skip
    """A contact of a company, their conversation asking for a refund, the Category attribute
    and (``synced``) the article; returns (conversation id, article id)."""
    ids = fake.state.seed({
        "conversation_attributes": [{"name": "Category"}],
        "companies": [{"company_id": "acme", "name": company_name, "plan": "enterprise"}],
        "contacts": [{"id": "c-1", "role": "user", "name": "Sam O'Neil", "email": "sam@acme.test",
                      "companies": ["acme"]}],
        "conversations": [{"contact_ids": ["c-1"], "body": "<p>I was charged twice, refund?</p>"}],
        "articles": [{"title": "How refunds work", "body": "<p>5 days</p>",
                      "state": "published"}] if synced else [],
    })  # fmt: skip
    return str(ids["conversations"][0]), str((ids.get("articles") or [""])[0])


def map_article(client: Any, article_id: str, document_id: str = DOCUMENT) -> None:
    """What article sync stores for a synced document."""
    client.hset(help_center.key("doc", document_id), mapping={"group": document_id,
                                                              "article": article_id})


def parts(fake: FakeIntercom, conversation_id: str, part_type: str) -> list[dict[str, Any]]:
    conversation = fake.state.get_conversation(conversation_id)
    return [p for p in conversation["conversation_parts"]["conversation_parts"]
            if p["part_type"] == part_type and p["author"]["type"] == "admin"]  # fmt: skip


def state(fake: FakeIntercom, conversation_id: str) -> dict[str, Any]:
    return fake.state.get_conversation(conversation_id)


@pytest.fixture
def every(fake, redis_fake, tmp_path):
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, EVERY_ACTION))
    conversation, article = seed(fake)
    map_article(redis_fake, article)
    return services, conversation, article


# --------------------------------------------------------------------------- every action


def test_a_rule_with_every_action_acts_once_and_a_repeat_costs_reads_only(fake, every) -> None:
    services, conversation, article = every
    outcome = tag_conversation(services, conversation)
    assert outcome.applied == ["billing"]
    assert sorted(outcome.triage.done) == ["refund-request:attributes", "refund-request:note",
                                           "refund-request:reply", "refund-request:snooze"]

    [note] = parts(fake, conversation, "note")
    # Placeholders filled in and HTML-escaped; the literal text is sent as written.
    assert note["body"] == ("<p>Refund asked by Sam O&#x27;Neil (Acme &amp; Sons &lt;EU&gt;, "
                            "plan enterprise)</p>")  # fmt: skip
    [reply] = parts(fake, conversation, "comment")
    url = fake.state.get_article(article)["url"]
    assert f'<a href="{url}">How refunds work</a>' in reply["body"]
    assert reply["body"].startswith("<p>This should help:</p>")
    after = state(fake, conversation)
    assert after["custom_attributes"] == {"Category": "Billing"}
    assert after["state"] == "snoozed" and after["snoozed_until"] > after["created_at"]
    # The state change came after the note and the reply.
    kinds = [p["part_type"] for p in after["conversation_parts"]["conversation_parts"]]
    assert kinds.index("snoozed") > kinds.index("comment") > kinds.index("note")
    assert help_center.cached_url(services.redis, article) == url  # cached for links too

    writes, total = fake.writes(), fake.total()
    again = tag_conversation(services, conversation)  # a duplicate delivery, a replay
    assert again.triage.done == [] and len(again.triage.already) == 4
    assert fake.writes() == writes
    # The GET of the conversation only: the contact and its companies are fetched for the
    # placeholders of pending actions, and none is pending.
    assert fake.total() - total == 1
    assert fake.violations() == []


def test_a_customer_reply_re_runs_the_rules_and_nothing_is_repeated(fake, every) -> None:
    services, conversation, _ = every
    tag_conversation(services, conversation)
    fake.state.add_conversation_part(conversation, "<p>Still waiting for my refund</p>")
    assert state(fake, conversation)["state"] == "open"  # the customer's reply reopened it
    writes = fake.writes()
    outcome = tag_conversation(services, conversation)
    assert outcome.triage.done == [] and fake.writes() == writes
    assert len(parts(fake, conversation, "note")) == 1
    assert len(parts(fake, conversation, "comment")) == 1
    assert len(parts(fake, conversation, "snoozed")) == 1
    assert state(fake, conversation)["state"] == "open"  # not snoozed a second time


# --------------------------------------------------------------------------- lost answers


class LosesAnswers:
    """The Intercom client, except that chosen calls reach Intercom and then fail as a
    timeout would (the answer is lost)."""

    def __init__(self, inner: Any, *names: str) -> None:
        self._inner = inner
        self._names = set(names)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name not in self._names:
            return method

        def lost(*args: Any, **kwargs: Any) -> Any:
            self._names.discard(name)  # once
            method(*args, **kwargs)
            raise ConnectionFailed(f"intercom {name}: ReadTimeout", service="intercom")

        return lost


def test_a_reply_whose_answer_was_lost_is_adopted_not_posted_again(fake, every) -> None:
    services, conversation, _ = every
    real = services.intercom
    services.__dict__["intercom"] = LosesAnswers(real, "reply_conversation")
    with pytest.raises(ConnectionFailed):
        tag_conversation(services, conversation)
    record = Records(services.redis, conversation).get("refund-request", "note")
    assert record["state"] == "intent"  # the note's call happened, its outcome is unknown

    services.__dict__["intercom"] = real
    outcome = tag_conversation(services, conversation)
    assert outcome.triage.adopted == ["refund-request:note"]
    assert "refund-request:reply" in outcome.triage.done
    assert fake.count("POST", "/conversations/{conversation_id}/reply") == 2  # note + reply
    assert len(parts(fake, conversation, "note")) == 1
    assert Records(services.redis, conversation).get("refund-request", "note")["how"] == "adopted"


def test_a_lost_snooze_is_adopted_from_the_conversation_parts(fake, every) -> None:
    services, conversation, _ = every
    real = services.intercom
    services.__dict__["intercom"] = LosesAnswers(real, "snooze_conversation")
    with pytest.raises(ConnectionFailed):
        tag_conversation(services, conversation)
    services.__dict__["intercom"] = real
    outcome = tag_conversation(services, conversation)
    assert outcome.triage.adopted == ["refund-request:snooze"]
    assert len(parts(fake, conversation, "snoozed")) == 1


def test_an_intent_whose_call_never_arrived_is_posted_once(fake, every) -> None:
    services, conversation, _ = every
    Records(services.redis, conversation).intent("refund-request", "note", "no-such-digest")
    tag_conversation(services, conversation)
    assert len(parts(fake, conversation, "note")) == 1


def test_a_refused_call_clears_its_intent_and_the_retry_posts(fake, every) -> None:
    services, conversation, _ = every
    fake.state.inject_fault(400, 1, path_prefix=f"/conversations/{conversation}/reply")
    with pytest.raises(ValidationFailed):
        tag_conversation(services, conversation)
    assert Records(services.redis, conversation).get("refund-request", "note") is None
    assert parts(fake, conversation, "note") == []
    tag_conversation(services, conversation)
    assert len(parts(fake, conversation, "note")) == 1


def test_without_records_our_own_identical_part_is_not_posted_again(fake, every) -> None:
    services, conversation, _ = every
    tag_conversation(services, conversation)
    services.redis.flushall()  # Redis lost: no records, no mapping
    map_article(services.redis, every[2])
    outcome = tag_conversation(services, conversation)
    assert sorted(outcome.triage.adopted) == ["refund-request:note", "refund-request:reply"]
    assert len(parts(fake, conversation, "note")) == 1
    assert len(parts(fake, conversation, "comment")) == 1


# --------------------------------------------------------------------------- articles


def test_an_article_not_synced_yet_waits_and_the_rest_of_the_rule_waits_with_it(
    fake, redis_fake, tmp_path
) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, EVERY_ACTION))
    conversation, _ = seed(fake, synced=False)
    with pytest.raises(ArticleNotSynced, match=DOCUMENT):
        tag_conversation(services, conversation)
    assert len(parts(fake, conversation, "note")) == 1  # what does not depend on it ran
    assert parts(fake, conversation, "comment") == []  # never a reply without its link
    assert state(fake, conversation)["state"] == "open"  # the snooze waits for the reply

    article = fake.state.seed({"articles": [{"title": "How refunds work", "body": "<p>x</p>",
                                             "state": "published"}]})["articles"][0]  # fmt: skip
    map_article(redis_fake, str(article))  # article sync caught up
    outcome = tag_conversation(services, conversation)
    assert sorted(outcome.triage.done) == ["refund-request:reply", "refund-request:snooze"]
    assert len(parts(fake, conversation, "note")) == 1
    assert len(parts(fake, conversation, "comment")) == 1


class NoPublicUrl:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_article(self, article_id: str) -> dict[str, Any]:
        return self._inner.get_article(article_id) | {"url": None}


def test_an_article_without_a_public_url_is_skipped_with_a_warning(
    fake, every, caplog
) -> None:
    services, conversation, _ = every
    services.__dict__["intercom"] = NoPublicUrl(services.intercom)
    with caplog.at_level(logging.WARNING, logger="intercom_sync.triage"):
        outcome = tag_conversation(services, conversation)
    assert outcome.triage.skipped == ["refund-request:reply"]
    assert parts(fake, conversation, "comment") == []
    warnings = [TextFormatter().format(r) for r in caplog.records if r.levelno == logging.WARNING]
    assert any("triage.article_without_url" in m and DOCUMENT in m for m in warnings), warnings
    assert state(fake, conversation)["state"] == "snoozed"  # skipped, not waiting


# --------------------------------------------------------------------------- text replies, state


def test_a_text_reply_and_close(fake, redis_fake, tmp_path) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, TEXT_REPLY))
    conversation, _ = seed(fake, synced=False)
    tag_conversation(services, conversation)
    [reply] = parts(fake, conversation, "comment")
    assert reply["body"] == "<p>We are on it, Sam O&#x27;Neil.</p>"
    assert state(fake, conversation)["state"] == "closed"
    assert fake.count("GET", "/contacts/{contact_id}") == 1  # for {{ contact.name }}
    assert fake.violations() == []


# --------------------------------------------------------------------------- shadow mode


def test_shadow_mode_writes_nothing_and_logs_every_planned_action(
    fake, redis_fake, tmp_path, caplog
) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, EVERY_ACTION),
                            RULES_MODE="shadow")  # fmt: skip
    conversation, article = seed(fake)
    map_article(redis_fake, article)
    with caplog.at_level(logging.INFO):
        tag_conversation(services, conversation)
    assert fake.writes() == 0
    assert redis_fake.keys(triage.RECORDS_PREFIX + "*") == []
    lines = [TextFormatter().format(r) for r in caplog.records
             if r.getMessage() == "rules.shadow"]  # fmt: skip
    actions = sorted(line.split("action=")[1].split()[0] for line in lines)
    assert actions == ["attributes", "note", "reply", "snooze", "tag"], lines
    assert all(f"conversation_id={conversation}" in line for line in lines), lines
    assert any("rule=refund-request" in line and "url=" in line for line in lines), lines
    assert all("Sam" not in line for line in lines)  # no personal data in the log


# --------------------------------------------------------------------------- configuration


def test_missing_conversation_attributes_are_named(fake, redis_fake, tmp_path) -> None:
    rules = load_rules(EVERY_ACTION.replace("{Category: Billing}",
                                            "{Category: Billing, Tier: 2}"))  # fmt: skip
    fake.state.seed({"conversation_attributes": [{"name": "Category"}]})
    services = services_for(fake, redis_fake)
    [problem] = missing_attributes(services.intercom, rules)
    assert "'Tier'" in problem and "refund-request" in problem

    path = write_rules(tmp_path, EVERY_ACTION.replace("Category", "Tier"))
    check = conversation_attributes_check(services_for(fake, redis_fake, RULES_PATH=path))
    assert check is not None and check.ok is False and "'Tier'" in check.detail
    path = write_rules(tmp_path, EVERY_ACTION, name="ok.yaml")
    check = conversation_attributes_check(services_for(fake, redis_fake, RULES_PATH=path))
    assert check is not None and check.ok is True
    # No rule sets attributes: no check line and no call.
    calls = fake.total()
    path = write_rules(tmp_path, TEXT_REPLY, name="none.yaml")
    assert conversation_attributes_check(services_for(fake, redis_fake, RULES_PATH=path)) is None
    assert fake.total() == calls


def test_records_keep_each_rule_and_action_apart(redis_fake) -> None:
    records = Records(redis_fake, "42", clock=lambda: 1000.0)
    records.intent("a:b", "note", "d1")
    records.done("a", "b:note", how="sent", part_id="7")
    assert records.get("a:b", "note") == {"state": "intent", "at": 1000.0, "digest": "d1"}
    assert records.get("a", "b:note")["part_id"] == "7"
    assert 0 < redis_fake.ttl(records.key) <= triage.RECORD_TTL


def test_digest_ignores_how_intercom_rewraps_our_html() -> None:
    sent = "Refund asked by Sam &amp; co\n <b>now</b>"
    stored = "<p>Refund asked by Sam &amp; co <b>now</b></p>"
    assert triage.digest(sent) == triage.digest(stored)
    assert triage.digest(sent) != triage.digest("<p>Refund asked by Sam</p>")


def test_rules_test_cli_shows_actions_with_placeholders(tmp_path: Path) -> None:
    conversation = tmp_path / "conversation.json"
    conversation.write_text('{"type": "conversation", "id": "77", "source": {"type": '
                            '"conversation", "body": "<p>refund</p>", "author": {"type": "user",'
                            ' "id": "u1", "name": "Ann <b>"}}}')  # fmt: skip
    text = triage.actions_cli(write_rules(tmp_path, EVERY_ACTION), conversation)
    assert "[refund-request] note: Refund asked by Ann &lt;b&gt; (, plan )" in text
    assert "[refund-request] snooze for 240 minutes" in text
    assert f"document {DOCUMENT}" in text


def test_rules_test_cli_adds_nothing_for_a_file_without_actions(tmp_path: Path) -> None:
    rules = write_rules(tmp_path, "rules:\n  - tag: billing\n    when: {text_any: [refund]}\n")
    assert triage.actions_cli(rules, "refund please") == ""
