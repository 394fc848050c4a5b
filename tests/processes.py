"""Start the project's real processes (gunicorn, Celery worker, beat) for integration tests."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.conftest import REPO_ROOT
from workers.ops.processes import PROCESSES

BIN = Path(sys.executable).parent


def deployment_command(name: str, *extra: str) -> list[str]:
    """The ``web``, ``worker`` or ``beat`` command exactly as the Procfile and compose run it,
    with this environment's executable and ``extra`` options appended."""
    args = shlex.split(PROCESSES[name])
    program = next(i for i, arg in enumerate(args) if arg != "env" and "=" not in arg)
    args[program] = str(BIN / args[program])
    return [*args, *extra]


class Proc:
    """A child process whose combined output goes to a file the test can read."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str]) -> None:
        self.name = name
        self.log_path = Path(tempfile.mkstemp(prefix=f"intercom-sync-{name}-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            args, cwd=REPO_ROOT, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    continue
        return lines

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return self.process.returncode


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def quiet_for(idle: Callable[[], bool], quiet: float, timeout: float, poll: float = 0.1) -> bool:
    """Whether ``idle()`` held for ``quiet`` seconds in a row within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    calm_since: float | None = None
    while time.monotonic() < deadline:
        if idle():
            calm_since = calm_since or time.monotonic()
            if time.monotonic() - calm_since >= quiet:
                return True
        else:
            calm_since = None
        time.sleep(poll)
    return False


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTERCOM_", "SANITY_"))}
    env.update({"LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def features_on(directory: Path) -> dict[str, str]:
    """Settings that switch on every feature the receiver routes to (tagging, enrichment,
    article sync): without them it answers those webhooks ``200 ignored``. The APIs point at a
    closed loopback port and the rules file (written into ``directory``) is minimal; a test that
    needs the vendors passes its fakes' settings after these."""
    rules = directory / "receiver-rules.yml"
    rules.write_text("rules:\n  - tag: billing\n    when:\n      text_any: [refund]\n")
    closed = "http://127.0.0.1:9"
    return {"INTERCOM_ACCESS_TOKEN": "tok-test", "INTERCOM_ADMIN_ID": "991",
            "RULES_PATH": str(rules), "INTERCOM_AUTHOR_ID": "991",
            "INTERCOM_DEFAULT_COLLECTION_ID": "17", "SANITY_PROJECT_ID": "proj",
            "SANITY_DATASET": "production", "SANITY_TOKEN": "sk-test",
            "INTERCOM_API_BASE": closed, "SANITY_API_BASE": closed}  # fmt: skip


def probe_env(**extra: str) -> dict[str, str]:
    """``base_env`` for workers that load ``tests.probe_tasks`` (``celery`` does not put the
    working directory on sys.path)."""
    env = base_env(**extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


@contextmanager
def gunicorn(port: int, env: Mapping[str, str], workers: int = 2) -> Iterator[Proc]:
    proc = Proc("web", deployment_command("web", "--bind", f"127.0.0.1:{port}",
                                          "--workers", str(workers)), env)  # fmt: skip
    try:
        def up() -> bool:
            if proc.process.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{proc.output()[-3000:]}")
            try:
                return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(up, 30, "gunicorn /readyz")
        yield proc
    finally:
        proc.stop()


@contextmanager
def _running(proc: Proc, ready: str, what: str) -> Iterator[Proc]:
    """Wait until ``ready`` shows in the process's output, hand it over, stop it afterwards."""
    try:
        wait_for(lambda: ready in proc.output() or proc.process.poll() is not None, 60, what)
        if proc.process.poll() is not None:
            raise AssertionError(f"{proc.name} exited:\n{proc.output()[-3000:]}")
        yield proc
    finally:
        proc.stop()


@contextmanager
def celery_worker(env: Mapping[str, str], concurrency: int = 2, name: str = "worker",
                  extra: list[str] | None = None) -> Iterator[Proc]:  # fmt: skip
    args = deployment_command("worker", "--concurrency", str(concurrency),
                              "--hostname", f"{name}-{os.getpid()}@%h", *(extra or []))  # fmt: skip
    with _running(Proc(name, args, env), "ready.", "celery worker ready") as proc:
        yield proc


@contextmanager
def celery_beat(env: Mapping[str, str], name: str = "beat") -> Iterator[Proc]:
    with _running(Proc(name, deployment_command("beat"), env), "Acquired lock",
                  "beat's lock") as proc:  # fmt: skip
        yield proc
