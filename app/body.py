"""Reading and parsing a webhook body, bounded in size, time and nesting.

Every check here runs before the signature is trusted to mean anything and before the body is
handed to a parser whose cost grows with it: a slow or hostile client must get a quick, truthful
JSON answer (``408``, ``413``, ``400``) and must not hold the process that answers other
webhooks.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import accumulate
from typing import Any

from gevent import getcurrent
from werkzeug.wsgi import get_input_stream

_CHUNK = 64 * 1024


class BodyError(Exception):
    """A body the receiver refuses: the HTTP status, an error code and a reason for the sender."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


class _Timeout(Exception):
    pass


class GreenletDeadlines:
    """Total deadlines for blocks run by greenlets, kept by one periodic timer of the event loop.

    A gevent ``Timeout`` per request means an event-loop timer made, started, stopped and closed
    for every webhook: about a tenth of the receiver's own work per webhook. A body deadline is
    seconds long and a quarter of a second late is as good, so a block only notes its greenlet
    and when its time is up, and one timer, every ``tick`` seconds, throws :class:`_Timeout`
    into each greenlet whose time is up. That is what a ``Timeout`` does when it fires: the
    greenlet is waiting in the event loop (for more of its body), and the exception is raised
    there. Serves one event loop: gunicorn's gevent worker runs all its requests in one thread.
    """

    def __init__(self, tick: float = 0.25) -> None:
        self._tick = tick
        self._due: dict[Any, float] = {}
        self._timer: Any = None

    def start(self, seconds: float) -> Any:
        """Start the calling greenlet's deadline; pass what this returns to :meth:`finish`."""
        current = getcurrent()
        self._due[current] = time.monotonic() + seconds
        if self._timer is None:
            from gevent import get_hub

            # ref=False: the timer alone does not keep the event loop (and a stopping worker)
            # running.
            self._timer = get_hub().loop.timer(self._tick, self._tick, ref=False)
            self._timer.start(self._expire)
        return current

    def finish(self, greenlet: Any) -> None:
        """The block ended (or raised) in time: its deadline no longer applies."""
        self._due.pop(greenlet, None)

    def forget_all(self) -> None:
        """After a fork: the parent's timer belongs to the parent's event loop."""
        self._due.clear()
        self._timer = None

    def _expire(self) -> None:
        if not self._due:
            return
        now = time.monotonic()
        for greenlet, due in [item for item in self._due.items() if item[1] <= now]:
            # Throwing runs that greenlet until it waits again (it answers 408 meanwhile), so
            # check that its block has not ended in the meantime.
            if self._due.get(greenlet) == due:
                del self._due[greenlet]
                greenlet.throw(_Timeout)


_deadlines = GreenletDeadlines()
os.register_at_fork(after_in_child=_deadlines.forget_all)
_gevent_socket: bool | None = None


def _gevent_patched() -> bool:
    """Whether gevent has patched ``socket`` in this process (gunicorn's gevent worker does so
    before it loads the app, so the first answer holds for the process's life)."""
    global _gevent_socket
    if _gevent_socket is None:
        from gevent import monkey

        _gevent_socket = monkey.is_module_patched("socket")
    return _gevent_socket


@contextmanager
def _socket_deadline(environ: dict[str, Any], seconds: float) -> Iterator[None]:
    sock = environ.get("gunicorn.socket")
    previous = sock.gettimeout() if isinstance(sock, socket.socket) else None
    if isinstance(sock, socket.socket):
        sock.settimeout(seconds)
    try:
        yield
    except TimeoutError:
        raise _Timeout() from None
    finally:
        if isinstance(sock, socket.socket):
            sock.settimeout(previous)


