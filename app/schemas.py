"""Marshmallow schemas for what the receiver accepts from Intercom and Sanity.

They check and load only what routing needs (topic, ids); other fields are neither refused nor
copied: the vendors add fields over time, and the tasks re-read current state from the APIs.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

# Intercom ids are short strings of letters, digits, '_' and '-'; nothing else may reach a URL.
INTERCOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
# Sanity document ids: letters, digits, '_', '-' and '.' (path segments such as 'drafts.').
SANITY_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")


def _intercom_id(value: Any) -> str:
    """An id given as a string or an integer, returned as a string."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError("must be a string id")
    text = str(value)
    if not INTERCOM_ID.fullmatch(text):
        raise ValidationError("is not a valid Intercom id")
    return text


class _NotificationData(fields.Field):
    """``data.item`` reduced to its ``type`` and ``id``.

    One field rather than two nested schemas: the item carries the whole conversation or
    contact, none of which the receiver reads, and nested schemas would walk all of it on every
    webhook (the receiver's hottest path).
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict:
        if not isinstance(value, dict):
            raise ValidationError("must be an object")
        item = value.get("item")
        if not isinstance(item, dict):
            raise ValidationError({"item": ["Missing data for required field."]})
        item_type = item.get("type")
        if not isinstance(item_type, str):
            raise ValidationError({"item": {"type": ["Not a valid string."]}})
        raw_id = item.get("id")
        try:
            item_id = None if raw_id is None else _intercom_id(raw_id)
        except ValidationError as exc:
            raise ValidationError({"item": {"id": exc.messages}}) from None
        return {"item": {"type": item_type, "id": item_id}}


class _Timestamp(fields.Field):
    """A time Intercom gives as Unix seconds (an int, a float or digits) or an ISO 8601 string.

    Returned as Unix seconds, or ``None`` when absent or unreadable: a timestamp only decides
    whether a notification is too old to trust its de-duplication, and a format Intercom may
    add later must not make a delivery fail.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
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


class IntercomNotification(Schema):
    """The ``notification_event`` envelope Intercom posts (DESIGN §4).

    Only what routing reads is loaded (``type``, ``id``, ``topic``, ``data.item``); other fields
    are left out of the result, not refused: Intercom adds fields over time.
    """

    class Meta:
        unknown = EXCLUDE

    type = fields.String(required=True, validate=validate.Equal("notification_event"))
    id = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 200))
    topic = fields.String(
        required=True, validate=validate.Regexp(r"^[a-z_]+(\.[a-z_]+)*\Z")
    )
    data = _NotificationData(required=True)
    created_at = _Timestamp(load_default=None, allow_none=True)
    first_sent_at = _Timestamp(load_default=None, allow_none=True)

    @validates_schema
    def _item_id_for_routed_topics(self, data: dict[str, Any], **_: Any) -> None:
        routed = data["topic"].split(".")[0] in ("conversation", "contact")
        if routed and not data["data"]["item"].get("id"):
            raise ValidationError("missing for this topic", "data.item.id")


class SanityBody(Schema):
    """A Sanity webhook body, projected as ``{_id, "operation": delta::operation()}``.

    Both come from the signed body, so a captured request cannot be replayed for another
    document or operation by changing headers. ``operation`` is optional: older projections
    (``{_id}``) fall back to the ``sanity-operation`` header.
    """

    class Meta:
        unknown = EXCLUDE

    document_id = fields.String(
        data_key="_id", required=True, validate=validate.Regexp(SANITY_ID)
    )
    operation = fields.String(
        load_default=None, allow_none=True,
        validate=validate.OneOf(["create", "update", "delete"]),
    )  # fmt: skip


def first_error(messages: dict[str, Any] | list[Any] | str, prefix: str = "") -> str:
    """Flatten marshmallow's nested messages into one ``field: problem`` line."""
    if isinstance(messages, dict):
        key = sorted(messages, key=str)[0]
        name = f"{prefix}.{key}" if prefix else str(key)
        return first_error(messages[key], name)
    if isinstance(messages, list) and messages:
        return first_error(messages[0], prefix)
    return f"{prefix}: {messages}" if prefix else str(messages)
