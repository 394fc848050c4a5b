"""Conversation tagging against the fake Intercom (real HTTP, OpenAPI-checked requests).

Each test drives :func:`workers.conversations.tagging.tag_conversation` with services built on
fakeredis and counts what reached the fake: the properties that matter (the right tags from the
sample notifications, zero writes for a duplicate, one ``POST /tags`` per name, a stale tag id
repaired once, a hostile regex bounded in time) are call counts and stored state.

The fixtures here (``FakeIntercom``, ``services_for``) are also used by ``test_enrich_task``.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from celery import Celery

from tests.conftest import OPENAPI, VECTORS, make_settings
from workers.clients.services import Services
from workers.conversations.rules import RulesError
from workers.conversations.tagging import (
    TAGS_KEY,
    TagCache,
    attribute_scopes,
    refresh_tag_cache,
    rules_for,
    single_flight,
    tag_conversation,
)
from workers.jobs.celery_app import configure_celery
from workers.jobs.errors import NotFound
from workers.sandbox.fake_intercom import (
    DEFAULT_TOKEN,
    STATE_EXTENSION,
    FakeIntercomConfig,
    FakeIntercomState,
    create_fake_intercom,
)
from workers.sandbox.samples import SAMPLE_RULES
from workers.sandbox.server import BackgroundServer

# SAMPLE_RULES: DESIGN §3's sample rules, as the sandbox ships them.
NOTIFICATIONS = VECTORS / "intercom-notifications"
ADMIN_ID = "1295"

TEXT_RULES = """
rules:
  - tag: billing
    when:
      text_any: [refund, "charged twice", invoice]
"""


# --------------------------------------------------------------------------- shared fixtures


class _Recorder:
    """WSGI middleware keeping every API request's method, path and raw body (the fake itself
    only counts requests), so tests can prove what never left the service."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str, bytes]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        if not environ["PATH_INFO"].startswith("/_fake"):
            with self._lock:
                self.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], raw))
        return self.app(environ, start_response)


class FakeIntercom:
    """The fake on a real port with strict OpenAPI request validation."""

    def __init__(self, **config: Any) -> None:
        app = create_fake_intercom(FakeIntercomConfig(openapi_path=OPENAPI, **config))
        self.state: FakeIntercomState = app.extensions[STATE_EXTENSION]
        self.recorder = _Recorder(app)
        self.server = BackgroundServer(self.recorder).start()
        self.url = self.server.url

    def count(self, method: str, template: str) -> int:
        return self.state.request_count(method, template)

    def total(self) -> int:
        return self.state.stats()["requests_total"]

    def writes(self) -> int:
        """Requests other than GETs and searches: what a duplicate job must not send."""
        return sum(
            n
            for key, n in self.state.stats()["requests"].items()
            if not key.startswith("GET ") and key != "POST /contacts/search"
        )

    def violations(self) -> list[dict[str, Any]]:
        return self.state.stats()["violations"]

    def bodies(self) -> list[bytes]:
        return [body for _, _, body in self.recorder.requests]


@pytest.fixture
def fake() -> Iterator[FakeIntercom]:
    intercom = FakeIntercom()
    yield intercom
    intercom.server.stop()


@pytest.fixture
def redis_fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def services_for(fake: FakeIntercom, client: Any, **env: str) -> Services:
    """Services talking to ``fake`` with state in ``client`` (fakeredis or a real Redis)."""
    settings = make_settings(INTERCOM_API_BASE=fake.url, INTERCOM_ACCESS_TOKEN=DEFAULT_TOKEN,
                             INTERCOM_ADMIN_ID=ADMIN_ID, **env)  # fmt: skip
    app = configure_celery(Celery("tagging-tests", set_as_current=False), settings)
    return Services(settings, redis_client=client, celery_app=app)


