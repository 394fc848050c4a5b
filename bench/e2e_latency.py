"""End-to-end latency: an editor publishes in Sanity, how long until Intercom has the article?

    python bench/e2e_latency.py [--publishes 200] [--new-fraction 0.5] [--rate 5]
                                [--intercom-latency-ms 150] [--workers 2] [--concurrency 4]

Why: the path crosses every part of the service (Sanity's signed webhook, the receiver's
verify + de-duplicate + enqueue, Redis, a Celery worker, the Sanity read, the Intercom call),
so its latency is what an editor feels, and where it goes says which part to work on.

What runs: a real Redis (``REDIS_URL``, which the run flushes, or an embedded one), the real
receiver under gunicorn (2 workers), ``--workers`` Celery worker processes started with the
deployment's commands, the fake Sanity (it fires its signed webhook at the receiver after each
publish, and after each write-back, whose echo job must cost no Intercom call) and the
OpenAPI-validating fake Intercom, whose every request takes ``--intercom-latency-ms`` more: half
before the fake applies the request, half after (a network round trip).

Method: after ``--warmup`` unmeasured publishes, ``--publishes`` publishes at a fixed ``--rate``
per second; each is a new document (``--new-fraction``) or a title change of a synced one. Each
publish gets a unique title. The clock starts just before the fake Sanity's publish call and
stops when the fake Intercom applies a create or update carrying that title (a hook on the
fake's state in this process, same clock). The worker's ``task.started`` log line splits each
latency into "publish to job start" and "job start to in Intercom".

Prints a Markdown table and one line saying what limits the number; exits 1 if the run is
invalid (a publish never arrived, an article missing or duplicated, a final title wrong, a job
parked, an OpenAPI violation).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    Stack,
    diff,
    exit_code,
    keep_logs_on_failure,
    middle,
    quantile,
    routes,
    set_intercom_latency,
    stack_problems,
    start_stack,
    start_workers,
    table,
)
from tests.unit.articles.test_harness import article_doc
from workers.jobs import routing

INTERCOM_BUDGET_PER_WINDOW = 1666  # Intercom's own: 10,000 a minute in 10-second windows


@dataclass
class Publish:
    kind: str  # new | changed
    document_id: str
    title: str
    started: float  # time.perf_counter()
    started_wall: float  # time.time()
    arrived: float | None = None
    arrived_wall: float | None = None
    job_started_wall: float | None = None


class Arrivals:
    """Times at which the fake Intercom applied a create or update, by article title."""

    def __init__(self) -> None:
        self.times: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def hook(self, state: Any) -> None:
        for name in ("create_article", "update_article"):
            setattr(state, name, self._timed(getattr(state, name)))

    def _timed(self, apply: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            answer = apply(*args)  # raises for an error answer: nothing arrived
            body = args[-1]
            title = body.get("title") if isinstance(body, Mapping) else None
            if isinstance(title, str):
                stamp = (time.perf_counter(), time.time())
                with self.lock:
                    self.times.setdefault(title, stamp)
            return answer

        return timed

    def get(self, title: str) -> tuple[float, float] | None:
        with self.lock:
            return self.times.get(title)


def _wall(ts: str) -> float:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


class Publisher:
    """Publishes new documents and title changes in the fake Sanity, and tracks arrivals."""

    def __init__(self, bench: Stack, arrivals: Arrivals, rng: random.Random) -> None:
        self.bench, self.arrivals, self.rng = bench, arrivals, rng
        self.documents: list[str] = []
        self.last: dict[str, Publish] = {}
        self.publishes: list[Publish] = []
        self.version = 0

    def settled(self) -> list[str]:
        """Documents whose latest publish arrived at least a second ago."""
        now = time.perf_counter()
        out = []
        for doc in self.documents:
            last = self.last[doc]
            self.refresh(last)
            if last.arrived is not None and now - last.arrived >= 1.0:
                out.append(doc)
        return out

    def refresh(self, publish: Publish) -> None:
        if publish.arrived is None:
            stamp = self.arrivals.get(publish.title)
            if stamp is not None:
                publish.arrived, publish.arrived_wall = stamp

    def publish(self, want_new: bool) -> Publish:
        sanity = self.bench.fakes.sanity
        self.version += 1
        candidates = [] if want_new else self.settled()
        if candidates:
            doc = self.rng.choice(candidates)
            title = f"Latency {doc} v{self.version}"
            record = Publish("changed", doc, title, time.perf_counter(), time.time())
            sanity.edit(doc, {"title": title})
        else:
            doc = f"lat-{len(self.documents):05d}"
            title = f"Latency {doc} v{self.version}"
            record = Publish("new", doc, title, time.perf_counter(), time.time())
            sanity.publish(article_doc(doc, title))
            self.documents.append(doc)
        self.last[doc] = record
        return record

    def run(self, count: int, rate: float, new_fraction: float) -> list[Publish]:
        """``count`` publishes, one every ``1/rate`` seconds."""
        made = []
        start = time.perf_counter()
        for n in range(count):
            pause = start + n / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            made.append(self.publish(self.rng.random() < new_fraction))
        return made

    def wait_arrivals(self, publishes: list[Publish], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in publishes:
                self.refresh(p)
            if all(p.arrived is not None for p in publishes):
                return True
            time.sleep(0.05)
        return False


def attribute_job_starts(bench: Stack, publishes: list[Publish]) -> None:
    """The first ``articles.sync`` job for the document that started after each publish."""
    starts: dict[str, list[float]] = {}
    for line in bench.worker_events("task.started"):
        if line.get("task") == routing.ARTICLES_SYNC and line.get("task_args"):
            starts.setdefault(str(line["task_args"][0]), []).append(_wall(line["ts"]))
    for p in publishes:
        # Log times are truncated to the millisecond.
        later = [t for t in starts.get(p.document_id, []) if t >= p.started_wall - 0.001]
        p.job_started_wall = min(later) if later else None


def check(bench: Stack, publisher: Publisher, arrived: bool) -> list[str]:
    problems = []
    if not arrived:
        missing = [p.title for p in publisher.publishes if p.arrived is None]
        problems.append(f"{len(missing)} publishes never reached Intercom, e.g. {missing[:3]}")
    docs = {d["_id"]: d for d in bench.fakes.sanity.snapshot()["documents"]}
    articles = {a["id"]: a for a in bench.fakes.intercom.snapshot()["articles"]}
    mapped = [docs[d].get("intercomArticleId") for d in publisher.documents]
    if not all(mapped) or len(set(mapped)) != len(mapped):
        problems.append("documents without an article, or sharing one")
    if len(articles) != len(publisher.documents):
        problems.append(f"{len(articles)} articles in Intercom for "
                        f"{len(publisher.documents)} documents")  # fmt: skip
    wrong = [d for d, article_id in zip(publisher.documents, mapped, strict=True)
             if articles.get(str(article_id), {}).get("title") != publisher.last[d].title]
    if wrong:
        problems.append(f"{len(wrong)} articles do not hold their document's last title")
    return problems + stack_problems(bench)


def row(kind: str, publishes: list[Publish]) -> list[str]:
    total = [(p.arrived - p.started) * 1000 for p in publishes if p.arrived is not None]
    to_job = [(p.job_started_wall - p.started_wall) * 1000 for p in publishes
              if p.job_started_wall is not None]  # fmt: skip
    in_job = [(p.arrived_wall - p.job_started_wall) * 1000 for p in publishes
              if p.job_started_wall is not None and p.arrived_wall is not None]  # fmt: skip
    return [kind, str(len(total)), f"{quantile(total, 0.5):.0f}", f"{quantile(total, 0.9):.0f}",
            f"{quantile(total, 0.99):.0f}", f"{max(total, default=float('nan')):.0f}",
            f"{middle(to_job):.0f}", f"{middle(in_job):.0f}"]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    parser.add_argument("--publishes", type=int, default=200, help="measured (default 200)")
    parser.add_argument("--new-fraction", type=float, default=0.5,
                        help="share of new documents; the rest change a title (default 0.5)")
    parser.add_argument("--rate", type=float, default=5.0, help="publishes per second (default 5)")
    parser.add_argument("--intercom-latency-ms", type=float, default=150.0,
                        help="round trip added to each fake Intercom request (default 150)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="pool processes per worker (default 4)")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured publishes first")
    parser.add_argument("--timeout", type=float, default=120, help="wait for arrivals (s)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the mix")
    args = parser.parse_args()

    problems: list[str] = []
    bench: Stack | None = None
    with ExitStack() as stack:
        bench = start_stack(stack, budget_per_window=INTERCOM_BUDGET_PER_WINDOW)
        set_intercom_latency(bench.fakes, args.intercom_latency_ms / 1000)
        arrivals = Arrivals()
        arrivals.hook(bench.fakes.intercom)
        start_workers(stack, bench, args.workers, args.concurrency)
        publisher = Publisher(bench, arrivals, random.Random(args.seed))

        warm = publisher.run(args.warmup, args.rate, 1.0)
        warmed = publisher.wait_arrivals(warm, args.timeout)
        if not warmed or bench.wait_idle(args.timeout) is None:
            problems.append("the warm-up did not complete")
        time.sleep(1.0)  # every warm-up document is "settled" and may be changed
        calls_before = bench.fakes.calls()
        sanity_before = bench.fakes.sanity.stats()
        measured = publisher.run(args.publishes, args.rate, args.new_fraction)
        publisher.publishes = warm + measured
        arrived = publisher.wait_arrivals(publisher.publishes, args.timeout)
        if bench.wait_idle(args.timeout) is None:
            problems.append(f"the stack did not settle: {bench.busy()}")
        calls = diff(bench.fakes.calls(), calls_before)
        sanity_after = bench.fakes.sanity.stats()
        attribute_job_starts(bench, measured)
        problems += check(bench, publisher, arrived)

    valid = not problems
    keep_logs_on_failure(bench, valid)
    new = [p for p in measured if p.kind == "new"]
    changed = [p for p in measured if p.kind == "changed"]
    print(table(["publishes", "n", "p50 ms", "p90 ms", "p99 ms", "max ms",
                 "p50 publish → job start ms", "p50 job start → in Intercom ms"],
                [row("new article", new), row("changed article", changed),
                 row("all", measured)]))  # fmt: skip
    queries = sanity_after["queries_total"] - sanity_before["queries_total"]
    writes = sanity_after["transactions"] - sanity_before["transactions"]
    echoes = sanity_after["webhooks"]["sent"] - sanity_before["webhooks"]["sent"] - len(measured)
    print()
    print(f"Setup: {args.publishes} publishes at {args.rate:g}/s after {args.warmup} unmeasured; "
          f"{args.workers} workers x concurrency {args.concurrency}; fake Intercom round trip "
          f"{args.intercom_latency_ms:.0f} ms (half before it applies a request). Arrival = the "
          "fake Intercom applying a create/update with the publish's title (hook on its state, "
          "same process and clock as the publish). Intercom calls while measuring: "
          f"{routes(calls)}; Sanity: {queries} queries, {writes} transactions incl. edits and "
          f"write-backs; {echoes} write-back echo webhooks.")  # fmt: skip
    split_ok = [p for p in measured if p.arrived is not None and p.job_started_wall is not None]
    total = [((p.arrived or 0.0) - p.started) * 1000 for p in split_ok]
    cut = quantile(total, 0.9)
    tail = [p for p, ms in zip(split_ok, total, strict=True) if ms >= cut]

    def parts(group: list[Publish]) -> tuple[float, float]:
        before, inside = [], []
        for p in group:
            assert p.job_started_wall is not None and p.arrived_wall is not None
            before.append((p.job_started_wall - p.started_wall) * 1000)
            inside.append((p.arrived_wall - p.job_started_wall) * 1000)
        return middle(before), middle(inside)

    all_before, all_inside = parts(split_ok)
    tail_before, tail_inside = parts(tail)
    print(f"What limits the number: medians of {all_before:.0f} ms from publish until a "
          "worker starts the job (fake Sanity's webhook, receiver, Redis, pick-up) and "
          f"{all_inside:.0f} ms inside the job (Sanity read, group lock, limiter, and the "
          f"configured {args.intercom_latency_ms / 2:.0f} ms request half of the one Intercom "
          f"round trip); the slowest 10% (>= {cut:.0f} ms) spend {tail_before:.0f} ms before "
          f"and {tail_inside:.0f} ms inside (medians).")  # fmt: skip
    return exit_code(problems)


if __name__ == "__main__":
    sys.exit(main())
