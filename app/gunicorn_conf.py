"""The receiver's gunicorn settings, in one place.

The Procfile, ``docker-compose.yml``, the Dockerfile and ``intercom-sync dev`` all run
``gunicorn --config python:app.gunicorn_conf 'app:create_app()'`` (``workers/ops/processes.py``);
command-line options given after it (``--bind``, ``--workers``) still win. gunicorn reads
``PORT`` and ``WEB_CONCURRENCY`` from the environment itself.

Why ``gevent``: the receiver spends most of each request waiting (on the client's bytes, on one
Redis round trip), and a client that sends slowly must not hold what answers the next webhook.
A sync worker is held by each slow connection (four slow clients stopped a five-worker receiver)
and ``gthread`` still gives each connection being read a thread, so its pool of threads is what
slow clients exhaust; with ``gevent`` an open connection costs a greenlet, up to
``worker_connections`` per worker. gunicorn bounds the reading of request headers with the
keep-alive timeout on this worker class, and the receiver bounds the body read with
``WEBHOOK_BODY_TIMEOUT_SECONDS`` (``app/body.py``). docs/BENCHMARKS.md has the measurements.

Metrics: every receiver process writes its samples to files in one directory that
``GET /metrics`` adds up; the master settles that directory before it forks (``on_starting``) and
drops a dead worker's live-gauge files (``child_exit``), through
:mod:`workers.jobs.metrics_files`, which needs only the standard library.

This module must stay light: gunicorn's master imports it before forking, and the gevent worker
monkey-patches the standard library only after the fork. Anything imported here before that
(``urllib3``, ``redis``, Sentry) keeps unpatched ``ssl`` classes and fails later with a
``RecursionError`` (gevent/gevent#1016); a unit test checks what importing this module loads.
"""

from __future__ import annotations

import json
from typing import Any

worker_class = "gevent"
# Open connections per worker process (each a greenlet); beyond it the worker stops accepting.
worker_connections = 1000
# A worker whose event loop is blocked this long is restarted. Every request is bounded well
# below it (body size and read time, JSON depth, a 2 s Redis timeout).
timeout = 30
# In-flight webhooks finish on SIGTERM (each takes milliseconds; Intercom waits 5 s).
graceful_timeout = 20
# Also the limit on reading one request's headers with gevent workers (a header sent a byte at
# a time is dropped after it).
keepalive = 5
# gunicorn's defaults, written down because the JSON error answers below describe them.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
# gunicornc's control socket is one path per user: several receivers on one host would fight
# over it, and the receiver does not use it.
control_socket_disable = True
# No access log: the receiver writes one line per webhook itself, with the ids an access log
# cannot show.
accesslog = None


def json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's error page for requests it refuses before the app sees them, as JSON.

    gunicorn answers a bad request line, bad or too many headers, a bad chunked encoding or an
    error outside the app with an HTML page (``gunicorn.util.write_error``); webhook senders get
    JSON from every other path, so this writes the same status with a JSON body. A ``500`` (an
    error outside the app, such as a worker stopping mid-request) becomes the ``503`` the app
    itself answers for unexpected errors: the sender should retry.
    """
    from gunicorn import util

    if status_int == 500:
        status_int, reason = 503, "Service Unavailable"
        body = {"error": "internal_error", "reason": "unexpected error; retry later"}
    else:
        body = {"error": reason.lower().replace(" ", "_"), "reason": mesg or reason}
    payload = json.dumps(body).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n")  # fmt: skip
    util.write_nonblock(sock, head.encode("latin-1") + payload)


def post_worker_init(worker: Any) -> None:
    """Install :func:`json_error` in the worker process (gunicorn calls ``util.write_error``)."""
    from gunicorn import util

    util.write_error = json_error


def on_starting(server: Any) -> None:
    """In the master, before the first fork: a metrics directory of this server's own. One that
    cannot be made stops the server here, in one line naming the variable."""
    import sys

    from workers.jobs.metrics_files import DIRECTORY_ENV, claim_directory

    try:
        claim_directory("web")
    except OSError as exc:
        # as the settings check words it (workers.settings), which runs only after the fork
        print(f"intercom-sync: {DIRECTORY_ENV}: cannot create the directory "
              f"({exc.strerror or exc}).", file=sys.stderr, flush=True)  # fmt: skip
        raise SystemExit(2) from None


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited (recycled, crashed or stopped): drop its live-gauge files."""
    from workers.jobs.metrics_files import mark_dead

    mark_dead(worker.pid)
