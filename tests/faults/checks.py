"""The one judge of every fault scenario: what the fake Intercom holds against what it must hold.

Why one checker for all scenarios: "no event lost, none duplicated" must mean the same thing
whatever was broken, and the checker must itself be able to fail (``test_checks`` feeds it bad
states; the broken-guard scenario feeds it a real one). So it returns a list of problems, one
readable line each, instead of asserting: a scenario asserts the list is empty, the
broken-guard scenario asserts that it names the duplicate.

What it compares, from the outside only (the fakes' state and Redis, never worker logs):

* every expected article exists exactly once (articles are counted by the document id their
  title starts with, so a second article for a document is seen even if nothing maps to it),
  with the latest title, body and state, and Sanity's ``intercomArticleId`` names it; no
  article exists that no document explains;
* every conversation has exactly its expected tags, and no tag name exists twice;
* every contact has its expected custom attributes;
* no job waits in a queue or sits unacknowledged unless the dead-letter store holds it; every
  dead letter has a reason, and only the expected ones exist; no half-done article creation
  (an intent without its article) is left;
* Intercom saw no request that breaks its OpenAPI description.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from workers.articles.store import key as article_key
from workers.jobs import routing
from workers.jobs.dead_letters import DeadLetters
from workers.sandbox.fake_intercom import FakeIntercomState
from workers.sandbox.fake_sanity import FakeSanityState

#: Article titles are ``"<document id> | <revision>"``: the document is readable from Intercom.
TITLE_SEPARATOR = " | "
UNACKED = "unacked"  # kombu's Redis transport: delivered, not yet acknowledged

Job = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class ExpectedArticle:
    """What Intercom must hold for one document."""

    title: str
    text: str  # a sentence the body must contain
    state: str = "published"
    in_sanity: bool = True  # the document is still published, so it must name the article


@dataclass
class Expected:
    """The end state a scenario must reach."""

    articles: dict[str, ExpectedArticle] = field(default_factory=dict)
    conversation_tags: dict[str, list[str]] = field(default_factory=dict)
    contact_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    parked: set[Job] = field(default_factory=set)  # jobs that must be in the dead-letter store


def document_of(title: str) -> str | None:
    """The document id an article title starts with (None for a title of another shape)."""
    head, sep, _ = title.partition(TITLE_SEPARATOR)
    return head if sep and head else None


def decode_message(raw: bytes | str) -> Job:
    """``(task name, args)`` of a message as kombu's Redis transport stores it."""
    message = json.loads(raw)
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return message["headers"]["task"], tuple(args)


def waiting_jobs(client: redis.Redis) -> list[tuple[str, Job]]:
    """Every message still in a queue or unacknowledged: ``(where, job)``."""
    found = [(queue, decode_message(raw)) for queue in routing.QUEUES
             for raw in client.lrange(queue, 0, -1)]  # fmt: skip
    for raw in client.hvals(UNACKED):
        payload, _exchange, _routing_key = json.loads(raw)
        found.append((UNACKED, decode_message(json.dumps(payload))))
    return found


def _job(job: Job) -> str:
    task, args = job
    return f"{task}({', '.join(map(str, args))})"


def check_articles(snapshot: Mapping[str, Any], sanity: FakeSanityState,
                   expected: Mapping[str, ExpectedArticle]) -> list[str]:  # fmt: skip
    problems: list[str] = []
    by_document: dict[str, list[dict[str, Any]]] = {}
    for article in snapshot["articles"]:
        document_id = document_of(article["title"])
        if document_id is None or document_id not in expected:
            problems.append(f"stray article {article['id']} {article['title']!r}: "
                            "no expected document explains it")  # fmt: skip
            continue
        by_document.setdefault(document_id, []).append(article)
    for document_id, want in sorted(expected.items()):
        found = by_document.get(document_id, [])
        if not found:
            problems.append(f"lost: document {document_id} has no article (want {want.title!r})")
            continue
        if len(found) > 1:
            listed = ", ".join(f"{a['id']} {a['title']!r}" for a in found)
            problems.append(f"duplicate: document {document_id} has {len(found)} articles: "
                            f"{listed}")  # fmt: skip
        doc = sanity.document(document_id) or {}
        mapped = doc.get("intercomArticleId")
        # Judge the article Sanity names (else the newest); the others are the duplicates.
        article = next((a for a in found if a["id"] == mapped),
                       max(found, key=lambda a: int(a["id"])))  # fmt: skip
        if article["title"] != want.title:
            problems.append(f"stale: article {article['id']} of {document_id} is titled "
                            f"{article['title']!r}, want {want.title!r}")  # fmt: skip
        if want.text not in article["body"]:
            problems.append(f"stale: article {article['id']} of {document_id} lacks the text "
                            f"{want.text!r}")  # fmt: skip
        if article["state"] != want.state:
            problems.append(f"wrong state: article {article['id']} of {document_id} is "
                            f"{article['state']}, want {want.state}")  # fmt: skip
        if want.in_sanity:
            if not doc:
                problems.append(f"setup: document {document_id} is not published in Sanity")
            elif mapped != article["id"]:
                problems.append(f"mapping: Sanity's {document_id} names article {mapped!r}, "
                                f"Intercom's is {article['id']}")  # fmt: skip
    return problems


