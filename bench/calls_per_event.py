"""Intercom calls per event: what each kind of webhook costs in Intercom (and Sanity) requests.

    python bench/calls_per_event.py [--repeat 5] [--workers 1] [--concurrency 2]

Why: Intercom's budget (10,000 calls a minute per app) is what bounds a deployment, so the
cost of each event is the number that decides how many events it can absorb. DESIGN §3 and §5
fix some of them: an unchanged re-publish and a write-back echo cost zero Intercom calls, a
changed article exactly one ``PUT``, a new one the ``POST`` plus the Sanity write-back; a tag
name costs at most one ``POST /tags``; a duplicate job writes nothing.

What runs: a real Redis (``REDIS_URL``, which the run flushes, or an embedded one), the real
receiver under gunicorn, Celery worker processes started with the deployment's commands, the
fake Sanity (its signed webhooks go to the receiver, after editors' publishes and after the
service's write-backs) and the OpenAPI-validating fake Intercom. Tagging uses the sandbox's
sample rules (``workers/sandbox/samples.py``); enrichment a file source. Article events are
made in the fake Sanity (which fires the webhook); Intercom events are signed notifications
posted to the receiver, as Intercom sends them.

Method: each event runs alone; the stack is then left until nothing is queued, in progress or
pending as a webhook for a quiet second, and the fakes' request counters are read as
differences, per HTTP route. Events that only happen once (cold caches) run once, the others
``--repeat`` times on fresh objects; a range shows when repeats differ.

Prints a Markdown table and one line saying what limits the number; exits 1 if the run is
invalid (a job parked, an OpenAPI violation, an article duplicated or missing, a tag or an
attribute missing, the stack not settling).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    Stack,
    diff,
    exit_code,
    keep_logs_on_failure,
    post_intercom,
    post_sanity,
    stack_problems,
    start_stack,
    start_workers,
    table,
)
from tests.unit.articles.test_harness import article_doc
from workers.sandbox.samples import SAMPLE_RULES

INTERCOM_BUDGET_PER_WINDOW = 1666
WRITES = ("POST", "PUT", "DELETE")
# Rule actions: one rule per action, each keyed on its own word, and one with every action.
ACTION_RULES = """\
  - name: cpe-note
    when: {text_any: [cpenote]}
    note: "Asked by {{ contact.email }}"
  - name: cpe-reply
    when: {text_any: [cpereply]}
    reply: "We are on it."
  - name: cpe-article
    when: {text_any: [cpearticle]}
    reply: {article: cpe-000, text: "This should help:"}
  - name: cpe-attributes
    when: {text_any: [cpeattributes]}
    attributes: {Category: Billing}
  - name: cpe-snooze
    when: {text_any: [cpesnooze]}
    snooze: {minutes: 240}
  - name: cpe-close
    when: {text_any: [cpeclose]}
    close: true
  - name: cpe-every
    when: {text_any: [cpeevery]}
    note: "Asked by {{ contact.email }}"
    reply: {article: cpe-000, text: "This should help:"}
    attributes: {Category: Billing}
    snooze: {minutes: 240}
"""
REPLY, PARTS = "POST /conversations/{conversation_id}/reply", \
    "POST /conversations/{conversation_id}/parts"  # fmt: skip
UPDATE = "PUT /conversations/{conversation_id}"
# word -> (what the row measures, the writes it must cost: exactly the action's own)
ACTIONS = {"cpenote": ("note", {REPLY: 1}), "cpereply": ("text reply", {REPLY: 1}),
           "cpearticle": ("article reply", {REPLY: 1}),
           "cpeattributes": ("attributes", {UPDATE: 1}), "cpesnooze": ("snooze", {PARTS: 1}),
           "cpeclose": ("close", {PARTS: 1}),
           "cpeevery": ("every action", {REPLY: 2, UPDATE: 1, PARTS: 1})}  # fmt: skip
ENRICHMENT = {"contact": {"tier": "gold", "seats": 12},
              "company": {"company_id": "acct_bench", "name": "Bench Account", "plan": "pro",
                          "size": 40}}  # fmt: skip


@dataclass
class Measured:
    """One event's costs."""

    intercom: dict[str, int]
    queries: int
    service_writes: int  # Sanity transactions made by the service (not the editor)
    jobs: int
    answers: Counter[int]


