"""The three long-running processes of a deployment, defined once.

The Procfile, ``docker-compose.yml`` and ``intercom-sync dev`` all run these commands (a test
checks that the files agree with this module), so what is tested is what users run.
"""

from __future__ import annotations

from workers.jobs import routing

# gunicorn binds to 0.0.0.0:$PORT when PORT is set and reads WEB_CONCURRENCY for its worker
# count, which is what Procfile platforms provide. Every other server setting (gevent workers,
# timeouts, JSON error answers, no access log) is in app/gunicorn_conf.py, which says why.
WEB = "gunicorn --config python:app.gunicorn_conf 'app:create_app()'"
# Concurrency comes from WORKER_CONCURRENCY through the settings (Celery's worker_concurrency).
# REMAP_SIGTERM=SIGQUIT turns the platform's SIGTERM into Celery's soft shutdown: jobs in hand get
# WORKER_SHUTDOWN_TIMEOUT seconds to finish and the rest are put back on their queues before the
# process exits. Plain SIGTERM would wait for every job however long it takes, and the platform's
# SIGKILL would then leave unfinished jobs invisible until the broker's visibility timeout.
# ``env`` makes the line work both in a shell (Procfile) and as an exec command (compose, k8s).
WORKER = (
    "env REMAP_SIGTERM=SIGQUIT "
    f"celery -A workers worker --loglevel INFO --queues {','.join(routing.QUEUES)}"
)
# redbeat's lock makes a second beat wait instead of scheduling every job twice.
BEAT = "celery -A workers beat --loglevel INFO"

PROCESSES = {"web": WEB, "worker": WORKER, "beat": BEAT}
