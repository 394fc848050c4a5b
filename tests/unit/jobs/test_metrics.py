"""The metric definitions and their publication: Prometheus' naming rules, bounded labels, the
bearer check, multiprocess aggregation without pid labels, the private directory per server,
and the worker's endpoint."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO_ROOT
from tests.scrape import by_labels, local, samples, value
from workers.jobs import metrics, metrics_files
from workers.ops.embedded_redis import free_port
from workers.settings import Secret

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*\Z")
BASE_UNITS = ("_seconds", "_bytes", "_ratio")
NOT_BASE = re.compile(r"_(milliseconds|ms|microseconds|minutes|hours|kilobytes|kb|mb|percent)$")
# Label names that would carry ids or other unbounded values.
UNBOUNDED = re.compile(r"(^|_)(id|ids|pid|uuid|key|path|url|email|name|args)$")


def convention_problems(families: dict[str, tuple[str, tuple[str, ...]]]) -> list[str]:
    """Every breach of Prometheus' naming conventions (and ours) in ``families``."""
    problems = []
    for name, (kind, labels) in families.items():
        if not name.startswith("intercom_sync_") or not SNAKE.match(name):
            problems.append(f"{name}: not snake_case under intercom_sync_")
        if kind == "counter" and not name.endswith("_total"):
            problems.append(f"{name}: a counter must end in _total")
        if kind != "counter" and name.endswith("_total"):
            problems.append(f"{name}: only counters end in _total")
        if kind == "histogram" and not name.endswith(BASE_UNITS):
            problems.append(f"{name}: a histogram needs a base unit")
        if NOT_BASE.search(name.removesuffix("_total")):
            problems.append(f"{name}: not a base unit")
        for label in labels:
            if not SNAKE.match(label) or label.startswith("__"):
                problems.append(f"{name}{{{label}}}: label not snake_case")
            if UNBOUNDED.search(label):
                problems.append(f"{name}{{{label}}}: an unbounded label")
    return problems


def test_every_metric_follows_the_naming_conventions() -> None:
    families = metrics.definitions()
    assert convention_problems(families) == []
    assert len(families) == len(metrics.RECORDED) + len(metrics.SCRAPED)
    assert families["intercom_sync_webhooks_total"] == ("counter", ("source", "outcome"))
    assert families["intercom_sync_intercom_requests_total"] == (
        "counter", ("method", "route", "status"))


def test_the_convention_check_can_fail() -> None:
    bad = {
        "webhooks": ("counter", ()),
        "intercom_sync_requests": ("counter", ()),
        "intercom_sync_latency_ms": ("histogram", ()),
        "intercom_sync_queue_total": ("gauge", ()),
        "intercom_sync_calls_total": ("counter", ("conversation_id",)),
        "intercom_sync_hits_total": ("counter", ("path",)),
        "intercom_sync_jobs_total": ("counter", ("pid",)),
        "intercom_sync_Mixed_total": ("counter", ("Task",)),
    }
    problems = convention_problems(bad)
    for name in bad:
        assert any(p.startswith(name) for p in problems), name


def test_gauges_recorded_by_processes_aggregate_without_a_pid() -> None:
    for metric in metrics.RECORDED:
        if metric._type == "gauge":
            assert metric._multiprocess_mode in ("livesum", "sum", "max", "livemax",
                                                 "mostrecent", "livemostrecent")  # fmt: skip


@pytest.mark.parametrize("outcome, label", [
    ("queued", "queued"), ("too_large", "too_large"), ("invalid_signature", "invalid_signature"),
    (None, "other"), ("", "other"), ("Queued", "other"), ("a" * 33, "other"),
    ("article-42", "other"), ("drafts.x", "other"), (42, "other"),
])  # fmt: skip
def test_outcome_labels_are_bounded_words(outcome: object, label: str) -> None:
    assert metrics.word(outcome) == label


def test_webhook_sources_outside_the_two_are_other() -> None:
    before = local()
    metrics.webhook_answered("../../etc", "queued", 0.01)
    metrics.webhook_answered("intercom", "conversation 123", None)
    after = local()
    assert value(after, "intercom_sync_webhooks_total", source="other", outcome="queued") == (
        value(before, "intercom_sync_webhooks_total", source="other", outcome="queued") + 1)
    assert value(after, "intercom_sync_webhooks_total", source="intercom", outcome="other") == (
        value(before, "intercom_sync_webhooks_total", source="intercom", outcome="other") + 1)