@dataclass
class Row:
    event: str
    expected: str
    meets: Callable[[Measured], bool] | None
    runs: list[Measured] = field(default_factory=list)


def _is_write(route: str) -> bool:
    return route.split()[0] in WRITES and route != "POST /contacts/search"


def _writes(calls: dict[str, int]) -> int:
    return sum(n for route, n in calls.items() if _is_write(route))


class Events:
    """The stack plus the objects each event is about."""

    def __init__(self, bench: Stack) -> None:
        self.bench = bench
        self.session = requests.Session()
        self.sanity = bench.fakes.sanity
        self.intercom = bench.fakes.intercom
        self.articles: list[str] = []
        self.notifications: dict[str, str] = {}  # object id -> its first notification id
        self.conversations: list[str] = []
        self.acted: list[str] = []  # conversations of the action rows
        self.contacts: list[str] = []
        self.problems: list[str] = []

    def started(self) -> int:
        return len(self.bench.worker_events("task.started"))

    def measure(self, action: Callable[[], tuple[Counter[int], int]]) -> Measured:
        """Run ``action`` (returns the receiver's answers and the editor's Sanity
        transactions), wait until the stack is idle, and return the differences."""
        calls, sanity, jobs = self.bench.fakes.calls(), self.sanity.stats(), self.started()
        answers, editor_writes = action()
        if self.bench.wait_idle(60, quiet=1.0, poll=0.05) is None:
            self.problems.append(f"the stack did not settle: {self.bench.busy()}")
        after = self.sanity.stats()
        return Measured(diff(self.bench.fakes.calls(), calls),
                        after["queries_total"] - sanity["queries_total"],
                        after["transactions"] - sanity["transactions"] - editor_writes,
                        self.started() - jobs, answers)  # fmt: skip

    # --- articles: the editor acts in the fake Sanity, which fires the webhook ------------

    def new_article(self) -> tuple[Counter[int], int]:
        doc = f"cpe-{len(self.articles):03d}"
        self.articles.append(doc)
        self.sanity.publish(article_doc(doc, f"Calls per event {doc}"))
        return Counter(), 1

    def republish_unchanged(self, doc: str) -> tuple[Counter[int], int]:
        current = self.sanity.document(doc) or {}
        self.sanity.publish({k: v for k, v in current.items()
                             if k not in ("_rev", "_updatedAt", "_createdAt")})  # fmt: skip
        return Counter(), 1

    def change_article(self, doc: str, n: int) -> tuple[Counter[int], int]:
        self.sanity.edit(doc, {"title": f"Calls per event {doc}, edit {n}"})
        return Counter(), 1

    def redeliver_article_webhook(self, doc: str) -> tuple[Counter[int], int]:
        """Sanity delivers the last webhook of ``doc`` again (same idempotency-key)."""
        delivery = [d for d in self.sanity.stats()["deliveries"] if d["document_id"] == doc][-1]
        status = post_sanity(self.session, self.bench.receiver_url, self.sanity.document(doc)
                             or {"_id": doc}, delivery["operation"],
                             key=delivery["idempotency_key"])  # fmt: skip
        return Counter([status]), 0

    # --- Intercom objects: seeded in the fake Intercom, notified through the receiver -----

    def notify(self, topic: str, item_id: str, notification_id: str | None = None
               ) -> tuple[Counter[int], int]:  # fmt: skip
        status = post_intercom(self.session, self.bench.receiver_url, topic, item_id,
                               notification_id)  # fmt: skip
        return Counter([status]), 0

    def new_conversation(self) -> tuple[Counter[int], int]:
        n = len(self.conversations)
        conversation_id, contact_id = str(700_000_000 + n), f"cpc{n:05d}"
        self.intercom.seed({"contacts": [
            {"id": contact_id, "role": "user", "external_id": f"usr_cpe_conv_{n}",
             "email": f"writer{n}@example.org", "companies": ["cpe-enterprise"]}],
            "conversations": [{"id": conversation_id, "contact_ids": [contact_id],
                               "body": "<p>I was charged twice, can I get a refund?</p>"}]})
        self.conversations.append(conversation_id)
        notification = f"notif_cpe_conv_{n}"
        self.notifications[conversation_id] = notification
        return self.notify("conversation.user.created", conversation_id, notification)

    def new_action_conversation(self, word: str) -> tuple[Counter[int], int]:
        """A conversation whose text matches the action rule keyed on ``word`` only (its
        contact has no company, so the enterprise rule does not tag it)."""
        n = len(self.acted)
        conversation_id, contact_id = str(710_000_000 + n), f"cpa{n:05d}"
        self.intercom.seed({"contacts": [
            {"id": contact_id, "role": "user", "external_id": f"usr_cpe_act_{n}",
             "email": f"asker{n}@example.org"}],
            "conversations": [{"id": conversation_id, "contact_ids": [contact_id],
                               "body": f"<p>Please {word} this one</p>"}]})  # fmt: skip
        self.acted.append(conversation_id)
        return self.notify("conversation.user.created", conversation_id)

    def new_contact(self) -> tuple[Counter[int], int]:
        n = len(self.contacts)
        contact_id = f"cpe{n:05d}"
        self.intercom.seed({"contacts": [{"id": contact_id, "role": "user",
                                          "external_id": f"usr_cpe_enrich_{n}",
                                          "email": f"member{n}@example.org"}]})  # fmt: skip
        self.contacts.append(contact_id)
        notification = f"notif_cpe_contact_{n}"
        self.notifications[contact_id] = notification
        return self.notify("contact.user.created", contact_id, notification)