def write_rules(tmp_path: Path, text: str, name: str = "rules.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def seed_from_notification(fake: FakeIntercom, name: str) -> str:
    """Put the conversation of a sample notification into the fake: its contact, subject,
    first message and customer parts (the webhook's own payload is not what the task reads)."""
    item = json.loads((NOTIFICATIONS / name).read_text())["data"]["item"]
    author = item["source"]["author"]
    ref = item["contacts"]["contacts"][0]
    fake.state.seed({
        "companies": [{"company_id": "acme", "name": "Acme", "plan": "enterprise", "id": "c-acme"}],
        "contacts": [{"id": ref["id"], "external_id": ref["external_id"], "role": author["type"],
                      "email": author["email"], "name": author["name"], "companies": ["acme"]}],
        "conversations": [{
            "id": item["id"], "subject": item["source"]["subject"], "body": item["source"]["body"],
            "author": {"type": author["type"], "id": author["id"]},
            "parts": [{"body": p["body"], "part_type": p["part_type"],
                       "author": {"type": p["author"]["type"], "id": p["author"]["id"]}}
                      for p in item["conversation_parts"]["conversation_parts"]],
        }],
    })  # fmt: skip
    return item["id"]


def conversation_tags(fake: FakeIntercom, conversation_id: str) -> list[str]:
    return fake.state.snapshot()["conversation_tags"][conversation_id]


# --------------------------------------------------------------------------- sample notifications


def test_sample_notifications_get_the_design_tags_and_replays_change_nothing(
    fake, redis_fake, tmp_path
) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, SAMPLE_RULES))
    created = seed_from_notification(fake, "conversation.user.created.json")

    first = tag_conversation(services, created)
    assert sorted(first.applied) == ["billing", "enterprise"]
    assert conversation_tags(fake, created) == ["billing", "enterprise"]
    # GET conversation, GET contact companies (a company rule exists), 2 x (POST /tags + tag).
    assert fake.total() == 6
    assert fake.count("POST", "/tags") == 2

    # The customer replies (conversation.user.replied): only the new tag is applied.
    replied = json.loads((NOTIFICATIONS / "conversation.user.replied.json").read_text())
    part = replied["data"]["item"]["conversation_parts"]["conversation_parts"][0]
    fake.state.add_conversation_part(created, part["body"])
    second = tag_conversation(services, created)
    assert second.applied == ["bug"]
    assert sorted(second.already_present) == ["billing", "enterprise"]
    assert conversation_tags(fake, created) == ["billing", "bug", "enterprise"]

    # A duplicate delivery or a replay: reads only, no write at all.
    writes = fake.writes()
    before = fake.total()
    third = tag_conversation(services, created)
    assert third.applied == [] and sorted(third.already_present) == ["billing", "bug", "enterprise"]
    assert fake.writes() == writes
    assert fake.total() - before == 2  # GET conversation + GET contact companies
    assert fake.count("POST", "/tags") == 3
    assert fake.state.stats()["tag_applications"] == 3
    assert fake.violations() == []


def test_text_only_rules_fetch_no_contact_and_a_duplicate_costs_one_read(
    fake, redis_fake, tmp_path
) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, TEXT_RULES))
    conversation = seed_from_notification(fake, "conversation.user.created.json")
    tag_conversation(services, conversation)
    assert fake.total() == 3  # GET conversation, POST /tags, POST /conversations/{id}/tags
    assert fake.count("GET", "/contacts/{contact_id}") == 0
    assert fake.count("GET", "/contacts/{contact_id}/companies") == 0
    tag_conversation(services, conversation)
    assert fake.total() == 4
    assert fake.violations() == []


def test_company_rule_does_not_match_when_the_company_plan_differs(
    fake, redis_fake, tmp_path
) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, SAMPLE_RULES))
    conversation = seed_from_notification(fake, "conversation.user.created.json")
    fake.state.seed({"companies": [{"company_id": "acme", "plan": "starter"}]})  # upsert
    assert tag_conversation(services, conversation).applied == ["billing"]


def test_a_tag_is_created_once_and_reused_across_conversations(fake, redis_fake, tmp_path) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, TEXT_RULES))
    ids = fake.state.seed({"conversations": [{"body": "refund please"} for _ in range(5)]})
    for conversation in ids["conversations"]:
        assert tag_conversation(services, conversation).applied == ["billing"]
    assert fake.count("POST", "/tags") == 1
    assert [t["name"] for t in fake.state.snapshot()["tags"]] == ["billing"]


def test_existing_tag_in_another_case_is_recognised(fake, redis_fake, tmp_path) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, TEXT_RULES))
    ids = fake.state.seed({"conversations": [{"body": "refund", "tags": ["Billing"]}]})
    outcome = tag_conversation(services, ids["conversations"][0])
    assert outcome.applied == [] and outcome.already_present == ["billing"]
    assert fake.writes() == 0


