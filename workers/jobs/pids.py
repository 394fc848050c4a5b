"""Whether a process still runs, by pid.

Two kinds of file outlive the process that wrote them: a metrics file of a pool process that was
SIGKILLed and the state file of a dev stack that was killed. Both are named by pid and cleaned
by asking this.
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
