"""Process ids: this process's own, cheaply, and whether another still runs.

Two kinds of file outlive the process that wrote them: a metrics file of a pool process that was
SIGKILLed and the state file of a dev stack that was killed. Both are named by pid and cleaned
by asking :func:`pid_alive`.
"""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists (also when it belongs to another user: it is not ours to clean)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def current_pid() -> int:
    """``os.getpid()`` without the system call: the metrics library asks for it on every sample
    it writes (to notice a fork), three times per webhook.

    Every fork made from Python (``os.fork``: gunicorn, Celery's prefork pool, ``multiprocessing``)
    runs the at-fork hook in the child before any of its own code; ``subprocess`` children exec a
    new program and so start with a fresh module.
    """
    return _pid
