"""Receiver throughput and latency against its floor and bare Flask, side by side in one run.

    python bench/receiver.py [--seconds 5] [--rounds 3] [--rate 2500] [--slow 64] [--workers N]
                             [--client-processes 2]

Three apps run at once under the deployment's own web command (the Procfile's ``web`` line:
gunicorn with ``app/gunicorn_conf.py``) with the same worker count, by default gunicorn's
advice of 2 x cores + 1: bare Flask (answers 200, does nothing), the floor (bare Flask plus the
one Redis script call every accepted webhook needs, ``bench/floor_app.py``) and the receiver,
which verifies real signatures, validates, de-duplicates and enqueues into a real Redis
(REDIS_URL, or an embedded one). Saturation is measured with wrk (``apt-get install wrk``),
1 thread and 16 connections, the three apps taking turns for ``--rounds`` rounds so that a busy
machine slows all three alike, in the reverse order every other round (a machine that speeds up
or slows down over a round then favours neither); ratios are per round, and the table shows the
medians and, for receiver / floor, the range over the rounds. Latency
is measured at a fixed offered load (``--rate``), open loop (each request's latency counts from
its due time), from ``--client-processes`` processes on non-blocking keep-alive sockets (enough
to offer a few thousand requests/s on two cores) while ``--slow`` connections are open on the
same server, each announcing a 100,000-byte body and sending one byte every 2 s (re-opened
when the receiver cuts them off). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import errno
import json
import multiprocessing
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import deque
from contextlib import ExitStack, contextmanager, suppress
from multiprocessing.connection import Connection
from pathlib import Path
from statistics import median, quantiles
from typing import Any

import redis
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.signatures import intercom_signature, sanity_signature_header
from tests.processes import deployment_command
from workers.ops.embedded_redis import EmbeddedRedis, free_port

SANITY_SECRET = "bench-sanity-secret"
# The receiver answers webhooks of switched-off features "ignored": switch on every feature
# (the receiver only checks that they are set; nothing here calls the vendors).
FEATURES_ON = {"INTERCOM_ACCESS_TOKEN": "bench-token", "INTERCOM_ADMIN_ID": "1",
               "RULES_PATH": "bench-rules.yml", "INTERCOM_AUTHOR_ID": "1",
               "INTERCOM_DEFAULT_COLLECTION_ID": "1", "SANITY_PROJECT_ID": "bench",
               "SANITY_DATASET": "production", "SANITY_TOKEN": "bench-token"}  # fmt: skip
INTERCOM_SECRET = "bench-intercom-secret"


@contextmanager
def gunicorn(target: str, env: dict[str, str], workers: int):
    """``target`` under the deployment's own web command (the Procfile's ``web`` line)."""
    port = free_port()
    log = tempfile.TemporaryFile()
    args = deployment_command("web", "--bind", f"127.0.0.1:{port}", "--workers", str(workers))
    args = [target if arg == "app:create_app()" else arg for arg in args]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/readyz", timeout=1).ok:
                break
        except requests.RequestException:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError(f"{target} did not start")
    try:
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def intercom_body(n: int) -> bytes:
    return json.dumps({
        "type": "notification_event", "app_id": "bench", "id": f"notif-{n}-{time.time_ns()}",
        "topic": "conversation.user.replied", "delivery_attempts": 1,
        "created_at": int(time.time()),
        "data": {"type": "notification_event_data",
                 "item": {"type": "conversation", "id": str(100000 + n)}},
    }, separators=(",", ":")).encode()  # fmt: skip


def request_file(kind: str, count: int) -> Path:
    """Pre-signed requests, one per line (``body\\theader-name\\theader-value\\tkey``)."""
    path = Path(tempfile.mkstemp(prefix=f"bench-{kind}-", suffix=".tsv")[1])
    stamp = int(time.time() * 1000)
    with path.open("w") as out:
        for n in range(count):
            if kind == "sanity":
                body = json.dumps({"_id": f"article-{n % 500}", "operation": "update"}).encode()
                # A delivery of its own: its own timestamp, so its own signature.
                header = sanity_signature_header(SANITY_SECRET, stamp + n, body)
                out.write(f"{body.decode()}\tsanity-webhook-signature\t{header}\tk-{n}-{stamp}\n")
            else:
                body = intercom_body(n)
                out.write(f"{body.decode()}\tX-Hub-Signature\t"
                          f"{intercom_signature(INTERCOM_SECRET, body)}\t-\n")  # fmt: skip
    return path


WRK_SCRIPT = """
local requests = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do
    local body, name, value, key = line:match("([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)")
    local headers = {["Content-Type"] = "application/json", [name] = value,
                     ["sanity-operation"] = "update"}
    if key ~= "-" then headers["idempotency-key"] = key end
    requests[#requests + 1] = wrk.format("POST", args[2], headers, body)
  end
end
request = function()
  i = i + 1
  if i > #requests then i = 1 end
  return requests[i]
end
"""


def wrk(url: str, path: str, requests_file: Path, seconds: int, connections: int) -> dict:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s",
         str(script), url, "--", str(requests_file), path],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    return {"rps": rps, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "p50_ms": _ms(p50), "p99_ms": _ms(p99)}  # fmt: skip


def _ms(match: re.Match | None) -> float:
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def http_request(path: str, hostport: str, line: str) -> bytes:
    """One request file line as the full HTTP/1.1 bytes, with the headers the wrk script sends."""
    body, name, value, key = line.split("\t")
    data = body.encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n"
            f"{name}: {value}\r\nsanity-operation: update\r\n")  # fmt: skip
    if key != "-":
        head += f"idempotency-key: {key}\r\n"
    return f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data


class _Conn:
    """One keep-alive connection and the request in flight on it (never more than one)."""

    __slots__ = ("buf", "close", "connecting", "due", "end", "events", "out", "sock", "status")

    def __init__(self, sock: socket.socket, connecting: bool) -> None:
        self.sock = sock
        self.connecting = connecting
        # What the selector watches: writability while connecting or while the kernel cannot
        # take all of the request, readability always after connecting (a close is news too).
        self.events = selectors.EVENT_WRITE if connecting else selectors.EVENT_READ
        # When the latency of the request in flight started counting; None when idle.
        self.due: float | None = None
        self.out = memoryview(b"")  # what is still to be sent of it
        self.buf = bytearray()  # its response so far
        self.status = 0
        self.end: int | None = None  # the response's length once its head is in; -1: to EOF
        self.close = False  # the server said it closes the connection after this response


def _parse_head(conn: _Conn) -> bool:
    """Status, length and ``Connection: close`` of the response, once its head is in.

    A response without Content-Length (the benchmarked servers always send one) runs to the
    connection's close, except those that never have a body."""
    end = conn.buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    lines = bytes(conn.buf[:end]).split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP response: {lines[0][:80]!r}")
    conn.status = int(parts[1])
    length = 0 if conn.status in (204, 304) or conn.status < 200 else None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            conn.close = value.strip().lower() == b"close"
    conn.end = -1 if length is None else end + 4 + length
    return True


# epoll waits whole milliseconds, rounded up: waking for each request that late would count up
# to 1 ms of the client's sleep as the server's latency, and waking on time with select() (which
# takes microseconds) costs twice the CPU. So the loop wakes at most this early instead, sends
# what falls due before the next wake-up, and counts an early request's latency from its sending.
EARLY = 0.001
# The apps answer a few hundred bytes; a response (or a head) past this is a broken server.
MAX_RESPONSE = 1 << 20


def _paced_worker(pipe: Connection, url: str, path: str, requests_file: str, rate: int,
                  seconds: int, index: int, processes: int, pool: int, cap: int,
                  grace: float) -> None:  # fmt: skip
    """Process ``index`` of ``processes`` of :func:`paced`: requests n = index, index +
    processes, ... of the schedule (n due at start + n / rate), on non-blocking sockets.

    The request bytes and the first ``pool`` connections are ready before the parent's start
    time arrives, so the loop only sends, waits and reads; it sends the parent its latencies
    (ms), status counts, the time of its last answer, the time it got to its last due request
    (late if it could not keep up) and the CPU seconds the run took."""
    try:
        hostport = url.split("//")[1].rstrip("/")
        host, port = hostport.rsplit(":", 1)
        address = (host, int(port))
        lines = Path(requests_file).read_text().splitlines()
        mine = [http_request(path, hostport, lines[n % len(lines)])
                for n in range(index, rate * seconds, processes)]  # fmt: skip
        step = processes / rate  # between two of this process's due times
        selector = selectors.DefaultSelector()
        idle: deque[_Conn] = deque()
        waiting: deque[tuple[float, bytes]] = deque()  # sent as connections come free
        latencies = array("d")
        statuses: dict[int, int] = {}
        opened = 0  # connections open or opening

        def open_conn(block: bool) -> _Conn:
            nonlocal opened
            if block:
                sock = socket.create_connection(address, timeout=5)
                sock.setblocking(False)
                connecting = False
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                error = sock.connect_ex(address)
                if error not in (0, errno.EINPROGRESS):
                    sock.close()
                    raise OSError(error, os.strerror(error))
                connecting = error != 0
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, connecting)
            selector.register(sock, conn.events, conn)
            opened += 1
            return conn

        def record(status: int, due: float, now: float) -> None:
            latencies.append((now - due) * 1000)
            statuses[status] = statuses.get(status, 0) + 1

        def drop(conn: _Conn, now: float) -> None:
            """Close ``conn``; a request in flight on it fails (status 0)."""
            nonlocal opened
            selector.unregister(conn.sock)
            conn.sock.close()
            opened -= 1
            if conn.due is not None:
                record(0, conn.due, now)
                conn.due = None

        def send(conn: _Conn) -> None:
            """Send what is left of the request; wait for writability if the kernel is full."""
            conn.out = conn.out[conn.sock.send(conn.out) :]
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
            if conn.events != events:
                conn.events = events
                selector.modify(conn.sock, events, conn)

        def put(conn: _Conn, due: float, data: bytes) -> None:
            """Put a request on ``conn``: sent now, or once it has connected."""
            conn.due, conn.out, conn.end, conn.close = due, memoryview(data), None, False
            conn.buf.clear()
            if not conn.connecting:
                try:
                    send(conn)
                except OSError:
                    drop(conn, time.monotonic())

        def assign(due: float, data: bytes) -> None:
            """An idle connection, else a new one up to ``cap``, else wait for one."""
            if idle:
                put(idle.popleft(), due, data)
            elif opened < cap:
                try:
                    put(open_conn(block=False), due, data)
                except OSError:
                    record(0, due, time.monotonic())
            else:
                waiting.append((due, data))

        def done(conn: _Conn, status: int, now: float) -> None:
            """The response is in: count it, and give the connection the next request."""
            record(status, conn.due, now)
            conn.due = None
            if conn.close or conn.out:  # the server answered before it had the whole request
                drop(conn, now)
            elif waiting:
                put(conn, *waiting.popleft())
            else:
                idle.append(conn)

        for _ in range(pool):
            idle.append(open_conn(block=True))
        pipe.send("ready")
        start: float = pipe.recv()
        cpu = sum(os.times()[:2])
        deadline = start + seconds + grace
        last_done = last_due = start
        n = 0
        while True:
            now = time.monotonic()
            while n < len(mine) and start + n * step <= now + EARLY:
                due = start + n * step
                # Sent early, its latency counts from now; sent late, from when it was due.
                assign(min(due, now), mine[n])
                last_due = max(due, now)
                n += 1
            if n == len(mine) and opened == len(idle) and not waiting:
                break
            if now >= deadline:  # give up on what is still outstanding: timeouts
                for key in list(selector.get_map().values()):
                    if key.data.due is not None:
                        drop(key.data, now)
                for due, _data in waiting:
                    record(0, due, now)
                break
            wake = start + n * step - EARLY if n < len(mine) else deadline
            for key, events in selector.select(max(0.0, wake - now)):
                conn: _Conn = key.data
                try:
                    if conn.connecting:
                        error = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if error:
                            raise OSError(error, os.strerror(error))
                        conn.connecting = False
                        send(conn)
                        continue
                    if events & selectors.EVENT_WRITE and conn.out:
                        send(conn)
                    if not events & selectors.EVENT_READ:
                        continue
                    chunk = conn.sock.recv(65536)
                    if not chunk:
                        raise ConnectionResetError("closed by the server")
                    if conn.due is None:
                        raise ConnectionError("bytes nobody asked for")
                    conn.buf += chunk
                    if len(conn.buf) > MAX_RESPONSE:
                        conn.end = None  # a failure (status 0), not an answer
                        raise ConnectionError("response larger than the benchmark reads")
                    if conn.end is None and not _parse_head(conn):
                        continue
                    if 0 <= conn.end <= len(conn.buf):
                        last_done = time.monotonic()
                        done(conn, conn.status, last_done)
                except (BlockingIOError, InterruptedError):
                    continue
                except (OSError, ValueError):
                    now = time.monotonic()
                    if conn.due is not None and conn.end == -1:
                        conn.close = True  # a response without a length ends with the connection
                        last_done = now
                        done(conn, conn.status, now)
                    else:
                        if conn in idle:
                            idle.remove(conn)
                        drop(conn, now)
        cpu = sum(os.times()[:2]) - cpu
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()
        pipe.send({"latencies": latencies, "statuses": statuses, "last_done": last_done,
                   "last_due": last_due, "cpu_s": cpu})  # fmt: skip
    except Exception as exc:
        with suppress(OSError):
            pipe.send({"error": repr(exc)})
        raise
    finally:
        pipe.close()


