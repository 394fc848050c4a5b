"""The webhook endpoints: verify, validate, de-duplicate, enqueue by task name, answer.

Status codes are a contract with the senders (DESIGN §3): Intercom retries a failed delivery
once or twice and throttles a receiver that answers 429, and Sanity drops every 4xx but 429 for
good, so only a request that can never succeed gets a 4xx, and a 2xx means the job is in Redis.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from flask import Blueprint, Response, current_app, g, request
from marshmallow import ValidationError

from app.schemas import SANITY_ID, IntercomNotification, SanityBody, first_error
from app.signatures import verify_intercom, verify_sanity
from app.state import ReceiverState
from workers.jobs import metrics, routing
from workers.jobs.logs import log_event

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

_intercom_schema = IntercomNotification()
_sanity_schema = SanityBody()


def _state() -> ReceiverState:
    return current_app.extensions["intercom_sync"]


def reply(status: int, body: dict[str, Any], **log_fields: Any) -> Response:
    """A JSON answer, and the one log line for this request."""
    started = g.get("started")
    duration = round((time.perf_counter() - started) * 1000, 2) if started else None
    outcome = body.get("status") or body.get("error")
    metrics.webhook_answered(log_fields.get("source"), outcome,
                             None if duration is None else duration / 1000)  # fmt: skip
    level = logging.WARNING if status >= 500 else logging.INFO
    log_event(
        logger,
        "webhook",
        level,
        status=status,
        outcome=outcome,
        duration_ms=duration,
        **log_fields,
    )
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _disabled(source: str, feature: str) -> Response | None:
    missing = _state().settings.missing(feature)
    if not missing:
        return None
    return reply(
        503,
        {
            "error": "not_configured",
            "reason": f"{source} webhooks are off: set {', '.join(missing)}",
        },
        source=source,
    )


def _enqueue(task_name: str, args: tuple[str, ...], dedup_key: str | None,
             **log_fields: Any) -> Response:
    try:
        result = _state().enqueuer().enqueue(task_name, args, dedup_key)
    except redis.RedisError as exc:
        return reply(
            503,
            {"error": "unavailable", "reason": "the job queue is unavailable; retry later"},
            task=task_name, redis_error=type(exc).__name__, **log_fields,
        )  # fmt: skip
    if not result.queued:
        return reply(
            200, {"status": "duplicate", "task_id": result.task_id},
            task=task_name, task_id=result.task_id, **log_fields,
        )  # fmt: skip
    return reply(
        202, {"status": "queued", "task": task_name, "task_id": result.task_id},
        task=task_name, task_id=result.task_id, **log_fields,
    )  # fmt: skip


class _BadBody(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _load(raw: bytes, schema: Any) -> dict[str, Any]:
    """The verified body as a validated JSON object; :class:`_BadBody` names what is wrong."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        raise _BadBody("body is not a JSON object")
    try:
        return schema.load(payload)
    except ValidationError as exc:
        raise _BadBody(first_error(exc.messages)) from None


@bp.route("/webhooks/intercom", methods=["POST", "HEAD"])
def intercom() -> Response:
    if request.method == "HEAD":
        # Intercom validates the URL with a HEAD request before saving a subscription.
        return Response(status=200, mimetype="application/json")
    refused = _disabled("intercom", "intercom_webhooks")
    if refused:
        return refused
    raw = request.get_data(cache=False)
    if not verify_intercom(raw, request.headers.get("X-Hub-Signature"),
                           _state().settings.INTERCOM_CLIENT_SECRET):
        return reply(401, {"error": "invalid_signature",
                           "reason": "X-Hub-Signature is missing or does not match"},
                     source="intercom")  # fmt: skip
    try:
        event = _load(raw, _intercom_schema)
    except _BadBody as bad:
        return reply(400, {"error": "invalid_body", "reason": bad.reason}, source="intercom")
    topic, notification_id = event["topic"], event["id"]
    item_id = event["data"]["item"].get("id")
    fields = {"source": "intercom", "topic": topic, "notification_id": notification_id,
              "item_id": item_id}  # fmt: skip
    if topic == "ping":
        return reply(200, {"status": "pong"}, **fields)
    task_name = INTERCOM_ROUTES.get(topic)
    if task_name is None:
        return reply(200, {"status": "ignored", "reason": f"no handler for topic {topic}"},
                     **fields)  # fmt: skip
    dedup = f"intercom:{notification_id}" if notification_id else None
    return _enqueue(task_name, (item_id,), dedup, **fields)


@bp.route("/webhooks/sanity", methods=["POST"])
def sanity() -> Response:
    refused = _disabled("sanity", "sanity_webhooks")
    if refused:
        return refused
    settings = _state().settings
    raw = request.get_data(cache=False)
    verdict = verify_sanity(
        raw,
        request.headers.get("sanity-webhook-signature"),
        settings.SANITY_WEBHOOK_SECRET,
        now_ms=_state().now_ms(),
        tolerance_s=settings.SANITY_WEBHOOK_TOLERANCE_SECONDS,
    )
    if not verdict.ok:
        return reply(401, {"error": "invalid_signature", "reason": verdict.reason},
                     source="sanity")  # fmt: skip
    try:
        body = _load(raw, _sanity_schema)
    except _BadBody as bad:
        return reply(400, {"error": "invalid_body", "reason": bad.reason}, source="sanity")
    headers = request.headers
    document_id = headers.get("sanity-document-id") or body.get("document_id")
    operation = (headers.get("sanity-operation") or "update").lower()
    key = headers.get("idempotency-key")
    fields = {"source": "sanity", "operation": operation, "document_id": document_id,
              "transaction_id": headers.get("sanity-transaction-id")}  # fmt: skip
    if not document_id or not SANITY_ID.fullmatch(document_id):
        return reply(400, {"error": "invalid_body",
                           "reason": "no valid document id in sanity-document-id or _id"},
                     **fields)  # fmt: skip
    if operation not in SANITY_OPERATIONS:
        return reply(400, {"error": "invalid_operation",
                           "reason": "sanity-operation must be create, update or delete"},
                     **fields)  # fmt: skip
    if key is not None and not 0 < len(key) <= 256:
        return reply(400, {"error": "invalid_header",
                           "reason": "idempotency-key must be 1 to 256 characters"},
                     **fields)  # fmt: skip
    if document_id.startswith(("drafts.", "versions.")):
        return reply(200, {"status": "ignored", "reason": "draft or release version"}, **fields)
    dataset = headers.get("sanity-dataset")
    if settings.SANITY_DATASET and dataset and dataset != settings.SANITY_DATASET:
        return reply(200, {"status": "ignored", "reason": f"dataset {dataset} is not synced"},
                     **fields)  # fmt: skip
    dedup = f"sanity:{key}" if key else None
    return _enqueue(SANITY_OPERATIONS[operation], (document_id,), dedup, **fields)
