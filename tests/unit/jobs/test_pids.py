"""This process's id from the cache, and another process's liveness."""

from __future__ import annotations

import os
import subprocess
import sys

from workers.jobs.pids import current_pid, pid_alive


def test_the_cached_pid_is_this_process_s_and_follows_a_fork() -> None:
    assert current_pid() == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, f"{current_pid()} {os.getpid()}".encode())
        os._exit(0)
    os.close(write)
    seen = os.read(read, 100).decode().split()
    os.waitpid(child, 0)
    assert seen == [str(child), str(child)]
    assert current_pid() == os.getpid() != child


def test_a_process_is_alive_until_it_has_exited() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert not pid_alive(proc.pid)
