"""One HTTP GET with hard bounds: same-origin redirects only, a size cap and a total deadline.

Why: an enrichment source is someone else's server. ``requests`` alone follows redirects to
any host (with our query string, which holds an email), reads answers of any size into memory,
and its read timeout restarts with every byte, so a server that drips one byte a second holds
a worker for as long as it likes. Here:

* **Redirects** are followed by hand, at most ``max_redirects``, and only to the same origin
  (scheme, host and port); anything else raises :class:`FetchRefused` (it will not improve by
  retrying). The query string is not re-sent: the ``Location`` carries its own.
* **Size**: a declared ``Content-Length`` over ``max_bytes`` is refused before reading; else
  the body is streamed and reading stops one chunk past ``max_bytes`` (:class:`FetchTooLarge`).
* **Deadline**: a watchdog thread cuts the connection in flight (``shutdown`` of its socket)
  once ``deadline`` seconds have passed, whatever phase it is in (headers or body), and keeps
  cutting until the fetch returns; the fetch then raises :class:`FetchDeadline`. Connect and
  read timeouts still apply inside the deadline.

Only sessions that have :func:`bounded_session`'s adapter mounted can be cut mid-read; for any
other session (tests replacing the transport) the deadline is checked between chunks.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

MAX_BYTES = 1024 * 1024
MAX_REDIRECTS = 3
CHUNK = 64 * 1024

_in_flight = threading.local()  # .connections: list of urllib3 connections used by this thread


class FetchError(Exception):
    """The fetch did not give a complete answer; the message is safe to log (no URL)."""


class FetchRefused(FetchError):
    """A redirect to another origin, or too many redirects: retrying will not help."""


class FetchTooLarge(FetchError):
    """The answer is over the size cap."""


class FetchDeadline(FetchError):
    """No complete answer within the total deadline."""


class FetchBroken(FetchError):
    """The connection failed while the body was read (truncated answer, reset)."""


class _TrackingPool:
    """Records each connection a thread takes from the pool, so the watchdog can cut it."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        connections = getattr(_in_flight, "connections", None)
        if connections is not None:
            connections.append(conn)
        return conn


class _HTTPPool(_TrackingPool, HTTPConnectionPool):
    pass


class _HTTPSPool(_TrackingPool, HTTPSConnectionPool):
    pass


class DeadlineAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections the watchdog of :func:`fetch` can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def bounded_session() -> requests.Session:
    """A session whose connections :func:`fetch` can cut at its deadline."""
    session = requests.Session()
    adapter = DeadlineAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with the default port filled in, for same-origin checks."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


class _Watchdog:
    """Cuts the thread's connections once the deadline passes, until stopped."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.connections: list[Any] = []
        self.fired = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fetch-deadline", daemon=True)

    def __enter__(self) -> _Watchdog:
        _in_flight.connections = self.connections
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        _in_flight.connections = None
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        wait = max(0.0, self.deadline - time.monotonic())
        while not self._done.wait(wait):
            self.fired = True
            for conn in list(self.connections):
                sock = getattr(conn, "sock", None)
                if sock is not None:
                    with contextlib.suppress(OSError):  # already closed
                        sock.shutdown(socket.SHUT_RDWR)
            wait = 0.2  # a connect that was under way gets its socket cut on the next round


@dataclass
class Answer:
    """A complete answer: status, headers and at most ``max_bytes`` of body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    response: requests.Response


def fetch(
    session: requests.Session,
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | tuple[float, float] = (3.05, 10),
    deadline: float = 20.0,
    max_bytes: int = MAX_BYTES,
    max_redirects: int = MAX_REDIRECTS,
) -> Answer:
    """GET ``url`` within the bounds of the module docstring.

    Raises :class:`FetchError` subclasses for the bounds, and lets ``requests`` exceptions of
    the request itself (connect failures, timeouts before any answer) through unchanged.
    """
    ends_at = time.monotonic() + deadline
    start = origin(url)
    query: Mapping[str, str] | None = params
    with _Watchdog(ends_at) as watchdog:
        try:
            for _hop in range(max_redirects + 1):
                response = session.get(
                    url, params=query, headers=dict(headers or {}), timeout=timeout,
                    allow_redirects=False, stream=True,
                )  # fmt: skip
                if not response.is_redirect:
                    body = _read(response, ends_at, max_bytes, deadline)
                    return Answer(response.status_code, response.headers, body, response)
                target = urljoin(response.url, response.headers["Location"])
                response.close()
                if origin(target) != start:
                    raise FetchRefused("redirected to another origin; not followed")
                url, query = target, None
            raise FetchRefused(f"more than {max_redirects} redirects")
        except (requests.RequestException, OSError) as exc:
            if watchdog.fired:
                raise FetchDeadline(f"no complete answer within {deadline:g} s") from None
            raise exc from None


def _read(response: requests.Response, ends_at: float, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        response.close()
        raise FetchTooLarge(f"answer of {int(declared):,} bytes is over the {max_bytes:,}-byte cap")
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise FetchTooLarge(f"answer is over the {max_bytes:,}-byte cap")
            chunks.append(chunk)
            if time.monotonic() >= ends_at:
                raise FetchDeadline(f"no complete answer within {deadline:g} s")
    except FetchError:
        response.close()
        raise
    except (requests.RequestException, OSError) as exc:
        response.close()
        if time.monotonic() >= ends_at:
            raise FetchDeadline(f"no complete answer within {deadline:g} s") from None
        raise FetchBroken(f"answer broken off ({type(exc).__name__})") from None
    return b"".join(chunks)
