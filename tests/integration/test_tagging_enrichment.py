"""Tagging and enrichment with real processes: a prefork Celery worker on a real Redis, the
fake Intercom on a real port (OpenAPI-checked), a tiny HTTP enrichment source, the real CLI.

The properties only real processes can show: twenty jobs in several worker processes racing
for the same new tag make one ``POST /tags``; a merged contact is not parked; the periodic
tasks' last success appears in ``intercom-sync status``; the refresh pages thousands of contacts
under the shared rate limit with no 429.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask, Response, request

from tests.conftest import REPO_ROOT, VECTORS
from tests.processes import base_env, celery_worker, wait_for
from tests.unit.contacts.test_enrich import ENRICHMENT, SECRET_VALUES, enqueued_contact_ids
from tests.unit.conversations.test_tagging import ADMIN_ID, FakeIntercom, services_for
from workers.contacts.enrich import WATERMARK_KEY, refresh_stale_contacts
from workers.jobs import routing
from workers.jobs.errors import RateLimited
from workers.sandbox.fake_intercom import DEFAULT_TOKEN
from workers.sandbox.server import BackgroundServer
from workers.tasks.base import decide

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
SOURCE_TOKEN = "source-token-for-tests"

RACE_RULES = """
rules:
  - tag: refund-request
    when: {text_any: [refund]}
  - tag: hostile
    when: {text_regex: "(x|xy)+z"}
"""


@pytest.fixture
def fake() -> Iterator[FakeIntercom]:
    intercom = FakeIntercom()
    yield intercom
    intercom.server.stop()


def worker_env(real_redis_url: str, fake: FakeIntercom, **extra: str) -> dict[str, str]:
    return base_env(REDIS_URL=real_redis_url, INTERCOM_API_BASE=fake.url,
                    INTERCOM_ACCESS_TOKEN=DEFAULT_TOKEN, INTERCOM_ADMIN_ID=ADMIN_ID,
                    **extra)  # fmt: skip


def finished(worker: Any, task: str) -> list[dict[str, Any]]:
    return [line for line in worker.json_lines()
            if line.get("task") == task
            and line.get("event") in ("task.succeeded", "task.parked")]  # fmt: skip


def events(worker: Any, event: str) -> list[dict[str, Any]]:
    return [line for line in worker.json_lines() if line.get("event") == event]


def test_twenty_racing_jobs_create_the_new_tag_once(
    fake, real_redis: redis.Redis, real_redis_url: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RACE_RULES)
    # Every text also feeds a quadratic regex (one the load-time check cannot see): the regex
    # timeout must bound each job.
    seeded = fake.state.seed({"conversations": [
        {"body": f"<p>Order {n}: I want a refund</p> " + "x" * 30000} for n in range(20)]})
    conversations = seeded["conversations"]
    # The first POST /tags answers slowly, so the other processes arrive while it is in flight.
    fake.state.inject_delay(0.5, 1, path_prefix="/tags", method="POST")
    services = services_for(fake, real_redis, REDIS_URL=real_redis_url, RULES_PATH=str(rules))
    env = worker_env(real_redis_url, fake, RULES_PATH=str(rules))

    with celery_worker(env, concurrency=4) as worker:
        for conversation in conversations:
            services.enqueuer.enqueue(routing.CONVERSATIONS_TAG, (conversation,))
        wait_for(lambda: len(finished(worker, routing.CONVERSATIONS_TAG)) >= 20, 90, "20 tag jobs")
        runs = finished(worker, routing.CONVERSATIONS_TAG)
        assert {r["event"] for r in runs} == {"task.succeeded"}, runs
        assert fake.count("POST", "/tags") == 1
        assert [t["name"] for t in fake.state.snapshot()["tags"]] == ["refund-request"]
        tagged = fake.state.snapshot()["conversation_tags"]
        assert all(tagged[c] == ["refund-request"] for c in conversations)
        assert max(r["duration_ms"] for r in runs) < 5000  # regex timeouts bound every job
        done = events(worker, "tag.done")
        assert len(done) == 20 and all(d["tags_applied"] == ["refund-request"] for d in done)

        # The same twenty jobs again (duplicates, replays): no write at all.
        applications = fake.state.stats()["tag_applications"]
        writes = fake.writes()
        for conversation in conversations:
            services.enqueuer.enqueue(routing.CONVERSATIONS_TAG, (conversation,))
        wait_for(lambda: len(finished(worker, routing.CONVERSATIONS_TAG)) >= 40, 90, "replays")
        assert fake.writes() == writes
        assert fake.state.stats()["tag_applications"] == applications == 20
        assert fake.count("POST", "/tags") == 1
    assert services.dead_letters.count() == 0
    assert fake.violations() == []


@pytest.fixture
def source() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """DESIGN's HTTP enrichment contract, served by a tiny Flask app; records each query."""
    seen: list[dict[str, str]] = []
    app = Flask("enrichment-source")

    @app.get("/lookup")
    def lookup() -> Response:
        if request.headers.get("Authorization") != f"Bearer {SOURCE_TOKEN}":
            return Response(status=401)
        seen.append(request.args.to_dict())
        record = ENRICHMENT.get(request.args.get("external_id", ""))
        if record is None:
            return Response(status=404)
        return Response(json.dumps(record), mimetype="application/json")

    server = BackgroundServer(app).start()
    yield server.url + "/lookup", seen
    server.stop()


