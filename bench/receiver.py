"""Receiver throughput and latency against bare Flask, side by side in one run.

    python bench/receiver.py [--seconds 10] [--rate 500] [--connections 16] [--workers N]

Both apps run under the deployment's own web command (the Procfile's ``web`` line: gunicorn,
sync workers) with the same worker count, by default gunicorn's advice of 2 x cores + 1. The
receiver verifies real signatures, de-duplicates and enqueues into a real Redis (REDIS_URL, or an
embedded one). Saturation is measured with wrk (``apt-get install wrk``); latency at a fixed
offered load with a paced Python client in its own process. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from http.client import HTTPConnection
from pathlib import Path
from statistics import quantiles

import redis
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.signatures import intercom_signature, sanity_signature_header
from tests.processes import deployment_command
from workers.ops.embedded_redis import EmbeddedRedis, free_port

SANITY_SECRET = "bench-sanity-secret"
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
        "topic": "conversation.user.replied", "delivery_attempts": 1, "created_at": 1763712000,
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
                body = json.dumps({"_id": f"article-{n % 500}"}).encode()
                header = sanity_signature_header(SANITY_SECRET, stamp, body)
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


def paced(url: str, path: str, requests_file: Path, rate: int, seconds: int) -> dict:
    """Offer ``rate`` requests/s for ``seconds`` from 4 threads; return latency percentiles."""
    lines = requests_file.read_text().splitlines()
    host, port = url.split("//")[1].split(":")
    threads = 4
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
            sent = time.perf_counter()
            conn.request("POST", path, body=body.encode(), headers=headers)
            response = conn.getresponse()
            response.read()
            took = (time.perf_counter() - sent) * 1000
            with lock:
                latencies.append(took)
                statuses[response.status] = statuses.get(response.status, 0) + 1
            n += threads

    pool = [threading.Thread(target=run, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    cuts = quantiles(latencies, n=100)
    return {"sent": len(latencies), "p50_ms": cuts[49], "p99_ms": cuts[98], "statuses": statuses}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=500, help="fixed offered load, requests/s")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1,
                        help="gunicorn workers for both apps (default: gunicorn's advice, "
                             "2 x cores + 1)")  # fmt: skip
    args = parser.parse_args()
    with ExitStack() as stack:
        url = os.environ.get("REDIS_URL")
        if not url:
            url = stack.enter_context(EmbeddedRedis()).url
        client = redis.Redis.from_url(url)
        env = {**os.environ, "REDIS_URL": url, "SANITY_WEBHOOK_SECRET": SANITY_SECRET,
               "INTERCOM_CLIENT_SECRET": INTERCOM_SECRET, "LOG_LEVEL": "INFO",
               "SANITY_WEBHOOK_TOLERANCE_SECONDS": "3600"}  # fmt: skip
        files = {kind: request_file(kind, 60000) for kind in ("sanity", "intercom")}
        rows = []
        for name, target in (("bare Flask", "bench.bare_app:app"),
                             ("receiver", "app:create_app()")):  # fmt: skip
            with gunicorn(target, env, args.workers) as (base, _pid):
                for kind in ("sanity", "intercom"):
                    client.flushdb()
                    path = f"/webhooks/{kind}"
                    sat = wrk(base, path, files[kind], args.seconds, args.connections)
                    client.flushdb()
                    fixed = paced(base, path, files[kind], args.rate, args.seconds)
                    rows.append((name, kind, sat, fixed))
        bare = {kind: sat["rps"] for name, kind, sat, _ in rows if name == "bare Flask"}
        print(f"| app | webhook | saturation req/s | ratio to bare | non-2xx | p50 ms | p99 ms "
              f"| p50 ms @{args.rate}/s | p99 ms @{args.rate}/s | statuses @{args.rate}/s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, kind, sat, fixed in rows:
            print(f"| {name} | {kind} | {sat['rps']:.0f} | {sat['rps'] / bare[kind]:.2f} | "
                  f"{sat['non2xx']} | {sat['p50_ms']:.2f} | {sat['p99_ms']:.2f} | "
                  f"{fixed['p50_ms']:.2f} | {fixed['p99_ms']:.2f} | {fixed['statuses']} |")
        for path in files.values():
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
