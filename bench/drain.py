"""Backlog drain: how fast real workers empty a 10,000-job mixed backlog under the Intercom budget.

    python bench/drain.py [--jobs 10000] [--mix 40,30,30] [--workers 2] [--concurrency 4]
                          [--budget-per-minute 9000] [--intercom-latency-ms 0]

Why: DESIGN §5 asks that the shared limiter keep the Intercom call rate at or just under the
budget across all worker processes, with no 429 and little of the budget idle while work is
queued. A backlog (a backfill, an outage's worth of webhooks) is when that matters.

What runs: a real Redis (``REDIS_URL``, which the run flushes, or an embedded one), the real
receiver under gunicorn (2 workers), and, once the backlog is queued, ``--workers`` Celery
worker processes started with the deployment's worker command. The backlog goes in as the
vendors would send it, while no worker runs: signed Sanity webhooks for ``supportArticle``
documents seeded in the fake Sanity (new articles: ``POST /articles`` plus the write-back,
whose echo webhook adds one more job each), and signed Intercom notifications for
conversations (``conversations.tag`` with the sandbox's sample rules) and contacts
(``contacts.enrich`` from a file source) seeded in the fake Intercom. The fake Intercom checks
every request body against the OpenAPI description and answers 429 past
``budget_per_window`` = ``--budget-per-minute`` / 6 requests per 10-second window; the workers
get the same number as ``INTERCOM_RATE_LIMIT_PER_MINUTE``. The default is the project's own
default (9,000 a minute: 1,500 per window), below what the workers and fakes push on a 2-core
machine, so that the budget and not CPU should bind; the output says which one did. Sanity's
limiter gets ``--sanity-per-second`` (500, as in the test harness) so that it does not bind.

Prints the results table, the memory tables (RSS after the backlog; RSS and PSS of every worker
process before and after it) and one line saying what bound the drain; exits 1 if the run is
invalid (a webhook refused, a job parked, an article missing or duplicated, a tag or attribute
missing, an OpenAPI violation, a timeout).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    CpuMeter,
    Stack,
    exit_code,
    keep_logs_on_failure,
    middle,
    post_intercom,
    post_sanity,
    rss_mb,
    set_intercom_latency,
    stack_problems,
    start_stack,
    start_workers,
    table,
    tree,
)
from tests.unit.articles.test_harness import article_doc
from workers.jobs import routing
from workers.sandbox.samples import SAMPLE_RULES

DEFAULT_BUDGET_PER_MINUTE = 9000  # the project's default INTERCOM_RATE_LIMIT_PER_MINUTE
CONVERSATION_COMPANIES = 40
ENRICH_COMPANIES = 50
TEXTS = (
    ("<p>I was charged twice this month, can I get a refund?</p>", "billing"),
    ("<p>The export button doesn't work since yesterday.</p>", "bug"),
    ("<p>Just saying hello to the team.</p>", None),
)
TIERS = ("gold", "silver", "bronze")


@dataclass(frozen=True)
class Backlog:
    """What was seeded and which webhook brings each job."""

    articles: list[str]
    conversations: list[str]
    contacts: list[str]
    expected_tags: dict[str, list[str]]
    expected_contacts: dict[str, dict[str, Any]]


def split(jobs: int, mix: str) -> tuple[int, int, int]:
    weights = [float(part) for part in mix.split(",")]
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise SystemExit("--mix needs three non-negative weights: articles,conversations,contacts")
    articles = round(jobs * weights[0] / sum(weights))
    conversations = round(jobs * weights[1] / sum(weights))
    return articles, conversations, jobs - articles - conversations


def seed(bench: Stack, counts: tuple[int, int, int], folder: Path) -> Backlog:
    """Documents in the fake Sanity, conversations and contacts in the fake Intercom, and the
    enrichment file; returns what each should look like once synced."""
    n_articles, n_conversations, n_contacts = counts
    articles = [f"drain-{i:05d}" for i in range(n_articles)]
    bench.fakes.sanity.seed([article_doc(d, f"Drain article {d}") for d in articles])

    companies = [{"company_id": f"conv-co-{k}", "name": f"Conversation Co {k}",
                  "plan": "enterprise" if k % 4 == 0 else "starter"}
                 for k in range(CONVERSATION_COMPANIES)]  # fmt: skip
    people, conversations, expected_tags = [], [], {}
    for i in range(n_conversations):
        text, tag = TEXTS[i % len(TEXTS)]
        contact_id = f"dcv{i:06d}"
        people.append({"id": contact_id, "role": "user", "external_id": f"usr_conv_{i}",
                       "email": f"writer{i}@example.org", "name": f"Writer {i}",
                       "companies": [f"conv-co-{i % CONVERSATION_COMPANIES}"]})  # fmt: skip
        conversation_id = str(800_000_000 + i)
        conversations.append({"id": conversation_id, "contact_ids": [contact_id],
                              "subject": "", "body": text})  # fmt: skip
        tags = [tag] if tag else []
        if (i % CONVERSATION_COMPANIES) % 4 == 0:
            tags.append("enterprise")
        expected_tags[conversation_id] = sorted(tags)

    contacts, enrichment, expected_contacts = [], {}, {}
    for j in range(n_contacts):
        contact_id, external_id, k = f"den{j:06d}", f"usr_drain_{j}", j % ENRICH_COMPANIES
        people.append({"id": contact_id, "role": "user", "external_id": external_id,
                       "email": f"member{j}@example.org", "name": f"Member {j}"})  # fmt: skip
        attributes = {"tier": TIERS[j % len(TIERS)], "seats": j % 50 + 1}
        enrichment[external_id] = {
            "contact": attributes,
            "company": {"company_id": f"acct_{k}", "name": f"Account {k}", "plan": "pro",
                        "size": 10 + k},
        }  # fmt: skip
        contacts.append(contact_id)
        expected_contacts[contact_id] = {"custom_attributes": attributes, "company": f"acct_{k}"}
    (folder / "enrichment.json").write_text(json.dumps(enrichment))
    bench.fakes.intercom.seed({"companies": companies, "contacts": people,
                               "conversations": conversations})  # fmt: skip
    return Backlog(articles, [c["id"] for c in conversations], contacts, expected_tags,
                   expected_contacts)  # fmt: skip


def enqueue(bench: Stack, backlog: Backlog, senders: int) -> tuple[Counter[int], float]:
    """Send one signed webhook per job to the receiver, shuffled, from ``senders`` threads."""
    work: list[tuple[str, str]] = [("sanity", d) for d in backlog.articles]
    work += [("conversation", c) for c in backlog.conversations]
    work += [("contact", c) for c in backlog.contacts]
    random.Random(7).shuffle(work)
    documents = {d["_id"]: d for d in bench.fakes.sanity.snapshot()["documents"]}
    local = threading.local()

    def send(item: tuple[str, str]) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        kind, ident = item
        if kind == "sanity":
            return post_sanity(session, bench.receiver_url, documents[ident])
        topic = "conversation.user.created" if kind == "conversation" else "contact.user.created"
        return post_intercom(session, bench.receiver_url, topic, ident)

    started = time.monotonic()
    with ThreadPoolExecutor(senders) as pool:
        statuses = Counter(pool.map(send, work, chunksize=64))
    return statuses, time.monotonic() - started


def smaps_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB from ``/proc/<pid>/smaps_rollup``."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key] = int(rest.split()[0]) / 1024
    return values["Rss"], values["Pss"]


def worker_memory(bench: Stack) -> dict[str, list[tuple[str, int, float, float]]]:
    """Each worker's processes: (role, pid, RSS MB, PSS MB), main process first."""
    out = {}
    for worker in bench.workers:
        rows = []
        for n, process in enumerate(tree(worker.process.pid)):
            try:
                rss, pss = smaps_mb(process.pid)
            except (OSError, KeyError):
                continue  # a pool process replaced meanwhile
            rows.append(("main" if n == 0 else f"pool {n}", process.pid, rss, pss))
        out[worker.name] = rows
    return out


