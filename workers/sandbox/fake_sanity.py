"""A local fake of Sanity's HTTP API (GROQ query, mutate) and its GROQ-powered webhooks.

Why a fake: the article sync's properties (no duplicate article, zero Intercom calls for the
write-back echo, order-independence) only show when real worker processes read and write one
stateful Sanity whose writes fire webhooks into the real receiver. So the fake is strict where
Sanity is strict:

* ``Authorization: Bearer <token>`` on every API call, the dataset in the path must exist;
* published documents only (the ``published`` perspective): ``drafts.``/``versions.`` ids are
  accepted by mutations and then ignored, and never returned;
* every write gives each changed document a new ``_rev`` (the transaction id, as in Sanity) and
  ``_updatedAt``; a patch with ``ifRevisionID`` that does not match answers 409 and changes
  nothing; a transaction is applied all or nothing; a patch that changes nothing is a no-op;
* after each committed change of a published document (of the watched types), an optional
  signed webhook (``sanity-webhook-signature``, ``idempotency-key``, ``sanity-operation``, ...)
  with the document as body, from a background thread, retried on 429/5xx like Sanity.

It does not evaluate GROQ. It recognises the project's queries by their ``tag`` parameter (the
definitions are in :mod:`workers.articles.queries`), checks that the text is the one defined
there and that every ``$param`` is given, and answers with a Python equivalent; an unknown tag
gets 400 saying so.

Editors are simulated under ``/_fake/`` (no token): seed, publish, edit, unpublish, republish,
delete, plus state, stats and fault injection. Run it with
``python -m workers.sandbox.fake_sanity --port 8090``.
"""

from __future__ import annotations

import argparse
import copy
import hmac
import json
import logging
import queue
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from flask import Flask, Response, request

from workers.articles import queries

__all__ = [
    "DEFAULT_TOKEN",
    "STATE_EXTENSION",
    "FakeSanityConfig",
    "FakeSanityState",
    "SanityError",
    "create_fake_sanity",
    "main",
]

log = logging.getLogger(__name__)

#: The bearer token the fake accepts unless configured otherwise (not a secret).
DEFAULT_TOKEN = "fake-sanity-token"  # noqa: S105
#: ``app.extensions[STATE_EXTENSION]`` is the app's :class:`FakeSanityState`.
STATE_EXTENSION = "fake_sanity"

JSON = dict[str, Any]
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_DOC_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_HIDDEN = ("drafts.", "versions.")
_LINK_TYPES = ("internalLink", "reference")
_METADATA_TYPE = "translation.metadata"
# Fields ARTICLE_FIELDS copies as they are.
_PLAIN_FIELDS = ("_id", "_type", "_rev", "_updatedAt", "title", "excerpt", "body",
                 "intercomCollectionId", "intercomState", "intercomArticleId")  # fmt: skip


@dataclass(frozen=True)
class FakeSanityConfig:
    """What the fake serves and where its webhook goes.

    ``webhook_url`` switches the webhook on (with ``webhook_secret`` for the signature);
    ``webhook_types`` is its filter (None: every type). ``webhook_retries`` further attempts
    follow a 429/5xx/connection failure after ``webhook_retry_delay`` seconds.
    """

    project_id: str = "sandbox"
    dataset: str = "production"
    token: str = DEFAULT_TOKEN
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_types: tuple[str, ...] | None = ("supportArticle",)
    webhook_retries: int = 2
    webhook_retry_delay: float = 30.0
    webhook_timeout: float = 30.0
    webhook_id: str = "fake-webhook"


class SanityError(Exception):
    """An error answer in Sanity's shape: ``{"error": {"type", "description"}}``."""

    def __init__(self, status: int, kind: str, description: str) -> None:
        super().__init__(f"{status} {kind}: {description}")
        self.status = status
        self.kind = kind
        self.description = description

    def body(self) -> JSON:
        return {"error": {"type": self.kind, "description": self.description},
                "statusCode": self.status}  # fmt: skip


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _hidden(document_id: str) -> bool:
    return document_id.startswith(_HIDDEN)


# ============================================================================================
# Python equivalents of the project's queries
# ============================================================================================