def check_conversations(snapshot: Mapping[str, Any],
                        expected: Mapping[str, list[str]]) -> list[str]:  # fmt: skip
    problems: list[str] = []
    applied = snapshot["conversation_tags"]
    for conversation_id, tags in sorted(expected.items()):
        have = applied.get(conversation_id)
        if have is None:
            problems.append(f"setup: conversation {conversation_id} does not exist")
        elif sorted(have) != sorted(tags):
            problems.append(f"tags: conversation {conversation_id} has {sorted(have)}, "
                            f"want {sorted(tags)}")  # fmt: skip
    names: dict[str, int] = {}
    for tag in snapshot["tags"]:
        folded = tag["name"].casefold()
        names[folded] = names.get(folded, 0) + 1
    problems += [f"duplicate: {count} tags named {name!r}"
                 for name, count in sorted(names.items()) if count > 1]  # fmt: skip
    return problems


def check_contacts(snapshot: Mapping[str, Any],
                   expected: Mapping[str, Mapping[str, Any]]) -> list[str]:  # fmt: skip
    problems: list[str] = []
    contacts = {c["id"]: c for c in snapshot["contacts"]}
    for contact_id, attributes in sorted(expected.items()):
        contact = contacts.get(contact_id)
        if contact is None:
            problems.append(f"setup: contact {contact_id} does not exist")
            continue
        have = contact.get("custom_attributes") or {}
        wrong = {k: have.get(k) for k, v in attributes.items() if have.get(k) != v}
        if wrong:
            problems.append(f"attributes: contact {contact_id} has {wrong}, "
                            f"want {dict(attributes)}")  # fmt: skip
    return problems


def check_queues(client: redis.Redis, parked_expected: Iterable[Job],
                 article_groups: Iterable[str] = ()) -> list[str]:  # fmt: skip
    problems: list[str] = []
    dead = DeadLetters(client).list()
    parked = {(entry.task, tuple(entry.args)) for entry in dead}
    for entry in dead:
        job = (entry.task, tuple(entry.args))
        if not entry.error_type or not entry.error:
            problems.append(f"dead letter without a reason: {_job(job)}")
        if job not in set(parked_expected):
            problems.append(f"parked: {_job(job)} ({entry.error_type}: {entry.error}; "
                            f"attempts {entry.attempts})")  # fmt: skip
    problems += [f"expected in the dead-letter store, missing: {_job(job)}"
                 for job in sorted(set(parked_expected) - parked)]  # fmt: skip
    for where, job in waiting_jobs(client):
        if job not in parked:
            problems.append(f"left in {where}: {_job(job)} (not in the dead-letter store)")
    for group in article_groups:
        if client.exists(article_key("intent", group)):
            problems.append(f"unfinished create: article group {group} still has an intent")
    return problems


def check(intercom: FakeIntercomState, sanity: FakeSanityState, client: redis.Redis,
          expected: Expected) -> list[str]:  # fmt: skip
    """Every difference between the end state and ``expected``; empty when they agree."""
    snapshot = intercom.snapshot()
    problems = check_articles(snapshot, sanity, expected.articles)
    problems += check_conversations(snapshot, expected.conversation_tags)
    problems += check_contacts(snapshot, expected.contact_attributes)
    problems += check_queues(client, expected.parked, expected.articles)
    violations = intercom.violations()
    problems += [f"OpenAPI: {v.get('method')} {v.get('path')} {v.get('pointer')}: "
                 f"{v.get('message')}" for v in violations[:10]]  # fmt: skip
    return problems
