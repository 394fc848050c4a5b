"""The receiver's message text is, byte for byte, the JSON of the whole envelope.

``Enqueuer.build_message`` fills ids, arguments and body into a format made once per task name;
here it is compared with serialising the envelope the plain way, over generated arguments (quotes,
``%``, non-ASCII, non-strings), and its uuid4 text with the standard library's.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import fakeredis
import pytest
from celery import Celery
from celery.utils.saferepr import saferepr
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import make_settings
from workers.jobs import routing
from workers.jobs.celery_app import configure_celery
from workers.jobs.enqueue import Enqueuer, random_uuid4, random_uuid4s

_CELERY = configure_celery(Celery("test-message"), make_settings())
_ENQUEUER = Enqueuer(_CELERY, fakeredis.FakeRedis())


def _plain(task_name: str, args: tuple[Any, ...], task_id: str, tag: str) -> dict[str, Any]:
    """The envelope built and serialised the straightforward way."""
    msg = _CELERY.amqp.as_task_v2(task_id, task_name, args=list(args), kwargs={})
    arg_list = list(args)
    short = len(arg_list) <= 4 and all(isinstance(a, str) and len(a) <= 256 for a in arg_list)
    headers = {**msg.headers, "argsrepr": repr(arg_list) if short else saferepr(arg_list)}
    body = f"[{json.dumps(arg_list)}, {{}}, {json.dumps(msg.body[2])}]".encode()
    return {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {**msg.properties, "delivery_mode": 2,
                       "delivery_info": {"exchange": "",
                                         "routing_key": routing.queue_for(task_name)},
                       "priority": 0, "body_encoding": "base64", "delivery_tag": tag},
    }  # fmt: skip


_ARGS = st.lists(st.text(max_size=40) | st.integers() | st.none(), max_size=5)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([routing.ARTICLES_SYNC, routing.CONVERSATIONS_TAG, routing.CONTACTS_ENRICH]),
       _ARGS, st.text(min_size=1, max_size=40))  # fmt: skip
def test_message_is_the_plain_serialisation(task_name: str, args: list[Any], task_id: str) -> None:
    text = _ENQUEUER.build_message(task_name, tuple(args), task_id)
    ours = json.loads(text)
    tag = ours["properties"]["delivery_tag"]
    expected = _plain(task_name, tuple(args), task_id, tag)
    assert text == json.dumps(expected, separators=(",", ":")).encode()
    assert uuid.UUID(tag).version == 4


@pytest.mark.parametrize("count", [1, 2, 5])
def test_random_uuid4s_are_version_4_rfc_4122_uuids(count: int) -> None:
    seen = set()
    variants = set()
    for _ in range(2000 // count):
        texts = random_uuid4s(count) if count > 1 else [random_uuid4()]
        assert len(texts) == count
        for text in texts:
            parsed = uuid.UUID(text)
            assert str(parsed) == text
            assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
            variants.add(text[19])
            seen.add(text)
    assert len(seen) == 2000 // count * count
    assert variants == set("89ab")  # every variant digit occurs, as with uuid.uuid4()


def test_an_enqueued_message_has_its_own_task_id_and_delivery_tag() -> None:
    client = fakeredis.FakeRedis()
    enqueuer = Enqueuer(_CELERY, client)
    seen = set()
    for n in range(50):
        result = enqueuer.enqueue(routing.ARTICLES_SYNC, (f"doc-{n}",), f"key-{n}")
        envelope = json.loads(client.lindex(routing.queue_for(routing.ARTICLES_SYNC), 0))
        task_id, tag = envelope["headers"]["id"], envelope["properties"]["delivery_tag"]
        assert task_id == result.task_id == envelope["properties"]["correlation_id"]
        assert uuid.UUID(tag).version == uuid.UUID(task_id).version == 4
        seen.update((task_id, tag))
    assert len(seen) == 100
