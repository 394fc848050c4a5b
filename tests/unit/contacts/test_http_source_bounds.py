"""The HTTP enrichment source keeps to its lane against a real, misbehaving server.

A raw socket server on loopback plays the hostile enrichment backend: redirects to another
origin, endless redirects, huge answers (declared and streamed), an answer dripped byte by
byte (in the headers and in the body) and an answer cut off before its end.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from workers.contacts.sources import HttpSource, PermanentSourceError, TransientSourceError

CONTACT = {"id": "c1", "external_id": "usr_1", "email": "kim@globex.example"}
JSON = b'{"contact": {"tier": "gold"}}'


class HostileServer:
    """Answers each request with ``behaviour(path, wfile)``; counts requests per path."""

    def __init__(self, behaviour: Callable[[str, socket.socket], None]) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                path = data.split(b" ", 2)[1].decode()
                outer.requests.append(path)
                # The client cutting the connection is expected in several scenarios.
                with contextlib.suppress(OSError):
                    behaviour(path, self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[str, socket.socket], None]], HostileServer]]:
    servers: list[HostileServer] = []

    def start(behaviour: Callable[[str, socket.socket], None]) -> HostileServer:
        servers.append(HostileServer(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def answer(sock: socket.socket, status: str, body: bytes = b"", **headers: str) -> None:
    head = f"HTTP/1.1 {status}\r\nConnection: close\r\n"
    if "Content_Length" not in headers:
        head += f"Content-Length: {len(body)}\r\n"
    head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    sock.sendall(head.encode() + b"\r\n" + body)


def source(url: str, **kwargs: float) -> HttpSource:
    return HttpSource(url + "/lookup", "tok_enrich", **kwargs)


# --------------------------------------------------------------------------- redirects


def test_a_redirect_to_another_origin_is_not_followed(serve) -> None:
    elsewhere = serve(lambda path, sock: answer(sock, "200 OK", JSON,
                                                Content_Type="application/json"))  # fmt: skip
    origin = serve(lambda path, sock: answer(sock, "302 Found",
                                             Location=elsewhere.url + "/steal"))  # fmt: skip
    with pytest.raises(PermanentSourceError, match="another origin"):
        source(origin.url).lookup(CONTACT)
    assert elsewhere.requests == []  # neither the token nor the email went there


def test_a_redirect_to_another_port_of_the_same_host_is_another_origin(serve) -> None:
    other = serve(lambda path, sock: answer(sock, "200 OK", JSON))
    origin = serve(lambda path, sock: answer(
        sock, "307 Temporary Redirect", Location=f"http://127.0.0.1:{other.port}/lookup"))
    with pytest.raises(PermanentSourceError, match="another origin"):
        source(origin.url).lookup(CONTACT)
    assert other.requests == []


def test_same_origin_redirects_are_followed_a_few_times(serve) -> None:
    def behaviour(path: str, sock: socket.socket) -> None:
        if path.startswith("/lookup"):
            answer(sock, "301 Moved Permanently", Location="/v2/lookup?external_id=usr_1")
        else:
            answer(sock, "200 OK", JSON, Content_Type="application/json")

    server = serve(behaviour)
    result = source(server.url).lookup(CONTACT)
    assert result is not None and result.contact == {"tier": "gold"}
    assert server.requests[1] == "/v2/lookup?external_id=usr_1"

    looping = serve(lambda path, sock: answer(sock, "302 Found", Location="/lookup"))
    with pytest.raises(PermanentSourceError, match="more than 3 redirects"):
        source(looping.url).lookup(CONTACT)
    assert len(looping.requests) == 4


# --------------------------------------------------------------------------- size


def test_a_declared_huge_answer_is_refused_before_reading(serve) -> None:
    def behaviour(path: str, sock: socket.socket) -> None:
        answer(sock, "200 OK", b"{", Content_Length=str(200 * 1024 * 1024))
        time.sleep(2)

    server = serve(behaviour)
    started = time.monotonic()
    with pytest.raises(TransientSourceError, match="over the 1,048,576-byte cap"):
        source(server.url).lookup(CONTACT)
    assert time.monotonic() - started < 1.5


def test_a_streamed_huge_answer_stops_past_the_cap(serve) -> None:
    sent: list[int] = []

    def behaviour(path: str, sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"x" * 65536
        for _ in range(3200):  # 200 MiB if nobody stops reading
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent.append(len(piece))
        sock.sendall(b"0\r\n\r\n")

    server = serve(behaviour)
    with pytest.raises(TransientSourceError, match="over the 1,048,576-byte cap"):
        source(server.url).lookup(CONTACT)
    time.sleep(0.5)
    assert sum(sent) < 16 * 1024 * 1024  # the server was cut off long before 200 MiB


# --------------------------------------------------------------------------- time


@pytest.mark.parametrize("phase", ["headers", "body"])
def test_a_slow_drip_ends_at_the_total_deadline(serve, phase: str) -> None:
    message = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(JSON), JSON)

    def behaviour(path: str, sock: socket.socket) -> None:
        start = 0 if phase == "headers" else message.index(b"\r\n\r\n") + 4
        sock.sendall(message[:start])
        for i in range(start, len(message)):  # one byte every 0.2 s: never a read timeout
            sock.sendall(message[i : i + 1])
            time.sleep(0.2)

    server = serve(behaviour)
    started = time.monotonic()
    with pytest.raises(TransientSourceError, match="no complete answer within 1 s"):
        source(server.url, deadline=1.0).lookup(CONTACT)
    assert time.monotonic() - started < 2.5


def test_a_truncated_answer_is_transient(serve) -> None:
    def behaviour(path: str, sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + JSON[:10])
        sock.shutdown(socket.SHUT_RDWR)

    server = serve(behaviour)
    with pytest.raises(TransientSourceError, match="broken off"):
        source(server.url).lookup(CONTACT)


def test_an_honest_server_still_works_through_the_bounds(serve) -> None:
    server = serve(lambda path, sock: answer(sock, "200 OK", JSON,
                                             Content_Type="application/json"))  # fmt: skip
    result = source(server.url, deadline=5.0).lookup(CONTACT)
    assert result is not None and result.contact == {"tier": "gold"}
    assert server.requests[0].startswith("/lookup?external_id=usr_1&email=kim%40globex.example")
