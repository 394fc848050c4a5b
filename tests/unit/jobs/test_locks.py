"""The shared Redis locks: bounded waits and releases that survive a Redis restart."""

from __future__ import annotations

import threading
import time

import fakeredis
import pytest
import redis

from workers.jobs.errors import TransientServiceError
from workers.jobs.locks import acquire, exclusive, new_lock, release, single_flight


@pytest.fixture
def client() -> redis.Redis:
    return fakeredis.FakeRedis()


def test_exclusive_gives_up_quickly_while_another_job_holds_the_object(
    client: redis.Redis,
) -> None:
    holder = client.lock("lock:conversation:1", timeout=60)
    assert holder.acquire(blocking=False)
    started = time.monotonic()
    busy = exclusive(client, "lock:conversation:1", what="conversation 1", wait_seconds=0.5)
    with pytest.raises(TransientServiceError, match="conversation 1 is being processed"), busy:
        pytest.fail("ran while another job held the lock")
    waited = time.monotonic() - started
    assert 0.3 <= waited < 5, waited  # bounded: the pool process is handed back, the job retries


def test_exclusive_runs_once_the_holder_releases_and_frees_the_lock_after(
    client: redis.Redis,
) -> None:
    holder = client.lock("lock:contact:7", timeout=60, thread_local=False)
    assert holder.acquire(blocking=False)
    threading.Timer(0.2, holder.release).start()
    ran = []
    with exclusive(client, "lock:contact:7", what="contact 7", wait_seconds=3):
        ran.append(client.get("lock:contact:7") is not None)
    assert ran == [True]
    assert client.get("lock:contact:7") is None


class Restarting(fakeredis.FakeRedis):
    """A Redis whose scripts meet a closed port for the next ``down`` calls (a restart)."""

    down = 0
    refused = 0

    def evalsha(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.down:
            self.down -= 1
            self.refused += 1
            raise redis.ConnectionError("Error 111 connecting. Connection refused.")
        return super().evalsha(*args, **kwargs)


def test_release_rides_out_a_redis_restart() -> None:
    client = Restarting()
    lock = new_lock(client, "lock:conversation:9", seconds=60)
    assert acquire(lock, blocking=False)
    client.down = 3
    naps: list[float] = []
    assert release(lock, within=5, poll=0.01, sleep=naps.append)
    assert client.refused == 3
    assert naps == [0.01, 0.01, 0.01]
    assert client.get("lock:conversation:9") is None  # free for the job's retry at once


def test_a_lock_left_by_a_failed_job_is_released_when_redis_returns() -> None:
    client = Restarting()
    block = exclusive(client, "lock:contact:4", what="contact 4")
    with pytest.raises(RuntimeError, match="the job failed"), block:
        client.down = 2  # Redis goes away while the job runs
        raise RuntimeError("the job failed")
    assert client.refused == 2
    assert client.get("lock:contact:4") is None


def test_release_gives_up_on_a_redis_that_stays_down() -> None:
    client = Restarting()
    lock = new_lock(client, "lock:conversation:10", seconds=60)
    assert acquire(lock, blocking=False)
    client.down = 10**6
    with pytest.raises(redis.ConnectionError):
        release(lock, within=0.05, poll=0.01)
    assert client.refused >= 2


def test_release_leaves_a_lock_that_expired_under_its_holder(client: redis.Redis) -> None:
    mine = client.lock("lock:tag", timeout=60)
    assert mine.acquire(blocking=False)
    client.delete("lock:tag")  # expired ...
    theirs = client.lock("lock:tag", timeout=60)
    assert theirs.acquire(blocking=False)  # ... and another job took it
    assert not release(mine)  # reported: the holder learns it lost the lock
    assert client.get("lock:tag") is not None  # still theirs


def test_single_flight_produces_once_for_many_concurrent_callers(client: redis.Redis) -> None:
    produced: list[int] = []

    def produce() -> str:
        produced.append(1)
        time.sleep(0.1)
        client.set("tag:billing", "42")
        return "42"

    def ready() -> str | None:
        value = client.get("tag:billing")
        return value.decode() if value else None

    results: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                single_flight(client, "lock:tag:billing", ready, produce, what="tag", poll=0.01)
            )
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["42"] * 8
    assert produced == [1]


def test_a_set_re_sent_after_its_answer_was_lost_finds_its_own_token(
    client: redis.Redis,
) -> None:
    lock = new_lock(client, "lock:conversation:2", seconds=60)
    client.set("lock:conversation:2", b"mine")  # the first SET landed; its answer did not
    assert lock.do_acquire(b"mine")  # redis-py's re-sent SET NX: still ours
    assert not lock.do_acquire(b"another holder")


class AnswerLost(fakeredis.FakeRedis):
    """A Redis that runs the first ``SET`` and then drops the connection before answering."""

    lost = 0

    def set(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = super().set(*args, **kwargs)
        if not self.lost:
            self.lost += 1
            raise redis.ConnectionError("Connection closed by server.")
        return result


def test_an_acquisition_that_fails_mid_way_takes_back_what_it_stored() -> None:
    client = AnswerLost()
    lock = new_lock(client, "lock:contact:3", seconds=60)
    with pytest.raises(redis.ConnectionError):
        acquire(lock, blocking=False)
    assert client.get("lock:contact:3") is None  # not left to block the job's retry
    with exclusive(client, "lock:contact:3", what="contact 3", wait_seconds=0.2):
        assert client.get("lock:contact:3") is not None



def test_a_kept_alive_lock_outlives_its_timeout_while_held() -> None:
    """A job lock that its holder renews can be short: a live job keeps it past the timeout
    (without ``keep_alive`` it would be gone), and it is released at the end."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    with exclusive(client, "lock:c1", what="c1", lock_seconds=0.6, keep_alive=True):
        time.sleep(1.5)
        assert client.exists("lock:c1")
        with pytest.raises(TransientServiceError), exclusive(
            client, "lock:c1", what="c1", lock_seconds=0.6, wait_seconds=0.1
        ):
            pass
    assert not client.exists("lock:c1")
    with exclusive(client, "lock:c3", what="c3", lock_seconds=0.6):
        time.sleep(1.5)
        assert not client.exists("lock:c3")  # the control: unrenewed, it expired


def test_the_lock_of_a_holder_that_died_frees_within_its_timeout() -> None:
    """A holder killed mid-job renews nothing: the next job gets the lock once it expires."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    assert client.lock("lock:c2", timeout=0.6).acquire(blocking=False)  # never released
    started = time.monotonic()
    with exclusive(client, "lock:c2", what="c2", lock_seconds=0.6, wait_seconds=3):
        assert time.monotonic() - started < 1.5
