"""What the receiver accepts from Intercom and Sanity: the envelope fields routing needs.

They check and load only what routing needs (topic, ids, the notification's times); other fields
are neither refused nor copied: the vendors add fields over time, and the tasks re-read current
state from the APIs.

Plain functions rather than marshmallow schemas: this runs on every webhook, the receiver's
hottest path, and a marshmallow ``Schema.load`` of this envelope cost more than the Redis round
trip's client side (docs/BENCHMARKS.md). Problems are reported the marshmallow way (a
``ValidationError`` whose messages map each field to its problems, with marshmallow's wording),
and every problem is collected, not only the first.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from marshmallow import ValidationError

# Intercom ids are short strings of letters, digits, '_' and '-'; nothing else may reach a URL.
INTERCOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
# Sanity document ids: letters, digits, '_', '-' and '.' (path segments such as 'drafts.').
SANITY_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
_TOPIC = re.compile(r"^[a-z_]+(\.[a-z_]+)*\Z")
SANITY_OPERATIONS = ("create", "update", "delete")

MISSING = "Missing data for required field."
NOT_NULL = "Field may not be null."
NOT_STRING = "Not a valid string."
NO_MATCH = "String does not match expected pattern."


def _intercom_id(value: Any) -> str:
    """An id given as a string or an integer, returned as a string."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):  # a tuple: cheaper per call
        raise ValidationError("must be a string id")
    text = str(value)
    if not INTERCOM_ID.fullmatch(text):
        raise ValidationError("is not a valid Intercom id")
    return text


def _notification_data(value: Any) -> dict[str, Any]:
    """``data.item`` reduced to its ``type`` and ``id``: the item carries the whole conversation
    or contact, none of which the receiver reads."""
    if not isinstance(value, dict):
        raise ValidationError("must be an object")
    item = value.get("item")
    if not isinstance(item, dict):
        raise ValidationError({"item": [MISSING]})
    item_type = item.get("type")
    if not isinstance(item_type, str):
        raise ValidationError({"item": {"type": [NOT_STRING]}})
    raw_id = item.get("id")
    try:
        item_id = None if raw_id is None else _intercom_id(raw_id)
    except ValidationError as exc:
        raise ValidationError({"item": {"id": exc.messages}}) from None
    return {"item": {"type": item_type, "id": item_id}}


def timestamp(value: Any) -> float | None:
    """A time Intercom gives as Unix seconds (an int, a float or digits) or an ISO 8601 string.

    Returned as Unix seconds, or ``None`` when absent or unreadable: a timestamp only decides
    whether a notification is too old to trust its de-duplication, and a format Intercom may
    add later must not make a delivery fail.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


class IntercomNotification:
    """The ``notification_event`` envelope Intercom posts (DESIGN §4).

    ``load`` returns ``type``, ``id``, ``topic``, ``data`` (``{"item": {"type", "id"}}``),
    ``created_at`` and ``first_sent_at`` (Unix seconds or None).
    """

    def load(self, payload: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[Any] | dict[str, Any]] = {}
        kind = payload.get("type", _ABSENT)
        if kind is _ABSENT:
            errors["type"] = [MISSING]
        elif kind != "notification_event":
            errors["type"] = ["Must be equal to notification_event."]
        notification_id = payload.get("id")
        if notification_id is not None:
            if not isinstance(notification_id, str):
                errors["id"] = [NOT_STRING]
            elif not 1 <= len(notification_id) <= 200:
                errors["id"] = ["Length must be between 1 and 200."]
        topic = payload.get("topic", _ABSENT)
        if topic is _ABSENT:
            errors["topic"] = [MISSING]
        elif topic is None:
            errors["topic"] = [NOT_NULL]
        elif not isinstance(topic, str):
            errors["topic"] = [NOT_STRING]
        elif not _TOPIC.fullmatch(topic):
            errors["topic"] = [NO_MATCH]
        data = None
        if "data" not in payload:
            errors["data"] = [MISSING]
        elif payload["data"] is None:
            errors["data"] = [NOT_NULL]
        else:
            try:
                data = _notification_data(payload["data"])
            except ValidationError as exc:
                errors["data"] = exc.messages
        if not errors and topic.partition(".")[0] in ("conversation", "contact") and (
                not data["item"]["id"]):  # fmt: skip
            errors["data.item.id"] = ["missing for this topic"]
        if errors:
            raise ValidationError(errors)
        return {"type": kind, "id": notification_id, "topic": topic, "data": data,
                "created_at": timestamp(payload.get("created_at")),
                "first_sent_at": timestamp(payload.get("first_sent_at"))}  # fmt: skip


class SanityBody:
    """A Sanity webhook body, projected as ``{_id, "operation": delta::operation()}``.

    Both come from the signed body, so a captured request cannot be replayed for another
    document or operation by changing headers. ``operation`` is optional: older projections
    (``{_id}``) fall back to the ``sanity-operation`` header. ``load`` returns ``document_id``
    and ``operation`` (or None).
    """

    def load(self, payload: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        document_id = payload.get("_id", _ABSENT)
        if document_id is _ABSENT:
            errors["_id"] = [MISSING]
        elif document_id is None:
            errors["_id"] = [NOT_NULL]
        elif not isinstance(document_id, str):
            errors["_id"] = [NOT_STRING]
        elif not SANITY_ID.fullmatch(document_id):
            errors["_id"] = [NO_MATCH]
        operation = payload.get("operation")
        if operation is not None and operation not in SANITY_OPERATIONS:
            errors["operation"] = [f"Must be one of: {', '.join(SANITY_OPERATIONS)}."]
        if errors:
            raise ValidationError(errors)
        return {"document_id": document_id, "operation": operation}


_ABSENT = object()


def first_error(messages: dict[str, Any] | list[Any] | str, prefix: str = "") -> str:
    """Flatten marshmallow's nested messages into one ``field: problem`` line."""
    if isinstance(messages, dict):
        key = sorted(messages, key=str)[0]
        name = f"{prefix}.{key}" if prefix else str(key)
        return first_error(messages[key], name)
    if isinstance(messages, list) and messages:
        return first_error(messages[0], prefix)
    return f"{prefix}: {messages}" if prefix else str(messages)
