"""Every metric the service exports, defined once, and how a process publishes them.

Names and labels follow Prometheus' conventions (DESIGN §4): snake_case under
``intercom_sync_``, base units (``_seconds``), ``_total`` on counters, and no ids or other
unbounded values as label values — routes are path templates (``/articles/{id}``), outcomes and
statuses come from fixed sets, and anything else is counted as ``other``.

Gunicorn runs several receiver processes and Celery's prefork pool several task processes, so
``prometheus_client`` runs in its multiprocess mode: each process writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` and a scrape adds the files up. The library chooses that mode when it
is first imported, so this module settles the directory before importing it
(:mod:`workers.jobs.metrics_files`, which also gives each server's main process a directory of
its own before it forks, so that two servers never add up each other's files — web and worker on
one host, or a restarted server and the files its predecessor left: the library's docs ask for a
directory wiped at every start).

Gauges in multiprocess mode need a mode that aggregates across processes: the one gauge a
process sets (tasks in progress) is ``livesum``, so no sample ever carries a ``pid`` label, and
the files of processes that died are dropped (``mark_dead`` from the servers' hooks, and
``prune_dead`` at every scrape for processes killed without a hook running; both in
:mod:`workers.jobs.metrics_files`). Figures that live
in Redis (queue lengths, dead letters, the rate-limit budget, beat jobs' last success) are not
recorded by processes at all: a collector reads them at scrape time (``SCRAPED`` names them).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import urlsplit

from workers.jobs.metrics_files import (
    directory,
    ensure_directory,
    prune_dead,
)
from workers.jobs.pids import current_pid

ensure_directory()

# Imported after the directory is settled: the library picks multiprocess mode at import.
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as _values  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402

# Multiprocess mode for every metric below, whatever mode the library chose if something imported
# it before the directory was settled (a test helper, another library). The library asks for the
# process's id on every sample it writes, to notice a fork: it gets it from a cache the fork hook
# refreshes (``current_pid``), not from a system call three times per webhook.
_values.ValueClass = _values.MultiProcessValue(process_identifier=current_pid)

from workers.settings import Secret  # noqa: E402

CONTENT_TYPE = CONTENT_TYPE_LATEST

# --------------------------------------------------------------------------- definitions
# ``registry=None``: these are never exposed from a process's own memory, only through the
# multiprocess files (the library warns that registering them too duplicates samples).

WEBHOOKS = Counter(
    "intercom_sync_webhooks_total",
    "Webhook requests answered, by source and outcome (the answer's status or error word: "
    "queued, duplicate, ignored, pong, invalid_signature, invalid_body, too_large, "
    "unavailable, not_configured, ...).",
    ["source", "outcome"],
    registry=None,
)
WEBHOOK_DURATION = Histogram(
    "intercom_sync_webhook_duration_seconds",
    "Time from a webhook request's arrival to its answer.",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=None,
)
TASKS = Counter(
    "intercom_sync_tasks_total",
    "Task runs, by task and outcome: succeeded, retried, parked (dead-letter store), "
    "requeued (Redis unreachable, the message goes back to its queue) or dropped (its "
    "feature is switched off).",
    ["task", "outcome"],
    registry=None,
)
TASK_DURATION = Histogram(
    "intercom_sync_task_duration_seconds",
    "Run time of one task attempt, whatever its outcome.",
    ["task"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
    registry=None,
)
TASKS_IN_PROGRESS = Gauge(
    "intercom_sync_tasks_in_progress",
    "Task attempts running now, summed over the live worker processes.",
    ["task"],
    multiprocess_mode="livesum",
    registry=None,
)
INTERCOM_REQUESTS = Counter(
    "intercom_sync_intercom_requests_total",
    "Requests sent to the Intercom REST API, by method, route (path template) and status "
    "(the HTTP status, or 'error' when no answer came).",
    ["method", "route", "status"],
    registry=None,
)
INTERCOM_REQUEST_DURATION = Histogram(
    "intercom_sync_intercom_request_duration_seconds",
    "Time Intercom took to answer a request (after the rate limiter let it go).",
    ["method", "route"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0),
    registry=None,
)
RATE_LIMIT_EXHAUSTED = Counter(
    "intercom_sync_rate_limit_exhausted_total",
    "Calls that found the shared budget spent for longer than the limiter waits; the job is "
    "retried later.",
    ["service"],
    registry=None,
)

RECORDED = (WEBHOOKS, WEBHOOK_DURATION, TASKS, TASK_DURATION, TASKS_IN_PROGRESS,
            INTERCOM_REQUESTS, INTERCOM_REQUEST_DURATION, RATE_LIMIT_EXHAUSTED)  # fmt: skip

# Read from Redis by the worker's collector at scrape time: name → (type, help, labels).
SCRAPED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "intercom_sync_queue_length": (
        "gauge", "Jobs waiting in a queue.", ("queue",)),
    "intercom_sync_jobs_unacknowledged": (
        "gauge", "Jobs delivered to a worker and not yet acknowledged: running, or holding a "
        "retry countdown.", ()),
    "intercom_sync_dead_letters": (
        "gauge", "Jobs parked in the dead-letter store.", ()),
    "intercom_sync_rate_limit_remaining": (
        "gauge", "Calls left in the shared budget's current window.", ("service",)),
    "intercom_sync_rate_limit_window_limit": (
        "gauge", "Calls allowed in the current window: the budget, lowered by the service's "
        "X-RateLimit-Remaining.", ("service",)),
    "intercom_sync_beat_last_success_age_seconds": (
        "gauge", "Seconds since a scheduled (beat) job last succeeded; +Inf if it never did.",
        ("task",)),
    "intercom_sync_redis_up": (
        "gauge", "1 when this scrape could read Redis, else 0 (the figures above are then "
        "missing).", ()),
}  # fmt: skip


def definitions() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every exported metric family: name → (type, label names)."""
    # The library keeps a counter's name without ``_total``; it is exposed with it.
    found = {m._name + ("_total" if m._type == "counter" else ""): (m._type, tuple(m._labelnames))
             for m in RECORDED}  # fmt: skip
    found.update({name: (kind, labels) for name, (kind, _, labels) in SCRAPED.items()})
    return found


