"""The stack each fault scenario owns and damages, the content it syncs, and webhook senders
that behave like Intercom and Sanity.

Why each scenario gets a stack of its own (unlike the integration tests' module-wide stack): a
scenario kills workers, restarts Redis or fills the queues while no worker runs, so it must
not share what it breaks. What is shared is how work is described (:class:`World`, which also
writes down the end state it must lead to) and how the end is judged (:mod:`.checks`).

Everything is real except the two vendors: gunicorn runs the receiver, Celery runs prefork
workers with the deployment's own command line, Redis is a real server. The fakes run in the
test process on background HTTP servers, so the test can inject faults and read their state.
Waiting is always polling for a condition with a bound, never sleeping for a result.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from app.signatures import intercom_signature, sanity_signature_header
from tests.faults.checks import TITLE_SEPARATOR, UNACKED, Expected, ExpectedArticle, check
from tests.processes import Proc, celery_worker, gunicorn, probe_env, quiet_for, wait_for
from tests.unit.articles.test_harness import (
    WEBHOOK_SECRET,
    Fakes,
    article_doc,
    block,
)
from workers.jobs import routing
from workers.jobs.connection import redis_client
from workers.ops.embedded_redis import free_port
from workers.sandbox import fake_intercom, fake_sanity
from workers.sandbox.samples import sample_notification
from workers.settings import load_settings

INTERCOM_SECRET = "faults-intercom-client-secret"
ADMIN_ID = "1295"  # the fake Intercom's admin
# Two tags, decided by text only: no rule needs the contact, so a job costs two calls.
RULES = """\
rules:
  - tag: billing
    when: {text_any: [refund, invoice]}
  - tag: bug
    when: {text_regex: "does not (work|load)"}
