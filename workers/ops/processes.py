"""The three long-running processes of a deployment, defined once.

The Procfile, ``docker-compose.yml`` and ``intercom-sync dev`` all run these commands (a test
checks that the files agree with this module), so what is tested is what users run.
"""

from __future__ import annotations

from workers.jobs import routing

# gunicorn binds to 0.0.0.0:$PORT when PORT is set and reads WEB_CONCURRENCY for its worker
# count, which is what Procfile platforms provide. The graceful timeout lets in-flight webhooks
# finish on SIGTERM (each takes milliseconds; Intercom waits 5 s). No access log: the receiver
# writes one line per webhook itself, with the ids an access log cannot show.
# The config module holds only the metrics hooks (a directory shared by the workers).
WEB = ("gunicorn --config python:app.gunicorn_config --timeout 30 --graceful-timeout 20 "
       "--keep-alive 5 'app:create_app()'")  # fmt: skip
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
