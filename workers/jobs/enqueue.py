"""Put a job into Redis in one round trip, de-duplicated atomically.

The webhook receiver must answer Intercom within 5 s (better 500 ms) and may see 2,500 events/s,
and it must never answer ``2xx`` unless the job is in Redis, nor keep a de-duplication key for a
job that never got in (the sender's retry would then be dropped as a duplicate). Celery's
``send_task`` costs several Redis round trips and a lot of Python per message; here one Lua script
checks the de-duplication key, pushes the message and sets the key, so the job and its key are
written together or not at all.

The message is a Celery protocol-2 message in the envelope kombu's Redis transport writes
(``LPUSH`` of JSON on the queue's list, body base64-encoded), built with Celery's own
``as_task_v2`` so the headers stay what the installed Celery expects. The integration tests
prove a real worker consumes it.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from typing import Any, NamedTuple

import redis
from celery import Celery
from celery.utils.saferepr import saferepr

from workers.jobs import json_text, routing

DEDUP_PREFIX = "intercom-sync:dedup:"

# KEYS[1] queue list, KEYS[2..] de-duplication keys; ARGV[1] task id, ARGV[2] message,
# ARGV[3..] each key's time to live in seconds. Any existing key makes the delivery a duplicate
# (answered with the task id it holds); otherwise the job and every key are written together.
# The push comes before the SETs: if Redis refused a SET (out of memory) after the push, the
# worst outcome is a job without a key (a later duplicate runs an idempotent task twice), never
# a key without its job.
DEDUP_ENQUEUE_SCRIPT = """
for i = 2, #KEYS do
  local existing = redis.call('GET', KEYS[i])
  if existing then return {0, existing} end
