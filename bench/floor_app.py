"""The receiver's floor: bare Flask plus the one Redis call every accepted webhook must make.

"Never 2xx unless the job is in Redis" costs one round trip: the de-duplicate-and-push script of
``workers/jobs/enqueue.py``, with the same keys the receiver passes (the idempotency key and the
signature for Sanity, the notification's key for Intercom) and a message of about the size of the
receiver's Celery message (the body, padded; building the real message is the receiver's own
work). Nothing else: no signature check, no parsing, no validation, no message building, no log
line. ``bench/receiver.py`` runs it beside the receiver under the same gunicorn settings; the
receiver's throughput over this one's is what its own Python costs.
"""

from __future__ import annotations

import os
import uuid

import redis
from flask import Flask, Response, request

from workers.jobs import routing
from workers.jobs.enqueue import DEDUP_ENQUEUE_SCRIPT, DEDUP_PREFIX

app = Flask(__name__)
_state: dict[str, object] = {}
# About the size of the Celery message the receiver pushes for one of these webhooks.
_MESSAGE_SIZE = 900


def _script():
    script = _state.get("script")
    if script is None:
        client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=2,
                                      socket_connect_timeout=1)  # fmt: skip
        script = _state["script"] = client.register_script(DEDUP_ENQUEUE_SCRIPT)
    return script


@app.post("/webhooks/<source>")
def webhook(source: str) -> Response:
    body = request.get_data()
    task_id = str(uuid.uuid4())
    if source == "sanity":
        queue = routing.queue_for(routing.ARTICLES_SYNC)
        keys = [queue, DEDUP_PREFIX + "sanity:" + request.headers.get("idempotency-key", task_id),
                DEDUP_PREFIX + "sanity-signature:" +
                request.headers.get("sanity-webhook-signature", task_id)]  # fmt: skip
        ttls = [86400, 2100]
    else:
        queue = routing.queue_for(routing.CONVERSATIONS_TAG)
        keys = [queue, DEDUP_PREFIX + "intercom:" + request.headers.get("X-Hub-Signature",
                                                                        task_id)]  # fmt: skip
        ttls = [86400]
    message = body.ljust(_MESSAGE_SIZE)
    queued, _task_id = _script()(keys=keys, args=[task_id, message, *ttls])
    status = 202 if queued else 200
    return Response('{"status":"queued"}', status=status, mimetype="application/json")


@app.get("/readyz")
def readyz() -> Response:
    return Response('{"status":"ready"}', status=200, mimetype="application/json")
