"""Instructions per webhook of the receiver and its floor, counted by callgrind, side by side.

    python bench/receiver_instructions.py [--requests 300]   # needs valgrind

Wall-clock throughput on a shared two-core machine moves by about ±0.1 between runs
(``bench/receiver.py``); callgrind counts the instructions a process executes, which repeat to
within about one percent for the same inputs, whatever else the machine is doing. Each app (the
floor, ``bench/floor_app.py``, and the receiver) runs under the deployment's own web command with
one worker, inside ``valgrind --tool=callgrind --trace-children=yes`` (master and worker both
counted), answers 20 warm-up requests, and then ``--requests`` more correctly signed deliveries,
sent one after the other on one keep-alive connection. Callgrind's counters of every process of
the server are read (``callgrind_control``) just before and just after those: the difference over
``--requests`` is the user-space instructions one webhook costs the whole server, with nothing of
the start-up, the warm-up or the shutdown in it. What it leaves out costs both apps alike: the
kernel (sockets), Redis and the client (plus, for the receiver only, the kernel's side of writing
its log line). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from http.client import HTTPConnection
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.receiver import (
    APPS,
    FEATURES_ON,
    INTERCOM_SECRET,
    SANITY_SECRET,
    request_file,
)
from tests.processes import deployment_command
from workers.ops.embedded_redis import EmbeddedRedis, free_port

WARM_UP = 20


def _send(port: int, path: str, lines: list[str]) -> None:
    conn = HTTPConnection("127.0.0.1", port, timeout=120)
    for line in lines:
        body, name, value, key = line.split("\t")
        headers = {"Content-Type": "application/json", name: value, "sanity-operation": "update"}
        if key != "-":
            headers["idempotency-key"] = key
        conn.request("POST", path, body=body.encode(), headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status not in (200, 202):
            raise RuntimeError(f"{path} answered {response.status}")
    conn.close()


def _counted(master: int) -> int:
    """Instructions callgrind has counted so far in the server's processes (the master, pid
    ``master``, and its workers), all threads."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    out = subprocess.run(["callgrind_control", "-e", "Ir", str(master), *children],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    counts = re.findall(r"^\s+Th \d+\s+([\d,]+)", out, re.MULTILINE)
    if len(counts) < 1 + len(children):
        raise RuntimeError(f"callgrind_control did not report every process:\n{out}")
    return sum(int(count.replace(",", "")) for count in counts)


def instructions(target: str, kind: str, count: int, env: dict[str, str]) -> int:
    """Instructions the server executed while answering ``count`` webhooks of ``kind`` after
    ``WARM_UP`` others (the request file holds as many distinct deliveries)."""
    file = request_file(kind, WARM_UP + count)
    lines = file.read_text().splitlines()
    file.unlink()
    port = free_port()
    with tempfile.TemporaryDirectory() as out, ExitStack() as stack:
        args = deployment_command("web", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                                  "--timeout", "600")  # fmt: skip
        args = [target if arg == "app:create_app()" else arg for arg in args]
        log = stack.enter_context(open(Path(out) / "server.log", "w"))
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--trace-children=yes",
             f"--callgrind-out-file={out}/callgrind.%p", *args],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 600
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=60).ok:
                    break
            except requests.RequestException:
                time.sleep(1)
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"{target} did not start under valgrind")
        try:
            _send(port, f"/webhooks/{kind}", lines[:WARM_UP])
            before = _counted(proc.pid)
            _send(port, f"/webhooks/{kind}", lines[WARM_UP:])
            return _counted(proc.pid) - before
        finally:
            proc.terminate()
            proc.wait(timeout=600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300,
                        help="webhooks counted per app and kind")  # fmt: skip
    args = parser.parse_args()
    with ExitStack() as stack:
        url = os.environ.get("REDIS_URL") or stack.enter_context(EmbeddedRedis()).url
        redis.Redis.from_url(url).flushdb()
        env = {**os.environ, "REDIS_URL": url, "SANITY_WEBHOOK_SECRET": SANITY_SECRET,
               "INTERCOM_CLIENT_SECRET": INTERCOM_SECRET, "LOG_LEVEL": "INFO",
               "SANITY_WEBHOOK_TOLERANCE_SECONDS": "3600", **FEATURES_ON}  # fmt: skip
        apps = [(name, target) for name, target in APPS if name != "bare Flask"]
        runs = [(name, target, kind) for name, target in apps for kind in ("sanity", "intercom")]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            totals = dict(zip(
                [(name, kind) for name, _, kind in runs],
                pool.map(lambda run: instructions(run[1], run[2], args.requests, env), runs),
                strict=True,
            ))  # fmt: skip
    print(f"Instructions per webhook (callgrind, {args.requests} webhooks after {WARM_UP} "
          "warm-up, one worker, whole server).\n")  # fmt: skip
    print("| webhook | floor | receiver | floor / receiver |")
    print("|---|---|---|---|")
    for kind in ("sanity", "intercom"):
        floor, receiver = (totals[(name, kind)] / args.requests for name, _ in apps)
        print(f"| {kind} | {floor:,.0f} | {receiver:,.0f} | {floor / receiver:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