def _deref(docs: Mapping[str, JSON], value: Any) -> JSON | None:
    """GROQ ``->``: the published document a ``{_ref}`` points to, else None."""
    if isinstance(value, Mapping) and isinstance(value.get("_ref"), str):
        return docs.get(value["_ref"])
    return None


def _references(value: Any, document_id: str) -> bool:
    """GROQ ``references(id)``: a ``_ref`` to ``document_id`` anywhere in ``value``."""
    if isinstance(value, Mapping):
        if value.get("_ref") == document_id:
            return True
        return any(_references(v, document_id) for v in value.values())
    if isinstance(value, list):
        return any(_references(v, document_id) for v in value)
    return False


def _mark_defs(body: Any) -> list[Any]:
    """``[...body[].markDefs[], ...body[].body[].markDefs[]]``."""
    blocks = body if isinstance(body, list) else []
    found: list[Any] = []
    for level in (blocks, [n for b in blocks if isinstance(b, Mapping)
                           and isinstance(b.get("body"), list) for n in b["body"]]):  # fmt: skip
        for block in level:
            defs = block.get("markDefs") if isinstance(block, Mapping) else None
            if isinstance(defs, list):
                found.extend(defs)
    return found


def _link(docs: Mapping[str, JSON], mark_def: Mapping[str, Any]) -> JSON:
    reference = mark_def.get("reference")
    ref_id = reference.get("_ref") if isinstance(reference, Mapping) else None
    target = _deref(docs, reference) or _deref(docs, mark_def)
    return {"id": ref_id if ref_id is not None else mark_def.get("_ref"),
            "intercomArticleId": (target or {}).get("intercomArticleId")}  # fmt: skip


def article_fields(doc: JSON | None, docs: Mapping[str, JSON], locale_field: str) -> JSON | None:
    """``queries.ARTICLE_FIELDS`` for one document (absent fields are null, as in GROQ)."""
    if doc is None:
        return None
    slug = doc.get("slug")
    area = _deref(docs, doc.get("productArea"))
    links = [_link(docs, d) for d in _mark_defs(doc.get("body"))
             if isinstance(d, Mapping) and d.get("_type") in _LINK_TYPES]  # fmt: skip
    return {
        **{name: doc.get(name) for name in _PLAIN_FIELDS},
        "slug": slug.get("current") if isinstance(slug, Mapping) else None,
        "locale": doc.get(locale_field),
        "productArea": area.get("title") if area else None,
        "links": links,
    }


def _answer_document(docs: Mapping[str, JSON], params: JSON) -> JSON:
    document_id, locale_field = params["id"], params["localeField"]
    group = next((d for d in docs.values() if d.get("_type") == _METADATA_TYPE
                  and _references(d, document_id)), None)  # fmt: skip
    members = None
    if group is not None:
        members = [
            {"locale": item.get("language") or item.get("_key"),
             "document": article_fields(_deref(docs, item.get("value")), docs, locale_field)}
            for item in group.get("translations") or [] if isinstance(item, Mapping)
        ]  # fmt: skip
    return {
        "document": article_fields(docs.get(document_id), docs, locale_field),
        "group": {"_id": group["_id"], "members": members} if group is not None else None,
    }


def _page(docs: Mapping[str, JSON], keep: Callable[[JSON], bool],
          order: Callable[[JSON], Any], fields: tuple[str, ...]) -> list[JSON]:  # fmt: skip
    """``*[keep] | order(...) [0...PAGE_SIZE] {fields}``."""
    chosen = sorted((d for d in docs.values() if keep(d)), key=order)[: queries.PAGE_SIZE]
    return [{name: d.get(name) for name in fields} for d in chosen]


def _answer_changed(docs: Mapping[str, JSON], params: JSON) -> list[JSON]:
    since, after = params["since"], params["after"]
    return _page(docs, lambda d: d.get("_type") == params["type"] and (
        d["_updatedAt"] > since or (d["_updatedAt"] == since and d["_id"] > after)),
        lambda d: (d["_updatedAt"], d["_id"]), ("_id", "_updatedAt", "intercomArticleId"))


