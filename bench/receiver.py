"""Receiver throughput and latency against its floor and bare Flask, side by side in one run.

    python bench/receiver.py [--seconds 5] [--rounds 3] [--rate 2500] [--slow 64] [--workers N]

Three apps run at once under the deployment's own web command (the Procfile's ``web`` line:
gunicorn with ``app/gunicorn_conf.py``) with the same worker count, by default gunicorn's
advice of 2 x cores + 1: bare Flask (answers 200, does nothing), the floor (bare Flask plus the
one Redis script call every accepted webhook needs, ``bench/floor_app.py``) and the receiver,
which verifies real signatures, validates, de-duplicates and enqueues into a real Redis
(REDIS_URL, or an embedded one). Saturation is measured with wrk (``apt-get install wrk``),
1 thread and 16 connections, the three apps taking turns for ``--rounds`` rounds so that a busy
machine slows all three alike; ratios are per round, and the table shows the medians. Latency
is measured at a fixed offered load (``--rate``) from a paced Python client while ``--slow``
connections are open on the same server, each announcing a 100,000-byte body and sending one
byte every 2 s (re-opened when the receiver cuts them off). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from http.client import HTTPConnection
from pathlib import Path
from statistics import median, quantiles

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


def paced(url: str, path: str, requests_file: Path, rate: int, seconds: int,
          threads: int = 16) -> dict:  # fmt: skip
    """Offer ``rate`` requests/s for ``seconds`` from ``threads`` threads; latency percentiles.

    Open loop: each request has its due time, and its latency counts from then, so a client
    thread held up by a slow answer does not hide the delay (no coordinated omission)."""
    lines = requests_file.read_text().splitlines()
    host, port = url.split("//")[1].split(":")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    start = time.perf_counter() + 0.2

    def run(worker: int) -> None:
        conn = HTTPConnection(host, int(port), timeout=10)
        n = worker
        while True:
            due = start + n / rate
            if due - start > seconds:
                break
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            body, name, value, key = lines[n % len(lines)].split("\t")
            headers = {"Content-Type": "application/json", name: value,
                       "sanity-operation": "update"}  # fmt: skip
            if key != "-":
                headers["idempotency-key"] = key
            try:
                conn.request("POST", path, body=body.encode(), headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except OSError:
                conn.close()
                conn = HTTPConnection(host, int(port), timeout=10)
                status = 0
            took = (time.perf_counter() - due) * 1000
            with lock:
                latencies.append(took)
                statuses[status] = statuses.get(status, 0) + 1
            n += threads

    pool = [threading.Thread(target=run, args=(w,)) for w in range(threads)]
    began = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - began
    cuts = quantiles(latencies, n=100)
    return {"sent": len(latencies), "achieved": len(latencies) / elapsed, "p50_ms": cuts[49],
            "p99_ms": cuts[98], "statuses": statuses}  # fmt: skip


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
        for _round in range(args.rounds):
            for kind in ("sanity", "intercom"):
                for name, _target in APPS:
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
                                                   files[kind], args.rate, args.seconds),
                                           **slow}  # fmt: skip
        print(f"Saturation: wrk, {args.connections} connections, {args.rounds} rounds of "
              f"{args.seconds} s per app and webhook, medians; {args.workers} workers.\n")
        print("| webhook | bare Flask req/s | floor req/s | receiver req/s | receiver / floor "
              "| receiver / bare | floor / bare | receiver p99 ms |")
        print("|---|---|---|---|---|---|---|---|")
        for kind in ("sanity", "intercom"):
            bare, floor, recv = (rps[(name, kind)] for name, _ in APPS)
            ratio = median(r / f for r, f in zip(recv, floor, strict=True))
            ratio_bare = median(r / b for r, b in zip(recv, bare, strict=True))
            floor_bare = median(f / b for f, b in zip(floor, bare, strict=True))
            print(f"| {kind} | {median(bare):.0f} | {median(floor):.0f} | {median(recv):.0f} | "
                  f"{ratio:.2f} | {ratio_bare:.2f} | {floor_bare:.2f} | "
                  f"{median(tails[('receiver', kind)]):.1f} |")
        print(f"\nFixed load: {args.rate} requests/s offered for {args.seconds} s with "
              f"{args.slow} slow connections open.\n")
        print("| app | webhook | achieved req/s | p50 ms | p99 ms | statuses | slow connections "
              "opened | cut off by the server |")
        print("|---|---|---|---|---|---|---|---|")
        for (name, kind), row in fixed.items():
            print(f"| {name} | {kind} | {row['achieved']:.0f} | {row['p50_ms']:.2f} | "
                  f"{row['p99_ms']:.2f} | {row['statuses']} | {row['opened']} | "
                  f"{row['cut_off']} |")
        for path in files.values():
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
