"""Shared parts of the stack benchmarks: real processes against the project's fakes, measured.

Not a benchmark itself. ``e2e_latency.py``, ``drain.py`` and ``calls_per_event.py`` use it so
that all three run exactly what a deployment runs (the gunicorn receiver and Celery workers
started with the commands of ``workers/ops/processes.py``, through ``tests/processes.py``) against
the fakes the integration tests use (``tests/unit/articles/test_harness.py``: the
OpenAPI-validating fake Intercom and the fake Sanity that fires signed webhooks), and measure
idleness, memory and CPU the same way.

Redis: ``REDIS_URL`` when set (the run flushes that database at start and at the end, so give
it one of its own), else an embedded ``redis-server`` (``workers.ops.embedded_redis``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import psutil
import redis
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.signatures import intercom_signature, sanity_signature_header
from tests.processes import Proc, base_env, celery_worker, gunicorn
from tests.unit.articles.test_harness import AUTHOR_ID, WEBHOOK_SECRET, Fakes
from workers.jobs import routing
from workers.jobs.dead_letters import DeadLetters
from workers.ops.embedded_redis import EmbeddedRedis, free_port
from workers.sandbox.samples import sample_notification

INTERCOM_CLIENT_SECRET = "bench-intercom-client-secret"
MB = 1024 * 1024
# kombu's Redis transport keeps every delivered, not yet acknowledged message (a running task,
# a task waiting for its countdown) in this hash; with late acks it empties only when done.
UNACKED_KEY = "unacked"


def redis_url(stack: ExitStack) -> str:
    """``REDIS_URL`` if set, else an embedded Redis that ``stack`` stops."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    return stack.enter_context(EmbeddedRedis()).url


@dataclass
class Stack:
    """The running pieces: fakes and Redis in this process, receiver and workers as children."""

    fakes: Fakes
    redis: redis.Redis
    env: dict[str, str]
    receiver: Proc
    receiver_url: str
    workers: list[Proc] = field(default_factory=list)

    @property
    def dead_letters(self) -> int:
        return DeadLetters(self.redis).count()

    def busy(self) -> str | None:
        """What is still pending (a queued or unacknowledged job, a webhook), or None."""
        queued = sum(self.redis.llen(q) for q in routing.QUEUES)
        if queued:
            return f"{queued} queued"
        unacked = self.redis.hlen(UNACKED_KEY)
        if unacked:
            return f"{unacked} in progress"
        pending = self.fakes.sanity.stats()["webhooks"]["pending"]
        if pending:
            return f"{pending} Sanity webhooks pending"
        return None

    def wait_idle(self, timeout: float, quiet: float = 1.0, poll: float = 0.2) -> float | None:
        """Wait until nothing is pending for ``quiet`` seconds; return when it became idle
        (``time.monotonic()``), or None on timeout."""
        deadline = time.monotonic() + timeout
        calm_since: float | None = None
        while time.monotonic() < deadline:
            if self.busy() is None:
                calm_since = calm_since or time.monotonic()
                if time.monotonic() - calm_since >= quiet:
                    return calm_since
            else:
                calm_since = None
            time.sleep(poll)
        return None

    def worker_events(self, event: str) -> list[dict[str, Any]]:
        """Every worker's JSON log lines named ``event``."""
        return [line for w in self.workers for line in w.json_lines()
                if line.get("event") == event]  # fmt: skip


def stack_problems(bench: Stack) -> list[str]:
    """What makes any run invalid, whatever it measured: OpenAPI violations, parked jobs."""
    problems = []
    violations = bench.fakes.intercom.violations()
    if violations:
        problems.append(f"{len(violations)} OpenAPI violations, first: {violations[0]}")
    if bench.dead_letters:
        problems.append(f"{bench.dead_letters} jobs parked in the dead-letter store")
    return problems


