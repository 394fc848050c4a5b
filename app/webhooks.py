"""The webhook endpoints: verify, validate, de-duplicate, enqueue by task name, answer.

Status codes are a contract with the senders (DESIGN §3): Intercom retries a failed delivery
once or twice and throttles a receiver that answers 429, and Sanity drops every 4xx but 429 for
good, so only a request that can never succeed gets a 4xx, and a 2xx means the job is in Redis.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request
from marshmallow import ValidationError

from app.body import BodyError, parse_object, read_body
from app.schemas import IntercomNotification, SanityBody, first_error
from app.signatures import SANITY_FUTURE_TOLERANCE_MS, verify_intercom, verify_sanity
from app.state import ReceiverState
from workers.jobs import json_text, metrics, routing
from workers.jobs.logs import log_fields

logger = logging.getLogger("intercom_sync.receiver")

bp = Blueprint("webhooks", __name__)

INTERCOM_ROUTES = {
    "conversation.user.created": routing.CONVERSATIONS_TAG,
    "conversation.user.replied": routing.CONVERSATIONS_TAG,
    "contact.user.created": routing.CONTACTS_ENRICH,
    "contact.lead.created": routing.CONTACTS_ENRICH,
    "contact.lead.signed_up": routing.CONTACTS_ENRICH,
}

SANITY_OPERATIONS = {
    "create": routing.ARTICLES_SYNC,
    "update": routing.ARTICLES_SYNC,
    "delete": routing.ARTICLES_DELETE,
}

# The feature (``Settings.FEATURES``) whose workers run each task: a webhook for a feature that
# is switched off is answered ``200 ignored`` with the missing variables, and nothing is queued.
TASK_FEATURES = {
    routing.CONVERSATIONS_TAG: "tagging",
    routing.CONTACTS_ENRICH: "enrichment",
    routing.ARTICLES_SYNC: "articles",
    routing.ARTICLES_DELETE: "articles",
}

_intercom_schema = IntercomNotification()
_sanity_schema = SanityBody()


def _state() -> ReceiverState:
    return current_app.extensions["intercom_sync"]


# The environ key where the app notes when a request reached it (``create_app``'s WSGI wrapper).
STARTED = "intercom_sync.started"


def reply(status: int, body: dict[str, Any], fields: dict[str, Any]) -> Response:
    """A JSON answer, and the one log line for this request, with ``fields`` (ids, never
    payloads) after its status, outcome and duration."""
    started = request.environ.get(STARTED)
    # Milliseconds to two places (``round(x, 2)`` formats and parses the number to do so).
    duration = int((time.perf_counter() - started) * 100_000 + 0.5) / 100 if started else None
    outcome = body.get("status") or body.get("error")
    metrics.webhook_answered(fields.get("source"), outcome,
                             None if duration is None else duration / 1000)  # fmt: skip
    level = logging.WARNING if status >= 500 else logging.INFO
    line = {"status": status, "outcome": outcome, "duration_ms": duration, **fields}
    log_fields(logger, "webhook", level, line)
    return Response(json_text.dumps(body), status=status, mimetype="application/json")


def _disabled(state: ReceiverState, source: str, feature: str) -> Response | None:
    missing = state.missing(feature)
    if not missing:
        return None
    return reply(
        503,
        {
            "error": "not_configured",
            "reason": f"{source} webhooks are off: set {', '.join(missing)}",
        },
        {"source": source},
    )


def _switched_off(state: ReceiverState, task_name: str,
                  fields: dict[str, Any]) -> Response | None:  # fmt: skip
    """``200 ignored`` naming the missing variables when ``task_name``'s feature is off."""
    feature = TASK_FEATURES[task_name]
    missing = state.missing(feature)
    if not missing:
        return None
    return reply(200, {"status": "ignored",
                       "reason": f"{feature} is off: set {', '.join(missing)}"},
                 {"task": task_name, **fields})  # fmt: skip