TOKEN = Secret("a-metrics-token-0123456789")


@pytest.mark.parametrize("header, ok", [
    ("Bearer a-metrics-token-0123456789", True),
    ("bearer a-metrics-token-0123456789", True),  # the scheme is case-insensitive (RFC 7235)
    ("Bearer  a-metrics-token-0123456789 ", True),
    (None, False), ("", False), ("Bearer", False), ("Bearer ", False),
    ("Bearer a-metrics-token-012345678", False), ("Bearer a-metrics-token-01234567890", False),
    ("Basic a-metrics-token-0123456789", False), ("a-metrics-token-0123456789", False),
    ("Bearer A-METRICS-TOKEN-0123456789", False), ("Bearer " + "x" * 10000, False),
])  # fmt: skip
def test_bearer_check(header: str | None, ok: bool) -> None:
    assert metrics.authorized(header, TOKEN) is ok


def test_without_a_token_everything_is_allowed() -> None:
    assert metrics.authorized(None, None) and metrics.authorized("Bearer x", None)


def test_samples_of_several_processes_add_up_and_carry_no_pid() -> None:
    before = local()
    children = []
    for n in range(3):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                metrics.task_finished("articles.sync", "succeeded")
                with metrics.task_running("articles.sync"):
                    time.sleep(0.01 * n)
                metrics.TASKS_IN_PROGRESS.labels("articles.sync").inc()  # dies "in progress"
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    after = local()
    succeeded = dict(task="articles.sync", outcome="succeeded")
    assert value(after, "intercom_sync_tasks_total", **succeeded) == (
        value(before, "intercom_sync_tasks_total", **succeeded) + 3)
    assert value(after, "intercom_sync_task_duration_seconds_count", task="articles.sync") == (
        value(before, "intercom_sync_task_duration_seconds_count", task="articles.sync") + 3)
    # The children are gone: what they left "in progress" is not counted as running.
    assert value(after, "intercom_sync_tasks_in_progress", task="articles.sync") == 0
    assert all("pid" not in dict(labels) for _, labels in after)


def test_a_live_process_in_progress_counts_until_it_dies() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        metrics.TASKS_IN_PROGRESS.labels("contacts.enrich").inc()
        os.write(write, b"x")
        time.sleep(30)
        os._exit(0)
    try:
        os.read(read, 1)
        running = local()
        assert value(running, "intercom_sync_tasks_in_progress", task="contacts.enrich") == 1
        assert any(name.endswith(f"_{pid}.db") for name in os.listdir(metrics_files.directory()))
    finally:
        os.kill(pid, signal.SIGKILL)  # no hook runs: the scrape must notice by itself
        os.waitpid(pid, 0)
    assert value(local(), "intercom_sync_tasks_in_progress", task="contacts.enrich") == 0
    assert not any(name.startswith("gauge_live") and name.endswith(f"_{pid}.db")
                   for name in os.listdir(metrics_files.directory()))  # fmt: skip


CLAIM = textwrap.dedent("""
    import os, sys
    from workers.jobs import metrics, metrics_files
    first = metrics_files.directory()
    mine = metrics_files.claim_directory("web")
    again = metrics_files.claim_directory("web")
    pid = os.fork()
    if pid == 0:
        metrics.task_finished("articles.sync", "succeeded")
        sys.exit(0)  # exit handlers run in a forked child too; the directory must survive
    os.waitpid(pid, 0)
    print(first, mine, again, os.environ["PROMETHEUS_MULTIPROC_DIR"], sorted(os.listdir(mine)))
""")


def _claim(env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", CLAIM], env=env, cwd=REPO_ROOT, text=True,
                         capture_output=True, timeout=60, check=True)  # fmt: skip
    return out.stdout.split(" ", 4)


def test_a_server_gets_a_private_directory_inside_a_set_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != metrics_files.DIRECTORY_ENV}
    stale = tmp_path / "counter_1.db"
    stale.write_bytes(b"left by another server")
    first, mine, again, current, files = _claim({**env, metrics_files.DIRECTORY_ENV: str(tmp_path)})
    assert first == str(tmp_path)
    assert Path(mine).parent == tmp_path and mine == again == current
    assert "counter_" in files  # the child wrote into the private directory
    assert not Path(mine).exists()  # removed when the server exited, not when its child did
    assert stale.exists() and tmp_path.exists()  # other servers' files are not touched