"""
TEXTS = {
    "billing": "Please refund my last invoice",
    "bug": "The export does not work",
}
BOTH = ("billing", "bug")

# Settings for fault runs, so that recovery takes seconds instead of the production minutes:
# retries come back within 3 s; the broker's visibility timeout is at its minimum, so a killed
# worker's jobs return after a minute; a short task time limit makes an article group's lock
# (time limit + 60 s) free itself a little over a minute after its holder was killed.
FAST_RETRIES = {
    "RETRY_BACKOFF_MAX": "3",
    "TASK_MAX_RETRIES": "40",
    "TASK_TIME_LIMIT": "8",
    "BROKER_VISIBILITY_TIMEOUT": "60",
    "WORKER_SHUTDOWN_TIMEOUT": "5",
    "INTERCOM_RATE_LIMIT_PER_MINUTE": "25000",
}


def connect(redis_url: str, redis_env: Mapping[str, str] | None = None,
            **options: Any) -> redis.Redis:  # fmt: skip
    """A client of the stack's Redis built as the processes build theirs (a Sentinel URL with
    ``redis_env``'s REDIS_SENTINEL_MASTER follows the master)."""
    return redis_client(load_settings({**(redis_env or {}), "REDIS_URL": redis_url}), **options)


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (a worker's pool), from ``/proc``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


# --- the stack ----------------------------------------------------------------------------------


class FaultStack:
    """Fake Intercom and fake Sanity in this process; receiver and workers as real processes.

    ``openapi`` validates every Intercom request body against the 2.14 description (costly
    per request: the 5,000-webhook burst turns it off). Sanity retries a delivery answered
    5xx/429 or not answered at all ``webhook_retries`` times, as the real one does for 30 min.
    """

    def __init__(self, redis_url: str, directory: Path, *, openapi: bool = True,
                 budget: int = 6000, webhook_retries: int = 60,
                 redis_env: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.redis_url = redis_url
        self.redis_env = dict(redis_env or {})  # e.g. REDIS_SENTINEL_MASTER
        self.redis = connect(redis_url, self.redis_env, socket_timeout=10,
                             socket_connect_timeout=2)  # fmt: skip
        self.port = free_port()
        self.receiver = f"http://127.0.0.1:{self.port}"
        self.fakes = Fakes(budget=budget, webhook_url=f"{self.receiver}/webhooks/sanity",
                           webhook_retries=webhook_retries, webhook_retry_delay=0.25,
                           openapi=openapi)  # fmt: skip
        self._exit = ExitStack()
        self._exit.callback(self.fakes.stop)
        self.rules_path = directory / "rules.yaml"
        self.rules_path.write_text(RULES)
        self.enrichment_path = directory / "enrichment.json"
        self.enrichment: dict[str, Any] = {}
        self.write_enrichment()
        self.workers: list[Proc] = []
        self.web: Proc | None = None

    @property
    def intercom(self) -> fake_intercom.FakeIntercomState:
        return self.fakes.intercom

    @property
    def sanity(self) -> fake_sanity.FakeSanityState:
        return self.fakes.sanity

    def write_enrichment(self) -> None:
        """The file enrichment source (workers re-read it when it changes)."""
        temporary = self.enrichment_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.enrichment))
        temporary.replace(self.enrichment_path)

    def env(self, **extra: str) -> dict[str, str]:
        """One environment for the receiver and the workers."""
        values = self.fakes.env(REDIS_URL=self.redis_url, INTERCOM_CLIENT_SECRET=INTERCOM_SECRET,
                                INTERCOM_ADMIN_ID=ADMIN_ID, RULES_PATH=str(self.rules_path),
                                ENRICHMENT_SOURCES="file",
                                ENRICHMENT_FILE=str(self.enrichment_path),
                                **FAST_RETRIES, **self.redis_env)  # fmt: skip
        # ``probe_env`` makes ``tests`` importable: the broken-guard scenario loads a module
        # from here into the worker.
        return probe_env(**(values | extra))

    # --- processes ------------------------------------------------------------------------

    def start_receiver(self) -> Proc:
        self.web = self._exit.enter_context(gunicorn(self.port, self.env()))
        return self.web

    def start_worker(self, name: str, concurrency: int = 3, extra: list[str] | None = None,
                     **env: str) -> Proc:  # fmt: skip
        worker = self._exit.enter_context(
            celery_worker(self.env(**env), concurrency=concurrency, name=name, extra=extra))
        self.workers.append(worker)
        # A configuration Celery refused leaves a worker "ready" on its defaults, with no task.
        assert routing.ARTICLES_SYNC in worker.output(), worker.output()[-3000:]
        return worker

    @staticmethod
    def pool(worker: Proc) -> list[int]:
        return children(worker.process.pid)

    def kill_child(self, worker: Proc, choose: Callable[[list[int]], int]) -> int | None:
        """SIGKILL one pool process of ``worker`` (``choose`` picks it); its pid, if any."""
        pool = self.pool(worker)
        if not pool:
            return None
        pid = choose(pool)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return pid

    @staticmethod
    def kill_worker(worker: Proc) -> None:
        """SIGKILL the worker's main process and its pool, as when its container dies."""
        if worker.process.poll() is None:
            os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=30)

    def close(self) -> None:
        self._exit.close()
        self.redis.close()

    # --- state ----------------------------------------------------------------------------

    def pending(self) -> dict[str, int]:
        """Work not finished: queued, delivered but unacknowledged, webhooks to deliver."""
        counts = {queue: int(self.redis.llen(queue)) for queue in routing.QUEUES}
        counts[UNACKED] = int(self.redis.hlen(UNACKED))
        counts["webhooks"] = self.sanity.stats()["webhooks"]["pending"]
        return {k: v for k, v in counts.items() if v}

    def idle(self) -> bool:
        try:
            return not self.pending()
        except redis.RedisError:
            return False

    def settle(self, timeout: float, quiet: float = 2.0) -> None:
        """Wait until nothing is pending for ``quiet`` seconds in a row."""
        if quiet_for(self.idle, quiet, timeout):
            return
        try:
            left = self.pending()
        except redis.RedisError as exc:
            left = {"redis": repr(exc)}  # type: ignore[dict-item]
        raise AssertionError(f"the stack did not settle within {timeout}s: pending {left}\n"
                             f"{self.tails()}")  # fmt: skip

    def check(self, expected: Expected) -> list[str]:
        return check(self.intercom, self.sanity, self.redis, expected)

    def tails(self, chars: int = 2500) -> str:
        """The end of each process's log, for failure messages."""
        procs = ([self.web] if self.web else []) + self.workers
        return "\n".join(f"--- {p.name} ({p.log_path.name}):\n{p.output()[-chars:]}"
                         for p in procs)  # fmt: skip

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for w in self.workers for line in w.json_lines()
                if line.get("event") == event]  # fmt: skip


@contextmanager
def fault_stack(redis_url: str, directory: Path, **options: Any) -> Iterator[FaultStack]:
    """A :class:`FaultStack` on an emptied Redis database, stopped and emptied again after."""
    client = connect(redis_url, options.get("redis_env"))
    client.flushdb()
    try:
        stack = FaultStack(redis_url, directory, **options)
        try:
            yield stack
        finally:
            stack.close()
            with suppress(redis.RedisError):  # a scenario may have stopped its own Redis
                client.flushdb()
    finally:
        client.close()


# --- webhook senders ----------------------------------------------------------------------------


@dataclass
class Answers:
    """What the receiver answered, over every attempt of every delivery."""

    statuses: dict[int, int] = field(default_factory=dict)
    connection_errors: int = 0
    resent: int = 0
    refused: list[str] = field(default_factory=list)  # 4xx: the sender gives up, as vendors do
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def failed_attempts(self) -> int:
        return self.connection_errors + sum(n for s, n in self.statuses.items() if s >= 500)