def test_a_tag_deleted_in_intercom_is_recreated_once_and_applied(
    fake, redis_fake, tmp_path
) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, TEXT_RULES))
    ids = fake.state.seed({"conversations": [{"body": "refund"}, {"body": "invoice"}]})
    tag_conversation(services, ids["conversations"][0])
    old_id = redis_fake.hget(TAGS_KEY, "billing").decode()
    fake.state.delete_tag(old_id)

    outcome = tag_conversation(services, ids["conversations"][1])
    assert outcome.applied == ["billing"]
    new_id = redis_fake.hget(TAGS_KEY, "billing").decode()
    assert new_id != old_id
    assert conversation_tags(fake, ids["conversations"][1]) == ["billing"]
    assert fake.count("POST", "/tags") == 2  # the first creation and the one re-creation
    assert fake.count("POST", "/conversations/{conversation_id}/tags") == 3  # 1 + 404 + retry


def test_a_404_about_the_conversation_is_not_mistaken_for_a_stale_tag(
    fake, redis_fake, tmp_path
) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, TEXT_RULES))
    ids = fake.state.seed({"conversations": [{"body": "refund"}]})
    fake.state.inject_fault(404, 1, path_prefix=f"/conversations/{ids['conversations'][0]}/tags")
    with pytest.raises(NotFound):
        tag_conversation(services, ids["conversations"][0])
    assert fake.count("POST", "/tags") == 2  # the tag was fine: same id, so the 404 is re-raised
    assert len(fake.state.snapshot()["tags"]) == 1


def test_a_deleted_conversation_is_a_no_op(fake, redis_fake, tmp_path) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, TEXT_RULES))
    outcome = tag_conversation(services, "123456789")
    assert outcome.found is False and fake.total() == 1


# --------------------------------------------------------------------------- assignment

ASSIGN_RULES = """
rules:
  - tag: billing
    when: {text_any: [refund]}
    assign_to: {team_id: "5017"}
  - tag: angry
    when: {text_any: [furious]}
    assign_to: {admin_id: 77}
"""


def test_assignment_runs_once_for_a_new_tag_and_respects_the_current_assignee(
    fake, redis_fake, tmp_path
) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, ASSIGN_RULES))
    ids = fake.state.seed({"conversations": [{"body": "refund, I am furious"},
                                             {"body": "refund"}]})  # fmt: skip
    first = tag_conversation(services, ids["conversations"][0])
    assert first.assigned is not None and first.assigned.assignee_id == "5017"  # first rule wins
    conversation = fake.state.get_conversation(ids["conversations"][0])
    assert conversation["team_assignee_id"] == 5017
    assert fake.count("POST", "/conversations/{conversation_id}/parts") == 1

    again = tag_conversation(services, ids["conversations"][0])  # replay: nothing new
    assert again.assigned is None
    assert fake.count("POST", "/conversations/{conversation_id}/parts") == 1

    # Already with that team (say, Intercom's own routing): no assignment call.
    fake.state.manage_conversation(ids["conversations"][1], {
        "message_type": "assignment", "type": "team", "admin_id": ADMIN_ID,
        "assignee_id": "5017"})  # fmt: skip
    before = fake.count("POST", "/conversations/{conversation_id}/parts")
    outcome = tag_conversation(services, ids["conversations"][1])
    assert outcome.applied == ["billing"] and outcome.assigned is None
    assert fake.count("POST", "/conversations/{conversation_id}/parts") == before
    assert fake.violations() == []


# --------------------------------------------------------------------------- safety, rules file


def test_a_hostile_regex_cannot_stall_the_job(fake, redis_fake, tmp_path, caplog) -> None:
    # Quadratic backtracking that the static check does not catch: the timeout must.
    rules = write_rules(tmp_path, """
rules:
  - tag: slow-1
    when: {text_regex: "(x|xy)+$"}
  - tag: slow-2
    when: {text_regex: "(a|ab)+$"}
  - tag: billing
    when: {text_any: [refund]}
""")
    services = services_for(fake, redis_fake, RULES_PATH=rules)
    ids = fake.state.seed({"conversations": [{"body": "refund " + "x" * 30000 + " " + "a" * 30000
                                                      + "!"}]})  # fmt: skip
    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    outcome = tag_conversation(services, ids["conversations"][0])
    elapsed = time.monotonic() - started
    assert outcome.applied == ["billing"]
    assert elapsed < 2.0, elapsed
    timeouts = [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()]
    assert len(timeouts) == 2 and "slow-1" in timeouts[0]


