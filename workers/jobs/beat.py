"""Beat's scheduler: redbeat's, made to ride out a Redis failover.

redbeat keeps the schedule and a lock in Redis, so one beat schedules and a second one waits
(DESIGN §4: beat runs once per deployment even if started twice). Two of its calls meet Redis
outside the retries its ``retry_period`` option gives the rest (those wrap the client, while
the lock is bound to the bare client): the active beat's lock extension at every tick, and the
standby's wait for the lock at start. When the master dies, both raise ``ConnectionError``:
the active beat exits, and the standby, whose error Celery's signal dispatch swallows, runs on
without a lock until its first tick fails. Then nothing schedules until the lock expires and
a restarted beat takes it. Here both calls are retried for as long as a failover takes
(``FAILOVER_PATIENCE``, well under the lock's timeout, so a beat cut off for longer stops
rather than run beside the one that took the lock over).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery.signals import beat_init
from redbeat.schedulers import RedBeatScheduler, acquire_distributed_beat_lock

from workers.jobs.logs import log_event

logger = logging.getLogger("intercom_sync.beat")

# How long beat keeps trying to reach Redis through a failover (Sentinel needs its
# down-after-milliseconds plus an election: seconds to tens of seconds). Less than the
# lock's timeout (celery_app: redbeat_lock_timeout, 60 s).
FAILOVER_PATIENCE = 40.0
PAUSE = 1.0
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)  # MasterNotFoundError included


def _patiently(what: str, call: Any, *, sleep: Any = time.sleep,
               clock: Any = time.monotonic) -> Any:  # fmt: skip
    deadline = clock() + FAILOVER_PATIENCE
    while True:
        try:
            return call()
        except UNREACHABLE as exc:
            if clock() >= deadline:
                raise
            log_event(logger, "beat.redis_unreachable", logging.WARNING, during=what,
                      error_type=type(exc).__name__)  # fmt: skip
            sleep(PAUSE)


class FailoverScheduler(RedBeatScheduler):
    """redbeat's scheduler whose tick waits out a Redis failover instead of ending beat.

    A tick retried after a failure may send a job that its first try had sent already; the
    scheduled jobs are repairs that run any number of times to the same end.
    """

    def tick(self, *args: Any, **kwargs: Any) -> Any:
        return _patiently("tick", lambda: super(FailoverScheduler, self).tick(*args, **kwargs))


beat_init.disconnect(acquire_distributed_beat_lock)


@beat_init.connect
def _acquire_lock(sender: Any = None, **kwargs: Any) -> None:
    """redbeat's lock acquisition, tried again when Redis goes away meanwhile (a standby
    beat can wait for the lock for hours, through any number of failovers)."""
    while True:
        try:
            acquire_distributed_beat_lock(sender, **kwargs)
            return
        except UNREACHABLE as exc:
            log_event(logger, "beat.redis_unreachable", logging.WARNING, during="lock",
                      error_type=type(exc).__name__)  # fmt: skip
            time.sleep(PAUSE)