def _enqueue(state: ReceiverState, task_name: str, args: tuple[str, ...], dedup_key: str | None,
             fields: dict[str, Any], also_once: tuple[str, int] | None = None) -> Response:
    try:
        result = state.enqueuer().enqueue(task_name, args, dedup_key, also_once=also_once)
    except redis.RedisError as exc:
        return reply(
            503,
            {"error": "unavailable", "reason": "the job queue is unavailable; retry later"},
            {"task": task_name, "redis_error": type(exc).__name__, **fields},
        )  # fmt: skip
    if not result.queued:
        return reply(
            200, {"status": "duplicate", "task_id": result.task_id},
            {"task": task_name, "task_id": result.task_id, **fields},
        )  # fmt: skip
    return reply(
        202, {"status": "queued", "task": task_name, "task_id": result.task_id},
        {"task": task_name, "task_id": result.task_id, **fields},
    )  # fmt: skip


def _body(state: ReceiverState, environ: dict[str, Any], source: str) -> bytes | Response:
    """The raw body, bounded in size and read time, or the JSON answer refusing it."""
    settings = state.settings
    try:
        return read_body(environ, settings.WEBHOOK_MAX_BODY_BYTES,
                         settings.WEBHOOK_BODY_TIMEOUT_SECONDS)  # fmt: skip
    except BodyError as bad:
        return reply(bad.status, {"error": bad.error, "reason": bad.reason}, {"source": source})


def _load(state: ReceiverState, raw: bytes, schema: Any) -> dict[str, Any]:
    """The verified body as a validated JSON object; :class:`BodyError` names what is wrong."""
    payload = parse_object(raw, state.settings.WEBHOOK_MAX_JSON_DEPTH)
    try:
        return schema.load(payload)
    except ValidationError as exc:
        raise BodyError(400, "invalid_body", first_error(exc.messages)) from None


def _stale(state: ReceiverState, event: dict[str, Any]) -> str | None:
    """Why a notification is too old to accept, or None.

    Its de-duplication key lives ``DEDUP_TTL_SECONDS``; an older notification could have been
    accepted once already and forgotten, so accepting it again could run its job twice. The more
    recent of ``first_sent_at`` and ``created_at`` counts (an old event first sent now is new).
    """
    first_sent, created = event["first_sent_at"], event["created_at"]
    if first_sent is None or (created is not None and created > first_sent):
        newest = created
    else:
        newest = first_sent
    if newest is None:
        return None
    ttl = state.settings.DEDUP_TTL_SECONDS
    age = state.now_ms() / 1000 - newest
    if age <= ttl:
        return None
    return f"notification is {int(age)} s old, older than the {ttl} s de-duplication window"


@bp.route("/webhooks/intercom", methods=["POST", "HEAD"])
def intercom() -> Response:
    # Headers straight from the WSGI environ (``request.headers`` costs a lookup object per read,
    # and every use of ``request`` a context lookup).
    environ = request.environ
    if environ["REQUEST_METHOD"].upper() == "HEAD":
        # Intercom validates the URL with a HEAD request before saving a subscription.
        return Response(status=200, mimetype="application/json")
    state = _state()
    refused = state.some_off and _disabled(state, "intercom", "intercom_webhooks")
    if refused:
        return refused
    raw = _body(state, environ, "intercom")
    if isinstance(raw, Response):
        return raw
    if not verify_intercom(raw, environ.get("HTTP_X_HUB_SIGNATURE"),
                           state.settings.INTERCOM_CLIENT_SECRET):
        return reply(401, {"error": "invalid_signature",
                           "reason": "X-Hub-Signature is missing or does not match"},
                     {"source": "intercom"})  # fmt: skip
    try:
        event = _load(state, raw, _intercom_schema)
    except BodyError as bad:
        return reply(bad.status, {"error": bad.error, "reason": bad.reason},
                     {"source": "intercom"})  # fmt: skip
    topic, notification_id = event["topic"], event["id"]
    item_id = event["data"]["item"].get("id")
    fields = {"source": "intercom", "topic": topic, "notification_id": notification_id,
              "item_id": item_id}  # fmt: skip
    if topic == "ping":
        return reply(200, {"status": "pong"}, fields)
    task_name = INTERCOM_ROUTES.get(topic)
    if task_name is None:
        return reply(200, {"status": "ignored", "reason": f"no handler for topic {topic}"},
                     fields)  # fmt: skip
    stale = _stale(state, event)
    if stale:
        return reply(200, {"status": "ignored", "reason": stale}, fields)
    off = state.some_off and _switched_off(state, task_name, fields)
    if off:
        return off
    dedup = f"intercom:{notification_id}" if notification_id else None
    return _enqueue(state, task_name, (item_id,), dedup, fields)


