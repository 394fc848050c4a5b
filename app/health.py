"""Liveness and readiness probes for load balancers, Kubernetes and compose."""

from __future__ import annotations

import json

import redis
from flask import Blueprint, Response, current_app

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
