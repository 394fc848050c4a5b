"""The Celery side of intercom-sync: ``celery -A workers worker`` finds the app handle here."""

from workers.jobs.celery_app import celery

app = celery

__all__ = ["app", "celery"]