def exit_code(problems: Sequence[str]) -> int:
    """0 for a valid run; otherwise say why on stderr and return 1."""
    if problems:
        print("INVALID RUN: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


def stack_env(url: str, fakes: Fakes, **extra: str) -> dict[str, str]:
    """The deployment's environment pointed at the fakes (every feature on)."""
    return base_env(REDIS_URL=url, INTERCOM_CLIENT_SECRET=INTERCOM_CLIENT_SECRET,
                    INTERCOM_ADMIN_ID=AUTHOR_ID, **fakes.env(**extra))  # fmt: skip


def start_stack(stack: ExitStack, *, budget_per_window: int, receiver_workers: int = 2,
                **extra_env: str) -> Stack:  # fmt: skip
    """Redis (flushed), both fakes (the fake Sanity's webhook aimed at the receiver) and the
    receiver; no worker yet (see :func:`start_workers`)."""
    url = redis_url(stack)
    client = redis.Redis.from_url(url)
    client.flushdb()
    stack.callback(client.close)
    stack.callback(client.flushdb)
    port = free_port()
    receiver_url = f"http://127.0.0.1:{port}"
    fakes = Fakes(budget=budget_per_window, webhook_url=receiver_url + "/webhooks/sanity")
    stack.callback(fakes.stop)
    env = stack_env(url, fakes, **extra_env)
    receiver = stack.enter_context(gunicorn(port, env, workers=receiver_workers))
    return Stack(fakes, client, env, receiver, receiver_url)


def set_intercom_latency(fakes: Fakes, seconds: float) -> None:
    """Make each fake Intercom API request take ``seconds`` longer, as a network round trip
    would: half before the fake applies the request (a delay in front of the Flask app's WSGI
    callable), half after it (the fake's own latency, which it adds to the answer)."""
    half = max(0.0, seconds) / 2
    fakes.intercom.set_latency(half)
    app = fakes.intercom_app
    inner = app.wsgi_app

    def delayed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if half and not str(environ.get("PATH_INFO", "")).startswith("/_fake"):
            time.sleep(half)
        return inner(environ, start_response)

    app.wsgi_app = delayed  # type: ignore[method-assign]


def start_workers(stack: ExitStack, bench: Stack, count: int, concurrency: int) -> list[Proc]:
    """Start ``count`` worker processes at the same time; return when all are ready."""
    managers = [celery_worker(bench.env, concurrency=concurrency, name=f"bench-w{i + 1}")
                for i in range(count)]  # fmt: skip
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(m.__enter__) for m in managers]
    failure: BaseException | None = None
    for manager, future in zip(managers, futures, strict=True):
        try:
            bench.workers.append(future.result())
            stack.push(manager)
        except Exception as exc:  # the others still get stopped by ``stack``
            failure = failure or exc
    if failure is not None:
        raise failure
    return bench.workers


# --- webhooks as the vendors send them ----------------------------------------------------------


def post_sanity(session: requests.Session, receiver_url: str, document: Mapping[str, Any],
                operation: str = "create", key: str | None = None) -> int:  # fmt: skip
    """One signed Sanity delivery of ``document``; the receiver's status code."""
    body = json.dumps(document).encode()
    headers = {"content-type": "application/json",
               "idempotency-key": key or f"bench-{uuid.uuid4()}",
               "sanity-operation": operation, "sanity-document-id": document["_id"],
               "sanity-dataset": "production",
               "sanity-webhook-signature": sanity_signature_header(
                   WEBHOOK_SECRET, int(time.time() * 1000), body)}  # fmt: skip
    answer = session.post(receiver_url + "/webhooks/sanity", data=body, headers=headers,
                          timeout=30)  # fmt: skip
    return answer.status_code


def post_intercom(session: requests.Session, receiver_url: str, topic: str, item_id: str,
                  notification_id: str | None = None) -> int:  # fmt: skip
    """One signed Intercom notification about ``item_id``; the receiver's status code."""
    event = sample_notification(topic, item_id)
    event["id"] = notification_id or f"notif_bench_{uuid.uuid4().hex}"
    body = json.dumps(event).encode()
    headers = {"content-type": "application/json",
               "X-Hub-Signature": intercom_signature(INTERCOM_CLIENT_SECRET, body)}
    answer = session.post(receiver_url + "/webhooks/intercom", data=body, headers=headers,
                          timeout=30)  # fmt: skip
    return answer.status_code


# --- processes: memory and CPU ------------------------------------------------------------------


def tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants that are alive now."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / MB


def cpu_seconds(processes: Iterable[psutil.Process]) -> float:
    """User + system CPU seconds of live processes (children they already reaped included)."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


class CpuMeter:
    """Per-component CPU seconds between :meth:`start` and :meth:`stop`, and the machine's CPU
    use sampled once a second meanwhile (all processes, other work on the machine included)."""

    def __init__(self, components: Mapping[str, Callable[[], list[psutil.Process]]]) -> None:
        self.components = components
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.samples: list[tuple[float, float]] = []  # (time.time() at the end, percent)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.before = {name: cpu_seconds(get()) for name, get in self.components.items()}
        psutil.cpu_percent(None)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append((time.time(), psutil.cpu_percent(None)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.used = {name: cpu_seconds(get()) - self.before.get(name, 0.0)
                     for name, get in self.components.items()}  # fmt: skip

    def machine_percent(self, start: float, end: float) -> float:
        """Mean machine CPU use (percent of all cores) over the samples within [start, end]
        (``time.time()``); NaN when no sample falls inside."""
        inside = [pct for at, pct in self.samples if start + 1.0 <= at <= end]
        return sum(inside) / len(inside) if inside else float("nan")


# --- numbers and tables -------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def middle(values: Sequence[float]) -> float:
    return median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def routes(counts: Mapping[str, int]) -> str:
    """``{"POST /articles": 2}`` as ``POST /articles x2`` (``none`` when empty)."""
    parts = [f"{route} x{n}" for route, n in sorted(counts.items()) if n]
    return ", ".join(parts) or "none"


def diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    """Per-key increase from ``before`` to ``after``."""
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def keep_logs_on_failure(bench: Stack | None, valid: bool) -> None:
    """Delete the child processes' log files after a valid run; name them after an invalid one."""
    if bench is None:
        return
    for proc in (bench.receiver, *bench.workers):
        if valid:
            proc.log_path.unlink(missing_ok=True)
        else:
            print(f"log of {proc.name}: {proc.log_path}", file=sys.stderr)
