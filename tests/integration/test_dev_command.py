"""``intercom-sync dev`` brings the stack up on an embedded Redis and Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import REPO_ROOT
from tests.processes import wait_for
from workers.ops.embedded_redis import free_port

pytestmark = pytest.mark.integration


def test_dev_runs_everything_on_embedded_redis_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL",) and not k.startswith(("INTERCOM_", "SANITY_"))}  # fmt: skip
    env["WORKER_CONCURRENCY"] = "1"
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    env["XDG_RUNTIME_DIR"] = str(runtime)
    log = (tmp_path / "dev.log").open("wb")
    cli = Path(sys.executable).parent / "intercom-sync"
    proc = subprocess.Popen([str(cli), "dev", "--port", str(port)], cwd=REPO_ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    def output() -> str:
        return (tmp_path / "dev.log").read_text(errors="replace")

    def ready() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(ready, 60, "the receiver's /readyz")
        wait_for(lambda: "ready." in output() and "beat: Acquired lock" in output(), 60,
                 "worker and beat")  # fmt: skip
        assert "embedded Redis on redis://127.0.0.1:" in output()
        # The address gunicorn itself reports, on loopback only.
        assert f"receiver listening on http://127.0.0.1:{port} " in output()
        # REDIS_URL is unset: the operator commands find the running stack and say so.
        [published] = list((runtime / "intercom-sync").glob("dev-*.json"))
        status = subprocess.run([str(cli), "status"], env=env, cwd=tmp_path, text=True,
                                capture_output=True, timeout=60)  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert f"using the dev stack of `intercom-sync dev` (pid {proc.pid}) at " \
               f"http://127.0.0.1:{port}" in status.stderr
        assert "articles.sync" in status.stdout and "waiting" in status.stdout
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    text = output()
    for name in ("web", "worker", "beat"):
        assert f"{name} stopped" in text, text[-2000:]
    assert not published.exists()  # removed at exit: the commands no longer find a stack
    time.sleep(0.5)
    assert not ready()
    redis_port = int(text.split("embedded Redis on redis://127.0.0.1:")[1].split("/")[0])
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=redis_port, socket_connect_timeout=1).ping()
