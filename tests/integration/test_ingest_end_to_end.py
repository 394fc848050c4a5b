"""A signed webhook into the real receiver under gunicorn becomes one job a real worker runs."""

from __future__ import annotations

import json
import time

import pytest
import requests

from app.signatures import intercom_signature, sanity_signature_header
from tests.conftest import VECTORS
from tests.processes import base_env, celery_worker, features_on, gunicorn, wait_for
from workers.ops.embedded_redis import free_port

pytestmark = pytest.mark.integration

SANITY_SECRET = "whsec-integration"
INTERCOM_SECRET = "c1ient-secret-for-tests"


def _started(worker, task: str) -> list[dict]:
    return [line for line in worker.json_lines()
            if line.get("event") == "task.started" and line.get("task") == task]  # fmt: skip


def test_signed_webhooks_become_exactly_one_job_each(real_redis, real_redis_url,
                                                     tmp_path) -> None:  # fmt: skip
    env = base_env(REDIS_URL=real_redis_url, SANITY_WEBHOOK_SECRET=SANITY_SECRET,
                   INTERCOM_CLIENT_SECRET=INTERCOM_SECRET, **features_on(tmp_path))  # fmt: skip
    port = free_port()
    with gunicorn(port, env) as web, celery_worker(env) as worker:
        base = f"http://127.0.0.1:{port}"
        body = json.dumps({"_id": "article-42", "title": "Refunds"}).encode()
        headers = {
            "sanity-webhook-signature": sanity_signature_header(
                SANITY_SECRET, int(time.time() * 1000), body),
            "idempotency-key": "delivery-1",
            "sanity-operation": "update",
            "content-type": "application/json",
        }  # fmt: skip
        first = requests.post(f"{base}/webhooks/sanity", data=body, headers=headers, timeout=5)
        assert first.status_code == 202, first.text
        again = requests.post(f"{base}/webhooks/sanity", data=body, headers=headers, timeout=5)
        assert again.status_code == 200 and again.json()["status"] == "duplicate"

        tampered = dict(headers, **{"idempotency-key": "delivery-2"})
        bad = requests.post(f"{base}/webhooks/sanity", data=body + b" ", headers=tampered,
                            timeout=5)  # fmt: skip
        assert bad.status_code == 401

        notification = json.loads(
            (VECTORS / "intercom-notifications" / "conversation.user.created.json").read_text())
        # Sent now: older notifications than the de-duplication window are ignored.
        notification["created_at"] = notification["first_sent_at"] = int(time.time())
        raw = json.dumps(notification).encode()
        sent = requests.post(f"{base}/webhooks/intercom", data=raw, timeout=5,
                             headers={"X-Hub-Signature": intercom_signature(INTERCOM_SECRET, raw)})
        assert sent.status_code == 202, sent.text

        sync_runs = wait_for(lambda: _started(worker, "articles.sync"), 30, "articles.sync run")
        tag_runs = wait_for(lambda: _started(worker, "conversations.tag"), 30, "tag run")
        time.sleep(1.0)  # a duplicate, had one been queued, would have started by now
        sync_runs = _started(worker, "articles.sync")
        assert [run["task_args"] for run in sync_runs] == [["article-42"]]
        assert sync_runs[0]["task_id"] == first.json()["task_id"]
        assert [run["task_args"] for run in tag_runs] == [["215467382910455"]]
        assert all(real_redis.llen(q) == 0 for q in ("articles", "conversations"))
        access = [line for line in web.json_lines() if line.get("event") == "webhook"]
        assert {line["status"] for line in access} == {202, 200, 401}