# --------------------------------------------------------------------------- recording

logger = logging.getLogger("intercom_sync.metrics")
F = TypeVar("F", bound=Callable[..., Any])


def _never_raises(fn: F) -> F:
    """Metrics must not change what the service does: a webhook whose job is queued is
    answered 202 even if its sample cannot be written (the failure is logged instead)."""

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            logger.warning("metrics: %s failed: %s", fn.__name__, type(exc).__name__)
            return None

    return guarded  # type: ignore[return-value]


_WORD = re.compile(r"^[a-z][a-z0-9_]{0,31}\Z")
WEBHOOK_SOURCES = ("intercom", "sanity")


def word(value: object) -> str:
    """``value`` as a label value if it is a short lower-case word, else ``other``: outcomes
    come from the code's own fixed strings, and this keeps it that way."""
    return value if isinstance(value, str) and _WORD.fullmatch(value) else "other"


# The series each (source, outcome) answer writes to, by the values as given: ``labels()`` looks
# them up under a lock on every call, and every webhook answer comes here. Bounded: a handful of
# sources and outcomes.
_webhook_series: dict[tuple[str, str], tuple[Any, Any]] = {}


@_never_raises
def webhook_answered(source: object, outcome: object, seconds: float | None) -> None:
    """Count one webhook answer (and its duration, when known)."""
    series = _webhook_series.get((source, outcome))
    if series is None:
        key = (source if source in WEBHOOK_SOURCES else "other", word(outcome))
        series = (WEBHOOKS.labels(*key), WEBHOOK_DURATION.labels(key[0]))
        if len(_webhook_series) < 256:
            _webhook_series[(source, outcome)] = series
    series[0].inc()
    if seconds is not None:
        series[1].observe(max(0.0, seconds))


