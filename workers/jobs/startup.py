"""What every process checks before it starts: valid settings and a Redis to talk to.

The receiver (under gunicorn), the worker, beat and the command line read their settings through
:func:`settings_or_exit`, so a misconfiguration ends each of them with the same single line
naming the variable and the problem, and a non-zero exit, instead of a process that boots and
then answers every request with an error.
"""

from __future__ import annotations

import sys

from workers.jobs.connection import resolve_redis_url
from workers.settings import Settings, SettingsError, get_settings

# gunicorn halts the whole server (instead of booting the worker again and again) when a worker
# exits with this code: its Arbiter.APP_LOAD_ERROR ("App failed to load.", gunicorn/arbiter.py).
GUNICORN_APP_LOAD_ERROR = 4


def startup_line(exc: BaseException) -> str:
    """The one line a process prints when it refuses to start."""
    return "intercom-sync: " + " ".join(str(exc).split())


def settings_or_exit(exit_code: int = 2) -> Settings:
    """This process's settings, with a Redis URL; else print one line and exit."""
    try:
        settings = get_settings()
        resolve_redis_url(settings)
    except SettingsError as exc:
        print(startup_line(exc), file=sys.stderr, flush=True)
        raise SystemExit(exit_code) from None
    return settings
