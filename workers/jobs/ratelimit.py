"""One rate limit in Redis, shared by every worker process on every host.

Celery's ``rate_limit`` counts per worker process, so ten processes would spend ten budgets. This
limiter keeps one counter per window in Redis, and each acquisition is one Lua script call, so
the check and the increment are atomic across hosts. It follows Intercom's own windows:

* before any answer, windows are aligned to multiples of the window length of Unix time (Redis
  server time, so hosts with skewed clocks agree);
* each answer's ``X-RateLimit-Reset`` moves the window boundary to the one Intercom reports, and
  its ``X-RateLimit-Remaining`` caps what we may still spend in that window ("if Intercom says
  fewer remain, believe it until the reset");
* a 429 sets the remaining budget to zero until the reset.

A caller that finds no budget waits for the next window plus a random jitter (so workers do not
all fire at the reset), but never longer than ``max_wait``: past that it raises
:class:`~workers.jobs.errors.RateLimited`, and the task is re-scheduled with a countdown instead of
holding its process.

Libraries such as ``limits`` count fixed windows from the first hit and cannot take a boundary or
a remaining count from the server's answers, which is the part that matters here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis

from workers.jobs.errors import RateLimited

KEY_PREFIX = "intercom-sync:ratelimit:"

# KEYS[1] = bucket prefix. ARGV = budget, window seconds, cost.
# Returns {granted (1/0), wait_ms, used, cap, window_end}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local budget = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local reset = tonumber(redis.call('GET', KEYS[1] .. ':reset') or '0')
local window_end
if reset > now and reset - now <= window then
  window_end = reset
else
  local offset = reset % window
  window_end = math.floor((now - offset) / window) * window + window + offset
end
local count_key = KEYS[1] .. ':n:' .. window_end
local cap_key = KEYS[1] .. ':cap:' .. window_end
local used = tonumber(redis.call('GET', count_key) or '0')
local cap = tonumber(redis.call('GET', cap_key) or tostring(budget))
if cap > budget then cap = budget end
if used + cost > cap then
  return {0, math.ceil((window_end - now) * 1000), used, cap, tostring(window_end)}
end
redis.call('INCRBY', count_key, cost)
redis.call('EXPIRE', count_key, math.ceil(window * 3))
return {1, 0, used + cost, cap, tostring(window_end)}
"""

# KEYS[1] = bucket prefix. ARGV = remaining, reset (unix seconds), window seconds.
# Lowers the cap of the window ending at ``reset`` to what we have used so far plus what the
# service says remains (never raises it), and remembers the boundary.
_OBSERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local remaining = tonumber(ARGV[1])
local reset = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
if reset <= now or reset - now > window * 6 then return 0 end
redis.call('SET', KEYS[1] .. ':reset', tostring(reset), 'EX', math.ceil(window * 6))
local used = tonumber(redis.call('GET', KEYS[1] .. ':n:' .. reset) or '0')
local cap_key = KEYS[1] .. ':cap:' .. reset
local cap = used + remaining
local old = redis.call('GET', cap_key)
if (not old) or tonumber(old) > cap then
  redis.call('SET', cap_key, tostring(cap), 'EX', math.ceil(reset - now + window))
end
return 1
"""


@dataclass(frozen=True)
class Budget:
    """What is left in the current window (for ``intercom-sync status``)."""

    used: int
    cap: int
    window_end: float

    @property
    def remaining(self) -> int:
        return max(0, self.cap - self.used)


class RateLimiter:
    """A shared budget of ``budget`` calls per ``window`` seconds, named ``bucket``."""

    def __init__(
        self,
        client: redis.Redis,
        bucket: str,
        budget: int,
        window: float = 10.0,
        *,
        max_wait: float = 5.0,
        jitter: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if budget < 1:
            raise ValueError("budget must be at least 1")
        self.bucket = bucket
        self.budget = budget
        self.window = window
        self.max_wait = max_wait
        self.jitter = min(1.0, window / 10) if jitter is None else jitter
        self._prefix = KEY_PREFIX + bucket
        self._acquire = client.register_script(_ACQUIRE)
        self._observe = client.register_script(_OBSERVE)
        self._sleep = sleep
        self._rand = rand

    def try_acquire(self, cost: int = 1) -> tuple[bool, float, Budget]:
        """One attempt: (granted, seconds until the window ends, budget after)."""
        granted, wait_ms, used, cap, window_end = self._acquire(
            keys=[self._prefix], args=[self.budget, self.window, cost]
        )
        budget = Budget(int(used), int(cap), float(window_end))
        return bool(granted), int(wait_ms) / 1000, budget

    def acquire(self, cost: int = 1) -> None:
        """Take ``cost`` calls from the budget, waiting at most ``max_wait`` seconds in all."""
        waited = 0.0
        while True:
            granted, wait, _ = self.try_acquire(cost)
            if granted:
                return
            pause = wait + self._rand(0.0, self.jitter)
            if waited + pause > self.max_wait:
                raise RateLimited(
                    f"{self.bucket} budget spent for this window",
                    service=self.bucket,
                    code="budget_exhausted",
                    retry_after=pause,
                )
            self._sleep(pause)
            waited += pause

    def observe(self, headers: Mapping[str, str]) -> None:
        """Believe the service's ``X-RateLimit-Remaining``/``-Reset`` until that reset."""
        remaining = _int_header(headers, "X-RateLimit-Remaining")
        reset = _int_header(headers, "X-RateLimit-Reset")
        if remaining is None or reset is None:
            return
        self._observe(keys=[self._prefix], args=[max(0, remaining), reset, self.window])

    def exhausted_until(self, reset: int) -> None:
        """A 429: nothing more until ``reset`` (Unix seconds)."""
        self._observe(keys=[self._prefix], args=[0, reset, self.window])

    def peek(self) -> Budget:
        """The current window's use without spending anything."""
        _, _, budget = self.try_acquire(cost=0)
        return budget


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None
