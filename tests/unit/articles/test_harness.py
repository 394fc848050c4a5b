"""Shared test harness for article sync: both fakes on real HTTP servers, document builders.

Unit tests call the plain sync functions with ``Services`` on fakeredis; integration tests
reuse the builders and :func:`article_env` for real worker processes. The few tests here check
the harness itself, so a broken harness fails loudly rather than making other tests lie.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import fakeredis
import pytest
from celery import Celery

from tests.conftest import OPENAPI, make_settings
from tests.jobs import queued_jobs
from workers.articles.sync import Result, delete_document, sync_document
from workers.clients.services import Services
from workers.jobs.celery_app import configure_celery
from workers.sandbox import fake_intercom, fake_sanity
from workers.sandbox.server import BackgroundServer

AUTHOR_ID = "1295"  # the fake Intercom's admin
COLLECTION_ID = "77"
WEBHOOK_SECRET = "whsec-articles-tests"


# --- documents ---------------------------------------------------------------------------------


def block(text: str, *, link_to: str | None = None, style: str = "normal") -> dict[str, Any]:
    """A paragraph; with ``link_to`` the whole text links to that document (internalLink)."""
    defs = [{"_key": "lnk", "_type": "internalLink",
             "reference": {"_type": "reference", "_ref": link_to}}] if link_to else []  # fmt: skip
    return {"_type": "block", "_key": f"b{zlib.crc32(text.encode())}", "style": style,
            "markDefs": defs, "children": [{"_type": "span", "_key": "s", "text": text,
                                             "marks": ["lnk"] if link_to else []}]}  # fmt: skip


def article_doc(doc_id: str, title: str, *, locale: str = "en", text: str | None = None,
                link_to: str | None = None, **fields: Any) -> dict[str, Any]:  # fmt: skip
    """A published ``supportArticle``."""
    return {"_id": doc_id, "_type": "supportArticle", "title": title, "language": locale,
            "slug": {"current": doc_id}, "excerpt": f"About {title}",
            "body": [block(text or f"Body of {title}", link_to=link_to)], **fields}  # fmt: skip


def translation_group(group_id: str, members: Mapping[str, str]) -> dict[str, Any]:
    """A ``translation.metadata`` document: ``{locale: document id}``."""
    return {"_id": group_id, "_type": "translation.metadata", "schemaTypes": ["supportArticle"],
            "translations": [{"_key": locale, "_type": "internationalizedArrayReferenceValue",
                              "value": {"_type": "reference", "_ref": doc_id, "_weak": True}}
                             for locale, doc_id in members.items()]}  # fmt: skip


# --- settings ----------------------------------------------------------------------------------


def article_env(intercom_url: str, sanity_url: str, **extra: str) -> dict[str, str]:
    """The environment that points article sync at the two fakes."""
    return {
        "INTERCOM_ACCESS_TOKEN": fake_intercom.DEFAULT_TOKEN,
        "INTERCOM_API_BASE": intercom_url,
        "INTERCOM_AUTHOR_ID": AUTHOR_ID,
        "INTERCOM_DEFAULT_COLLECTION_ID": COLLECTION_ID,
        "SANITY_PROJECT_ID": "sandbox",
        "SANITY_DATASET": "production",
        "SANITY_TOKEN": fake_sanity.DEFAULT_TOKEN,
        "SANITY_API_BASE": sanity_url,
        "SANITY_RATE_LIMIT_PER_SECOND": "500",
        "SANITY_WEBHOOK_SECRET": WEBHOOK_SECRET,
        **extra,
    }


class Fakes:
    """Fake Intercom (validating bodies against the OpenAPI description) and fake Sanity, each
    on its own threaded HTTP server."""

    def __init__(self, *, budget: int = 1666, webhook_url: str | None = None,
                 webhook_retry_delay: float = 0.5, webhook_retries: int = 2,
                 openapi: bool = True) -> None:  # fmt: skip
        self.intercom_app = fake_intercom.create_fake_intercom(fake_intercom.FakeIntercomConfig(
            openapi_path=OPENAPI if openapi else None, budget_per_window=budget))  # fmt: skip
        self.sanity_app = fake_sanity.create_fake_sanity(fake_sanity.FakeSanityConfig(
            webhook_url=webhook_url, webhook_secret=WEBHOOK_SECRET,
            webhook_retries=webhook_retries, webhook_retry_delay=webhook_retry_delay,
            webhook_timeout=10.0))  # fmt: skip
        self.intercom_server = BackgroundServer(self.intercom_app).start()
        try:
            self.sanity_server = BackgroundServer(self.sanity_app).start()
        except BaseException:
            self.intercom_server.stop()
            raise

    @property
    def intercom(self) -> fake_intercom.FakeIntercomState:
        return self.intercom_app.extensions[fake_intercom.STATE_EXTENSION]

    @property
    def sanity(self) -> fake_sanity.FakeSanityState:
        return self.sanity_app.extensions[fake_sanity.STATE_EXTENSION]

    def env(self, **extra: str) -> dict[str, str]:
        return article_env(self.intercom_server.url, self.sanity_server.url, **extra)

    def calls(self) -> dict[str, int]:
        """Intercom requests so far, by ``"METHOD /route"``."""
        return dict(self.intercom.stats()["requests"])

    def articles(self) -> list[dict[str, Any]]:
        return self.intercom.snapshot()["articles"]

    def violations(self) -> list[dict[str, Any]]:
        return self.intercom.violations()

    def stop(self) -> None:
        self.sanity.close()
        self.intercom_server.stop()
        self.sanity_server.stop()


class Harness:
    """Shared fakes (reset) plus this process's ``Services`` on fakeredis: call the sync
    functions directly. ``env`` overrides settings (``ARTICLE_DELETE_POLICY="delete"``)."""

    def __init__(self, fakes: Fakes, **env: str) -> None:
        self.fakes = fakes
        fakes.intercom.reset()
        fakes.sanity.reset()
        self.intercom, self.sanity = fakes.intercom, fakes.sanity
        self.calls, self.articles, self.violations = fakes.calls, fakes.articles, fakes.violations
        self.settings = make_settings(**fakes.env(**env))
        self.redis_server = fakeredis.FakeServer()
        self.redis = fakeredis.FakeRedis(server=self.redis_server)
        self.sent: list[tuple[str, str, Any]] = []
        self.services = self.new_services()

    def new_services(self) -> Services:
        """Another process's view: own clients, same Redis; Intercom requests are recorded."""
        celery_app = configure_celery(Celery("articles-tests"), self.settings)
        services = Services(self.settings, redis_client=fakeredis.FakeRedis(
            server=self.redis_server), celery_app=celery_app)  # fmt: skip
        client = services.intercom
        send = client.call

        def recording(method: str, path: str, **kwargs: Any) -> Any:
            self.sent.append((method, path, kwargs.get("json")))
            return send(method, path, **kwargs)

        client.call = recording  # type: ignore[method-assign]
        return services

    def sync(self, document_id: str) -> Result:
        return sync_document(self.services, document_id)

    def delete(self, document_id: str) -> Result:
        return delete_document(self.services, document_id)

    def queued(self) -> list[tuple[str, list[Any]]]:
        return queued_jobs(self.redis)

    def take_queued(self) -> list[tuple[str, list[Any]]]:
        """The queued jobs, removing them (as a worker would)."""
        jobs = self.queued()
        self.redis.delete("articles")
        return jobs

    def article(self, document_id: str) -> dict[str, Any]:
        """The Intercom article that Sanity maps ``document_id`` to."""
        mapped = (self.sanity.document(document_id) or {}).get("intercomArticleId")
        found = [a for a in self.articles() if a["id"] == mapped]
        assert found, f"{document_id} maps to {mapped!r}, which Intercom does not have"
        return found[0]


