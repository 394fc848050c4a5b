"""The Procfile runs as it is under honcho, and two beats schedule each job once."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import REPO_ROOT
from tests.processes import Proc, base_env, deployment_command, wait_for
from workers.ops.embedded_redis import free_port

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def test_procfile_runs_under_honcho(real_redis: redis.Redis, real_redis_url: str) -> None:
    port = free_port()
    env = base_env(REDIS_URL=real_redis_url, PORT=str(port), WORKER_CONCURRENCY="1",
                   WEB_CONCURRENCY="1", PATH=f"{BIN}:/usr/bin:/bin")  # fmt: skip
    honcho = Proc("honcho", [str(BIN / "honcho"), "start", "-f", str(REPO_ROOT / "Procfile")],
                  env)  # fmt: skip
    try:
        def ready() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(ready, 60, "web from the Procfile")
        wait_for(lambda: "ready." in honcho.output() and "Acquired lock" in honcho.output(), 60,
                 "worker and beat from the Procfile")  # fmt: skip
        out = honcho.output()
        for name in ("web.1", "worker.1", "beat.1"):
            assert f"{name} " in out and "started" in out
    finally:
        honcho.stop(signal.SIGTERM, timeout=60)
    out = honcho.output()
    for name in ("web.1", "worker.1", "beat.1"):
        assert f"{name} stopped" in out, out[-2000:]


def _replay_messages(client: redis.Redis) -> list[dict]:
    found = []
    for raw in client.lrange("maintenance", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "maintenance.replay_dead_letters":
            found.append(message)
    return found


def test_two_beats_schedule_each_job_once(real_redis: redis.Redis, real_redis_url: str) -> None:
    interval = 2
    env = base_env(REDIS_URL=real_redis_url, DLQ_REPLAY_INTERVAL_SECONDS=str(interval),
                   RECONCILE_INTERVAL_SECONDS="3600")  # fmt: skip
    beat_args = deployment_command("beat")
    first = Proc("beat-a", beat_args, env)
    second = Proc("beat-b", beat_args, env)
    try:
        wait_for(lambda: "Acquired lock" in first.output() + second.output(), 60, "a beat lock")
        real_redis.delete("maintenance")
        started = time.monotonic()
        time.sleep(12)
        sent = len(_replay_messages(real_redis))
        elapsed = time.monotonic() - started
    finally:
        first.stop()
        second.stop()
    holders = [p.name for p in (first, second) if "Acquired lock" in p.output()]
    assert len(holders) == 1, holders
    expected = elapsed / interval
    # One beat: about one message per interval. Two unlocked beats would send twice as many.
    assert expected - 2 <= sent <= expected + 1, (sent, expected)


def test_flower_command_from_compose_asks_for_a_password(real_redis_url: str) -> None:
    """The optional Flower service of docker-compose.yml runs with its command as written: not
    at all without FLOWER_BASIC_AUTH, and behind basic auth with it."""
    import yaml

    command = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"][
        "flower"]["command"]  # fmt: skip
    port = free_port()
    # Compose turns $$ into $; the shell then reads the variable. Run it with this environment.
    args = [a.replace("$$", "$").replace("--port=5555", f"--port={port} --address=127.0.0.1")
            for a in command]  # fmt: skip
    env = base_env(REDIS_URL=real_redis_url, PATH=f"{BIN}:/usr/bin:/bin")
    refused = Proc("flower-open", args, env)
    assert refused.process.wait(timeout=30) == 2
    assert "set FLOWER_BASIC_AUTH" in refused.output()
    refused.stop()
    flower = Proc("flower", args, {**env, "FLOWER_BASIC_AUTH": "ops:s3cret"})
    try:
        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(up, 60, "flower /healthcheck")
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 401
        assert requests.get(f"http://127.0.0.1:{port}/", auth=("ops", "s3cret"), timeout=5).ok
    finally:
        flower.stop()