def _answer_documents(docs: Mapping[str, JSON], params: JSON) -> list[JSON]:
    return _page(docs, lambda d: d.get("_type") == params["type"]
                 and d["_updatedAt"] > params["since"] and d["_id"] > params["after"],
                 lambda d: d["_id"], ("_id", "_updatedAt"))  # fmt: skip


def _answer_missing(docs: Mapping[str, JSON], params: JSON) -> list[JSON]:
    return _page(docs, lambda d: d.get("_type") == params["type"]
                 and d.get("intercomArticleId") is None and d["_id"] > params["after"],
                 lambda d: d["_id"], ("_id", "_updatedAt"))  # fmt: skip


def _answer_existing(docs: Mapping[str, JSON], params: JSON) -> list[str]:
    ids = params["ids"] if isinstance(params["ids"], list) else []
    return [d for d in ids if isinstance(d, str) and d in docs]


def _answer_count(docs: Mapping[str, JSON], params: JSON) -> int:
    return sum(1 for d in docs.values() if d.get("_type") == params["type"])


ANSWERS: dict[str, Callable[[Mapping[str, JSON], JSON], Any]] = {
    queries.DOCUMENT.tag: _answer_document,
    queries.CHANGED.tag: _answer_changed,
    queries.DOCUMENTS.tag: _answer_documents,
    queries.MISSING.tag: _answer_missing,
    queries.EXISTING.tag: _answer_existing,
    queries.COUNT.tag: _answer_count,
}


# ============================================================================================
# Mutations
# ============================================================================================