def summary(runs: list[Measured]) -> tuple[str, str, str, str, str, str]:
    """Per-route calls, total, Sanity queries and writes, jobs, answers: ``a`` or ``a..b``."""

    def span(values: list[int]) -> str:
        low, high = min(values), max(values)
        return f"{low}" if low == high else f"{low}..{high}"

    route_names = sorted({r for m in runs for r in m.intercom})
    per_route = ", ".join(f"{r} x{span([m.intercom.get(r, 0) for m in runs])}"
                          for r in route_names) or "none"  # fmt: skip
    answers = Counter[int]()
    for m in runs:
        answers.update(m.answers)
    answered = ", ".join(f"{s} x{n}" for s, n in sorted(answers.items())) or "(Sanity's own)"
    return (per_route, span([sum(m.intercom.values()) for m in runs]),
            span([m.queries for m in runs]), span([m.service_writes for m in runs]),
            span([m.jobs for m in runs]), answered)  # fmt: skip


def check_state(events: Events) -> list[str]:
    problems = list(events.problems)
    bench = events.bench
    docs = {d["_id"]: d for d in events.sanity.snapshot()["documents"]}
    snapshot = events.intercom.snapshot()
    mapped = {docs[d].get("intercomArticleId") for d in events.articles}
    if None in mapped or len(mapped) != len(events.articles) or \
            len(snapshot["articles"]) != len(events.articles):  # fmt: skip
        problems.append(f"{len(snapshot['articles'])} articles for {len(events.articles)} "
                        "documents, or a document without one")  # fmt: skip
    tags = snapshot["conversation_tags"]
    untagged = [c for c in events.conversations if tags.get(c) != ["billing", "enterprise"]]
    if untagged:
        problems.append(f"conversations without tags billing+enterprise: {untagged}")
    conversations = {c["id"]: c for c in snapshot["conversations"]}
    for conversation_id in events.acted:
        kinds = Counter(p["part_type"] for p in
                        conversations[conversation_id]["conversation_parts"]["conversation_parts"]
                        if p["author"]["type"] == "admin")  # fmt: skip
        if any(n > 1 for n in kinds.values()):
            problems.append(f"conversation {conversation_id} got an action twice: {kinds}")
    contacts = {c["id"]: c for c in snapshot["contacts"]}
    bare = [c for c in events.contacts
            if contacts[c]["custom_attributes"] != ENRICHMENT["contact"]
            or not contacts[c]["companies"]["data"]]  # fmt: skip
    if bare:
        problems.append(f"contacts without their enrichment: {bare}")
    return problems + stack_problems(bench)