def test_enrichment_through_a_worker_with_an_http_source(
    fake, source, real_redis: redis.Redis, real_redis_url: str, tmp_path: Path
) -> None:
    url, seen = source
    item = json.loads((VECTORS / "intercom-notifications" / "contact.user.created.json")
                      .read_text())["data"]["item"]  # fmt: skip
    fake.state.seed({"contacts": [
        {k: item[k] for k in ("id", "external_id", "role", "email", "name")},
        {"id": "merged-away", "external_id": "usr_9", "email": "m@globex.example"}]})  # fmt: skip
    fake.state.merge_contact("merged-away", None)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RACE_RULES)
    extra = {"ENRICHMENT_SOURCES": "http", "ENRICHMENT_URL": url,
             "ENRICHMENT_TOKEN": SOURCE_TOKEN, "RULES_PATH": str(rules)}  # fmt: skip
    services = services_for(fake, real_redis, REDIS_URL=real_redis_url, **extra)
    env = worker_env(real_redis_url, fake, **extra)

    with celery_worker(env, concurrency=3) as worker:
        for contact_id in (item["id"], "merged-away", item["id"]):
            services.enqueuer.enqueue(routing.CONTACTS_ENRICH, (contact_id,))
        wait_for(lambda: len(finished(worker, routing.CONTACTS_ENRICH)) >= 3, 60, "enrich jobs")
        runs = finished(worker, routing.CONTACTS_ENRICH)
        assert {r["event"] for r in runs} == {"task.succeeded"}, runs
        gone = events(worker, "enrich.contact_gone")
        assert [g["contact_id"] for g in gone] == ["merged-away"]
        assert gone[0]["detail"] == "merged or deleted, nothing to do"

        # The periodic jobs run and record their last success.
        for name in (routing.CONVERSATIONS_REFRESH_TAG_CACHE, routing.CONTACTS_REFRESH_STALE):
            services.enqueuer.enqueue(name, ())
        for name in (routing.CONVERSATIONS_REFRESH_TAG_CACHE, routing.CONTACTS_REFRESH_STALE):
            wait_for(lambda n=name: finished(worker, n), 60, name)
            assert finished(worker, name)[0]["event"] == "task.succeeded"
        log = worker.output()

    contact = next(c for c in fake.state.snapshot()["contacts"] if c["id"] == item["id"])
    assert contact["custom_attributes"] == {"tier": "gold", "seats": 12, "trial": False,
                                            "score": 4.5}  # fmt: skip
    company = next(c for c in fake.state.snapshot()["companies"] if c["company_id"] == "acct_88")
    assert company["monthly_spend"] == 1234 and company["custom_attributes"] == {"region": "EMEA"}
    assert contact["companies"]["data"] == [{"id": company["id"], "type": "company",
                                             "url": f"/companies/{company['id']}"}]  # fmt: skip
    assert fake.count("PUT", "/contacts/{contact_id}") == 1  # the duplicate job wrote nothing
    assert fake.count("POST", "/companies") == 1
    assert fake.count("POST", "/contacts/{contact_id}/companies") == 1
    assert seen[0] == {"external_id": "usr_2077", "email": "sam@globex.example"}
    sent = b"\n".join(fake.bodies())
    stored = json.dumps(fake.state.snapshot())
    for value in SECRET_VALUES:
        assert value.encode() not in sent and value not in stored and value not in log
    assert "sam@globex.example" not in log
    assert services.dead_letters.count() == 0
    assert fake.violations() == []

    status = subprocess.run([str(BIN / "intercom-sync"), "status"], cwd=REPO_ROOT, text=True,
                            env=base_env(REDIS_URL=real_redis_url), capture_output=True,
                            timeout=60, check=True)  # fmt: skip
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
    for name in (routing.CONVERSATIONS_REFRESH_TAG_CACHE, routing.CONTACTS_REFRESH_STALE,
                 routing.CONTACTS_ENRICH):  # fmt: skip
        assert name in lines and "never" not in lines[name] and "UTC" in lines[name], status.stdout