def _set_path(doc: JSON, path: str, value: Any) -> None:
    parts = path.split(".")
    target = doc
    for part in parts[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = target[part] = {}
        target = nxt
    target[parts[-1]] = copy.deepcopy(value)


def _unset_path(doc: JSON, path: str) -> None:
    parts = path.split(".")
    target: Any = doc
    for part in parts[:-1]:
        target = target.get(part) if isinstance(target, dict) else None
    if isinstance(target, dict):
        target.pop(parts[-1], None)


def _has_path(doc: JSON, path: str) -> bool:
    target: Any = doc
    for part in path.split("."):
        if not isinstance(target, dict) or part not in target:
            return False
        target = target[part]
    return True


def _apply_patch(doc: JSON, patch: Mapping[str, Any]) -> JSON:
    unknown = set(patch) - {"id", "ifRevisionID", "set", "setIfMissing", "unset"}
    if unknown:
        raise SanityError(400, "mutationError",
                          f"fake-sanity: patch operations {sorted(unknown)} not supported")
    changed = copy.deepcopy(doc)
    for path, value in (patch.get("setIfMissing") or {}).items():
        if not _has_path(changed, path):
            _set_path(changed, path, value)
    for path, value in (patch.get("set") or {}).items():
        _set_path(changed, path, value)
    for path in patch.get("unset") or []:
        _unset_path(changed, path)
    return changed


def _document_arg(value: Any, kind: str) -> JSON:
    if not isinstance(value, Mapping) or not isinstance(value.get("_type"), str):
        raise SanityError(400, "mutationError", f"{kind} needs a document with _type")
    doc = copy.deepcopy(dict(value))
    doc.setdefault("_id", str(uuid.uuid4()))
    if not isinstance(doc["_id"], str) or not _DOC_ID.match(doc["_id"]):
        raise SanityError(400, "mutationError", f"{kind}: invalid document id")
    return doc


# ============================================================================================
# State
# ============================================================================================


@dataclass
class _Fault:
    status: int
    remaining: int
    path: str | None = None


@dataclass
class _Delivery:
    document_id: str
    operation: str
    key: str
    transaction_id: str
    body: bytes
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    extra: JSON = field(default_factory=dict)

    def describe(self) -> JSON:
        return {"document_id": self.document_id, "operation": self.operation,
                "idempotency_key": self.key, "transaction_id": self.transaction_id,
                "attempts": self.attempts, "status": self.status, "error": self.error}  # fmt: skip


class FakeSanityState:
    """Documents, counters and the webhook sender, behind one lock.

    ``clock`` gives Unix seconds for ``_updatedAt`` (tests may pass their own).
    """

    def __init__(self, config: FakeSanityConfig | None = None, *,
                 clock: Callable[[], float] | None = None) -> None:  # fmt: skip
        self.config = config or FakeSanityConfig()
        self._clock = clock or time.time
        self._lock = threading.RLock()
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._pending = 0  # queued or being delivered
        self._sender: threading.Thread | None = None
        self._session = requests.Session()
        self.webhook_url = self.config.webhook_url
        self.webhook_enabled = self.config.webhook_url is not None
        self.reset()

    # ------------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        """Forget every document, draft, counter, fault and delivery record."""
        with self._lock:
            self._documents: dict[str, JSON] = {}
            self._drafts: dict[str, JSON] = {}
            self._queries: dict[str, int] = {}
            self._transactions = 0
            self._mutations: dict[str, int] = {}
            self._conflicts = 0
            self._requests = 0
            self._faults: list[_Fault] = []
            self._deliveries: list[_Delivery] = []

    def _transaction_id(self) -> str:
        return uuid.uuid4().hex[:22]

    # ------------------------------------------------------------------ API operations

    def query(self, tag: str | None, groq: str, params: Mapping[str, Any]) -> Any:
        """Answer one of the project's queries, recognised by ``tag``."""
        definition = queries.BY_TAG.get(tag or "")
        if definition is None:
            raise SanityError(400, "queryParseError",
                              f"fake-sanity answers only the project's queries; unknown tag "
                              f"{tag!r} (known: {', '.join(sorted(queries.BY_TAG))})")
        if groq != definition.groq:
            raise SanityError(400, "queryParseError", f"query text for tag {tag!r} is not the "
                              "one defined in workers.articles.queries")  # fmt: skip
        missing = sorted(set(_PARAM.findall(groq)) - set(params))
        if missing:
            raise SanityError(400, "queryParseError",
                              f"param ${missing[0]} referenced, but not provided")
        with self._lock:
            self._queries[definition.tag] = self._queries.get(definition.tag, 0) + 1
            return copy.deepcopy(ANSWERS[definition.tag](self._documents, dict(params)))

    def mutate(self, mutations: Any) -> JSON:
        """Apply ``mutations`` as one transaction (all or nothing) and queue the webhooks."""
        if not isinstance(mutations, list) or not mutations:
            raise SanityError(400, "mutationError", "mutations must be a non-empty array")
        with self._lock:
            working = dict(self._documents)
            results = []
            for mutation in mutations:
                if not isinstance(mutation, Mapping) or len(mutation) != 1:
                    raise SanityError(400, "mutationError", "each mutation has exactly one key")
                ((kind, arg),) = mutation.items()
                results.append(self._mutation(working, str(kind), arg))
            return self._commit(working, results)

    def _mutation(self, working: dict[str, JSON], kind: str, arg: Any) -> JSON:
        self._mutations[kind] = self._mutations.get(kind, 0) + 1
        if kind in ("create", "createOrReplace", "createIfNotExists"):
            doc = _document_arg(arg, kind)
            if _hidden(doc["_id"]):
                return {"id": doc["_id"], "operation": "none"}
            existing = working.get(doc["_id"])
            if existing is not None and kind == "create":
                raise SanityError(409, "mutationError",
                                  f'Document by ID "{doc["_id"]}" already exists')
            if existing is not None and kind == "createIfNotExists":
                return {"id": doc["_id"], "operation": "none"}
            if existing is not None:
                doc["_createdAt"] = existing.get("_createdAt")
            working[doc["_id"]] = doc
            return {"id": doc["_id"], "operation": "update" if existing else "create"}
        if kind == "patch":
            return self._patch(working, arg)
        if kind == "delete":
            document_id = arg.get("id") if isinstance(arg, Mapping) else None
            if not isinstance(document_id, str):
                raise SanityError(400, "mutationError", "delete needs an id")
            gone = working.pop(document_id, None)
            return {"id": document_id, "operation": "delete" if gone else "none"}
        raise SanityError(400, "mutationError", f"unknown mutation type {kind!r}")

    def _patch(self, working: dict[str, JSON], patch: Any) -> JSON:
        if not isinstance(patch, Mapping) or not isinstance(patch.get("id"), str):
            raise SanityError(400, "mutationError", "patch needs an id")
        document_id = patch["id"]
        if _hidden(document_id):
            return {"id": document_id, "operation": "none"}
        doc = working.get(document_id)
        if doc is None:
            raise SanityError(404, "mutationError",
                              f'Cannot modify nonexistent document "{document_id}"')
        wanted = patch.get("ifRevisionID")
        if wanted is not None and wanted != doc.get("_rev"):
            self._conflicts += 1
            raise SanityError(409, "mutationError",
                              f'Document "{document_id}" has unexpected revision ID '
                              f'("{wanted}"), blocking transaction')  # fmt: skip
        changed = _apply_patch(doc, patch)
        if changed == doc:
            return {"id": document_id, "operation": "none"}
        working[document_id] = changed
        return {"id": document_id, "operation": "update"}

    def _commit(self, working: dict[str, JSON], results: list[JSON]) -> JSON:
        transaction_id = self._transaction_id()
        now = _iso(self._clock())
        changes: list[tuple[str, str]] = []
        for result in results:
            document_id, operation = result["id"], result["operation"]
            if operation in ("create", "update"):
                doc = working[document_id]
                doc["_rev"] = transaction_id
                doc["_updatedAt"] = now
                doc["_createdAt"] = doc.get("_createdAt") or now
            if operation != "none":
                changes.append((document_id, operation))
        before = self._documents
        self._documents = working
        if changes:
            self._transactions += 1
        for document_id, operation in dict(changes).items():
            doc = before.get(document_id) if operation == "delete" else working[document_id]
            self._notify(doc or {}, operation, transaction_id)
        return {"transactionId": transaction_id, "results": results}

    # ------------------------------------------------------------------ editors

    def seed(self, documents: Iterable[Mapping[str, Any]], *, notify: bool = False) -> JSON:
        """Store documents as published (createOrReplace), with webhooks only if ``notify``."""
        with self._lock:
            enabled, self.webhook_enabled = self.webhook_enabled, notify and self.webhook_enabled
            try:
                return self.mutate([{"createOrReplace": dict(d)} for d in documents])
            finally:
                self.webhook_enabled = enabled

    def publish(self, document: Mapping[str, Any]) -> JSON:
        """An editor publishes ``document`` (replacing the published version)."""
        with self._lock:
            self._drafts.pop(str(document.get("_id")), None)
            answer = self.mutate([{"createOrReplace": dict(document)}])
            return self.document(answer["results"][0]["id"]) or {}

    def edit(self, document_id: str, set_fields: Mapping[str, Any] | None = None,
             unset: Iterable[str] = ()) -> JSON:  # fmt: skip
        """An editor changes some fields and publishes."""
        with self._lock:
            self.mutate([{"patch": {"id": document_id, "set": dict(set_fields or {}),
                                    "unset": list(unset)}}])  # fmt: skip
            return self.document(document_id) or {}

    def unpublish(self, document_id: str) -> bool:
        """An editor unpublishes: the published version goes (webhook ``delete``), a draft stays
        (invisible to queries) so :meth:`republish` can bring it back."""
        with self._lock:
            doc = self._documents.get(document_id)
            if doc is None:
                return False
            self._drafts[document_id] = copy.deepcopy(doc)
            self.mutate([{"delete": {"id": document_id}}])
            return True

    def republish(self, document_id: str) -> JSON | None:
        """Publish the draft :meth:`unpublish` kept."""
        with self._lock:
            draft = self._drafts.pop(document_id, None)
            if draft is None:
                return None
            draft = {k: v for k, v in draft.items() if k not in ("_rev", "_updatedAt")}
            return self.publish(draft)

    def delete(self, document_id: str) -> bool:
        """An editor deletes the document (published version and draft)."""
        with self._lock:
            self._drafts.pop(document_id, None)
            answer = self.mutate([{"delete": {"id": document_id}}])
            return answer["results"][0]["operation"] == "delete"

    # ------------------------------------------------------------------ inspection

    def document(self, document_id: str) -> JSON | None:
        with self._lock:
            doc = self._documents.get(document_id)
            return copy.deepcopy(doc) if doc is not None else None

    def snapshot(self) -> JSON:
        with self._lock:
            return {"documents": copy.deepcopy(list(self._documents.values())),
                    "drafts": copy.deepcopy(list(self._drafts.values()))}  # fmt: skip

    def stats(self) -> JSON:
        with self._lock:
            delivered = [d for d in self._deliveries if d.status is not None and d.status < 300]
            return {
                "requests": self._requests,
                "queries": dict(sorted(self._queries.items())),
                "queries_total": sum(self._queries.values()),
                "transactions": self._transactions,
                "mutations": dict(sorted(self._mutations.items())),
                "conflicts": self._conflicts,
                "webhooks": {
                    "enabled": self.webhook_enabled,
                    "url": self.webhook_url,
                    "sent": len(self._deliveries),
                    "delivered": len(delivered),
                    "failed": sum(1 for d in self._deliveries if d.error is not None),
                    "pending": self._pending,
                },
                "deliveries": [d.describe() for d in self._deliveries[-1000:]],
                "pending_faults": [vars(f).copy() for f in self._faults],
            }

    # ------------------------------------------------------------------ faults

    def count_request(self) -> None:
        with self._lock:
            self._requests += 1

    def inject_fault(self, status: int, count: int = 1, path: str | None = None) -> None:
        """Answer the next ``count`` API requests (whose path contains ``path``) with ``status``."""
        if not 400 <= status <= 599 or count < 1:
            raise ValueError("status must be 4xx/5xx and count positive")
        with self._lock:
            self._faults.append(_Fault(status, count, path))

    def take_fault(self, path: str) -> int | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or fault.path in path:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault.status
        return None

    # ------------------------------------------------------------------ webhooks

    def configure_webhook(self, url: str | None = None, enabled: bool | None = None) -> None:
        with self._lock:
            if url is not None:
                self.webhook_url = url
            if enabled is not None:
                self.webhook_enabled = enabled and bool(self.webhook_url)

    def _notify(self, doc: JSON, operation: str, transaction_id: str) -> None:
        types = self.config.webhook_types
        if not (self.webhook_enabled and self.webhook_url):
            return
        if types is not None and doc.get("_type") not in types:
            return
        document_id = str(doc.get("_id"))
        delivery = _Delivery(document_id, operation,
                             f"{self.config.webhook_id}:{transaction_id}:{document_id}",
                             transaction_id, json.dumps(doc).encode())  # fmt: skip
        self._deliveries.append(delivery)
        self._pending += 1
        self._queue.put(delivery)
        if self._sender is None or not self._sender.is_alive():
            self._sender = threading.Thread(target=self._send_loop, name="fake-sanity-webhooks",
                                            daemon=True)  # fmt: skip
            self._sender.start()

    def _send_loop(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None:
                return
            try:
                self._deliver(delivery)
            except Exception:  # a sender bug must not stop later deliveries
                log.exception("fake sanity: webhook delivery failed")
            finally:
                with self._lock:
                    self._pending -= 1

    def _deliver(self, delivery: _Delivery) -> None:
        from workers.jobs.signing import sanity_signature_header

        for attempt in range(1, self.config.webhook_retries + 2):
            delivery.attempts = attempt
            headers = {
                "content-type": "application/json",
                "user-agent": "Sanity.io webhook delivery (intercom-sync fake)",
                "idempotency-key": delivery.key,
                "sanity-operation": delivery.operation,
                "sanity-document-id": delivery.document_id,
                "sanity-project-id": self.config.project_id,
                "sanity-dataset": self.config.dataset,
                "sanity-transaction-id": delivery.transaction_id,
                "sanity-webhook-id": self.config.webhook_id,
            }
            if self.config.webhook_secret:
                headers["sanity-webhook-signature"] = sanity_signature_header(
                    self.config.webhook_secret, int(time.time() * 1000), delivery.body)
            try:
                answer = self._session.post(str(self.webhook_url), data=delivery.body,
                                            headers=headers, timeout=self.config.webhook_timeout)
                delivery.status, delivery.error = answer.status_code, None
                if answer.status_code != 429 and answer.status_code < 500:
                    if answer.status_code >= 400:
                        delivery.error = f"dropped after {answer.status_code}"
                    return
            except requests.RequestException as exc:
                delivery.status, delivery.error = None, type(exc).__name__
            if attempt <= self.config.webhook_retries:
                time.sleep(self.config.webhook_retry_delay)
        delivery.error = delivery.error or f"gave up after {delivery.status}"

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until every queued delivery was attempted (True) or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._pending == 0:
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """Stop the webhook sender after the deliveries already queued."""
        self._queue.put(None)


# ============================================================================================
# HTTP layer
# ============================================================================================


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status=status,
                    mimetype="application/json")  # fmt: skip


def _admin_body() -> JSON:
    body = request.get_json(silent=True)
    if body is None and request.get_data().strip():
        raise SanityError(400, "badRequest", "admin routes take a JSON object body")
    if body is not None and not isinstance(body, dict):
        raise SanityError(400, "badRequest", "admin routes take a JSON object body")
    return body or {}


def _query_request() -> tuple[str, JSON]:
    """The GROQ text and params of a ``GET`` (``?query=&$name=<json>``) or ``POST`` query."""
    if request.method == "GET":
        groq = request.args.get("query", "")
        params = {}
        for name, raw in request.args.items():
            if name.startswith("$"):
                try:
                    params[name[1:]] = json.loads(raw)
                except ValueError as exc:
                    raise SanityError(400, "queryParseError",
                                      f"param {name} is not JSON") from exc
        return groq, params
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise SanityError(400, "queryParseError", "body must be {\"query\": ..., \"params\": ...}")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise SanityError(400, "queryParseError", "params must be an object")
    return body["query"], params


def _register_api(app: Flask, state: FakeSanityState) -> None:
    config = state.config
    expected = f"Bearer {config.token}".encode()

    @app.before_request
    def _pipeline() -> Response | None:
        if request.path.startswith("/_fake/") or request.path == "/_fake":
            return None
        state.count_request()
        supplied = request.headers.get("Authorization", "").strip().encode()
        if not hmac.compare_digest(supplied, expected):
            return _json({"statusCode": 401, "error": "Unauthorized",
                          "message": "Session not found"}, 401)  # fmt: skip
        fault = state.take_fault(request.path)
        if fault is not None:
            raise SanityError(fault, "injectedFault", f"fake-sanity: injected {fault}")
        return None

    def check_dataset(dataset: str) -> None:
        if dataset != config.dataset:
            raise SanityError(404, "httpNotFound", f'Dataset "{dataset}" not found for project '
                              f'ID "{config.project_id}"')  # fmt: skip

    @app.route("/v<version>/data/query/<dataset>", methods=["GET", "POST"])
    def query(version: str, dataset: str) -> Response:
        check_dataset(dataset)
        started = time.perf_counter()
        groq, params = _query_request()
        result = state.query(request.args.get("tag"), groq, params)
        ms = max(1, round((time.perf_counter() - started) * 1000))
        return _json({"query": groq, "result": result, "ms": ms})

    @app.post("/v<version>/data/mutate/<dataset>")
    def mutate(version: str, dataset: str) -> Response:
        check_dataset(dataset)
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise SanityError(400, "mutationError", 'body must be {"mutations": [...]}')
        return _json(state.mutate(body.get("mutations")))


def _register_admin(app: Flask, state: FakeSanityState) -> None:
    @app.get("/_fake/health")
    def health() -> Response:
        return _json({"ok": True})

    @app.get("/_fake/state")
    def snapshot() -> Response:
        return _json(state.snapshot())

    @app.get("/_fake/stats")
    def stats() -> Response:
        return _json(state.stats())

    @app.get("/_fake/documents/<document_id>")
    def document(document_id: str) -> Response:
        doc = state.document(document_id)
        if doc is None:
            raise SanityError(404, "notFound", f"no published document {document_id!r}")
        return _json(doc)

    @app.post("/_fake/documents")
    def seed() -> Response:
        data = _admin_body()
        return _json(state.seed(data.get("documents") or [], notify=bool(data.get("notify"))))

    @app.post("/_fake/publish")
    def publish() -> Response:
        return _json(state.publish(_admin_body().get("document") or {}))

    @app.post("/_fake/publish/<document_id>")
    def republish(document_id: str) -> Response:
        doc = state.republish(document_id)
        if doc is None:
            raise SanityError(404, "notFound", f"no unpublished draft of {document_id!r}")
        return _json(doc)

    @app.post("/_fake/edit/<document_id>")
    def edit(document_id: str) -> Response:
        data = _admin_body()
        return _json(state.edit(document_id, data.get("set"), data.get("unset") or ()))

    @app.post("/_fake/unpublish/<document_id>")
    def unpublish(document_id: str) -> Response:
        return _json({"unpublished": state.unpublish(document_id)})

    @app.post("/_fake/delete/<document_id>")
    def delete(document_id: str) -> Response:
        return _json({"deleted": state.delete(document_id)})

    @app.post("/_fake/reset")
    def reset() -> Response:
        state.reset()
        return _json({"reset": True})

    @app.post("/_fake/webhook")
    def webhook() -> Response:
        data = _admin_body()
        state.configure_webhook(data.get("url"), data.get("enabled"))
        return _json(state.stats()["webhooks"])

    @app.post("/_fake/faults")
    def faults() -> Response:
        data = _admin_body()
        try:
            state.inject_fault(int(data["status"]), int(data.get("count", 1)), data.get("path"))
        except (KeyError, TypeError, ValueError) as exc:
            raise SanityError(400, "badRequest", f"faults need status and count: {exc}") from exc
        return _json(state.stats()["pending_faults"])


def create_fake_sanity(config: FakeSanityConfig | None = None, *,
                       state: FakeSanityState | None = None,
                       clock: Callable[[], float] | None = None) -> Flask:  # fmt: skip
    """A Flask app that answers like ``https://<project>.api.sanity.io`` plus ``/_fake/``.

    The state is ``app.extensions["fake_sanity"]``; pass ``state`` to share one.
    """
    if state is None:
        state = FakeSanityState(config, clock=clock)
    app = Flask(__name__)
    app.extensions[STATE_EXTENSION] = state

    @app.errorhandler(SanityError)
    def _sanity_error(error: SanityError) -> Response:
        return _json(error.body(), error.status)

    @app.errorhandler(404)
    def _not_found(error: Exception) -> Response:
        return _json(SanityError(404, "httpNotFound", "not a route of the fake").body(), 404)

    @app.errorhandler(405)
    def _not_allowed(error: Exception) -> Response:
        return _json(SanityError(405, "httpMethodNotAllowed", "method not allowed").body(), 405)

    _register_api(app, state)
    _register_admin(app, state)
    return app


# ============================================================================================
# python -m workers.sandbox.fake_sanity
# ============================================================================================


def _parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workers.sandbox.fake_sanity",
        description="Serve a local fake of the Sanity HTTP API (query, mutate) that fires "
        "signed webhooks after each published change.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default local)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one")
    parser.add_argument("--project", default="sandbox", help="project id (SANITY_PROJECT_ID)")
    parser.add_argument("--dataset", default="production", help="dataset (SANITY_DATASET)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="accepted token (SANITY_TOKEN)")
    parser.add_argument("--webhook-url", help="POST a signed webhook here after each change")
    parser.add_argument("--webhook-secret", help="webhook secret (SANITY_WEBHOOK_SECRET)")
    parser.add_argument("--webhook-type", action="append", dest="webhook_types",
                        help="document type that fires the webhook (repeatable; default "
                        "supportArticle)")  # fmt: skip
    parser.add_argument("--seed", type=Path, help="JSON file: a list of documents to publish")
    return parser.parse_args(None if argv is None else list(argv))


def main(argv: Iterable[str] | None = None) -> int:
    """Run the fake in the foreground; prints ``fake-sanity listening on <url>`` first."""
    args = _parse_args(argv)
    from workers.sandbox.server import BackgroundServer

    config = FakeSanityConfig(
        project_id=args.project, dataset=args.dataset, token=args.token,
        webhook_url=args.webhook_url, webhook_secret=args.webhook_secret,
        webhook_types=tuple(args.webhook_types) if args.webhook_types else ("supportArticle",),
    )  # fmt: skip
    app = create_fake_sanity(config)
    if args.seed:
        app.extensions[STATE_EXTENSION].seed(json.loads(args.seed.read_text(encoding="utf-8")))
    server = BackgroundServer(app, host=args.host, port=args.port)

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    print(f"fake-sanity listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
