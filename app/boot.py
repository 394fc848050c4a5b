"""The receiver refuses to boot on a misconfiguration: one line, and the server stops.

Under gunicorn, ``create_app()`` runs in each worker process, not in the master. A worker that
exits with gunicorn's ``APP_LOAD_ERROR`` makes the master halt ("App failed to load.") instead of
booting workers again and again. But when two workers exit that way, gunicorn's master meets the
second exit while it is already halting and dies with a traceback of its own (gunicorn's
``Arbiter.stop`` reaps workers and raises ``HaltServer`` again). So the workers of one master
agree on a single reporter: the first to claim a name tied to the master's pid prints the line
and exits; the others stay silent and wait for the master to stop them.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from typing import Any

from workers.jobs.connection import resolve_redis_url
from workers.jobs.startup import GUNICORN_APP_LOAD_ERROR, startup_line
from workers.settings import Settings, SettingsError, get_settings

_claim: socket.socket | None = None  # held until the process exits


def _first_to_report(master_pid: int) -> bool:
    """Whether this process is the first of its siblings to claim the report.

    A Linux abstract socket name disappears with the process that holds it, so nothing is left
    behind; where abstract names do not exist, every worker reports (as gunicorn would have).
    """
    global _claim
    if not sys.platform.startswith("linux"):
        return True
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0intercom-sync-refused-{master_pid}")
    except OSError:
        claim.close()
        return False
    _claim = claim
    return True


def _wait_to_be_stopped(*_: Any) -> None:
    os._exit(0)


def refuse_to_boot(exc: SettingsError) -> None:
    """Print the one line (once per server) and exit so that gunicorn halts."""
    if _first_to_report(os.getppid()):
        print(startup_line(exc), file=sys.stderr, flush=True)
        raise SystemExit(GUNICORN_APP_LOAD_ERROR)
    # A sibling reported it and its exit halts the master, which then stops this worker.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, _wait_to_be_stopped)
    time.sleep(60)
    os._exit(0)


def receiver_settings() -> Settings:
    """The receiver's settings with a Redis to talk to, or no receiver at all."""
    try:
        settings = get_settings()
        resolve_redis_url(settings)
    except SettingsError as exc:
        refuse_to_boot(exc)
        raise  # not reached: refuse_to_boot exits
    return settings
