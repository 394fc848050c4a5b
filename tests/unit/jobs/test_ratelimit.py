"""The shared Redis rate limiter: windows, caps from Intercom's headers, waiting and jitter.

The limiter reads the time with Redis ``TIME`` inside its Lua scripts, so these tests run it on
fakeredis with that command's clock replaced by a settable one: every window boundary and wait
below is exact, and nothing sleeps.
"""

from __future__ import annotations

import types
from collections.abc import Iterator

import fakeredis
import pytest
from fakeredis.commands_mixins import server_mixin

from workers.jobs.errors import RateLimited
from workers.jobs.ratelimit import RateLimiter

T0 = 1_700_000_000.0  # a multiple of 10: windows are [T0, T0 + 10), [T0 + 10, T0 + 20) ...


class Clock:
    """Redis server time for fakeredis (``TIME``), moved by the test or by an injected sleep."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    clock = Clock(T0 + 3.5)
    monkeypatch.setattr(server_mixin, "time", types.SimpleNamespace(time=clock.time))
    yield clock


@pytest.fixture
def redis_client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def limiter(client: fakeredis.FakeRedis, clock: Clock, budget: int = 5, **kwargs) -> RateLimiter:
    kwargs.setdefault("sleep", clock.sleep)
    kwargs.setdefault("rand", lambda low, high: high)  # the largest jitter, unless a test says
    return RateLimiter(client, "intercom", budget, 10.0, **kwargs)


def headers(remaining: int, reset: float) -> dict[str, str]:
    return {"X-RateLimit-Limit": "999", "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(reset))}  # fmt: skip


def take_all(lim: RateLimiter) -> int:
    """Acquire until refused; how many were granted."""
    granted = 0
    while lim.try_acquire()[0]:
        granted += 1
        assert granted < 10_000
    return granted


# --- windows ------------------------------------------------------------------------------


def test_windows_are_aligned_to_unix_time_before_any_answer(redis_client, clock) -> None:
    lim = limiter(redis_client, clock)
    for now, end in ((T0 + 3.5, T0 + 10), (T0 + 9.999, T0 + 10), (T0 + 10, T0 + 20),
                     (T0 + 27.25, T0 + 30)):  # fmt: skip
        clock.now = now
        granted, wait, budget = lim.try_acquire()
        assert granted
        assert wait == 0
        assert budget.window_end == end


def test_budget_is_never_exceeded_within_a_window_across_processes(redis_client, clock) -> None:
    # Two limiter objects on one Redis are two worker processes (or hosts) sharing the budget.
    first, second = limiter(redis_client, clock), limiter(redis_client, clock)
    granted = {T0: 0, T0 + 10: 0}
    clock.now = T0 + 0.5
    while clock.now < T0 + 20:
        for lim in (first, second, second):
            ok, wait, budget = lim.try_acquire()
            if ok:
                granted[budget.window_end - 10] += 1
            else:
                assert wait == pytest.approx(budget.window_end - clock.now, abs=0.001)
        clock.now += 0.25
    assert granted == {T0: 5, T0 + 10: 5}


def test_a_refusal_reports_the_wait_until_the_window_ends(redis_client, clock) -> None:
    lim = limiter(redis_client, clock, budget=2)
    assert take_all(lim) == 2
    granted, wait, budget = lim.try_acquire()
    assert not granted
    assert wait == pytest.approx(6.5)
    assert (budget.used, budget.cap, budget.remaining) == (2, 2, 0)
    clock.now = T0 + 10
    assert lim.try_acquire()[0]


def test_cost_counts_several_calls_at_once(redis_client, clock) -> None:
    lim = limiter(redis_client, clock, budget=5)
    assert lim.try_acquire(cost=3)[0]
    assert not lim.try_acquire(cost=3)[0]
    assert lim.try_acquire(cost=2)[0]
    assert lim.peek().remaining == 0


def test_peek_spends_nothing(redis_client, clock) -> None:
    lim = limiter(redis_client, clock, budget=5)
    lim.try_acquire()
    for _ in range(3):
        budget = lim.peek()
        assert (budget.used, budget.cap, budget.remaining) == (1, 5, 4)
        assert budget.window_end == T0 + 10


def test_budget_must_be_positive(redis_client) -> None:
    with pytest.raises(ValueError):
        RateLimiter(redis_client, "intercom", 0)


# --- Intercom's headers ------------------------------------------------------------------


def test_observe_lowers_the_cap_to_what_intercom_says_remains(redis_client, clock) -> None:
    lim = limiter(redis_client, clock, budget=10)
    assert lim.try_acquire()[0] and lim.try_acquire()[0]
    # Another app on the workspace spent budget too: only 3 remain after our 2.
    lim.observe(headers(remaining=3, reset=T0 + 10))
    assert lim.peek().cap == 5
    assert take_all(lim) == 3
    clock.now = T0 + 10  # the next window starts with the full budget again
    assert lim.peek().cap == 10


def test_observe_never_raises_the_cap(redis_client, clock) -> None:
    lim = limiter(redis_client, clock, budget=10)
    lim.observe(headers(remaining=4, reset=T0 + 10))
    lim.observe(headers(remaining=50, reset=T0 + 10))  # more than before: not believed
    assert lim.peek().cap == 4
    lim.observe(headers(remaining=1000, reset=T0 + 20))  # a new window: capped by our budget
    clock.now = T0 + 10
    assert lim.peek().cap == 10
    assert take_all(lim) == 10


def test_observe_moves_the_window_boundary_to_the_reported_reset(redis_client, clock) -> None:
    lim = limiter(redis_client, clock, budget=3)
    # Intercom's window ends at T0 + 7, not at the aligned T0 + 10.
    lim.observe(headers(remaining=3, reset=T0 + 7))
    granted, _, budget = lim.try_acquire()
    assert granted and budget.window_end == T0 + 7
    assert take_all(lim) == 2
    granted, wait, _ = lim.try_acquire()
    assert not granted and wait == pytest.approx(3.5)
    clock.now = T0 + 7.0  # the reported reset: a new window, and the following ones keep the offset
    granted, _, budget = lim.try_acquire()
    assert granted and budget.window_end == T0 + 17
    clock.now = T0 + 18
    assert lim.try_acquire()[2].window_end == T0 + 27


def test_observe_ignores_missing_bad_stale_and_far_future_headers(redis_client, clock) -> None:
    lim = limiter(redis_client, clock, budget=5)
    for bad in ({}, {"X-RateLimit-Remaining": "0"}, {"X-RateLimit-Reset": str(int(T0 + 10))},
                {"X-RateLimit-Remaining": "none", "X-RateLimit-Reset": str(int(T0 + 10))},
                headers(remaining=0, reset=T0 + 3),  # already past
                headers(remaining=0, reset=T0 + 3600)):  # not a 10-second window's reset
        lim.observe(bad)  # fmt: skip
    budget = lim.peek()
    assert (budget.cap, budget.window_end) == (5, T0 + 10)


def test_exhausted_until_blocks_until_the_reset(redis_client, clock) -> None:
    lim = limiter(redis_client, clock, budget=5)
    assert lim.try_acquire()[0]
    lim.exhausted_until(int(T0 + 10))  # a 429
    for now in (T0 + 3.5, T0 + 6, T0 + 9.9):
        clock.now = now
        granted, wait, _ = lim.try_acquire()
        assert not granted
        assert wait == pytest.approx(T0 + 10 - now, abs=0.001)
    clock.now = T0 + 10
    assert take_all(lim) == 5


def test_exhausted_until_an_unaligned_reset_holds_until_exactly_then(redis_client, clock) -> None:
    lim = limiter(redis_client, clock, budget=5)
    lim.exhausted_until(int(T0 + 8))
    clock.now = T0 + 7.9
    assert not lim.try_acquire()[0]
    clock.now = T0 + 8
    assert lim.try_acquire()[0]


# --- acquire: waiting, max_wait, jitter ----------------------------------------------------


def test_acquire_waits_for_the_next_window_plus_jitter(redis_client, clock) -> None:
    jitters: list[tuple[float, float]] = []

    def rand(low: float, high: float) -> float:
        jitters.append((low, high))
        return 0.25

    lim = limiter(redis_client, clock, budget=2, max_wait=5.0, rand=rand)
    clock.now = T0 + 8
    lim.acquire()
    lim.acquire()
    assert clock.sleeps == []
    lim.acquire()  # budget spent: sleeps 2 s to the boundary plus 0.25 s of jitter
    assert clock.sleeps == [pytest.approx(2.25)]
    assert jitters == [(0.0, 1.0)]  # default jitter: a tenth of the window, at most 1 s
    assert lim.peek().used == 1 and lim.peek().window_end == T0 + 20


def test_jitter_spreads_waiters_over_the_first_part_of_the_window(redis_client, clock) -> None:
    clock.now = T0 + 9
    pauses = []
    for draw in (0.0, 0.3, 0.9):
        lim = limiter(redis_client, clock, budget=1, jitter=0.9,
                      rand=lambda low, high, d=draw: low + d)  # fmt: skip
        clock.now = T0 + 9
        redis_client.flushdb()
        lim.acquire()
        before = len(clock.sleeps)
        lim.acquire()
        pauses.extend(clock.sleeps[before:])
    assert pauses == [pytest.approx(1.0), pytest.approx(1.3), pytest.approx(1.9)]


def test_acquire_gives_up_past_max_wait_with_retry_after(redis_client, clock) -> None:
    lim = limiter(redis_client, clock, budget=1, max_wait=5.0, rand=lambda low, high: 0.5)
    clock.now = T0 + 2
    lim.acquire()
    with pytest.raises(RateLimited) as raised:
        lim.acquire()  # 8 s to the boundary + 0.5 jitter > 5 s: do not hold the process
    assert clock.sleeps == []
    assert raised.value.retry_after == pytest.approx(8.5)
    assert raised.value.code == "budget_exhausted"
    assert raised.value.transient


def test_acquire_never_waits_longer_than_max_wait_in_all(redis_client, clock) -> None:
    # Another process keeps taking each new window's budget first: we wait once, then give up.
    other = limiter(redis_client, clock, budget=1)
    lim = limiter(redis_client, clock, budget=1, max_wait=5.0, rand=lambda low, high: 0.5)

    def sleep_while_other_wins(seconds: float) -> None:
        clock.sleep(seconds)
        assert other.try_acquire()[0]

    lim._sleep = sleep_while_other_wins
    clock.now = T0 + 6
    assert other.try_acquire()[0]
    with pytest.raises(RateLimited) as raised:
        lim.acquire()
    assert clock.sleeps == [pytest.approx(4.5)]
    assert sum(clock.sleeps) <= 5.0
    assert raised.value.retry_after == pytest.approx(10.0)


def test_acquire_after_a_429_waits_for_the_reset(redis_client, clock) -> None:
    lim = limiter(redis_client, clock, budget=50, max_wait=5.0, rand=lambda low, high: 0.0)
    clock.now = T0 + 6
    lim.exhausted_until(int(T0 + 10))
    lim.acquire()
    assert clock.sleeps == [pytest.approx(4.0)]