@pytest.fixture(scope="session")
def article_fakes() -> Iterator[Fakes]:
    """One pair of fake servers for the whole run (starting and stopping them costs ~1 s)."""
    fakes = Fakes()
    yield fakes
    fakes.stop()


@pytest.fixture
def harness(article_fakes: Fakes) -> Iterator[Harness]:
    h = Harness(article_fakes)
    yield h
    assert h.violations() == [], "requests that break Intercom's OpenAPI description"


def test_harness_fakes_answer_and_agree_on_settings(harness: Harness) -> None:
    harness.sanity.seed([article_doc("h1", "Hello")])
    assert harness.services.sanity.query("count(*[_type == $type])", {"type": "supportArticle"},
                                         tag="intercom-sync.check") == 1  # fmt: skip
    assert harness.services.intercom.me()["id"] == AUTHOR_ID
    assert harness.calls() == {"GET /me": 1}


def test_harness_builders_make_a_group_the_fake_understands(harness: Harness) -> None:
    harness.sanity.seed([article_doc("h-en", "Hi"), article_doc("h-fr", "Salut", locale="fr"),
                         translation_group("h-group", {"en": "h-en", "fr": "h-fr"})])  # fmt: skip
    result = harness.sync("h-fr")
    assert result.outcome == "created" and result.group == "h-group"
