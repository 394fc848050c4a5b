"""Metrics from real processes: a scripted run through gunicorn (two workers) into a prefork
Celery worker (two pool processes) on a real Redis, against the fake Intercom, then a scrape of
each endpoint.

What only real processes show: the receiver's counts are the sum over its gunicorn workers
(multiprocess files, one directory per server), the worker's are the sum over its pool
processes and are served by the main process, which reads queue lengths, dead letters, the
budget and beat ages from Redis at scrape time; and neither endpoint answers without the token.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from app.signatures import intercom_signature, sanity_signature_header
from tests.conftest import VECTORS
from tests.processes import base_env, celery_worker, deployment_command, gunicorn, wait_for
from tests.scrape import by_labels, samples, value
from tests.unit.conversations.test_tagging import ADMIN_ID, TEXT_RULES, FakeIntercom, services_for
from workers.jobs import routing
from workers.ops.embedded_redis import free_port
from workers.sandbox.fake_intercom import DEFAULT_TOKEN

pytestmark = pytest.mark.integration

INTERCOM_SECRET = "c1ient-secret-for-tests"
SANITY_SECRET = "whsec-integration"
TOKEN = "metrics-token-for-the-tests"


def scrape(url: str, token: str | None = TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(url, headers=headers, timeout=10)


def notification(conversation_id: str, notification_id: str) -> bytes:
    event = json.loads((VECTORS / "intercom-notifications" / "conversation.user.created.json")
                       .read_text())  # fmt: skip
    event["id"] = notification_id
    event["data"]["item"]["id"] = conversation_id
    event["created_at"] = event["first_sent_at"] = int(time.time())  # older ones are ignored
    return json.dumps(event).encode()


def finished(worker: Any) -> list[dict[str, Any]]:
    return [line for line in worker.json_lines()
            if line.get("event") in ("task.succeeded", "task.parked", "task.retry")]  # fmt: skip


@pytest.fixture
def fake() -> Iterator[FakeIntercom]:
    intercom = FakeIntercom()
    yield intercom
    intercom.server.stop()


def test_a_scripted_run_moves_each_counter_by_what_happened(
    fake: FakeIntercom, real_redis: redis.Redis, real_redis_url: str, tmp_path: Path
) -> None:
    conversations = fake.state.seed({"conversations": [
        {"body": f"<p>Order {n}: please refund me</p>"} for n in range(3)]})["conversations"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEXT_RULES)
    # One failed read: that job is retried once, then succeeds.
    fake.state.inject_fault(500, 1, path_prefix=f"/conversations/{conversations[0]}",
                            method="GET")  # fmt: skip
    # One refused write (Intercom's 400 is permanent): that job is parked.
    fake.state.inject_fault(400, 1, path_prefix=f"/conversations/{conversations[2]}/tags",
                            method="POST")  # fmt: skip
    web_port, metrics_port = free_port(), free_port()
    env = base_env(
        REDIS_URL=real_redis_url, INTERCOM_CLIENT_SECRET=INTERCOM_SECRET,
        SANITY_WEBHOOK_SECRET=SANITY_SECRET, INTERCOM_API_BASE=fake.url,
        INTERCOM_ACCESS_TOKEN=DEFAULT_TOKEN, INTERCOM_ADMIN_ID=ADMIN_ID, RULES_PATH=str(rules),
        METRICS_TOKEN=TOKEN, METRICS_PORT=str(metrics_port), METRICS_HOST="127.0.0.1",
        WEBHOOK_MAX_BODY_BYTES="4096", RETRY_BACKOFF_MAX="4",
    )  # fmt: skip
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # as in production: each server makes its own
    base = f"http://127.0.0.1:{web_port}"
    worker_url = f"http://127.0.0.1:{metrics_port}/metrics"

    with gunicorn(web_port, env, workers=2) as web, celery_worker(env, concurrency=2) as worker:
        def intercom(raw: bytes, signature: str | None = None) -> requests.Response:
            sig = signature or intercom_signature(INTERCOM_SECRET, raw)
            return requests.post(f"{base}/webhooks/intercom", data=raw, timeout=5,
                                 headers={"X-Hub-Signature": sig})  # fmt: skip

        def sanity(raw: bytes, key: str, secret: str = SANITY_SECRET) -> requests.Response:
            headers = {"sanity-webhook-signature": sanity_signature_header(
                           secret, int(time.time() * 1000), raw),
                       "idempotency-key": key, "sanity-operation": "update",
                       "content-type": "application/json"}  # fmt: skip
            return requests.post(f"{base}/webhooks/sanity", data=raw, headers=headers, timeout=5)

        # Before anything happened, and without or with a wrong token: refused.
        assert scrape(f"{base}/metrics", None).status_code == 401
        assert scrape(f"{base}/metrics", "Bearer-not-it-at-all").status_code == 401
        assert scrape(worker_url, None).status_code == 401
        refused = scrape(worker_url, TOKEN[:-1] + "X")
        assert refused.status_code == 401 and "intercom_sync" not in refused.text

        answers = [intercom(notification(c, f"notif-{c}")) for c in conversations]
        answers.append(intercom(notification(conversations[1], f"notif-{conversations[1]}")))
        answers.append(intercom((VECTORS / "intercom-notifications" / "ping.json").read_bytes()))
        answers.append(intercom((VECTORS / "intercom-notifications" / "company.created.json")
                                .read_bytes()))  # fmt: skip
        answers.append(intercom(notification("c-x", "notif-forged"), "sha1=" + "0" * 40))
        answers.append(intercom(b"{" + b" " * 5000 + b"}"))  # over the 4 KiB cap
        answers.append(intercom(b"not json"))
        document = json.dumps({"_id": "article-1", "title": "Refunds"}).encode()
        answers.append(sanity(document, "delivery-1"))  # article sync is off: ignored
        answers.append(sanity(document, "delivery-2", secret="whsec-someone-else"))
        assert [a.status_code for a in answers] == [202, 202, 202, 200, 200, 200, 401, 413,
                                                    400, 200, 401], [a.text for a in answers]

        # The jobs: three tags (one after a retry, one parked), one beat job.
        real_redis.rpush("unrelated", "x")  # not a queue of ours: not counted
        wait_for(lambda: len(finished(worker)) >= 4, 60, "the four task outcomes")
        services = services_for(fake, real_redis, REDIS_URL=real_redis_url)
        services.enqueuer.enqueue(routing.MAINTENANCE_REPLAY_DEAD_LETTERS, ())
        wait_for(lambda: len(finished(worker)) >= 5, 60, "the beat job")
        time.sleep(0.5)  # nothing else is coming: the counts below are final

        web_scrape = scrape(f"{base}/metrics")
        worker_scrape = scrape(worker_url)
        web_lines = [line for line in web.json_lines() if line.get("event") == "webhook"]

    assert web_scrape.status_code == 200, web_scrape.text
    assert web_scrape.headers["Content-Type"].startswith("text/plain; version=")
    got = samples(web_scrape.text)
    webhooks = {dict(labels)["source"] + ":" + dict(labels)["outcome"]: v
                for labels, v in by_labels(got, "intercom_sync_webhooks_total").items()}
    assert webhooks == {
        "intercom:queued": 3, "intercom:duplicate": 1, "intercom:pong": 1,
        "intercom:ignored": 1, "intercom:invalid_signature": 1, "intercom:too_large": 1,
        "intercom:invalid_body": 1, "sanity:ignored": 1, "sanity:invalid_signature": 1,
    }, webhooks  # fmt: skip
    assert value(got, "intercom_sync_webhook_duration_seconds_count", source="intercom") == 9
    assert value(got, "intercom_sync_webhook_duration_seconds_count", source="sanity") == 2
    assert 0 < value(got, "intercom_sync_webhook_duration_seconds_sum", source="intercom") < 9 * 5
    # The receiver's endpoint holds the receiver's metrics only, and no pid label anywhere.
    assert not by_labels(got, "intercom_sync_tasks_total")
    assert all("pid" not in dict(labels) for _, labels in got)
    assert len(web_lines) == 11  # one line per answer, the 413 of the body reader too

    assert worker_scrape.status_code == 200, worker_scrape.text
    got = samples(worker_scrape.text)
    tasks = {dict(labels)["task"] + ":" + dict(labels)["outcome"]: v
             for labels, v in by_labels(got, "intercom_sync_tasks_total").items()}
    assert tasks == {
        "conversations.tag:succeeded": 2, "conversations.tag:retried": 1,
        "conversations.tag:parked": 1, "maintenance.replay_dead_letters:succeeded": 1,
    }, tasks  # fmt: skip
    assert value(got, "intercom_sync_task_duration_seconds_count", task="conversations.tag") == 4
    assert ("intercom_sync_tasks_in_progress", (("task", "conversations.tag"),)) in got
    assert value(got, "intercom_sync_tasks_in_progress", task="conversations.tag") == 0

    calls = {(dict(labels)["method"], dict(labels)["route"], dict(labels)["status"]): v
             for labels, v in by_labels(got, "intercom_sync_intercom_requests_total").items()}
    stats = fake.state.stats()["requests"]
    assert calls[("GET", "/conversations/{id}", "500")] == 1
    assert calls[("GET", "/conversations/{id}", "200")] == 3
    assert calls[("POST", "/conversations/{id}/tags", "200")] == 2
    assert calls[("POST", "/conversations/{id}/tags", "400")] == 1
    assert sum(calls.values()) == sum(stats.values()), (calls, stats)  # every call, once
    assert all("{" not in route or route.count("{id}") == route.count("{")
               for _, route, _ in calls)  # templates, never ids  # fmt: skip
    assert not any(c in route for c in conversations for _, route, _ in calls)

    lengths = {dict(labels)["queue"]: v
               for labels, v in by_labels(got, "intercom_sync_queue_length").items()}
    assert lengths == {queue: 0 for queue in routing.QUEUES}
    assert value(got, "intercom_sync_dead_letters") == 1
    assert value(got, "intercom_sync_redis_up") == 1
    budget = value(got, "intercom_sync_rate_limit_window_limit", service="intercom")
    assert budget == 9000 // 6
    assert 0 <= value(got, "intercom_sync_rate_limit_remaining", service="intercom") <= budget
    ages = {dict(labels)["task"]: v for labels, v in
            by_labels(got, "intercom_sync_beat_last_success_age_seconds").items()}
    # Articles are off (no Sanity settings): its reconcile job is not reported.
    assert set(ages) == {routing.MAINTENANCE_REPLAY_DEAD_LETTERS, routing.CONTACTS_REFRESH_STALE,
                         routing.CONVERSATIONS_REFRESH_TAG_CACHE}  # fmt: skip
    assert 0 <= ages[routing.MAINTENANCE_REPLAY_DEAD_LETTERS] < 60
    assert math.isinf(ages[routing.CONTACTS_REFRESH_STALE])  # never ran
    assert not by_labels(got, "intercom_sync_webhooks_total")


def test_a_worker_whose_metrics_port_is_taken_stops_with_one_line(real_redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = base_env(REDIS_URL=real_redis_url, METRICS_PORT=str(port),
                       METRICS_HOST="127.0.0.1")  # fmt: skip
        result = subprocess.run(deployment_command("worker", "--concurrency", "1"), env=env,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"intercom-sync: METRICS_PORT: cannot listen on 127.0.0.1:{port} (Address already in use)"]