def test_without_the_variable_the_first_process_makes_and_removes_a_directory() -> None:
    env = {k: v for k, v in os.environ.items() if k != metrics_files.DIRECTORY_ENV}
    first, mine, again, current, files = _claim(env)
    assert first == mine == again == current and "counter_" in files
    assert Path(first).name.startswith("intercom-sync-metrics-")
    assert not Path(first).exists()


def test_the_worker_endpoint_wants_the_token_and_serves_only_metrics() -> None:
    metrics.task_finished("conversations.tag", "succeeded")
    port = free_port()
    server = metrics.serve("127.0.0.1", port, TOKEN)
    try:
        url = f"http://127.0.0.1:{port}"
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 401
        wrong = requests.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"},
                             timeout=5)  # fmt: skip
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
        assert "intercom_sync" not in wrong.text
        auth = {"Authorization": f"Bearer {TOKEN.reveal()}"}
        assert requests.get(f"{url}/", headers=auth, timeout=5).status_code == 404
        good = requests.get(f"{url}/metrics?x=1", headers=auth, timeout=5)
        assert good.status_code == 200 and good.headers["Content-Type"].startswith("text/plain")
        got = samples(good.text)
        assert value(got, "intercom_sync_tasks_total", task="conversations.tag",
                     outcome="succeeded") >= 1  # fmt: skip
        assert by_labels(got, "intercom_sync_tasks_total")
    finally:
        server.shutdown()
        server.server_close()


def test_stalled_clients_cannot_pile_up_threads(monkeypatch) -> None:
    import socket

    monkeypatch.setattr(metrics.MetricsServer, "max_connections", 3)
    monkeypatch.setattr(metrics._Handler, "timeout", 1.5)
    port = free_port()
    server = metrics.serve("127.0.0.1", port, None)
    try:
        stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        for sock in stalled:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never finish the request
        time.sleep(0.3)
        with pytest.raises(requests.ConnectionError):  # over the cap: closed at once
            requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        time.sleep(2.0)  # the stalled ones time out and free their slots
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
        for sock in stalled:
            sock.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_stalled_client_does_not_block_the_endpoint() -> None:
    import socket

    port = free_port()
    server = metrics.serve("127.0.0.1", port, None)
    try:
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never finishes the request
        started = time.monotonic()
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
        assert time.monotonic() - started < 2
        stalled.close()
    finally:
        server.shutdown()
        server.server_close()


IMPORTED_FIRST = textwrap.dedent("""
    import os, prometheus_client  # before the metrics module, as another library might
    from workers.jobs import metrics, metrics_files
    pid = os.fork()
    if pid == 0:
        metrics.task_finished("articles.sync", "parked")
        os._exit(0)
    os.waitpid(pid, 0)
    print(metrics.exposition().decode())
""")


def test_multiprocess_mode_holds_when_the_library_was_imported_first() -> None:
    env = {k: v for k, v in os.environ.items() if k != metrics_files.DIRECTORY_ENV}
    out = subprocess.run([sys.executable, "-c", IMPORTED_FIRST], env=env, cwd=REPO_ROOT,
                         text=True, capture_output=True, timeout=60, check=True)  # fmt: skip
    got = samples(out.stdout)
    assert value(got, "intercom_sync_tasks_total", task="articles.sync", outcome="parked") == 1


IMPORTED_FIRST_IN_MULTIPROCESS_MODE = textwrap.dedent("""
    import os, tempfile
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
    import prometheus_client  # another library, in multiprocess mode before the metrics module
    theirs = prometheus_client.Counter("their_events", "x", ["kind"], registry=None)
    theirs.labels("a").inc()
    from workers.jobs import metrics
    metrics.task_finished("articles.sync", "parked")
    theirs.labels("b").inc(2)  # a series of theirs made after one of ours, in the same file
    metrics.task_finished("articles.sync", "parked")
    print(metrics.exposition().decode())
""")


def test_a_library_s_multiprocess_metrics_and_ours_share_one_file_and_both_add_up() -> None:
    env = {k: v for k, v in os.environ.items() if k != metrics_files.DIRECTORY_ENV}
    out = subprocess.run([sys.executable, "-c", IMPORTED_FIRST_IN_MULTIPROCESS_MODE], env=env,
                         cwd=REPO_ROOT, text=True, capture_output=True, timeout=60,
                         check=True)  # fmt: skip
    got = samples(out.stdout)
    assert value(got, "intercom_sync_tasks_total", task="articles.sync", outcome="parked") == 2
    assert value(got, "their_events_total", kind="a") == 1
    assert value(got, "their_events_total", kind="b") == 2
