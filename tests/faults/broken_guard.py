"""A deliberately broken guard, for proving that the fault checker notices lost and duplicated
events. Never imported by the project: a worker loads it with
``--include tests.faults.broken_guard`` and ``FAULTS_BROKEN_GUARD`` in its environment.

Why monkeypatching at import and not a switch in the project: production code must not carry
test hooks. Celery imports ``--include`` modules in the main worker process before it forks
the pool, so the patch holds in every process of that one worker and nowhere else.

Guards (``FAULTS_BROKEN_GUARD``):

* ``adoption``: a re-run after a lost ``POST /articles`` answer no longer adopts the article
  that the lost answer created (``find_adoptable`` never finds one): it creates a second one.
* ``requeue``: a job whose pool process was killed is acknowledged as failed instead of being
  put back on its queue (``reject_on_worker_lost`` off): the event is lost.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from workers.articles import sync
from workers.tasks.base import SyncTask

GUARD = os.environ.get("FAULTS_BROKEN_GUARD", "")
GUARDS = ("adoption", "requeue")


def _never_adoptable(*_args: Any, **_kwargs: Any) -> None:
    return None


if GUARD == "adoption":
    sync.find_adoptable = _never_adoptable  # type: ignore[assignment]
elif GUARD == "requeue":
    SyncTask.reject_on_worker_lost = False
else:
    raise RuntimeError(f"FAULTS_BROKEN_GUARD must be one of {GUARDS}, not {GUARD!r}")

# The scenario checks for this line, so a test cannot pass because the patch never loaded.
print(f"faults.broken_guard: {GUARD} guard broken in pid {os.getpid()}", file=sys.stderr,
      flush=True)  # fmt: skip
