"""Liveness and readiness probes for load balancers, Kubernetes and compose, and the metrics."""

from __future__ import annotations

import json

import redis
from flask import Blueprint, Response, abort, current_app, request

from workers.jobs import metrics as service_metrics

bp = Blueprint("health", __name__)


def _json(status: int, body: dict[str, str]) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


@bp.get("/healthz")
def healthz() -> Response:
    """200 while the process serves requests; no I/O, so a slow Redis never restarts it."""
    return _json(200, {"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """200 when Redis answers, else 503: the process can take webhooks only then."""
    try:
        current_app.extensions["intercom_sync"].redis.ping()
    except redis.RedisError as exc:
        return _json(503, {"status": "unavailable", "reason": f"redis: {type(exc).__name__}"})
    return _json(200, {"status": "ready"})


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics of every receiver process on this server (DESIGN §3). The receiver
    faces the internet: without ``METRICS_TOKEN`` the route does not exist (404), and with it
    only ``Authorization: Bearer <METRICS_TOKEN>`` is answered."""
    token = current_app.extensions["intercom_sync"].settings.METRICS_TOKEN
    if token is None:
        abort(404)
    if not service_metrics.authorized(request.headers.get("Authorization"), token):
        response = Response(service_metrics.UNAUTHORIZED_BODY, status=401,
                            mimetype="application/json")  # fmt: skip
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return Response(service_metrics.exposition(), content_type=service_metrics.CONTENT_TYPE)
