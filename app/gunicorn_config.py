"""gunicorn hooks for the receiver's metrics (``gunicorn --config python:app.gunicorn_config``).

Every receiver process writes its samples to files in one directory that ``GET /metrics`` adds
up (:mod:`workers.jobs.metrics`). The master must settle that directory before it forks its
workers, and only a hook can run code there; all other options stay on the command line
(``workers.ops.processes``). gunicorn reads this module's public names as settings, so
imports carry a leading underscore.
"""

from __future__ import annotations

import sys as _sys
from typing import Any

from workers.jobs import metrics as _metrics
from workers.settings import get_settings as _get_settings


def on_starting(server: Any) -> None:
    """In the master, before the first fork: a directory of this server's own. A malformed
    setting (say a PROMETHEUS_MULTIPROC_DIR that cannot be created) stops it here in one line,
    as it would stop every worker."""
    try:
        _get_settings()
        _metrics.claim_directory("web")
    except (ValueError, OSError) as exc:  # SettingsError is a ValueError
        print(f"intercom-sync: {exc}", file=_sys.stderr, flush=True)
        raise SystemExit(2) from None


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited (recycled, crashed or stopped): drop its live-gauge files."""
    _metrics.mark_dead(worker.pid)
