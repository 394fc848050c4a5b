"""Where a process's metric samples are written: the multiprocess directory and its upkeep.

Kept apart from :mod:`workers.jobs.metrics` and free of ``prometheus_client``: gunicorn's master
runs these before and between forks of gevent workers, and importing the library there would
load ``ssl`` before gevent patches it in each worker (gevent/gevent#1016). The standard library
is all this module needs.

When ``PROMETHEUS_MULTIPROC_DIR`` is unset, the first process to call :func:`ensure_directory`
creates a private temporary directory (removed when that process exits) and its children inherit
it. A server's main process (gunicorn's master, the Celery worker's main process) calls
:func:`claim_directory` before it forks, so that two servers never add up each other's files.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from contextlib import suppress

from workers.jobs.pids import pid_alive

DIRECTORY_ENV = "PROMETHEUS_MULTIPROC_DIR"
_owned: dict[str, int] = {}  # directories this module created → the pid that removes them
# Files of gauges whose value is a live process's (prometheus_client's multiprocess naming:
# ``gauge_<mode>_<pid>.db``; the ``live*`` modes drop a dead process's value).
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db\Z")


def _remove_at_exit(path: str) -> None:
    """Remove ``path`` when the process that created it exits. Forked children (gunicorn's
    workers exit through ``sys.exit``) run inherited exit handlers too: the pid guard keeps
    them from deleting the directory their siblings still write to."""
    owner = _owned[path] = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)


def ensure_directory() -> str:
    """The directory, created (and made this process's) when the variable is unset."""
    path = os.environ.get(DIRECTORY_ENV)
    if not path:
        path = tempfile.mkdtemp(prefix="intercom-sync-metrics-")
        os.environ[DIRECTORY_ENV] = path
        _remove_at_exit(path)
    else:
        # A set but missing directory is created; one that cannot be is reported by the
        # settings check, in one line naming the variable (workers.settings).
        with suppress(OSError):
            os.makedirs(path, exist_ok=True)
    return path


def directory() -> str:
    return os.environ[DIRECTORY_ENV]


def claim_directory(role: str) -> str:
    """Give this server a metrics directory of its own; call it in the main process before it
    forks (its children inherit the variable). A directory this process created is already its
    own; otherwise (set by the user, or inherited) a private subdirectory is made in it,
    removed when this process exits."""
    current = ensure_directory()
    if _owned.get(current) == os.getpid():
        return current
    os.makedirs(current, exist_ok=True)
    path = tempfile.mkdtemp(prefix=f"intercom-sync-{role}-", dir=current)
    os.environ[DIRECTORY_ENV] = path
    _remove_at_exit(path)
    return path


def mark_dead(pid: int, path: str | None = None) -> None:
    """Drop the live-gauge files of process ``pid`` (its counters stay: they were counted), as
    ``prometheus_client.multiprocess.mark_process_dead`` does."""
    path = path or directory()
    with suppress(OSError):
        for name in os.listdir(path):
            match = _LIVE_FILE.match(name)
            if match and int(match.group(1)) == pid:
                with suppress(FileNotFoundError):
                    os.remove(os.path.join(path, name))


def prune_dead(path: str | None = None) -> None:
    """Drop live-gauge files of processes that are gone without a hook running (SIGKILL, the
    OOM killer), so a killed job does not stay "in progress" forever."""
    path = path or directory()
    for name in os.listdir(path):
        match = _LIVE_FILE.match(name)
        if match and not pid_alive(int(match.group(1))):
            mark_dead(int(match.group(1)), path)
