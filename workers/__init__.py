"""The Celery side of intercom-sync: ``celery -A workers worker`` finds the app handle here.

The handle is loaded on first access (PEP 562), so importing a light module such as
:mod:`workers.jobs.metrics_files` (from gunicorn's master, before gevent patches the standard
library) does not load Celery, Redis and ``ssl`` with it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "celery"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from workers.jobs.celery_app import celery

        return celery
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