class Sender:
    """Signed deliveries as Intercom and Sanity make them, each re-sent after a 5xx, a 429 or
    no answer until it gets one (Intercom retries, Sanity retries for 30 minutes).

    Every Sanity attempt is signed at a millisecond of its own. The receiver accepts a
    signature value once (README, "Routing"), and a value is the body plus the millisecond: two
    deliveries of one body signed in the same millisecond from two threads would be one to the
    receiver. Scenarios count each idempotency key as one event, so they need the stamps apart.
    """

    def __init__(self, receiver: str, *, patience: float = 90.0) -> None:
        self.receiver = receiver
        self.patience = patience
        self.answers = Answers()
        self._local = threading.local()
        self._stamp_lock = threading.Lock()
        self._last_stamp = 0

    def _stamp(self) -> int:
        """The signing time in milliseconds: now, or one past the last stamp given."""
        with self._stamp_lock:
            self._last_stamp = max(int(time.time() * 1000), self._last_stamp + 1)
            return self._last_stamp

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _post(self, path: str, body: bytes, headers: Callable[[], dict[str, str]]) -> int:
        deadline = time.monotonic() + self.patience
        while True:
            try:
                answer = self._session().post(self.receiver + path, data=body, headers=headers(),
                                              timeout=10)  # fmt: skip
                status = answer.status_code
                self.answers.count(status)
                if status < 500 and status != 429:
                    if status >= 400:
                        with self.answers.lock:
                            self.answers.refused.append(f"{path} {status} {answer.text[:200]}")
                    return status
            except requests.RequestException:
                with self.answers.lock:
                    self.answers.connection_errors += 1
                self._local.session = None
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}: no answer but errors for {self.patience}s")
            with self.answers.lock:
                self.answers.resent += 1
            time.sleep(0.2)

    def intercom(self, topic: str, item_id: str, notification_id: str) -> int:
        envelope = sample_notification(topic, item_id)
        envelope["id"] = notification_id
        body = json.dumps(envelope).encode()
        signature = intercom_signature(INTERCOM_SECRET, body)
        return self._post("/webhooks/intercom", body, lambda: {
            "content-type": "application/json", "x-hub-signature": signature})  # fmt: skip

    def sanity(self, document: dict[str, Any], key: str, operation: str = "update") -> int:
        body = json.dumps(document).encode()

        def headers() -> dict[str, str]:  # signed at each attempt, as Sanity does
            return {"content-type": "application/json", "idempotency-key": key,
                    "sanity-operation": operation, "sanity-document-id": document["_id"],
                    "sanity-dataset": "production",
                    "sanity-webhook-signature": sanity_signature_header(
                        WEBHOOK_SECRET, self._stamp(), body)}  # fmt: skip

        return self._post("/webhooks/sanity", body, headers)

    def many(self, deliveries: list[Callable[[], int]], threads: int = 8) -> list[int]:
        """Run deliveries concurrently (each a ``lambda: sender.intercom(...)``)."""
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda deliver: deliver(), deliveries))


# --- the content --------------------------------------------------------------------------------


