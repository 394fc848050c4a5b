"""The Celery configuration built from settings: the reliability choices users rely on."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, make_settings
from workers.jobs import routing
from workers.jobs.celery_app import celery_config
from workers.ops.processes import PROCESSES


def test_late_acks_single_prefetch_and_requeue_on_lost_worker() -> None:
    config = celery_config(make_settings(REDIS_URL="redis://127.0.0.1:6379/3"))
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["broker_transport_options"]["visibility_timeout"] == 3600


def test_shutdown_window_and_memory_cap_come_from_settings() -> None:
    config = celery_config(make_settings(REDIS_URL="redis://127.0.0.1:6379/3",
                                         WORKER_SHUTDOWN_TIMEOUT="7.5",
                                         WORKER_MAX_MEMORY_MB="300"))  # fmt: skip
    assert config["worker_soft_shutdown_timeout"] == 7.5
    # An idle worker exits at once instead of sleeping through the window.
    assert config["worker_enable_soft_shutdown_on_idle"] is False
    assert config["worker_max_memory_per_child"] == 300 * 1024  # Celery counts KiB


def test_the_worker_command_turns_sigterm_into_the_soft_shutdown() -> None:
    args = shlex.split(PROCESSES["worker"])
    assert args[:2] == ["env", "REMAP_SIGTERM=SIGQUIT"]
    assert args[2:5] == ["celery", "-A", "workers"]


@pytest.mark.parametrize("overrides", [
    {"TASK_TIME_LIMIT": "400", "BROKER_VISIBILITY_TIMEOUT": "700"},
    {"RETRY_BACKOFF_MAX": "900", "BROKER_VISIBILITY_TIMEOUT": "1200"},
])  # fmt: skip
def test_visibility_timeout_must_exceed_twice_the_time_limit_and_backoff_cap(overrides) -> None:
    with pytest.raises(ValueError, match="BROKER_VISIBILITY_TIMEOUT"):
        celery_config(make_settings(REDIS_URL="redis://127.0.0.1:6379/3", **overrides))


def test_every_task_is_routed_to_its_domain_queue_and_beat_uses_the_intervals() -> None:
    config = celery_config(make_settings(REDIS_URL="redis://127.0.0.1:6379/3",
                                         RECONCILE_INTERVAL_SECONDS="45"))  # fmt: skip
    routes = config["task_routes"]
    assert set(routes) == set(routing.TASK_NAMES)
    for name, route in routes.items():
        assert route["queue"] == name.split(".")[0]
    reconcile = config["beat_schedule"]["articles-reconcile"]
    assert reconcile["task"] == routing.ARTICLES_RECONCILE
    assert reconcile["schedule"] == timedelta(seconds=45)


@pytest.mark.parametrize(("overrides", "named"), [
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ({"TASK_TIME_LIMIT": "30", "BROKER_VISIBILITY_TIMEOUT": "60"}, "BROKER_VISIBILITY_TIMEOUT"),
])  # fmt: skip
def test_worker_with_bad_settings_stops_with_one_line(overrides, named) -> None:
    """Not Celery's defaults (an AMQP broker on localhost) with the problem buried in a log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTERCOM_", "SANITY_"))}
    env.update(REDIS_URL="redis://127.0.0.1:1/0", **overrides)
    celery = str(Path(sys.executable).parent / "celery")
    done = subprocess.run([celery, "-A", "workers", "worker"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    problem = [line for line in done.stderr.splitlines() if line.startswith("intercom-sync: ")]
    assert len(problem) == 1 and named in problem[0]
    assert "ready" not in done.stdout
