"""Serve a WSGI app on localhost from a background thread, for tests and the sandbox.

Why: integration tests need a real HTTP server (real sockets, real timeouts, several client
processes) but must not depend on a fixed port or leave servers behind. ``BackgroundServer``
binds a free port at construction (so ``url`` is known before any request), serves with one
thread per request (``threaded=True``, so a deliberately slow answer does not block the
others), and stops cleanly from ``stop()`` or a ``with`` block.

Per-request access logging is off by default: under benchmark load it costs more than the
fake itself and floods the test output. Server errors are still logged.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

__all__ = ["BackgroundServer", "QuietRequestHandler", "serve_in_background"]


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler without the one-line-per-request access log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Skip the access log line (errors still go through ``log_error``)."""


class BackgroundServer:
    """A threaded werkzeug server for ``app`` on ``host``; ``port=0`` picks a free port."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        quiet: bool = True,
    ) -> None:
        self._server: BaseWSGIServer = make_server(
            host,
            port,
            app,
            threaded=True,
            request_handler=QuietRequestHandler if quiet else None,
        )
        # Handler threads must not keep the interpreter alive after a test run.
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def host(self) -> str:
        """The bound address."""
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The bound port (the free one chosen when constructed with ``port=0``)."""
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        """Base URL without trailing slash, e.g. ``http://127.0.0.1:53211``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        """Start serving in a daemon thread; returns ``self`` for chaining."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name=f"wsgi-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``stop()`` (or KeyboardInterrupt)."""
        self._server.serve_forever()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, wait for the serving thread and close the socket (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_background(app: Any, host: str = "127.0.0.1", port: int = 0) -> BackgroundServer:
    """Start ``app`` on a free port and return the running server (call ``stop()``)."""
    return BackgroundServer(app, host, port).start()
