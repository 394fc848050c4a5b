"""The webhook receiver: ``create_app()`` builds the Flask app that gunicorn serves.

It imports the Celery app handle and settings from :mod:`workers`, never task code: jobs are
enqueued by their stable names.

The package itself imports nothing heavy: gunicorn's master loads ``app.gunicorn_conf`` (and so
this package) before the gevent worker monkey-patches the standard library, and whatever is
imported before that patch keeps blocking sockets and unpatched ``ssl``. ``create_app`` imports
Flask, Redis, Celery and the rest when a worker calls it, after the patch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis
    from celery import Celery
    from flask import Flask

    from workers.settings import Settings

logger = logging.getLogger("intercom_sync.receiver")


def create_app(
    settings: Settings | None = None,
    *,
    celery_app: Celery | None = None,
    redis_client: redis.Redis | None = None,
    clock: Callable[[], float] = time.time,
) -> Flask:
    """Build the receiver. Arguments default to the environment's settings and Celery handle."""
    from flask import Flask, Response, request
    from werkzeug.exceptions import HTTPException

    from app.boot import receiver_settings
    from app.health import bp as health_bp
    from app.state import ReceiverState
    from app.webhooks import STARTED
    from app.webhooks import bp as webhooks_bp
    from workers.jobs import metrics
    from workers.jobs.logs import configure_logging, log_event
    from workers.jobs.observability import init_sentry

    if settings is None:
        # Refuse to boot on a bad setting or without Redis: one line, and gunicorn stops,
        # rather than a receiver that answers every webhook with an error.
        settings = receiver_settings()
        configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
        # No formatter here writes a record's thread or process name (gunicorn's own lines write
        # only the process id, which stays), and looking them up is a part of every record.
        # Requests run in greenlets, not threads, so a thread name would say nothing anyway.
        logging.logThreads = False
        logging.logMultiprocessing = False
        init_sentry(settings, component="receiver")
    if celery_app is None:
        from workers.jobs.celery_app import celery as celery_app
    flask_app = Flask(__name__)
    # Werkzeug refuses a larger body (by Content-Length or while streaming) with a 413.
    flask_app.config["MAX_CONTENT_LENGTH"] = settings.WEBHOOK_MAX_BODY_BYTES
    state = flask_app.extensions["intercom_sync"] = ReceiverState(
        settings, celery_app, redis_client=redis_client, clock=clock
    )
    flask_app.register_blueprint(webhooks_bp)
    flask_app.register_blueprint(health_bp)

    # When each request reached the app, for its duration (in the log line and the metrics):
    # noted in the WSGI environ by a wrapper, cheaper than a ``before_request`` hook and ``g``.
    dispatch = flask_app.wsgi_app

    def _timed(environ: dict[str, Any], start_response: Any) -> Any:
        environ[STARTED] = time.perf_counter()
        return dispatch(environ, start_response)

    flask_app.wsgi_app = _timed  # type: ignore[method-assign]

    @flask_app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        body = {"error": (exc.name or "error").lower().replace(" ", "_"),
                "reason": exc.description}  # fmt: skip
        if exc.code == 413:  # the word the body reader answers with too (app/body.py)
            body = {"error": "too_large",
                    "reason": f"body larger than {settings.WEBHOOK_MAX_BODY_BYTES} bytes"}
        _count_webhook(body["error"])
        return Response(json.dumps(body), status=exc.code or 500, mimetype="application/json")

    @flask_app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Logged with its traceback (and sent to Sentry); the sender sees a retryable 503.
        log_event(logger, "webhook.error", logging.ERROR, error=type(exc).__name__)
        logger.exception("unexpected error in the receiver")
        body = {"error": "internal_error", "reason": "unexpected error; retry later"}
        _count_webhook(body["error"])
        return Response(json.dumps(body), status=503, mimetype="application/json")

    def _count_webhook(outcome: str) -> None:
        """Webhook answers made here rather than by ``reply()`` (the size cap, surprises)."""
        if request.blueprint == webhooks_bp.name and request.endpoint:
            started = request.environ.get(STARTED)
            seconds = time.perf_counter() - started if started else None
            metrics.webhook_answered(request.endpoint.rpartition(".")[2], outcome, seconds)

    for feature in ("intercom_webhooks", "sanity_webhooks"):
        missing = state.missing(feature)
        if missing:
            log_event(logger, "feature.off", feature=feature, missing=",".join(missing))
    return flask_app
