"""The job machinery every task shares: the Celery app, task names and queues, enqueue and
de-duplication, the shared Redis rate limiter, locks, dead letters, error classes, logs and Sentry.

Imports only :mod:`workers.settings` and third-party packages: it knows no client and no domain,
so the receiver (``app/``) can use it without loading any of the workers' domain code.
"""
