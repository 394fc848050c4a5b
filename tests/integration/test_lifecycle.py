"""Stopping and scheduling across real processes, started with the deployment's own commands.

SIGTERM is what every platform sends before it replaces a process (Heroku and compose on a
deploy, Kubernetes on a rollout). A worker must finish the job in hand or put it back on its
queue; gunicorn must answer the webhooks it is reading. And beat's reconcile, not a webhook,
must bring an article to Intercom when the webhook never arrived.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import redis
import requests

from app.signatures import intercom_signature
from tests import probe_tasks as probes
from tests.conftest import VECTORS
from tests.jobs import enqueuer, queued_jobs
from tests.processes import (
    Proc,
    celery_beat,
    celery_worker,
    features_on,
    gunicorn,
    probe_env,
    wait_for,
)
from tests.unit.articles.test_harness import Fakes, article_doc
from workers.jobs import routing
from workers.jobs.dead_letters import DeadLetters
from workers.ops.embedded_redis import free_port

pytestmark = pytest.mark.integration

INCLUDE = ["--include", "tests.probe_tasks"]
INTERCOM_SECRET = "lifecycle-client-secret"
NOTIFICATION = VECTORS / "intercom-notifications" / "conversation.user.created.json"


def _events(worker: Proc, event: str, task_id: str) -> list[dict]:
    return [line for line in worker.json_lines()
            if line.get("event") == event and line.get("task_id") == task_id]  # fmt: skip


def _pids(client: redis.Redis, key: str) -> list[int]:
    return [int(pid) for pid in client.lrange(key, 0, -1)]


def _stop(worker: Proc, timeout: float) -> tuple[int | None, float]:
    """SIGTERM the worker as a platform would; its exit code and how long it took."""
    sent = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    code = worker.process.wait(timeout=timeout)
    return code, time.monotonic() - sent


# --- worker -----------------------------------------------------------------------------------


def test_sigterm_lets_the_job_in_hand_finish_within_the_shutdown_window(
    real_redis: redis.Redis, real_redis_url: str
) -> None:
    window = 8.0
    env = probe_env(REDIS_URL=real_redis_url, WORKER_SHUTDOWN_TIMEOUT=str(window))
    started, finished = f"{probes.PREFIX}started:short", f"{probes.PREFIX}finished:short"
    with celery_worker(env, concurrency=1, extra=INCLUDE) as worker:
        task_id = enqueuer(real_redis_url, real_redis).enqueue(probes.SLEEP,
                                                                ("short", 2.0)).task_id  # fmt: skip
        wait_for(lambda: real_redis.llen(started) == 1, 30, "the job to start")
        _code, took = _stop(worker, timeout=window + 30)
    assert _pids(real_redis, finished) == _pids(real_redis, started)  # ran to its end, once
    assert _events(worker, "task.succeeded", task_id), worker.output()[-3000:]
    assert "Initiating Soft Shutdown" in worker.output()
    assert took < window + 15, took
    # Acknowledged: nothing waits on the queue and nothing is held as delivered.
    assert real_redis.llen(routing.queue_for(probes.SLEEP)) == 0
    assert real_redis.hlen("unacked") == 0


def test_sigterm_puts_a_job_that_outlasts_the_window_back_on_its_queue(
    real_redis: redis.Redis, real_redis_url: str
) -> None:
    window = 2.0
    env = probe_env(REDIS_URL=real_redis_url, WORKER_SHUTDOWN_TIMEOUT=str(window))
    started, finished = f"{probes.PREFIX}started:long", f"{probes.PREFIX}finished:long"
    queue = routing.queue_for(probes.SLEEP)
    with celery_worker(env, concurrency=1, name="first", extra=INCLUDE) as first:
        task_id = enqueuer(real_redis_url, real_redis).enqueue(probes.SLEEP,
                                                                ("long", 15.0)).task_id  # fmt: skip
        wait_for(lambda: real_redis.llen(started) == 1, 30, "the job to start")
        _code, took = _stop(first, timeout=60)
    assert took < window + 15, took
    assert real_redis.llen(finished) == 0  # cut short ...
    # ... and back on its queue at once, not hidden until the visibility timeout (an hour).
    assert [name for name, _args in queued_jobs(real_redis, queue)] == [probes.SLEEP]
    assert real_redis.hlen("unacked") == 0

    with celery_worker(env, concurrency=1, name="second", extra=INCLUDE) as second:
        wait_for(lambda: _events(second, "task.succeeded", task_id), 60, "the job to run again")
    pids = _pids(real_redis, started)
    assert len(pids) == 2 and _pids(real_redis, finished) == [pids[1]]
    assert real_redis.llen(queue) == 0 and real_redis.hlen("unacked") == 0
    assert DeadLetters(real_redis).count() == 0


# --- receiver ---------------------------------------------------------------------------------


def _notification(conversation_id: str, notification_id: str) -> bytes:
    body = json.loads(NOTIFICATION.read_text())
    body["id"] = notification_id
    body["created_at"] = body["first_sent_at"] = int(time.time())
    body["data"]["item"]["id"] = conversation_id
    return json.dumps(body).encode()


def _read_response(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_sigterm_to_gunicorn_answers_the_webhook_it_is_reading(
    real_redis: redis.Redis, real_redis_url: str, tmp_path: Path
) -> None:
    env = probe_env(REDIS_URL=real_redis_url, INTERCOM_CLIENT_SECRET=INTERCOM_SECRET,
                    **features_on(tmp_path))  # fmt: skip
    port = free_port()
    body = _notification("7001", "notif_in_flight")
    head = (
        f"POST /webhooks/intercom HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Hub-Signature: {intercom_signature(INTERCOM_SECRET, body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with gunicorn(port, env, workers=1) as web:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head + body[:20])  # the worker is now reading this request's body
            time.sleep(2.0)
            web.process.send_signal(signal.SIGTERM)
            wait_for(lambda: "Handling signal: term" in web.output(), 10, "gunicorn's SIGTERM")
            time.sleep(0.5)
            sock.sendall(body[20:])
            response = _read_response(sock)
        assert web.process.wait(timeout=30) == 0
        # Every line the server wrote on the way down could be formatted (gunicorn's own lines
        # name the process: the receiver must not switch that field off).
        assert "Logging error" not in web.output(), web.output()[-3000:]
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 202 ACCEPTED", response[:500]
    assert queued_jobs(real_redis, "conversations") == [(routing.CONVERSATIONS_TAG, ["7001"])]


def test_sigterm_to_gunicorn_under_load_loses_no_accepted_webhook(
    real_redis: redis.Redis, real_redis_url: str, tmp_path: Path
) -> None:
    env = probe_env(REDIS_URL=real_redis_url, INTERCOM_CLIENT_SECRET=INTERCOM_SECRET,
                    **features_on(tmp_path))  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks/intercom"
    accepted: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def sender(lane: int) -> None:
        session = requests.Session()
        for n in range(100_000):
            if stop.is_set():
                return
            conversation_id = f"{lane}{n:06d}"
            body = _notification(conversation_id, f"notif_{conversation_id}")
            headers = {"X-Hub-Signature": intercom_signature(INTERCOM_SECRET, body),
                       "Content-Type": "application/json"}  # fmt: skip
            try:
                answer = session.post(url, data=body, headers=headers, timeout=10)
            except requests.ConnectionError:
                return  # the listener is closed: Intercom would retry this one later
            if answer.status_code == 202:
                accepted.append(conversation_id)
            else:
                failures.append(f"{answer.status_code} {answer.text[:200]}")

    with gunicorn(port, env, workers=2) as web:
        lanes = [threading.Thread(target=sender, args=(lane,)) for lane in range(1, 7)]
        for lane in lanes:
            lane.start()
        wait_for(lambda: len(accepted) >= 200, 30, "webhooks flowing")
        web.process.send_signal(signal.SIGTERM)
        code = web.process.wait(timeout=40)
        stop.set()
        for lane in lanes:
            lane.join(timeout=30)
    assert code == 0
    assert failures == []
    queued = [args[0] for task, args in queued_jobs(real_redis, "conversations")
              if task == routing.CONVERSATIONS_TAG]  # fmt: skip
    # Every 202 is a job in Redis, and no job exists without its 202.
    assert sorted(queued) == sorted(accepted)
    assert len(accepted) >= 200


# --- beat ---------------------------------------------------------------------------------------


def test_beat_reconcile_repairs_a_webhook_that_never_arrived(
    real_redis: redis.Redis, real_redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    fakes = Fakes(webhook_url=f"http://127.0.0.1:{port}/webhooks/sanity")
    env = probe_env(REDIS_URL=real_redis_url, **fakes.env(RECONCILE_INTERVAL_SECONDS="3"))
    sanity = fakes.sanity
    try:
        with gunicorn(port, env), celery_worker(env, concurrency=2) as worker, \
                celery_beat(env) as beat:  # fmt: skip
            sanity.configure_webhook(enabled=False)  # the publish's webhook is lost
            sanity.publish(article_doc("missed-webhook", "Missed webhook", text="Found by beat"))

            def article() -> dict | None:
                found = [a for a in fakes.articles() if a["title"] == "Missed webhook"]
                return found[0] if found else None

            made = wait_for(article, 60, "beat's reconcile to create the article")
            assert made["state"] == "published" and "<p>Found by beat</p>" in made["body"]
            wait_for(lambda: sanity.document("missed-webhook").get("intercomArticleId"), 30,
                     "the article id written back to Sanity")  # fmt: skip
            assert sanity.document("missed-webhook")["intercomArticleId"] == made["id"]
            # Later rounds find nothing to do: still one article, one POST.
            wait_for(lambda: "articles.reconcile" in beat.output()
                     and beat.output().count("articles-reconcile") >= 3, 30,
                     "two more reconcile rounds")  # fmt: skip
            time.sleep(2)
            assert fakes.calls().get("POST /articles") == 1
            assert [a["title"] for a in fakes.articles()].count("Missed webhook") == 1

            sanity.configure_webhook(enabled=True)  # the webhook path works in the same stack
            sanity.edit("missed-webhook", {"title": "Found webhook"})
            wait_for(lambda: article() is None and any(
                a["title"] == "Found webhook" for a in fakes.articles()), 30, "the edit's update")
            reconciled = [line for line in worker.json_lines()
                          if line.get("event") == "articles.reconciled"]  # fmt: skip
            assert reconciled and reconciled[0]["enqueued"] >= 1
        assert fakes.violations() == []
    finally:
        fakes.stop()