def test_refresh_pages_thousands_of_contacts_under_the_shared_rate_limit(
    real_redis: redis.Redis, real_redis_url: str
) -> None:
    budget = 4
    fake = FakeIntercom(budget_per_window=budget)
    try:
        # Our budget matches the fake's: 24 a minute is 4 per 10-second window.
        services = services_for(fake, real_redis, REDIS_URL=real_redis_url,
                                INTERCOM_RATE_LIMIT_PER_MINUTE=str(budget * 6))  # fmt: skip
        now = int(time.time())
        watermark = now - 86400
        rng = random.Random(7)
        contacts = [{"id": f"ct{i:05d}", "email": f"user{i}@example.org",
                     "created_at": now - 400_000 + i,
                     "updated_at": watermark + rng.choice([-5000, -1, 0, 1, 3600, 80000])}
                    for i in range(3000)]  # fmt: skip
        fake.state.seed({"contacts": contacts})
        updated = sorted(c["id"] for c in contacts if c["updated_at"] > watermark)
        assert 1200 < len(updated) < 1800  # about half: 10 pages, more than one window
        real_redis.set(WATERMARK_KEY, watermark)

        started = time.monotonic()
        attempts, rate_limited = 0, 0
        while True:  # what the shared retry policy does with the task, without the broker
            try:
                outcome = refresh_stale_contacts(services)
                break
            except RateLimited as exc:
                rate_limited += 1
                decision = decide(exc, attempts, max_retries=8, cap=600)
                assert decision.retry
                time.sleep(decision.countdown)
                attempts += 1
        elapsed = time.monotonic() - started

        stats = fake.state.stats()
        pages = fake.count("POST", "/contacts/search")
        print(f"refresh: {len(updated)} of {len(contacts)} contacts, {pages} pages, "
              f"{elapsed:.1f}s, {rate_limited} task retries for budget, "
              f"{len(stats['windows'])} windows, {stats['served_429']} 429s")
        assert outcome.complete
        assert sorted(enqueued_contact_ids(real_redis)) == updated
        assert pages == -(-len(updated) // 150)  # each page fetched once: resumes, no restarts
        # The budget was really exercised: full windows, never more than the budget, no 429.
        assert len(stats["windows"]) >= 3
        assert max(w["requests"] for w in stats["windows"]) == budget
        assert stats["served_429"] == 0 and stats["rate_limited"] == 0
        assert int(real_redis.get(WATERMARK_KEY)) > watermark
        assert fake.violations() == []
    finally:
        fake.server.stop()


def test_rules_test_cli_explains_its_verdict(tmp_path: Path) -> None:
    from tests.unit.conversations.test_tagging import SAMPLE_RULES

    rules = tmp_path / "rules.yaml"
    rules.write_text(SAMPLE_RULES)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "intercom-sync"), "rules", "test", *args],
                              cwd=REPO_ROOT, text=True, capture_output=True, timeout=60,
                              env=base_env(RULES_PATH=str(rules)))  # fmt: skip

    text = cli("My invoice is wrong and the export button doesn't work")
    assert text.returncode == 0, text.stderr
    assert "rule 0 [billing]: MATCH" in text.stdout
    assert "phrase 'invoice' matched" in text.stdout
    assert "rule 1 [bug]: MATCH" in text.stdout and 'matched "doesn\'t work"' in text.stdout
    assert "rule 2 [enterprise]: no match" in text.stdout
    assert text.stdout.rstrip().endswith("tags: billing, bug")

    sample = VECTORS / "intercom-notifications" / "conversation.user.created.json"
    notification = cli(str(sample))
    assert notification.returncode == 0 and "channel: conversation" in notification.stdout
    assert notification.stdout.rstrip().endswith("tags: billing")

    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - tag: x\n    when: {text_regex: '(unclosed'}\n")
    bad = cli("text", "--rules", str(broken))
    assert bad.returncode == 1 and "rules[0].when.text_regex" in bad.stderr