def run_events(events: Events, repeat: int) -> list[Row]:
    def only(calls: dict[str, int]) -> Callable[[Measured], bool]:
        return lambda m: m.intercom == calls

    new = Row("new article (publish; the write-back's echo included)",
              "POST /articles x1 + 1 Sanity write-back; echo: 0 Intercom calls",
              lambda m: m.intercom == {"POST /articles": 1} and m.service_writes == 1)
    unchanged = Row("unchanged re-publish of an article", "0 Intercom calls", only({}))
    changed = Row("changed article (title edited)", "PUT x1, no GET before it",
                  only({"PUT /articles/{article_id}": 1}))
    again = Row("article webhook delivered twice (same idempotency-key)",
                "no job (receiver de-duplicates)", lambda m: m.jobs == 0 and not m.intercom)
    tag_cold = Row("conversation tag, first event (empty tag cache)",
                   "each tag name: at most 1 POST /tags", lambda m: m.intercom.get(
                       "POST /tags", 0) <= 2)  # fmt: skip
    tag_new = Row("conversation tag, first time (warm tag cache)", "no POST /tags",
                  lambda m: "POST /tags" not in m.intercom)
    tag_dup = Row("conversation tag, duplicate delivery (same notification id)",
                  "no job", lambda m: m.jobs == 0 and not m.intercom)
    tag_again = Row("conversation tag, repeat event with nothing new (new notification id)",
                    "no write", lambda m: _writes(m.intercom) == 0)
    enrich_cold = Row("contact enrich, first event (empty data-attribute cache)",
                      "attributes listed and created once", None)
    enrich_new = Row("contact enrich, first time (warm caches)", "-", None)
    enrich_dup = Row("contact enrich, duplicate delivery (same notification id)", "no job",
                     lambda m: m.jobs == 0 and not m.intercom)
    enrich_again = Row("contact enrich, repeat event with nothing new (new notification id)",
                       "no write (no PUT for an unchanged contact)",
                       lambda m: _writes(m.intercom) == 0)

    measure = events.measure
    for _ in range(repeat):
        new.runs.append(measure(events.new_article))
    for n, doc in enumerate(events.articles):
        unchanged.runs.append(measure(lambda d=doc: events.republish_unchanged(d)))
        changed.runs.append(measure(lambda d=doc, i=n: events.change_article(d, i)))
        again.runs.append(measure(lambda d=doc: events.redeliver_article_webhook(d)))

    tag_cold.runs.append(measure(events.new_conversation))
    for _ in range(repeat):
        tag_new.runs.append(measure(events.new_conversation))
    for conversation in events.conversations[: repeat]:
        tag_dup.runs.append(measure(lambda c=conversation: events.notify(
            "conversation.user.created", c, events.notifications[c])))
        tag_again.runs.append(measure(lambda c=conversation: events.notify(
            "conversation.user.replied", c)))

    enrich_cold.runs.append(measure(events.new_contact))
    for _ in range(repeat):
        enrich_new.runs.append(measure(events.new_contact))
    for contact in events.contacts[: repeat]:
        enrich_dup.runs.append(measure(lambda c=contact: events.notify(
            "contact.user.created", c, events.notifications[c])))
        enrich_again.runs.append(measure(lambda c=contact: events.notify(
            "contact.user.created", c)))
    action_rows = []
    def writes_only(expected: dict[str, int]) -> Callable[[Measured], bool]:
        return lambda m: {r: n for r, n in m.intercom.items() if _is_write(r)} == expected

    for word, (action, expected) in ACTIONS.items():
        row = Row(f"rule action: {action} (first time)",
                  ", ".join(f"{r} x{n}" for r, n in expected.items()) + ", no other write",
                  writes_only(expected))  # fmt: skip
        for _ in range(repeat):
            row.runs.append(measure(lambda w=word: events.new_action_conversation(w)))
        action_rows.append(row)
    every = events.acted[-repeat:]  # the "every action" conversations
    action_again = Row("rule actions, repeat event after every action (new notification id)",
                       "reads only", lambda m: _writes(m.intercom) == 0)
    for conversation in every:
        action_again.runs.append(measure(lambda c=conversation: events.notify(
            "conversation.user.replied", c)))
    return [new, unchanged, changed, again, tag_cold, tag_new, tag_dup, tag_again,
            enrich_cold, enrich_new, enrich_dup, enrich_again, *action_rows,
            action_again]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of each repeatable event (default 5)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="pool processes per worker (default 2)")  # fmt: skip
    args = parser.parse_args()
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")

    bench: Stack | None = None
    with ExitStack() as stack, tempfile.TemporaryDirectory() as folder:
        rules, source = Path(folder) / "rules.yaml", Path(folder) / "enrichment.json"
        rules.write_text(SAMPLE_RULES + ACTION_RULES)
        source.write_text(json.dumps({f"usr_cpe_enrich_{n}": ENRICHMENT
                                      for n in range(args.repeat + 1)}))  # fmt: skip
        bench = start_stack(stack, budget_per_window=INTERCOM_BUDGET_PER_WINDOW,
                            RULES_PATH=str(rules), ENRICHMENT_SOURCES="file",
                            ENRICHMENT_FILE=str(source))  # fmt: skip
        bench.fakes.intercom.seed({"companies": [{"company_id": "cpe-enterprise",
                                                  "name": "Enterprise Co",
                                                  "plan": "enterprise"}],
                                   "conversation_attributes": [{"name": "Category"}]})  # fmt: skip
        start_workers(stack, bench, args.workers, args.concurrency)
        events = Events(bench)
        rows = run_events(events, args.repeat)
        problems = check_state(events)

    valid = not problems
    keep_logs_on_failure(bench, valid)
    lines = []
    for r in rows:
        per_route, total, queries, writes, jobs, answers = summary(r.runs)
        verdict = "-" if r.meets is None else ("yes" if all(r.meets(m) for m in r.runs) else "NO")
        lines.append((r.event, len(r.runs), per_route, total, queries, writes, jobs, answers,
                      r.expected, verdict))  # fmt: skip
    print(table(["event", "runs", "Intercom calls by route", "Intercom total",
                 "Sanity queries", "Sanity writes by the service", "jobs run",
                 "receiver answers (posted here)", "DESIGN expects", "meets"], lines))  # fmt: skip
    print()
    print(f"Setup: {args.workers} worker(s) x concurrency {args.concurrency}; the sandbox's "
          "sample rules (billing and bug on the text, enterprise on company.plan, so each "
          "conversation costs a GET of its contact's companies; each test conversation asks "
          "for a refund and belongs to an enterprise company); enrichment from a file source "
          "with 2 contact attributes and a company. Counts are per event, differences of the "
          "fakes' counters after the stack went idle.")  # fmt: skip
    def split(runs: list[Measured]) -> str:
        writes = sum(_writes(m.intercom) for m in runs) / len(runs)
        total = sum(sum(m.intercom.values()) for m in runs) / len(runs)
        return f"{total - writes:g} reads + {writes:g} writes"

    print("What limits the number: each job re-reads current state (the Intercom objects for "
          "tagging and enrichment, the Sanity document for articles), then writes only what "
          "differs, so an event costs its Intercom reads plus its missing writes (means): new "
          f"conversation {split(rows[5].runs)}, repeat conversation event "
          f"{split(rows[7].runs)}, new contact {split(rows[9].runs)}, repeat contact event "
          f"{split(rows[11].runs)}, new article {split(rows[0].runs)}, changed article "
          f"{split(rows[2].runs)}, unchanged re-publish {split(rows[1].runs)}.")  # fmt: skip
    print(f"Rule actions: a conversation matching a rule with every action costs "
          f"{split(rows[-2].runs)} (note, article reply, attributes, snooze; the article's "
          f"GET for its title and URL); a repeat event after them {split(rows[-1].runs)}: "
          "each action runs once per conversation and rule.")  # fmt: skip
    return exit_code(problems)


if __name__ == "__main__":
    sys.exit(main())