@dataclass
class World:
    """The content a scenario creates, and the Intercom state it must lead to.

    Every change goes through the fakes as an editor or a customer would make it, and updates
    :attr:`expected` at the same moment: the expectation is written down from the inputs, never
    read back from what the workers did.
    """

    stack: FaultStack
    name: str
    expected: Expected = field(default_factory=Expected)
    revisions: dict[str, int] = field(default_factory=dict)
    _next: int = 0

    # --- articles -------------------------------------------------------------------------

    @staticmethod
    def title(document_id: str, revision: int) -> str:
        return f"{document_id}{TITLE_SEPARATOR}revision {revision}"

    @staticmethod
    def text(document_id: str, revision: int) -> str:
        return f"Revision {revision} of {document_id}, with the steps that work."

    def document_ids(self, count: int) -> list[str]:
        first, self._next = self._next, self._next + count
        return [f"{self.name}-d{n:04d}" for n in range(first, first + count)]

    def _expect(self, document_id: str, state: str = "published", in_sanity: bool = True) -> None:
        revision = self.revisions[document_id]
        self.expected.articles[document_id] = ExpectedArticle(
            self.title(document_id, revision), self.text(document_id, revision), state,
            in_sanity)  # fmt: skip

    def document(self, document_id: str, revision: int) -> dict[str, Any]:
        return article_doc(document_id, self.title(document_id, revision),
                           text=self.text(document_id, revision))  # fmt: skip

    def publish(self, document_id: str, *, notify: bool = True) -> dict[str, Any]:
        """An editor publishes a new document (``notify=False``: Sanity sends no webhook)."""
        self.revisions[document_id] = 1
        doc = self.document(document_id, 1)
        if notify:
            published = self.stack.sanity.publish(doc)
        else:
            self.stack.sanity.seed([doc])
            published = self.stack.sanity.document(document_id) or {}
        self._expect(document_id)
        return published

    def edit(self, document_id: str) -> dict[str, Any]:
        """An editor changes title and body and publishes (a patch: other fields stay)."""
        revision = self.revisions[document_id] = self.revisions[document_id] + 1
        text = self.text(document_id, revision)
        edited = self.stack.sanity.edit(document_id, {
            "title": self.title(document_id, revision), "body": [block(text)]})  # fmt: skip
        self._expect(document_id)
        return edited

    def unpublish(self, document_id: str) -> None:
        """An editor unpublishes: the article must end as a draft (the default policy)."""
        assert self.stack.sanity.unpublish(document_id)
        self._expect(document_id, state="draft", in_sanity=False)

    # --- conversations and contacts -----------------------------------------------------

    def conversations(self, count: int) -> list[str]:
        """New conversations; each first message matches one rule, or both."""
        kinds = [(BOTH[n % 3],) if n % 3 < 2 else BOTH for n in range(count)]
        seeds = [{"subject": f"{self.name} question {n}",
                  "body": "<p>" + ". ".join(TEXTS[t] for t in tags) + ".</p>",
                  "author": {"type": "user", "id": f"{self.name}-u{n}"}}
                 for n, tags in enumerate(kinds)]  # fmt: skip
        ids = [str(i) for i in self.stack.intercom.seed({"conversations": seeds})["conversations"]]
        for conversation_id, tags in zip(ids, kinds, strict=True):
            self.expected.conversation_tags[conversation_id] = sorted(tags)
        return ids

    def reply(self, conversation_id: str, tag: str) -> None:
        """The customer replies with text that matches ``tag`` (a ``replied`` webhook follows)."""
        self.stack.intercom.add_conversation_part(conversation_id, f"<p>{TEXTS[tag]}.</p>")
        tags = set(self.expected.conversation_tags[conversation_id]) | {tag}
        self.expected.conversation_tags[conversation_id] = sorted(tags)

    def contacts(self, count: int) -> list[str]:
        """New contacts that the enrichment file knows (by external id)."""
        start = len(self.expected.contact_attributes)
        ids = []
        for n in range(start, start + count):
            contact_id, external_id = f"{self.name}-c{n:05d}", f"{self.name}-usr{n}"
            attributes = {"tier": "gold" if n % 2 else "silver", "seats": n + 1}
            self.stack.enrichment[external_id] = {"contact": attributes}
            self.stack.intercom.seed({"contacts": [{
                "id": contact_id, "role": "user", "external_id": external_id,
                "name": f"Contact {n}"}]})  # fmt: skip
            self.expected.contact_attributes[contact_id] = attributes
            ids.append(contact_id)
        self.stack.write_enrichment()
        return ids


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """``wait_for`` that treats a Redis error (Redis restarting) as "not yet"."""

    def safe() -> Any:
        try:
            return predicate()
        except redis.RedisError:
            return None

    return wait_for(safe, timeout, what)


def redis_run_id(client: redis.Redis) -> str:
    return str(client.info("server")["run_id"])


# --- killing at the worst moment ----------------------------------------------------------------

VISIBILITY = float(FAST_RETRIES["BROKER_VISIBILITY_TIMEOUT"])


def hold_next_create(stack: FaultStack, seconds: float = 8.0) -> None:
    """Make Intercom create the next article but hold its answer for ``seconds``."""
    stack.intercom.inject_delay(seconds, 1, path_prefix="/articles", method="POST")


def kill_pool_during_held_create(stack: FaultStack, worker: Proc) -> list[int]:
    """Once the held ``POST /articles`` has created its article, SIGKILL every pool process of
    ``worker``: the job dies after Intercom acted and before anything recorded the article's id
    (the case the intent-and-adopt guard exists for). Returns the pids killed."""

    def created() -> bool:
        stats = stack.intercom.stats()
        posts = stats["requests"].get("POST /articles", 0)
        return stats["delayed"] >= 1 and len(stack.intercom.snapshot()["articles"]) >= posts

    wait_for(created, 60, "the held POST /articles to create its article")
    pool = stack.pool(worker)
    for pid in pool:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pool


def drained(stack: FaultStack) -> bool:
    """No job waits in a queue and no webhook waits to be delivered (some may be in hand)."""
    pending = stack.pending()
    return not any(k in pending for k in (*routing.QUEUES, "webhooks"))