def test_rules_are_loaded_once_and_reloaded_when_the_file_changes(tmp_path, caplog) -> None:
    path = write_rules(tmp_path, TEXT_RULES)
    first = rules_for(path)
    assert rules_for(path) is first
    Path(path).write_text(SAMPLE_RULES)
    second = rules_for(path)
    assert second is not first and second.ruleset.tag_names == ("billing", "bug", "enterprise")
    assert second.scopes == frozenset({"company"})

    caplog.set_level(logging.ERROR)
    Path(path).write_text("rules: [{tag: broken}]\n")  # no 'when': invalid
    assert rules_for(path) is second  # a broken edit keeps the previous rules
    assert rules_for(path) is second
    assert [r.getMessage() for r in caplog.records] == ["rules.reload_failed"]

    with pytest.raises(RulesError):
        rules_for(write_rules(tmp_path, "rules: [{tag: x}]\n", name="never-valid.yaml"))


def test_attribute_scopes_follow_nested_conditions_of_enabled_rules(tmp_path) -> None:
    rules = rules_for(write_rules(tmp_path, """
rules:
  - tag: a
    when:
      any:
        - text_any: [x]
        - not: {contact.role: lead}
  - tag: b
    enabled: false
    when: {company.plan: enterprise}
"""))
    assert attribute_scopes(rules.ruleset) == frozenset({"contact"})


# --------------------------------------------------------------------------- tag cache


def test_rebuild_lists_tags_and_keeps_entries_created_meanwhile(fake, redis_fake, tmp_path) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, TEXT_RULES))
    fake.state.seed({"tags": ["Billing", "vip"]})
    redis_fake.hset(TAGS_KEY, mapping={"deleted-tag": "999", "billing": "1"})
    assert refresh_tag_cache(services) == 2
    cache = {k.decode(): v.decode() for k, v in redis_fake.hgetall(TAGS_KEY).items()}
    tags = {t["name"].casefold(): t["id"] for t in fake.state.snapshot()["tags"]}
    assert cache == tags
    assert redis_fake.ttl(TAGS_KEY) > 0

    # Rebuilt cache: tagging now needs no POST /tags at all.
    ids = fake.state.seed({"conversations": [{"body": "refund"}]})
    tag_conversation(services, ids["conversations"][0])
    assert fake.count("POST", "/tags") == 0


def test_rebuild_is_skipped_when_tagging_is_off(fake, redis_fake) -> None:
    services = services_for(fake, redis_fake)
    assert refresh_tag_cache(services) is None
    assert fake.total() == 0


def test_racing_threads_create_a_tag_once(fake, redis_fake) -> None:
    services = services_for(fake, redis_fake)
    fake.state.inject_delay(0.3, 1, path_prefix="/tags", method="POST")
    cache = TagCache(redis_fake, services.intercom)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.ensure("New Tag")))
               for _ in range(8)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 8 and len(set(results)) == 1
    assert fake.count("POST", "/tags") == 1


def test_single_flight_gives_up_with_a_transient_error_when_the_holder_is_stuck(
    redis_fake,
) -> None:
    from workers.jobs.errors import is_transient

    redis_fake.set("held", "someone-else")
    with pytest.raises(Exception) as info:
        single_flight(redis_fake, "held", lambda: None, lambda: "made", what="x",
                      wait_seconds=0.2, sleep=lambda s: time.sleep(0.01))  # fmt: skip
    assert is_transient(info.value)


def test_tagging_off_raises_feature_off(fake, redis_fake) -> None:
    from workers.clients.services import FeatureOff

    with pytest.raises(FeatureOff, match="RULES_PATH"):
        tag_conversation(services_for(fake, redis_fake), "1")
    assert fake.total() == 0


def test_a_rules_file_missing_while_replaced_keeps_the_previous_rules(tmp_path) -> None:
    path = write_rules(tmp_path, TEXT_RULES)
    first = rules_for(path)
    Path(path).unlink()
    assert rules_for(path) is first


def test_concurrent_jobs_for_one_conversation_apply_each_tag_once(
    fake, redis_fake, tmp_path
) -> None:
    services = services_for(fake, redis_fake, RULES_PATH=write_rules(tmp_path, TEXT_RULES))
    conversation = fake.state.seed({"conversations": [{"body": "refund"}]})["conversations"][0]
    fake.state.inject_delay(0.3, 1, path_prefix=f"/conversations/{conversation}", method="GET")
    outcomes: list[Any] = []
    threads = [threading.Thread(target=lambda: outcomes.append(
        tag_conversation(services, conversation))) for _ in range(3)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(len(o.applied) for o in outcomes) == [0, 0, 1]
    assert fake.count("POST", "/conversations/{conversation_id}/tags") == 1
