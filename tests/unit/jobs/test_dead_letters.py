"""The dead-letter store on fakeredis: park, get, list, replay, purge and automatic replay."""

from __future__ import annotations

import types
from collections.abc import Iterator

import fakeredis
import pytest
import redis
from celery import Celery

from tests.conftest import make_settings
from tests.jobs import queued_jobs
from workers.jobs import dead_letters as dl
from workers.jobs import errors
from workers.jobs.celery_app import configure_celery
from workers.jobs.dead_letters import DeadLetters, entry_id, replay_transient
from workers.jobs.enqueue import Enqueuer

T0 = 1_763_712_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    clock = Clock()
    monkeypatch.setattr(dl, "time", types.SimpleNamespace(time=clock.time))
    yield clock


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def store(fake: fakeredis.FakeRedis) -> DeadLetters:
    return DeadLetters(fake)


@pytest.fixture
def enqueuer(fake: fakeredis.FakeRedis) -> Enqueuer:
    app = configure_celery(Celery("dlq-tests", set_as_current=False), make_settings())
    return Enqueuer(app, fake)


def not_found(message: str = "intercom GET /conversations/5000001: 404 not_found") -> Exception:
    return errors.NotFound(message, service="intercom", status=404, code="not_found",
                           request_id="req-404")  # fmt: skip


def server_error() -> Exception:
    return errors.ServerError("intercom GET /me: 503", service="intercom", status=503)


def test_park_records_everything_an_operator_needs(store, clock) -> None:
    entry = store.park("conversations.tag", ["5000001"], not_found(), attempts=1)
    assert entry == store.get(entry.id)
    assert entry.id == entry_id("conversations.tag", ["5000001"])
    assert (entry.task, entry.args, entry.error_type, entry.status, entry.code,
            entry.request_id) == ("conversations.tag", ["5000001"], "NotFound", 404,
                                  "not_found", "req-404")  # fmt: skip
    assert not entry.transient
    assert entry.attempts == 1
    assert entry.first_failed_at == entry.last_failed_at == T0
    assert entry.replays == 0
    assert "404" in entry.error


def test_plain_exceptions_are_parked_too(store, clock) -> None:
    entry = store.park("articles.sync", ["doc-1"], KeyError("title"), attempts=1)
    assert (entry.error_type, entry.status, entry.code, entry.request_id) == (
        "KeyError", None, None, None)
    transient = store.park("articles.sync", ["doc-2"], ConnectionResetError("reset"), attempts=9)
    assert transient.transient  # a network failure is worth replaying


def test_the_same_job_failing_again_is_one_entry_with_attempts_added(store, clock) -> None:
    first = store.park("conversations.tag", ["5000001"], server_error(), attempts=9)
    clock.now = T0 + 60
    again = store.park("conversations.tag", ["5000001"], not_found(), attempts=1)
    assert again.id == first.id
    assert store.count() == 1
    assert again.attempts == 10
    assert again.first_failed_at == T0 and again.last_failed_at == T0 + 60
    assert (again.error_type, again.status, again.transient) == ("NotFound", 404, False)


def test_different_arguments_are_different_entries(store, clock) -> None:
    store.park("conversations.tag", ["1"], not_found(), attempts=1)
    store.park("conversations.tag", ["2"], not_found(), attempts=1)
    store.park("contacts.enrich", ["1"], not_found(), attempts=1)
    assert store.count() == 3
    assert len({e.id for e in store.list()}) == 3


def test_error_messages_are_scrubbed_and_bounded(store, clock) -> None:
    exc = errors.ValidationFailed(
        "intercom PUT /contacts/c1: 400 parameter_invalid: jane.doe@example.com exists; "
        "Authorization: Bearer sk_live_abcdef123456; api_key=AKIA999; token=tok_zzz "
        + "x" * 2000,
        service="intercom", status=400,
    )  # fmt: skip
    entry = store.park("contacts.enrich", ["c1"], exc, attempts=1)
    for secret in ("jane.doe@example.com", "sk_live_abcdef123456", "AKIA999", "tok_zzz"):
        assert secret not in entry.error
    assert "[email]" in entry.error and "[redacted]" in entry.error
    assert len(entry.error) <= 500