@_never_raises
def task_finished(task: str, outcome: str) -> None:
    TASKS.labels(task, outcome).inc()


@contextmanager
def task_running(task: str) -> Iterator[None]:
    """Around one attempt of ``task``: in progress while it runs, then its duration."""
    _task_started(task)
    started = time.monotonic()
    try:
        yield
    finally:
        _task_ended(task, time.monotonic() - started)


@_never_raises
def _task_started(task: str) -> None:
    TASKS_IN_PROGRESS.labels(task).inc()


@_never_raises
def _task_ended(task: str, seconds: float) -> None:
    TASKS_IN_PROGRESS.labels(task).dec()
    TASK_DURATION.labels(task).observe(seconds)


@_never_raises
def intercom_request(method: str, route: str, status: int | None, seconds: float) -> None:
    INTERCOM_REQUESTS.labels(method, route, "error" if status is None else str(status)).inc()
    INTERCOM_REQUEST_DURATION.labels(method, route).observe(seconds)


@_never_raises
def rate_limit_exhausted(service: str) -> None:
    RATE_LIMIT_EXHAUSTED.labels(service).inc()


# --------------------------------------------------------------------------- the directory


# --------------------------------------------------------------------------- exposition


def exposition(extra: Iterable[Any] = ()) -> bytes:
    """The text format of every process's samples in this server's directory, plus the
    ``extra`` collectors (read at this moment)."""
    path = directory()
    prune_dead(path)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


def authorized(header: str | None, token: Secret | None) -> bool:
    """Whether ``header`` is ``Bearer <token>``; always true without a token. Constant time:
    both sides are hashed first, so not even the length is compared early."""
    if token is None:
        return True
    scheme, _, credentials = (header or "").strip().partition(" ")
    given = hashlib.sha256(credentials.strip().encode("utf-8", "replace")).digest()
    wanted = hashlib.sha256(token.reveal().encode()).digest()
    return hmac.compare_digest(given, wanted) and scheme.lower() == "bearer"


UNAUTHORIZED_BODY = (b'{"error": "unauthorized", "reason": '
                     b'"send Authorization: Bearer <METRICS_TOKEN>"}')  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    """``GET /metrics`` (with the bearer token when one is set); nothing else."""

    server: MetricsServer
    timeout = 10  # a client that stalls mid-request is dropped (bounded time per connection)

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/metrics":
            self._answer(404, b'{"error": "not_found"}', "application/json")
        elif not authorized(self.headers.get("Authorization"), self.server.token):
            self._answer(401, UNAUTHORIZED_BODY, "application/json",
                         {"WWW-Authenticate": 'Bearer realm="metrics"'})  # fmt: skip
        else:
            self._answer(200, exposition(self.server.collectors), CONTENT_TYPE)

    def _answer(self, status: int, body: bytes, kind: str,
                headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


class MetricsServer(ThreadingHTTPServer):
    """One thread per connection, at most ``max_connections`` at once (each lives at most the
    handler's timeout): connections beyond that are closed at once, so clients that stall
    cannot pile up threads in the worker's main process."""

    daemon_threads = True
    max_connections = 32

    def __init__(self, address: tuple[str, int], token: Secret | None,
                 collectors: Iterable[Any]) -> None:  # fmt: skip
        self.token = token
        self.collectors = list(collectors)
        self._slots = threading.BoundedSemaphore(self.max_connections)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(host: str, port: int, token: Secret | None, collectors: Iterable[Any] = ()
          ) -> MetricsServer:  # fmt: skip
    """Serve ``GET /metrics`` on ``host:port`` from a daemon thread (raises ``OSError`` when
    the port cannot be bound)."""
    server = MetricsServer((host, port), token, collectors)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server

