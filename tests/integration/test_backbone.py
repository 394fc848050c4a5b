"""The worker backbone with real processes: a Celery worker (prefork) on the machine's Redis,
the fake Intercom over HTTP, the ``intercom-sync`` command line, and a local Sentry endpoint.

Jobs are the probe tasks of ``tests.probe_tasks``: declared like the domain tasks, so what is
observed here is the project's limiter, Intercom client, retry policy, dead-letter store and
redelivery guard. Nothing is asserted by sleeping: every wait polls for a condition, bounded.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests import probe_tasks as probes
from tests.conftest import OPENAPI, REPO_ROOT
from tests.jobs import enqueuer
from tests.processes import BIN, Proc, base_env, celery_worker, probe_env, wait_for
from workers.jobs.dead_letters import DeadLetters
from workers.sandbox.fake_intercom import (
    DEFAULT_TOKEN,
    STATE_EXTENSION,
    FakeIntercomConfig,
    FakeIntercomState,
    create_fake_intercom,
)
from workers.sandbox.server import BackgroundServer

pytestmark = pytest.mark.integration

RATE_LIMIT_PER_MINUTE = 240  # the project's budget: 240 / 6 = 40 calls per 10-second window
BUDGET = RATE_LIMIT_PER_MINUTE // 6
WINDOW = 10
ADMIN_ID = "1295"  # the fake's admin
INCLUDE = ["--include", "tests.probe_tasks"]
LOST = "jobs ended as Celery task failures: neither retried nor parked, i.e. acknowledged and lost"


# --- fixtures and helpers ---------------------------------------------------------------------


@dataclass
class Fake:
    url: str
    state: FakeIntercomState


@pytest.fixture
def fake_intercom() -> Iterator[Fake]:
    """The fake Intercom on a free port: 40 calls per 10 s, strict OpenAPI request checks."""
    config = FakeIntercomConfig(budget_per_window=BUDGET, window_seconds=WINDOW,
                                openapi_path=OPENAPI, strict_openapi=True)  # fmt: skip
    app = create_fake_intercom(config)
    with BackgroundServer(app) as server:
        yield Fake(server.url, app.extensions[STATE_EXTENSION])


def worker_env(redis_url: str, fake: Fake | None = None, **extra: str) -> dict[str, str]:
    values = {
        "REDIS_URL": redis_url,
        "INTERCOM_ACCESS_TOKEN": DEFAULT_TOKEN,
        "INTERCOM_ADMIN_ID": ADMIN_ID,
        "INTERCOM_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_PER_MINUTE),
    }
    env = probe_env(**(values | extra))
    if fake is not None:
        env["INTERCOM_API_BASE"] = fake.url
    return env


def lines(worker: Proc, event: str, **match: Any) -> list[dict[str, Any]]:
    return [line for line in worker.json_lines() if line.get("event") == event
            and all(line.get(k) == v for k, v in match.items())]  # fmt: skip


def succeeded_ids(worker: Proc) -> list[str]:
    return [line["task_id"] for line in lines(worker, "task.succeeded")]


def task_failures(worker: Proc) -> list[str]:
    """Celery's own "Task ... raised unexpected" lines: a job that ended neither retried,
    succeeded nor parked by the policy (it was acknowledged as failed, i.e. lost)."""
    return [line["event"] for line in worker.json_lines()
            if line.get("logger") == "celery.app.trace" and line.get("level") == "ERROR"]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``intercom-sync`` command, without a terminal on stdin."""
    return subprocess.run([str(BIN / "intercom-sync"), *args], env=env, cwd=REPO_ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def tail(worker: Proc) -> str:
    return worker.output()[-4000:]


# --- 1. one budget for every worker process --------------------------------------------------


def test_worker_processes_share_one_budget_use_it_and_never_get_429(
    real_redis, real_redis_url, fake_intercom
) -> None:
    jobs, calls = 36, 5  # 180 calls: at least 3 full windows of backlog at 40 per window
    env = worker_env(real_redis_url, fake_intercom)
    with celery_worker(env, concurrency=3, extra=INCLUDE) as worker:
        queue = enqueuer(real_redis_url, real_redis)
        task_ids = [queue.enqueue(probes.ME, (f"job-{n}", calls)).task_id for n in range(jobs)]
        wait_for(lambda: real_redis.scard(f"{probes.PREFIX}me:done") == jobs
                 or task_failures(worker), 120, f"{jobs} probe jobs to finish")  # fmt: skip
        assert task_failures(worker) == [], LOST
        wait_for(lambda: set(task_ids) <= set(succeeded_ids(worker)), 10, "task.succeeded lines")
        retries = lines(worker, "task.retry")

    stats = fake_intercom.state.stats()
    per_window = {w["start"]: w["requests"] for w in stats["windows"]}
    first, last = min(per_window), max(per_window)
    counts = [per_window.get(start, 0) for start in range(first, last + WINDOW, WINDOW)]
    backlog = counts[1:-1]  # full windows while jobs were still queued (first/last are partial)
    print(f"\nrate limit: budget {BUDGET}/window; calls per window {counts}; full windows "
          f"{backlog} = {[round(c / BUDGET, 3) for c in backlog]} of budget; "
          f"429s {stats['served_429']}; RateLimited retries {len(retries)}")  # fmt: skip

    assert stats["served_429"] == 0 and stats["rate_limited"] == 0, stats["windows"]
    assert stats["requests"] == {"GET /me": jobs * calls}  # none lost, none repeated
    assert max(counts) <= BUDGET
    assert len(backlog) >= 3, counts
    assert min(backlog) >= 0.9 * BUDGET, counts
    assert sorted(succeeded_ids(worker)) == sorted(task_ids)  # each job succeeded once
    assert DeadLetters(real_redis).count() == 0
    assert stats["violations"] == []


# --- 2. a storm of 5xx, 429 and timeouts -------------------------------------------------------


def test_storm_of_errors_and_timeouts_ends_with_every_job_done_exactly_once(
    real_redis, real_redis_url, fake_intercom
) -> None:
    state = fake_intercom.state
    names = ["storm-billing", "storm-bug", "storm-refund"]
    seeded = state.seed({"conversations": [
        {"subject": f"Conversation {n}", "body": "<p>It does not work</p>"} for n in names
    ]})["conversations"]  # fmt: skip
    conversation_of = dict(zip(names, seeded, strict=True))
    # One answer comes too late for the client's 20 s read timeout although Intercom created
    # the tag (the retry must find it, not make a second one) ...
    state.inject_delay(21.0, 1, path_prefix="/tags", method="POST")
    # ... while applying tags fails for a while (500s, then a load balancer's HTML 503s) ...
    state.inject_fault(500, 4, path_prefix="/conversations/", method="POST")
    state.inject_fault(503, 4, path_prefix="/conversations/", method="POST")
    # ... and so does the call after a tag was applied (the retry must not apply it again).
    state.inject_fault(429, 1, path_prefix="/me")
    state.inject_fault(500, 1, path_prefix="/me")
    injected = 4 + 4 + 1 + 1

    env = worker_env(real_redis_url, fake_intercom, RETRY_BACKOFF_MAX="3",
                     TASK_MAX_RETRIES="20")  # fmt: skip
    with celery_worker(env, concurrency=3, extra=INCLUDE) as worker:
        queue = enqueuer(real_redis_url, real_redis)
        task_ids = [queue.enqueue(probes.TAG, (name, conversation_of[name])).task_id
                    for name in names]  # fmt: skip
        try:
            wait_for(lambda: set(task_ids) <= set(succeeded_ids(worker)) or task_failures(worker)
                     or lines(worker, "task.parked"), 90, "every storm job to succeed")
        except AssertionError:
            raise AssertionError(f"jobs did not finish:\n{tail(worker)}") from None
        parked = lines(worker, "task.parked")
        retried = {line["error_type"] for line in lines(worker, "task.retry")}

    assert task_failures(worker) == [], LOST
    assert parked == []
    assert DeadLetters(real_redis).count() == 0
    assert sorted(succeeded_ids(worker)) == sorted(task_ids)  # none lost, none run twice
    assert real_redis.smembers(f"{probes.PREFIX}tag:done") == {n.encode() for n in names}
    # The storm really happened, and the policy saw each kind of failure.
    stats = state.stats()
    assert stats["injected_faults"] == injected and stats["delayed"] == 1
    assert stats["pending_faults"] == [] and stats["pending_delays"] == []
    assert {"ServerError", "RateLimited", "ConnectionFailed"} <= retried
    assert stats["served_429"] == 1 and stats["rate_limited"] == 0  # only the injected one
    # Intercom's side: one tag per name, each applied once to its own conversation.
    snapshot = state.snapshot()
    tag_names = [tag["name"] for tag in snapshot["tags"]]
    assert sorted(tag_names) == sorted(names)
    assert snapshot["conversation_tags"] == {conversation_of[n]: [n] for n in names}
    assert stats["tag_applications"] == len(names)
    assert stats["violations"] == []


# --- 3. permanent errors park at once; the CLI lists, replays and purges -----------------------


def test_permanent_404_is_parked_at_once_and_the_cli_replays_and_purges_it(
    real_redis, real_redis_url, fake_intercom
) -> None:
    missing, also_missing = "5200001", "5200002"
    env = worker_env(real_redis_url, fake_intercom)
    cli_env = base_env(REDIS_URL=real_redis_url)
    store = DeadLetters(real_redis)
    with celery_worker(env, concurrency=3, extra=INCLUDE) as worker:
        queue = enqueuer(real_redis_url, real_redis)
        for conversation_id in (missing, also_missing):
            queue.enqueue(probes.CONVERSATION, (conversation_id,))
        wait_for(lambda: store.count() == 2, 30, "two parked jobs")
        entries = {entry.args[0]: entry for entry in store.list()}
        assert {e.attempts for e in entries.values()} == {1}
        assert {(e.error_type, e.status, e.code) for e in entries.values()} == {
            ("NotFound", 404, "not_found")}
        assert lines(worker, "task.retry") == []

        listed = cli(cli_env, "dlq", "list")
        assert listed.returncode == 0, listed.stderr
        rows = listed.stdout.splitlines()
        assert len(rows) == 2
        target = entries[missing]
        [row] = [r for r in rows if r.startswith(target.id)]
        assert f"{probes.CONVERSATION}({missing})" in row and "NotFound [404]" in row

        state = fake_intercom.state
        state.seed({"conversations": [{"id": missing, "subject": "Now it exists"}]})
        replayed = cli(cli_env, "dlq", "replay", target.id)
        assert replayed.returncode == 0, replayed.stderr
        new_task_id = replayed.stdout.split(" as task ")[-1].strip()
        wait_for(lambda: new_task_id in succeeded_ids(worker), 30, "the replayed job")
        runs = lines(worker, "task.started", task=probes.CONVERSATION, task_args=[missing])
        assert len(runs) == 2 and runs[1]["task_id"] == new_task_id
        assert [e.args for e in store.list()] == [[also_missing]]

        refused = cli(cli_env, "dlq", "purge", "--all")
        assert refused.returncode == 1 and "--yes" in refused.stderr
        assert store.count() == 1
        purged = cli(cli_env, "dlq", "purge", "--all", "--yes")
        assert purged.returncode == 0 and "1 job(s) purged" in purged.stdout
        assert store.count() == 0
        assert cli(cli_env, "dlq", "list").stdout == ""

    stats = fake_intercom.state.stats()
    assert stats["requests"] == {"GET /conversations/{conversation_id}": 3}
    assert stats["violations"] == []


# --- 4. a worker process killed mid-task ---------------------------------------------------


def test_killed_worker_process_job_runs_again_and_a_job_that_kills_is_parked(
    real_redis, real_redis_url
) -> None:
    env = worker_env(real_redis_url, TASK_MAX_DELIVERIES="2")
    store = DeadLetters(real_redis)
    started, finished = f"{probes.PREFIX}started:", f"{probes.PREFIX}finished:"
    with celery_worker(env, concurrency=3, extra=INCLUDE) as worker:
        queue = enqueuer(real_redis_url, real_redis)
        victim = queue.enqueue(probes.SLEEP, ("victim", 3.0)).task_id
        first_pid = int(wait_for(lambda: real_redis.lindex(started + "victim", 0), 30,
                                 "the sleeping job to start"))  # fmt: skip
        os.kill(first_pid, signal.SIGKILL)
        wait_for(lambda: real_redis.llen(finished + "victim") == 1, 60, "the job to run again")
        pids = [int(p) for p in real_redis.lrange(started + "victim", 0, -1)]
        assert len(pids) == 2 and pids[0] == first_pid != pids[1]
        assert int(real_redis.lindex(finished + "victim", 0)) == pids[1]
        wait_for(lambda: victim in succeeded_ids(worker), 10, "task.succeeded")
        assert [r["task_id"] for r in lines(worker, "task.started", task=probes.SLEEP)] == [
            victim, victim]
        assert store.count() == 0

        killer = queue.enqueue(probes.SELF_KILL, ("killer",)).task_id
        wait_for(lambda: store.count() == 1, 60, "the self-killing job to be parked")
        [entry] = store.list()
        assert (entry.task, entry.args, entry.error_type) == (probes.SELF_KILL, ["killer"],
                                                              "WorkerLost")  # fmt: skip
        assert entry.attempts == 2
        assert real_redis.llen(started + "killer") == 2  # ran twice, parked on the third
        # the store is written just before the log line: wait for the line, do not race it
        parked = wait_for(lambda: lines(worker, "task.parked", task_id=killer), 10,
                          "the task.parked line")  # fmt: skip
        assert [p.get("reason") for p in parked] == ["worker_lost"]
        wait_for(lambda: real_redis.llen("maintenance") == 0 and real_redis.hlen("unacked") == 0,
                 10, "no message left to deliver")  # fmt: skip
        assert worker.process.poll() is None  # the worker itself lives on


# --- 5. Sentry events carry the error, not the secrets ---------------------------------------


class SentrySink:
    """A local HTTP endpoint that records what the Sentry SDK posts (envelopes), decoded."""

    def __init__(self) -> None:
        self.received: list[str] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    raw = gzip.decompress(raw)
                elif encoding == "deflate":
                    raw = zlib.decompress(raw)
                elif encoding == "br":
                    import brotli  # only when the SDK found it installed

                    raw = brotli.decompress(raw)
                sink.received.append(raw.decode("utf-8", "replace"))
                body = b'{"id":"00000000000000000000000000000000"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events(self) -> list[dict[str, Any]]:
        """Every ``event`` item of every envelope."""
        found = []
        for envelope in list(self.received):
            items = envelope.split("\n")
            for header, payload in zip(items[1::2], items[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found

    def __enter__(self) -> SentrySink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def exception_of(event: dict[str, Any]) -> dict[str, Any] | None:
    """The ``ValueError`` of a Sentry event, if it carries one."""
    values = (event.get("exception") or {}).get("values") or []
    return next((v for v in values if v.get("type") == "ValueError"), None)


def test_sentry_event_names_the_task_and_error_but_no_token_secret_or_email(
    real_redis, real_redis_url
) -> None:
    token = "tok_sentry_7c1d0e5f9a2b"
    secrets = {token, "whsec-sentry-3b8e", "sk-sanity-sentry-55aa"}
    with SentrySink() as sink:
        env = worker_env(real_redis_url, SENTRY_DSN=f"http://publickey@127.0.0.1:{sink.port}/1",
                         INTERCOM_ACCESS_TOKEN=token, INTERCOM_CLIENT_SECRET="whsec-sentry-3b8e",
                         SANITY_PROJECT_ID="proj1", SANITY_DATASET="production",
                         SANITY_TOKEN="sk-sanity-sentry-55aa")  # fmt: skip
        with celery_worker(env, concurrency=3, extra=INCLUDE) as worker:
            queue = enqueuer(real_redis_url, real_redis)
            queue.enqueue(probes.FAIL, ("sentry-probe",))
            events = wait_for(lambda: [e for e in sink.events() if exception_of(e)], 30,
                              "a Sentry event for the failed task")  # fmt: skip
            assert lines(worker, "task.parked", task=probes.FAIL)
        raw = "\n".join(sink.received)  # everything sent, including log-message events

    event = events[0]
    exception = exception_of(event)
    assert exception["type"] == "ValueError"
    assert event["transaction"] == probes.FAIL
    assert "[email]" in exception["value"] and "token=[redacted]" in exception["value"]
    for secret in secrets:
        assert secret not in raw, secret
    assert "jane.doe@example.com" not in raw
    assert "@example.com" not in raw