def test_list_is_oldest_failure_first_and_filters_by_task(store, clock) -> None:
    for offset, (task, arg) in enumerate([("articles.sync", "a"), ("conversations.tag", "b"),
                                          ("articles.sync", "c")]):  # fmt: skip
        clock.now = T0 + offset
        store.park(task, [arg], not_found(), attempts=1)
    assert [e.args for e in store.list()] == [["a"], ["b"], ["c"]]
    assert [e.args for e in store.list("articles.sync")] == [["a"], ["c"]]
    assert store.list("contacts.enrich") == []
    clock.now = T0 + 10  # "a" fails again: now the most recent
    store.park("articles.sync", ["a"], not_found(), attempts=1)
    assert [e.args[0] for e in store.list()] == ["b", "c", "a"]


def test_line_shows_id_task_arguments_and_error(store, clock) -> None:
    entry = store.park("conversations.tag", ["5000001"], not_found(), attempts=1)
    line = entry.line()
    assert line.startswith(entry.id)
    for part in ("conversations.tag(5000001)", "NotFound", "[404]", "not_found",
                 "attempts=1"):  # fmt: skip
        assert part in line


def test_get_unknown_is_none_and_remove_unknown_is_false(store) -> None:
    assert store.get("0123456789abcdef") is None
    assert store.remove("0123456789abcdef") is False


def test_replay_queues_the_job_and_drops_the_entry(store, enqueuer, fake, clock) -> None:
    entry = store.park("conversations.tag", ["5000001"], not_found(), attempts=1)
    task_id = store.replay(entry, enqueuer)
    assert task_id
    assert queued_jobs(fake) == [("conversations.tag", ["5000001"])]
    assert store.get(entry.id) is None and store.count() == 0
    # Failing again after the replay: a fresh entry that remembers it was replayed once.
    again = store.park("conversations.tag", ["5000001"], not_found(), attempts=1)
    assert again.replays == 1 and again.attempts == 1


def test_replay_keeps_the_entry_when_the_job_cannot_be_queued(store, fake, clock) -> None:
    entry = store.park("conversations.tag", ["5000001"], not_found(), attempts=1)

    class Down:
        def enqueue(self, task, args, dedup_key=None):
            raise redis.ConnectionError("Redis went away")

    with pytest.raises(redis.ConnectionError):
        store.replay(entry, Down())  # type: ignore[arg-type]
    assert store.get(entry.id) is not None
    assert fake.llen("conversations") == 0


def test_purge_all_or_one_task(store, clock) -> None:
    store.park("articles.sync", ["a"], not_found(), attempts=1)
    store.park("articles.sync", ["b"], not_found(), attempts=1)
    store.park("conversations.tag", ["c"], not_found(), attempts=1)
    assert store.purge("articles.sync") == 2
    assert [e.task for e in store.list()] == ["conversations.tag"]
    assert store.purge() == 1
    assert store.count() == 0 and store.list() == []


def test_replay_transient_honours_min_age_and_max_replays(store, enqueuer, fake, clock) -> None:
    clock.now = T0
    store.park("contacts.enrich", ["old-5xx"], server_error(), attempts=9)
    store.park("contacts.enrich", ["old-404"], not_found(), attempts=1)
    clock.now = T0 + 500
    store.park("contacts.enrich", ["young-5xx"], server_error(), attempts=9)
    tired = store.park("contacts.enrich", ["tired-5xx"], server_error(), attempts=9)
    fake.set(dl.REPLAYS + tired.id, 3)

    replayed = replay_transient(store, enqueuer, min_age=600, max_replays=3, now=T0 + 700)
    assert replayed == [entry_id("contacts.enrich", ["old-5xx"])]
    assert queued_jobs(fake) == [("contacts.enrich", ["old-5xx"])]
    assert {e.args[0] for e in store.list()} == {"old-404", "young-5xx", "tired-5xx"}

    later = replay_transient(store, enqueuer, min_age=600, max_replays=3, now=T0 + 1100)
    assert later == [entry_id("contacts.enrich", ["young-5xx"])]
    assert {e.args[0] for e in store.list()} == {"old-404", "tired-5xx"}


def test_automatic_replay_stops_after_max_replays(store, enqueuer, fake, clock) -> None:
    for cycle in range(5):
        clock.now = T0 + cycle * 1000
        store.park("contacts.enrich", ["flaky"], server_error(), attempts=9)
        replay_transient(store, enqueuer, min_age=0, max_replays=3, now=clock.now)
    assert fake.llen("contacts") == 3
    [entry] = store.list()
    assert entry.replays == 3