def read_body(environ: dict[str, Any], max_bytes: int, timeout_s: float) -> bytes:
    """The raw request body, at most ``max_bytes``, read within ``timeout_s`` seconds.

    A declared ``Content-Length`` over the cap is refused before reading; a chunked body (no
    length) is read up to one byte past the cap and refused then, never cut and processed.
    """
    declared = environ.get("CONTENT_LENGTH")
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise BodyError(400, "invalid_header", "Content-Length is not a number") from None
        if length > max_bytes:
            raise _too_large(max_bytes)
    else:
        length = None
    # Under gunicorn's gevent workers (the deployment's) the deadline is a total one: a client
    # that sends one byte every second still runs out of time. Elsewhere (tests, another server)
    # each socket read gets the timeout instead, which bounds a stalled client but not a
    # dribbling one.
    try:
        if _gevent_patched():
            greenlet = _deadlines.start(timeout_s)
            try:
                return _read(environ, length, max_bytes)
            finally:
                _deadlines.finish(greenlet)
        with _socket_deadline(environ, timeout_s):
            return _read(environ, length, max_bytes)
    except _Timeout:
        raise BodyError(408, "request_timeout",
                        f"body not received within {timeout_s:g} s") from None  # fmt: skip
    except OSError:
        # gunicorn's NoMoreData, a reset: the client went away before sending all it announced.
        raise BodyError(400, "invalid_body", "body ended before its announced length") from None
    except Exception as exc:
        if type(exc).__module__ != "gunicorn.http.errors":
            raise
        # A malformed chunked encoding, found by gunicorn while the body is read.
        raise BodyError(400, "invalid_body",
                        f"body framing is invalid ({type(exc).__name__})") from None  # fmt: skip


def _read(environ: dict[str, Any], length: int | None, max_bytes: int) -> bytes:
    if length is not None:
        # The common case: one read of the announced length (the server's reader stops there;
        # the deadline covers a client that sends it a byte at a time).
        body = environ["wsgi.input"].read(length)
        if len(body) < length:
            raise OSError("body ended before its announced length")
        return body
    chunks: list[bytes] = []
    total = 0
    stream = get_input_stream(environ, max_content_length=None)
    while True:
        chunk = stream.read(min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(max_bytes)


def _too_large(max_bytes: int) -> BodyError:
    return BodyError(413, "too_large", f"body larger than {max_bytes} bytes")


# A JSON string (escapes included), so that brackets inside strings are not counted as nesting;
# an unterminated string runs to the end. The quantifiers are possessive and every start
# position matches, so the scan is linear in the body's length whatever the body holds.
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+\\?+(?:"|\Z)', re.DOTALL)
# The escape of a UTF-16 surrogate (\ud800-\udfff), lone or half of a pair.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _DEPTH_STEP)


def json_depth(raw: bytes) -> int:
    """How deeply ``raw``'s arrays and objects nest, computed without recursion.

    Python's JSON parser recurses once per level, so a body nested 100,000 deep raises
    ``RecursionError`` inside it; this counts the brackets outside strings instead.
    """
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(_DEPTH_STEP[b] for b in brackets), default=0)


_JSON_SPACE = " \t\n\r"  # RFC 8259's whitespace, the only kind allowed around a value
_scan_value = json.JSONDecoder().scan_once


def _loads(text: str) -> Any:
    """``json.loads(text)``, less the layers around the parser: one JSON value with only
    whitespace around it, else ``ValueError``.

    Webhook bodies are UTF-8 (RFC 8259 requires it between systems; Intercom and Sanity send
    it), so the bytes are decoded as UTF-8 rather than sniffed for UTF-16 or 32 as ``json.loads``
    does for bytes.
    """
    start = 0
    if text and text[0] in _JSON_SPACE:
        start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        value, end = _scan_value(text, start)
    except StopIteration as missing:
        raise json.JSONDecodeError("Expecting value", text, missing.value) from None
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def parse_object(raw: bytes, max_depth: int) -> dict[str, Any]:
    """The body as a JSON object; :class:`BodyError` (400) names what is wrong with it."""
    # Cheap first: a body with fewer brackets than the limit cannot nest deeper than it.
    if raw.count(b"[") + raw.count(b"{") > max_depth and json_depth(raw) > max_depth:
        raise BodyError(400, "invalid_body", f"JSON nested deeper than {max_depth} levels")
    try:
        payload = _loads(raw.decode())
    except UnicodeDecodeError:
        raise BodyError(400, "invalid_body", "body is not valid UTF-8") from None
    except (ValueError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        raise BodyError(400, "invalid_body", "body is not a JSON object")
    # JSON may spell a lone UTF-16 surrogate (\ud800), which no UTF-8 text can hold: such a
    # value would fail later, when it is logged or written to Redis. Only escapes can make one.
    if b"\\u" in raw and _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(payload, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise BodyError(400, "invalid_body",
                            "body holds a string that is not valid Unicode "
                            "(a lone surrogate escape such as \\ud800)") from None  # fmt: skip
    return payload