end
redis.call('LPUSH', KEYS[1], ARGV[2])
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'EX', tonumber(ARGV[i + 1]))
end
return {1, ARGV[1]}
"""


# Placeholders in the serialised envelope (no JSON escaping changes them, and no Celery header
# holds such text), replaced by each message's values.
_PLACEHOLDERS = {"id": "@@task-id@@", "argsrepr": "@@argsrepr@@", "tag": "@@delivery-tag@@",
                 "body": "@@body@@"}  # fmt: skip
_PLACEHOLDER = re.compile('"(' + "|".join(map(re.escape, _PLACEHOLDERS.values())) + ')"')
_FIELD_OF = {placeholder: field for field, placeholder in _PLACEHOLDERS.items()}


def random_uuid4s(count: int) -> list[str]:
    """``count`` times ``str(uuid.uuid4())``, at a fraction of its cost (two per webhook on the
    receiver's hot path, a task id and a delivery tag): one system call draws the random bytes
    for all of them, and each 16 become hex with the version (4) and RFC 4122 variant bits set as
    ``uuid4`` sets them."""
    raw = os.urandom(16 * count).hex()
    texts = []
    for start in range(0, 32 * count, 32):
        h = raw[start:start + 32]
        variant = "89ab"[int(h[16], 16) & 3]
        texts.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}")
    return texts


def random_uuid4() -> str:
    """One :func:`random_uuid4s`."""
    return random_uuid4s(1)[0]


class Enqueued(NamedTuple):
    """What happened: ``queued`` is False when the de-duplication key was already there."""

    queued: bool
    task_id: str
    task_name: str


class _Text(NamedTuple):
    """A task's serialised envelope: ``pieces`` alternate constant JSON and (at the odd places)
    the placeholders of the fields ``fields`` picks from a message's values, in that order."""

    pieces: list[str]
    fields: Callable[[dict[str, str]], tuple[str, ...]]
    embed: str


class Enqueuer:
    """Builds Celery messages and pushes them with the de-duplication script."""

    def __init__(self, celery_app: Celery, client: redis.Redis, dedup_ttl: int = 86400) -> None:
        self._amqp = celery_app.amqp
        self._client = client
        self._dedup_ttl = dedup_ttl
        self._script = client.register_script(DEDUP_ENQUEUE_SCRIPT)
        self._templates: dict[str, dict[str, Any]] = {}
        self._texts: dict[str, _Text] = {}

    def _template(self, task_name: str) -> dict[str, Any]:
        """Celery's message for ``task_name``, built once; only ids and arguments vary."""
        template = self._templates.get(task_name)
        if template is None:
            msg = self._amqp.as_task_v2("", task_name, args=[], kwargs={})
            template = {
                "headers": msg.headers,
                "properties": {
                    **msg.properties,
                    "delivery_mode": 2,
                    "delivery_info": {"exchange": "", "routing_key": routing.queue_for(task_name)},
                    "priority": 0,
                    "body_encoding": "base64",
                },
                "embed": msg.body[2],
            }
            self._templates[task_name] = template
        return template

    def _text(self, task_name: str) -> _Text:
        """The envelope's JSON for ``task_name`` cut where the ids, the arguments' repr and the
        body go, and the JSON of the body's constant tail; built once."""
        text = self._texts.get(task_name)
        if text is None:
            template = self._template(task_name)
            headers = dict(template["headers"])
            headers.update(id=_PLACEHOLDERS["id"], root_id=_PLACEHOLDERS["id"],
                           argsrepr=_PLACEHOLDERS["argsrepr"])  # fmt: skip
            properties = dict(template["properties"])
            properties.update(correlation_id=_PLACEHOLDERS["id"], delivery_tag=_PLACEHOLDERS["tag"])
            envelope = {
                "body": _PLACEHOLDERS["body"],
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": headers,
                "properties": properties,
            }
            # Constant pieces at the even places, the fields' placeholders at the odd ones.
            pieces = _PLACEHOLDER.split(json.dumps(envelope, separators=(",", ":")))
            fields = [_FIELD_OF[placeholder] for placeholder in pieces[1::2]]
            text = _Text(pieces, itemgetter(*fields), json.dumps(template["embed"]))
            self._texts[task_name] = text
        return text

    def build_message(self, task_name: str, args: tuple[Any, ...], task_id: str,
                      delivery_tag: str | None = None) -> bytes:
        """The JSON kombu's Redis transport stores for ``send_task(task_name, args)``.

        Celery's ``as_task_v2`` runs once per task name (it costs more than the Redis round
        trip), and so does serialising the envelope around it: each message puts the ids, the
        arguments and the body between that text's constant pieces (byte for byte what
        serialising the whole envelope gives; the integration tests compare it with Celery's
        own ``send_task``). ``delivery_tag`` is a new uuid4 unless given.
        """
        text = self._text(task_name)
        arg_list = list(args)
        body = f"[{json_text.dumps(arg_list)}, {{}}, {text.embed}]".encode()
        # Celery's saferepr walks its argument token by token (a tenth of the receiver's own
        # time per webhook); for a few short ids it returns exactly ``repr``.
        short_ids = len(arg_list) <= 4
        for arg in arg_list:
            if type(arg) is not str or len(arg) > 256:
                short_ids = False
                break
        argsrepr = repr(arg_list) if short_ids else saferepr(arg_list)
        # Base64 and uuid4 text need no JSON escaping: quoting them is their JSON.
        values = {
            "body": f'"{base64.b64encode(body).decode()}"',
            "id": encode_basestring_ascii(task_id),
            "argsrepr": encode_basestring_ascii(argsrepr),
            "tag": f'"{delivery_tag or random_uuid4()}"',
        }
        pieces = text.pieces.copy()
        pieces[1::2] = text.fields(values)
        return "".join(pieces).encode()

    def enqueue(
        self,
        task_name: str,
        args: tuple[Any, ...],
        dedup_key: str | None = None,
        *,
        also_once: tuple[str, int] | None = None,
    ) -> Enqueued:
        """Push one job; with ``dedup_key``, only if that key was not seen within the TTL.

        ``also_once`` is a second ``(key, ttl seconds)`` that makes a delivery a duplicate too
        (a Sanity signature, accepted once within its tolerance window whatever its idempotency
        key); it is checked and recorded in the same script, so two racing deliveries cannot
        both get in. Raises ``redis.RedisError`` when Redis cannot take the job: the caller
        answers 503.
        """
        task_id, delivery_tag = random_uuid4s(2)
        message = self.build_message(task_name, args, task_id, delivery_tag)
        queue = routing.queue_for(task_name)
        keys = [queue]
        ttls: list[int] = []
        if dedup_key is not None:
            keys.append(DEDUP_PREFIX + dedup_key)
            ttls.append(self._dedup_ttl)
        if also_once is not None:
            keys.append(DEDUP_PREFIX + also_once[0])
            ttls.append(also_once[1])
        if len(keys) == 1:
            self._client.lpush(queue, message)
            return Enqueued(True, task_id, task_name)
        queued, stored_id = self._script(keys=keys, args=[task_id, message, *ttls])
        stored = stored_id.decode() if isinstance(stored_id, bytes) else str(stored_id)
        return Enqueued(bool(queued), stored, task_name)
