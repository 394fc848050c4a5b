"""The receiver as deployed (the Procfile's ``web`` command) against slow and malformed clients.

Slow connections must not delay correctly signed webhooks (Intercom gives up after 5 s and
deprioritises answers slower than 500 ms), a client too slow to send its body is cut off with a
JSON answer, and requests gunicorn refuses before the app sees them are answered in JSON too.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import requests

from app.signatures import intercom_signature
from tests.processes import base_env, gunicorn
from workers.ops.embedded_redis import free_port

pytestmark = pytest.mark.integration

INTERCOM_SECRET = "c1ient-secret-for-tests"
SLOW_CONNECTIONS = 64


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    return base_env(REDIS_URL=redis_url, INTERCOM_CLIENT_SECRET=INTERCOM_SECRET,
                    INTERCOM_ACCESS_TOKEN="tok-test", **extra)  # fmt: skip


def _contact_created(n: int) -> bytes:
    now = int(time.time())
    return json.dumps({
        "type": "notification_event", "app_id": "app", "id": f"notif-slow-{n}-{time.time_ns()}",
        "topic": "contact.user.created", "created_at": now, "first_sent_at": now,
        "data": {"type": "notification_event_data", "item": {"type": "contact", "id": f"c{n}"}},
    }).encode()  # fmt: skip


def _read_all(sock: socket.socket, deadline: float) -> bytes:
    chunks = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def slow_clients(port: int, count: int, interval: float, until: float) -> Iterator[list]:
    """``count`` connections that announce a 100,000-byte body and send one byte per
    ``interval`` seconds each, until ``until`` (monotonic) or until the server hangs up."""
    socks: list[socket.socket] = []
    head = (f"POST /webhooks/intercom HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n"
            "X-Hub-Signature: sha1=" + "0" * 40 + "\r\n\r\n").encode()  # fmt: skip
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(head + b"{")
        socks.append(sock)
    stop = threading.Event()

    def dribble() -> None:
        while not stop.is_set() and time.monotonic() < until:
            for sock in socks:
                try:
                    sock.sendall(b" ")
                except OSError:
                    continue  # cut off by the server: that is the point
            stop.wait(interval)

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        yield socks
    finally:
        stop.set()
        thread.join(timeout=10)
        for sock in socks:
            sock.close()


def test_slow_clients_do_not_delay_signed_webhooks_and_are_cut_off(real_redis_url) -> None:
    port = free_port()
    body_timeout = 6.0
    env = _env(real_redis_url, WEBHOOK_BODY_TIMEOUT_SECONDS=str(body_timeout))
    with ExitStack() as stack:
        stack.enter_context(gunicorn(port, env, workers=2))
        opened = time.monotonic()
        socks = stack.enter_context(
            slow_clients(port, SLOW_CONNECTIONS, interval=2.0, until=opened + 30))
        url = f"http://127.0.0.1:{port}/webhooks/intercom"
        timings: list[float] = []
        statuses: list[int] = []
        n = 0
        # Signed webhooks while every slow connection is open, each on a new connection.
        while time.monotonic() < opened + body_timeout - 1.0 and n < 200:
            body = _contact_created(n)
            headers = {"X-Hub-Signature": intercom_signature(INTERCOM_SECRET, body),
                       "Content-Type": "application/json"}  # fmt: skip
            started = time.monotonic()
            try:
                answer = requests.post(url, data=body, headers=headers, timeout=5)
                statuses.append(answer.status_code)
            except requests.RequestException as exc:
                statuses.append(0)
                print("request failed:", type(exc).__name__)
            timings.append(time.monotonic() - started)
            n += 1
            time.sleep(0.05)
        # Then every slow client gets a JSON 408 once its body time is up.
        answers = [_read_all(sock, opened + body_timeout + 8) for sock in socks]
    assert n >= 20, n
    assert statuses == [202] * n, statuses
    assert max(timings) < 1.0, sorted(timings)[-5:]
    for answer in answers:
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer[:300]
        assert json.loads(payload) == {"error": "request_timeout",
                                       "reason": f"body not received within {body_timeout:g} s"}


def _raw_exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        answer = _read_all(sock, time.monotonic() + 5)
    head, _, payload = answer.partition(b"\r\n\r\n")
    return head, payload


def test_requests_gunicorn_refuses_are_answered_in_json(real_redis_url) -> None:
    port = free_port()
    long_path = "/" + "a" * 5000
    many_headers = "".join(f"X-Pad-{i}: {i}\r\n" for i in range(150))
    cases = [
        (b"GARBAGE\r\n\r\n", b"400"),
        (f"GET {long_path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), b"414"),
        (f"POST /webhooks/intercom HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n".encode(), b"431"),
        (b"POST /webhooks/intercom HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"zz\r\n", b"400"),
    ]
    with gunicorn(port, _env(real_redis_url), workers=1):
        for request, status in cases:
            head, payload = _raw_exchange(port, request)
            assert head.split(b" ")[1] == status, head
            assert b"content-type: application/json" in head.lower(), head
            body = json.loads(payload)
            assert body["error"] and body["reason"], body
        # The receiver still answers after all that.
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200


def test_chunked_body_over_the_cap_is_413(real_redis_url) -> None:
    port = free_port()
    env = _env(real_redis_url, WEBHOOK_MAX_BODY_BYTES="1048576")
    body = _contact_created(1)[:-1] + b', "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    signed = intercom_signature(INTERCOM_SECRET, body[:1048576])

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    with gunicorn(port, env, workers=1):
        answer = requests.post(f"http://127.0.0.1:{port}/webhooks/intercom", data=chunks(),
                               headers={"X-Hub-Signature": signed}, timeout=10)  # fmt: skip
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == "too_large"