def _receive(pipe: Connection, timeout: float) -> Any:
    """The next message from a :func:`_paced_worker`; its failure raised here."""
    if not pipe.poll(timeout):
        raise RuntimeError(f"no word from a client process in {timeout:.0f} s")
    try:
        message = pipe.recv()
    except EOFError:
        raise RuntimeError("a client process died") from None
    if isinstance(message, dict) and "error" in message:
        raise RuntimeError(f"client process failed: {message['error']}")
    return message


def paced(url: str, path: str, requests_file: Path, rate: int, seconds: int, processes: int = 2,
          pool: int = 32, cap: int = 256, grace: float = 10.0) -> dict:  # fmt: skip
    """Offer ``rate`` requests/s for ``seconds``; latency percentiles.

    Open loop: request n is due at start + n / rate and its latency counts from then (or from
    its sending, if that was up to ``EARLY`` before), so a slow answer delays no later request
    and hides nothing (no coordinated omission); a request that finds no idle keep-alive
    connection opens one (up to ``cap`` per process) or waits, its clock already running.
    The schedule is shared out over ``processes`` processes, each one thread on non-blocking
    sockets, because Python threads with http.client cannot offer a few thousand requests/s
    on a small machine and would measure their own backlog; an ``offered`` rate below
    ``rate`` says the client still fell behind. Answers still missing ``grace`` seconds after
    the schedule ends count as status 0, like failed connections, with the time waited."""
    context = multiprocessing.get_context("spawn")  # fork and threads (slow_connections) mix badly
    pipes: list[Connection] = []
    workers = []
    try:
        for index in range(processes):
            ours, theirs = context.Pipe()
            worker = context.Process(
                target=_paced_worker, daemon=True,
                args=(theirs, url, path, str(requests_file), rate, seconds, index, processes,
                      pool, cap, grace),
            )  # fmt: skip
            worker.start()
            theirs.close()
            pipes.append(ours)
            workers.append(worker)
        for pipe in pipes:
            _receive(pipe, 60)
        # time.monotonic is CLOCK_MONOTONIC, one clock for every process on the machine.
        start = time.monotonic() + 0.1
        for pipe in pipes:
            pipe.send(start)
        results = [_receive(pipe, seconds + grace + 30) for pipe in pipes]
    finally:
        for pipe in pipes:  # a worker still waiting for the start time gives up
            pipe.close()
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
    latencies = [ms for result in results for ms in result["latencies"]]
    statuses: dict[int, int] = {}
    for result in results:
        for status, count in result["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    answered = len(latencies) - statuses.get(0, 0)
    # Each request owns a 1 / rate slot of the schedule, so on time the last one ends it at
    # exactly ``seconds``.
    offered = rate * seconds / (max(r["last_due"] for r in results) - start + 1 / rate)
    elapsed = max(r["last_done"] for r in results) - start
    cuts = quantiles(latencies, n=100)
    return {"sent": len(latencies), "offered": offered,
            "achieved": answered / elapsed if elapsed > 0 else 0.0, "p50_ms": cuts[49],
            "p99_ms": cuts[98], "max_ms": max(latencies),
            "statuses": dict(sorted(statuses.items())),
            "client_cpu_s": sum(r["cpu_s"] for r in results)}  # fmt: skip


@contextmanager
def slow_connections(url: str, count: int, interval: float = 2.0):
    """Keep ``count`` connections open that each announce a 100,000-byte body and send one
    byte every ``interval`` seconds; one the server answers or closes is replaced."""
    host, port = url.split("//")[1].split(":")
    head = (f"POST /webhooks/intercom HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100000\r\n"
            "Content-Type: application/json\r\n\r\n{").encode()  # fmt: skip
    stop = threading.Event()
    stats = {"opened": 0, "cut_off": 0}

    def open_one() -> socket.socket:
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(head)
        stats["opened"] += 1
        return sock

    socks = [open_one() for _ in range(count)]

    def dribble() -> None:
        selector = selectors.DefaultSelector()
        while not stop.is_set():
            for i, sock in enumerate(socks):
                selector.register(sock, selectors.EVENT_READ)
                answered = selector.select(timeout=0)
                selector.unregister(sock)
                try:
                    if answered:
                        raise ConnectionError("answered")
                    sock.sendall(b" ")
                except OSError:
                    sock.close()
                    stats["cut_off"] += 1
                    socks[i] = open_one()
            stop.wait(interval)
        selector.close()

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        yield stats
    finally:
        stop.set()
        thread.join(timeout=10)
        for sock in socks:
            sock.close()


APPS = (("bare Flask", "bench.bare_app:app"), ("floor", "bench.floor_app:app"),
        ("receiver", "app:create_app()"))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="saturation rounds per app")
    parser.add_argument("--rate", type=int, default=2500, help="fixed offered load, requests/s")
    parser.add_argument("--slow", type=int, default=64,
                        help="slow connections open during the fixed load")  # fmt: skip
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1,
                        help="gunicorn workers for every app (default: gunicorn's advice, "
                             "2 x cores + 1)")  # fmt: skip
    parser.add_argument("--client-processes", type=int, default=2,
                        help="processes sharing out the fixed load")  # fmt: skip
    args = parser.parse_args()
    with ExitStack() as stack:
        url = os.environ.get("REDIS_URL")
        if not url:
            url = stack.enter_context(EmbeddedRedis()).url
        client = redis.Redis.from_url(url)
        env = {**os.environ, "REDIS_URL": url, "SANITY_WEBHOOK_SECRET": SANITY_SECRET,
               "INTERCOM_CLIENT_SECRET": INTERCOM_SECRET, "LOG_LEVEL": "INFO",
               "SANITY_WEBHOOK_TOLERANCE_SECONDS": "3600", **FEATURES_ON}  # fmt: skip
        files = {kind: request_file(kind, 60000) for kind in ("sanity", "intercom")}
        bases = {name: stack.enter_context(gunicorn(target, env, args.workers))[0]
                 for name, target in APPS}  # fmt: skip
        rps: dict[tuple[str, str], list[float]] = {}
        tails: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds):
            for kind in ("sanity", "intercom"):
                for name, _target in (APPS if round_ % 2 == 0 else APPS[::-1]):
                    client.flushdb()
                    sat = wrk(bases[name], f"/webhooks/{kind}", files[kind], args.seconds,
                              args.connections)  # fmt: skip
                    rps.setdefault((name, kind), []).append(sat["rps"])
                    tails.setdefault((name, kind), []).append(sat["p99_ms"])
        fixed = {}
        for name, _target in APPS:
            for kind in ("sanity", "intercom"):
                client.flushdb()
                with slow_connections(bases[name], args.slow) as slow:
                    time.sleep(1.0)
                    fixed[(name, kind)] = {**paced(bases[name], f"/webhooks/{kind}",
                                                   files[kind], args.rate, args.seconds,
                                                   args.client_processes),
                                           **slow}  # fmt: skip
        print(f"Saturation: wrk, {args.connections} connections, {args.rounds} rounds of "
              f"{args.seconds} s per app and webhook, medians; {args.workers} workers.\n")
        print("| webhook | bare Flask req/s | floor req/s | receiver req/s | receiver / floor "
              "| receiver / floor, range | receiver / bare | floor / bare | receiver p99 ms |")
        print("|---|---|---|---|---|---|---|---|---|")
        for kind in ("sanity", "intercom"):
            bare, floor, recv = (rps[(name, kind)] for name, _ in APPS)
            ratios = [r / f for r, f in zip(recv, floor, strict=True)]
            ratio = median(ratios)
            ratio_bare = median(r / b for r, b in zip(recv, bare, strict=True))
            floor_bare = median(f / b for f, b in zip(floor, bare, strict=True))
            print(f"| {kind} | {median(bare):.0f} | {median(floor):.0f} | {median(recv):.0f} | "
                  f"{ratio:.2f} | {min(ratios):.2f} to {max(ratios):.2f} | {ratio_bare:.2f} | "
                  f"{floor_bare:.2f} | "
                  f"{median(tails[('receiver', kind)]):.1f} |")
        print(f"\nFixed load: {args.rate} requests/s offered for {args.seconds} s from "
              f"{args.client_processes} client processes with {args.slow} slow connections "
              "open.\n")
        print("| app | webhook | offered req/s | achieved req/s | p50 ms | p99 ms | max ms "
              "| statuses | slow connections opened | cut off by the server |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for (name, kind), row in fixed.items():
            print(f"| {name} | {kind} | {row['offered']:.0f} | {row['achieved']:.0f} | "
                  f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['max_ms']:.1f} | "
                  f"{row['statuses']} | {row['opened']} | {row['cut_off']} |")
        for path in files.values():
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