@bp.route("/webhooks/sanity", methods=["POST"])
def sanity() -> Response:
    state = _state()
    refused = state.some_off and _disabled(state, "sanity", "sanity_webhooks")
    if refused:
        return refused
    settings = state.settings
    environ = request.environ  # as in intercom()
    raw = _body(state, environ, "sanity")
    if isinstance(raw, Response):
        return raw
    signature = environ.get("HTTP_SANITY_WEBHOOK_SIGNATURE")
    verdict = verify_sanity(
        raw,
        signature,
        settings.SANITY_WEBHOOK_SECRET,
        now_ms=state.now_ms(),
        tolerance_s=settings.SANITY_WEBHOOK_TOLERANCE_SECONDS,
    )
    if not verdict.ok:
        return reply(401, {"error": "invalid_signature", "reason": verdict.reason},
                     {"source": "sanity"})  # fmt: skip
    try:
        body = _load(state, raw, _sanity_schema)
    except BodyError as bad:
        return reply(bad.status, {"error": bad.error, "reason": bad.reason}, {"source": "sanity"})
    # The signature covers the body only: what routes the job (document, operation) comes from
    # the body, and a header that says otherwise is a replay with altered headers.
    document_id = body["document_id"]
    operation = (body.get("operation") or environ.get("HTTP_SANITY_OPERATION") or "update").lower()
    key = environ.get("HTTP_IDEMPOTENCY_KEY")
    fields = {"source": "sanity", "operation": operation, "document_id": document_id,
              "transaction_id": environ.get("HTTP_SANITY_TRANSACTION_ID")}  # fmt: skip
    header_id = environ.get("HTTP_SANITY_DOCUMENT_ID")
    if header_id is not None and header_id != document_id:
        return reply(400, {"error": "invalid_header",
                           "reason": "sanity-document-id does not match the signed body's _id"},
                     fields)  # fmt: skip
    if operation not in SANITY_OPERATIONS:
        return reply(400, {"error": "invalid_operation",
                           "reason": "sanity-operation must be create, update or delete"},
                     fields)  # fmt: skip
    if key is not None and not 0 < len(key) <= 256:
        return reply(400, {"error": "invalid_header",
                           "reason": "idempotency-key must be 1 to 256 characters"},
                     fields)  # fmt: skip
    if document_id.startswith(("drafts.", "versions.")):
        return reply(200, {"status": "ignored", "reason": "draft or release version"}, fields)
    dataset = environ.get("HTTP_SANITY_DATASET")
    if settings.SANITY_DATASET and dataset and dataset != settings.SANITY_DATASET:
        return reply(200, {"status": "ignored", "reason": f"dataset {dataset} is not synced"},
                     fields)  # fmt: skip
    task_name = SANITY_OPERATIONS[operation]
    off = state.some_off and _switched_off(state, task_name, fields)
    if off:
        return off
    dedup = f"sanity:{key}" if key else None
    # A signature is accepted once while it could verify (tolerance past, five minutes ahead),
    # whatever idempotency key comes with it.
    window = settings.SANITY_WEBHOOK_TOLERANCE_SECONDS + SANITY_FUTURE_TOLERANCE_MS // 1000
    once = (f"sanity-signature:{signature}", window)
    return _enqueue(state, task_name, (document_id,), dedup, fields, once)
