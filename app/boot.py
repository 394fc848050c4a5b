"""The receiver refuses to boot on a misconfiguration: one line, and the server stops.

Under gunicorn, ``create_app()`` runs in each worker process, not in the master. A worker that
exits with gunicorn's ``APP_LOAD_ERROR`` makes the master halt ("App failed to load.") instead of
booting workers again and again. But when two workers exit that way, gunicorn's master meets the
second exit while it is already halting and dies with a traceback of its own (gunicorn's
``Arbiter.stop`` reaps workers and raises ``HaltServer`` again). So the workers of one master
agree on a single reporter: the first to create a marker named for the master prints the line
and exits; the others stay silent and wait for the master to stop them.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workers.jobs.connection import resolve_redis_url
from workers.jobs.startup import GUNICORN_APP_LOAD_ERROR, startup_line
from workers.settings import Settings, SettingsError, get_settings


def _master_started(pid: int) -> str | None:
    """When process ``pid`` started (Linux: clock ticks since boot), so that a marker can never
    be taken for one of an earlier server that had the same pid (PID 1 in containers)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _first_to_report(master_pid: int) -> bool:
    """Whether this process is the first of its siblings to report.

    A marker file named for the master (pid and start time) is created exclusively: the first
    worker creates it, later ones (even after the first has exited) find it. Where the start
    time cannot be read, every worker reports, as gunicorn would have.
    """
    started = _master_started(master_pid)
    if started is None:
        return True
    marker = Path(tempfile.gettempdir()) / f"intercom-sync-refused-{master_pid}-{started}"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True
    _remove_stale_markers(marker.parent)
    return True


def _remove_stale_markers(folder: Path) -> None:
    """Markers of servers that have stopped are of no use: one refused start leaves none behind
    for long."""
    for old in folder.glob("intercom-sync-refused-*-*"):
        pid, _, started = old.name.removeprefix("intercom-sync-refused-").partition("-")
        if pid.isdigit() and _master_started(int(pid)) != started:
            old.unlink(missing_ok=True)


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