def memory_table(before: dict[str, list[tuple[str, int, float, float]]],
                 after: dict[str, list[tuple[str, int, float, float]]]) -> str:
    """RSS and PSS of every worker process before the drain (workers just ready) and after."""
    rows = []
    for name, procs in after.items():
        start = {pid: (rss, pss) for _, pid, rss, pss in before.get(name, [])}
        for role, pid, rss, pss in procs:
            was = start.get(pid)
            rows.append((name, role, f"{was[0]:.0f}" if was else "new", f"{rss:.0f}",
                         f"{was[1]:.0f}" if was else "new", f"{pss:.0f}"))  # fmt: skip
        total_before = sum(p[3] for p in before.get(name, []))
        rows.append((name, "**all**", "", "", f"{total_before:.0f}",
                     f"{sum(p[3] for p in procs):.0f}"))  # fmt: skip
    return table(["worker", "process", "RSS MB before", "RSS MB after", "PSS MB before",
                  "PSS MB after"], rows)  # fmt: skip


def check(bench: Stack, backlog: Backlog) -> list[str]:
    """Everything that makes the run invalid."""
    problems = []
    docs = {d["_id"]: d for d in bench.fakes.sanity.snapshot()["documents"]}
    intercom = bench.fakes.intercom.snapshot()
    mapped = [docs[d].get("intercomArticleId") for d in backlog.articles]
    article_ids = {a["id"] for a in intercom["articles"]}
    if not all(mapped):
        problems.append(f"{sum(1 for m in mapped if not m)} documents without an article")
    if len(set(filter(None, mapped))) != len([m for m in mapped if m]):
        problems.append("two documents map to the same article")
    if len(article_ids) != len(backlog.articles) or set(filter(None, mapped)) - article_ids:
        problems.append(f"{len(article_ids)} articles in Intercom for "
                        f"{len(backlog.articles)} documents (duplicates or missing)")  # fmt: skip
    tags = intercom["conversation_tags"]
    wrong = [c for c, want in backlog.expected_tags.items() if sorted(tags.get(c, [])) != want]
    if wrong:
        problems.append(f"{len(wrong)} conversations without their expected tags")
    companies = {c["id"]: c["company_id"] for c in intercom["companies"]}
    contacts = {c["id"]: c for c in intercom["contacts"]}
    bad = 0
    for contact_id, want in backlog.expected_contacts.items():
        contact = contacts[contact_id]
        attached = {companies.get(c["id"]) for c in contact["companies"]["data"]}
        if contact["custom_attributes"] != want["custom_attributes"] or \
                want["company"] not in attached:  # fmt: skip
            bad += 1
    if bad:
        problems.append(f"{bad} contacts without their enrichment")
    return problems + stack_problems(bench)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    parser.add_argument("--jobs", type=int, default=10_000, help="backlog size (default 10000)")
    parser.add_argument("--mix", default="40,30,30",
                        help="weights of articles.sync,conversations.tag,contacts.enrich "
                        "(default 40,30,30)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="pool processes per worker (default 4)")  # fmt: skip
    parser.add_argument("--budget-per-minute", type=int, default=DEFAULT_BUDGET_PER_MINUTE,
                        help="INTERCOM_RATE_LIMIT_PER_MINUTE, and 6 times the fake's budget per "
                        f"10-s window (default {DEFAULT_BUDGET_PER_MINUTE})")  # fmt: skip
    parser.add_argument("--intercom-latency-ms", type=float, default=0.0,
                        help="round trip added to every fake Intercom request, half before "
                        "and half after the fake applies it (default 0)")  # fmt: skip
    parser.add_argument("--sanity-per-second", type=int, default=500,
                        help="SANITY_RATE_LIMIT_PER_SECOND (default 500, as the test harness; "
                        "the project's default is 20)")  # fmt: skip
    parser.add_argument("--senders", type=int, default=4, help="threads posting the backlog")
    parser.add_argument("--timeout", type=float, default=1800, help="give up after (s)")
    args = parser.parse_args()
    if args.budget_per_minute < 6 or args.budget_per_minute > 25000:
        raise SystemExit("--budget-per-minute must be 6..25000 (the setting's range)")
    budget = args.budget_per_minute // 6
    counts = split(args.jobs, args.mix)

    problems: list[str] = []
    bench: Stack | None = None
    with ExitStack() as stack, tempfile.TemporaryDirectory() as folder:
        rules = Path(folder) / "rules.yaml"
        rules.write_text(SAMPLE_RULES)
        bench = start_stack(
            stack, budget_per_window=budget,
            INTERCOM_RATE_LIMIT_PER_MINUTE=str(args.budget_per_minute),
            SANITY_RATE_LIMIT_PER_SECOND=str(args.sanity_per_second),
            RULES_PATH=str(rules), ENRICHMENT_SOURCES="file",
            ENRICHMENT_FILE=str(Path(folder) / "enrichment.json"),
        )  # fmt: skip
        set_intercom_latency(bench.fakes, args.intercom_latency_ms / 1000)
        backlog = seed(bench, counts, Path(folder))

        statuses, enqueue_seconds = enqueue(bench, backlog, args.senders)
        queued = {q: bench.redis.llen(q) for q in routing.QUEUES}
        if set(statuses) != {202} or sum(queued.values()) != args.jobs:
            problems.append(f"backlog not queued: receiver answered {dict(statuses)}, "
                            f"queues hold {queued}")  # fmt: skip

        # Wall-clock time of the first and last Intercom request the fake receives.
        state = bench.fakes.intercom
        seen: list[float] = []
        record = state.record_request

        def timed_record(method: str, template: str) -> None:
            now = time.time()
            if not seen:
                seen.append(now)
            seen[1:] = [now]
            record(method, template)

        state.record_request = timed_record  # type: ignore[method-assign]

        me = psutil.Process()
        meter = CpuMeter({
            "receiver (gunicorn)": lambda: tree(bench.receiver.process.pid),
            "workers": lambda: [p for w in bench.workers for p in tree(w.process.pid)],
            "this process (fakes, poller)": lambda: [me],
        })  # fmt: skip
        meter.start()
        launched = time.monotonic()
        start_workers(stack, bench, args.workers, args.concurrency)
        ready = time.monotonic() - launched
        before = worker_memory(bench)
        idle_at = bench.wait_idle(args.timeout, quiet=2.0, poll=0.25)
        meter.stop()
        drained = (idle_at or time.monotonic()) - launched
        if idle_at is None:
            problems.append(f"not drained after {args.timeout:.0f} s ({bench.busy()})")

        memory = [("receiver", "gunicorn master + workers",
                   [rss_mb(p) for p in tree(bench.receiver.process.pid)])]  # fmt: skip
        for worker in bench.workers:
            memory.append((worker.name, "celery main + pool children",
                           [rss_mb(p) for p in tree(worker.process.pid)]))  # fmt: skip
        after = worker_memory(bench)

        stats = state.stats()
        sanity_stats = bench.fakes.sanity.stats()
        succeeded = Counter(e["task"] for e in bench.worker_events("task.succeeded"))
        retries = Counter(e.get("error_type") for e in bench.worker_events("task.retry"))
        parked = bench.dead_letters
        problems += check(bench, backlog)

    valid = not problems
    keep_logs_on_failure(bench, valid)
    calls = stats["requests_total"]
    first, last = (seen[0], seen[-1]) if seen else (0.0, 0.0)
    span = max(last - first, 1e-9)
    window = stats["window_seconds"]
    full = [w for w in stats["windows"] if w["start"] >= first and w["start"] + window <= last]
    fractions = [w["requests"] / budget for w in full]
    touched = [w for w in stats["windows"] if w["start"] + window > first and w["start"] <= last]
    overall = calls / (budget * max(len(touched), 1))
    busy = meter.machine_percent(first, last)
    cores = psutil.cpu_count() or 1
    ours = sum(meter.used.values()) / max(drained, 1e-9) / cores * 100
    echoes = sanity_stats["webhooks"]["sent"]
    jobs_run = sum(succeeded.values())
    per_task = ", ".join(f"{k} {v}" for k, v in sorted(succeeded.items()))
    if fractions:
        windows_text = (f"median {middle(fractions):.2f}, min {min(fractions):.2f}, "
                        f"max {max(fractions):.2f} over {len(full)} windows")  # fmt: skip
    else:
        windows_text = "n/a: no 10-s window lay wholly between the first and last call"

    rows = [
        ("backlog", f"{args.jobs} jobs: {counts[0]} articles.sync, {counts[1]} "
                    f"conversations.tag, {counts[2]} contacts.enrich"),
        ("queued through the receiver", f"{enqueue_seconds:.1f} s "
                                        f"({args.jobs / enqueue_seconds:.0f} webhooks/s, "
                                        f"{args.senders} sender threads)"),
        ("workers", f"{args.workers} x concurrency {args.concurrency} "
                    f"(all ready {ready:.1f} s after launch)"),
        ("time to drain", f"{drained:.1f} s from launching the workers "
                          f"({span:.1f} s from first to last Intercom call)"),
        ("jobs run", f"{jobs_run} succeeded ({per_task}), incl. {echoes} write-back echoes"),
        ("task retries", ", ".join(f"{k} {v}" for k, v in sorted(retries.items())) or "0"),
        ("Intercom calls", f"{calls} ({calls / max(args.jobs, 1):.2f} per backlog job); "
                           f"budget {budget} per {window}-s window = {budget / window:.0f}/s"),
        ("achieved rate / budget, full windows", windows_text),
        ("achieved rate / budget, overall", f"{overall:.2f} (calls / budget of the "
                                            f"{len(touched)} window(s) with calls; "
                                            f"{calls / span:.1f} calls/s first to last call)"),
        ("429 answers", f"{stats['served_429']}"),
        ("parked in the dead-letter store", f"{parked}"),
        ("Sanity requests", f"{sanity_stats['queries_total']} queries, "
                            f"{sanity_stats['transactions']} transactions"),
        ("machine CPU while calls flowed", f"{busy:.0f}% of {cores} cores "
                                           "(all processes, other work included)"),
        ("this run's CPU, launch to drained", f"{ours:.0f}% of {cores} cores: "
                                              + ", ".join(f"{k} {v:.1f} s"
                                                          for k, v in meter.used.items())),
        ("Intercom latency (fake)", f"{args.intercom_latency_ms:.0f} ms round trip per request"),
    ]  # fmt: skip
    print(table(["metric", "value"], rows))
    print()
    print(table(["process", "what", "RSS MB (main; children)", "RSS MB total"],
                [(name, what, f"{mb[0]:.0f}; " + " ".join(f"{m:.0f}" for m in mb[1:]),
                  f"{sum(mb):.0f}") for name, what, mb in memory]))  # fmt: skip
    print("(RSS after the backlog; pages a parent shares with its forked children count in each.)")
    print()
    print(memory_table(before, after))
    print("(PSS from /proc/<pid>/smaps_rollup: shared pages are split between the processes "
          "that share them, so a worker's PSS column adds up to what it costs the host.)")
    print()
    median_fraction = middle(fractions)
    if fractions:
        used = f"full windows used {median_fraction:.0%} of the budget (median)"
    else:
        used = (f"no window was full from start to end (the windows with calls got "
                f"{overall:.0%} of their budget)")  # fmt: skip
    worker_ms = meter.used["workers"] / max(jobs_run, 1) * 1000
    if fractions and median_fraction >= 0.9:
        bound = (f"the Intercom budget: {used} with the machine {busy:.0f}% busy; "
                 f"{stats['served_429']} 429s.")  # fmt: skip
    elif busy >= 85:
        bound = (f"CPU: the machine was {busy:.0f}% busy while calls flowed and {used}; "
                 f"the workers spent {worker_ms:.1f} ms CPU per job run.")  # fmt: skip
    else:
        bound = (f"neither budget nor CPU: {used} with the machine {busy:.0f}% busy, so "
                 f"waiting set the pace (Intercom latency x {args.workers * args.concurrency} "
                 "slots, limiter pauses at window ends, retry countdowns, start-up).")  # fmt: skip
    print(f"What limits the number: {bound}")
    return exit_code(problems)


if __name__ == "__main__":
    sys.exit(main())
