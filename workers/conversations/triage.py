"""Triage actions of matching rules, each run at most once per conversation and rule.

Intercom has no idempotency key for replies or notes: every call adds a part, and a reply is
seen by the customer. Duplicate deliveries, a customer's next message (which re-runs the rules),
dead-letter replays and jobs redelivered after their worker died are all normal, so once-only
is ours to guarantee. It rests on records in Redis, one hash per conversation
(``intercom-sync:triage:{conversation id}``, a field per rule and action), and on the
conversation's own parts:

1. an action whose record says *done* is never run again (no call at all);
2. before a note, reply, snooze, close or open, the *intent* is recorded (time, and for notes
   and replies a digest of the normalised text); after Intercom answers, the action is
   recorded *done* with the part id;
3. a run that finds an intent without an outcome (the worker died in the call, or the answer was
   lost) first looks at the conversation's parts, which the job has just read with
   ``GET /conversations/{id}``: a part by our admin, of the action's type, created at or after
   the intent (10 s clock skew allowed) and, for notes and replies, whose normalised text
   (tags stripped, entities unescaped, whitespace collapsed: Intercom rewraps HTML) has the
   intent's digest, is adopted instead of posting again;
4. a note or reply with no record at all is also not posted when the conversation already has
   a part by our admin with the same normalised text (after a Redis flush, or when two rules
   would say the same thing): the customer never receives the same answer twice;
5. a failure that certainly sent nothing (our limiter had no budget, Intercom answered 4xx)
   removes the intent at once; only a crash, a timeout or a 5xx leaves one behind.

Attributes are idempotent instead: only attributes whose value differs are written, and the
action is then recorded done, so a later customer message does not overwrite what a teammate
changed since. Tags and assignment keep their own rules (:mod:`~workers.conversations.tagging`).

Order within one job: assignment, tags, then the matching rules in file order with each
rule's attributes, note and reply, and only then each rule's snooze, close or open. State
changes come last because a note or reply by someone else reopens a snoozed conversation
(Intercom help, "Snooze a conversation"): a rule that replies and snoozes leaves it snoozed.
The first failure stops the job, and the retry (or a dead-letter replay) continues from the
failed action, since what was done is recorded. One exception: a reply whose article is not
synced yet holds back that rule's state change, lets the other rules' actions run, then ends
the job with a transient error so it comes back (never a reply with a broken link).

Limits: records live ``RECORD_TTL`` (180 days, renewed by each action on the conversation);
adoption sees the 500 most recent parts (what ``GET /conversations/{id}`` returns); a call whose
part Intercom stores only after the next job has read the conversation would be made again,
which the conversation lock (renewed while the job runs, expiring 15 s after a worker died)
makes unlikely rather than impossible.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from workers.clients import help_center
from workers.clients.intercom import IntercomClient, items
from workers.clients.services import Services
from workers.conversations.actions import ArticleReply
from workers.conversations.rules import (
    _MISSING,
    Rule,
    RulesError,
    RuleSet,
    _context_from_input,
    _resolve,
    _unwrap_item,
    html_to_text,
    load_rules,
)
from workers.conversations.templates import Lookup
from workers.jobs.errors import ServiceError, TransientServiceError, certainly_not_sent
from workers.jobs.logs import log_event

logger = logging.getLogger("intercom_sync.triage")

RECORDS_PREFIX = "intercom-sync:triage:"  # + conversation id
RECORD_TTL = 180 * 86400
CLOCK_SKEW_SECONDS = 10
#: Part types Intercom gives what each action posts.
STATE_ACTIONS = frozenset({"snooze", "close", "open"})
PART_TYPES = {"note": "note", "reply": "comment", "snooze": "snoozed", "close": "close",
              "open": "open"}  # fmt: skip

Fetch = Callable[[frozenset[str]], tuple[Mapping[str, Any] | None, list[Mapping[str, Any]]]]


class ArticleNotSynced(TransientServiceError):
    """A reply links an article that is not synced yet: the job comes back later."""


# --------------------------------------------------------------------------- records


class Records:
    """The once-only records of one conversation (see the module docstring)."""

    def __init__(self, client: redis.Redis, conversation_id: str,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.redis = client
        self.key = RECORDS_PREFIX + str(conversation_id)
        self.clock = clock

    @staticmethod
    def field(rule: str, action: str) -> str:
        return f"{rule}\x1f{action}"  # rule names hold no control characters

    def get(self, rule: str, action: str) -> dict[str, Any] | None:
        raw = self.redis.hget(self.key, self.field(rule, action))
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _set(self, rule: str, action: str, value: dict[str, Any]) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(self.key, self.field(rule, action), json.dumps(value))
        pipe.expire(self.key, RECORD_TTL)
        pipe.execute()

    def intent(self, rule: str, action: str, digest: str | None = None) -> None:
        self._set(rule, action, {"state": "intent", "at": self.clock(), "digest": digest})

    def done(self, rule: str, action: str, *, how: str, part_id: str | None = None) -> None:
        self._set(rule, action, {"state": "done", "at": self.clock(), "how": how,
                                 "part_id": part_id})  # fmt: skip

    def clear(self, rule: str, action: str) -> None:
        self.redis.hdel(self.key, self.field(rule, action))


def is_done(record: Mapping[str, Any] | None) -> bool:
    return bool(record) and record.get("state") == "done"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- parts and text


def digest(body: str) -> str:
    """The digest of a body's normalised text (tags stripped, entities unescaped, whitespace
    collapsed), so Intercom's rewrapping of our HTML does not hide our own part."""
    return hashlib.sha256(html_to_text(body).encode()).hexdigest()[:32]


def parts(conversation: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = items(conversation.get("conversation_parts"), "conversation_parts")
    return [p for p in found if isinstance(p, Mapping)]


def find_part(
    conversation: Mapping[str, Any], part_type: str, admin_id: str, *, since: float | None,
    body_digest: str | None,
) -> Mapping[str, Any] | None:
    """Our admin's part of ``part_type`` created at or after ``since`` (any time if None) whose
    normalised text has ``body_digest`` (any text if None): what an earlier attempt posted."""
    for part in parts(conversation):
        author = part.get("author") if isinstance(part.get("author"), Mapping) else {}
        created = part.get("created_at")
        if part.get("part_type") != part_type or author.get("type") != "admin" \
                or str(author.get("id")) != str(admin_id):  # fmt: skip
            continue
        if since is not None and not (isinstance(created, int | float) and created >= since):
            continue
        if body_digest is not None and digest(str(part.get("body") or "")) != body_digest:
            continue
        return part
    return None


def new_part_id(answer: Any, part_type: str) -> str | None:
    """The id of the part an action added: the last part of that type in Intercom's answer."""
    if not isinstance(answer, Mapping):
        return None
    for part in reversed(parts(answer)):
        if part.get("part_type") == part_type and part.get("id") is not None:
            return str(part["id"])
    return None


# --------------------------------------------------------------------------- placeholders


def lookup_for(conversation: Mapping[str, Any], contact: Mapping[str, Any] | None,
               companies: Sequence[Mapping[str, Any]]) -> Lookup:  # fmt: skip
    """Placeholder values, read as conditions read attributes (standard attribute, dotted
    paths, then ``custom_attributes``; ``company.plan`` is the plan's name). ``company`` is
    the contact's first company in Intercom's order."""

    def lookup(scope: str, path: str) -> Any:
        if scope == "contact":
            subject: Mapping[str, Any] = contact or {}
        elif scope == "company":
            subject = companies[0] if companies else {}
        else:
            subject = conversation
        value = _resolve(subject, scope, path)
        return None if value is _MISSING else value

    return lookup


def article_body(text: str, title: str, url: str) -> str:
    """The reply that links an article: the rule's wording, then the title as a link."""
    return (f"<p>{text}</p><p><a href=\"{html.escape(url, quote=True)}\">"
            f"{html.escape(title or url, quote=False)}</a></p>")  # fmt: skip


# --------------------------------------------------------------------------- running


@dataclass
class TriageOutcome:
    """What one job did with the actions (for its log line and for tests)."""

    done: list[str] = field(default_factory=list)  # "rule:action" performed now
    adopted: list[str] = field(default_factory=list)  # found already posted
    already: list[str] = field(default_factory=list)  # recorded done earlier
    skipped: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # article not synced yet
    planned: list[str] = field(default_factory=list)  # shadow mode


class _Skip(Exception):
    """This action cannot run now and will not run later in this job (logged by the raiser)."""


class Triage:
    """Runs (or, in shadow mode, logs) the actions of the rules that matched one conversation."""

    def __init__(self, services: Services, conversation: Mapping[str, Any], *,
                 contact: Mapping[str, Any] | None, companies: Sequence[Mapping[str, Any]],
                 have: frozenset[str], fetch: Fetch, shadow: bool,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.services = services
        self.intercom: IntercomClient = services.intercom
        self.redis = services.redis
        self.admin_id = str(services.settings.INTERCOM_ADMIN_ID)
        self.conversation = conversation
        self.conversation_id = str(conversation.get("id"))
        self.contact = contact
        self.companies = list(companies)
        self.have = have
        self.fetch = fetch
        self.shadow = shadow
        self.clock = clock
        self.records = Records(self.redis, self.conversation_id, clock)
        self.outcome = TriageOutcome()

    # --- the run -------------------------------------------------------------------------

    def run(self, rules: Iterable[Rule]) -> TriageOutcome:
        """Run every pending action of ``rules`` in order (see the module docstring)."""
        acting = [r for r in rules if r.actions]
        pending = [(rule, action) for rule in acting for action in _action_names(rule)
                   if not self._done(rule, action)]  # fmt: skip
        if not pending:
            return self.outcome
        self._load_data({scope for rule, _ in pending for scope in rule.actions.scopes})
        waiting: ArticleNotSynced | None = None
        held: set[str] = set()  # rules whose state change waits for their reply
        for phase in (STATE_ACTIONS.isdisjoint, STATE_ACTIONS.issuperset):
            for rule in acting:
                for action in _action_names(rule):
                    if (rule, action) not in pending or not phase({action}) or rule.name in held:
                        continue
                    try:
                        self._one(rule, action)
                    except ArticleNotSynced as exc:
                        waiting = waiting or exc
                        held.add(rule.name)
                        self.outcome.waiting.append(f"{rule.name}:{action}")
                    except _Skip:
                        if not self.shadow:
                            self.outcome.skipped.append(f"{rule.name}:{action}")
        if waiting is not None:
            raise waiting
        return self.outcome

    def _done(self, rule: Rule, action: str) -> bool:
        if is_done(self.records.get(rule.name, action)):
            self.outcome.already.append(f"{rule.name}:{action}")
            return True
        return False

    def _load_data(self, scopes: set[str]) -> None:
        missing = frozenset(scopes & {"contact", "company"}) - self.have
        if not missing:
            return
        contact, companies = self.fetch(missing)
        if "contact" in missing:
            self.contact = contact
        if "company" in missing:
            self.companies = list(companies)

    @property
    def lookup(self) -> Lookup:
        return lookup_for(self.conversation, self.contact, self.companies)

    def _one(self, rule: Rule, action: str) -> None:
        actions = rule.actions
        if action == "attributes":
            self._attributes(rule, dict(actions.attributes))
        elif action == "note":
            assert actions.note is not None
            body = actions.note.render(self.lookup)
            self._post(rule, "note", lambda: body)
        elif action == "reply" and actions.article is not None:
            self._post(rule, "reply", lambda: self._article_reply(rule, actions.article))
        elif action == "reply":
            assert actions.reply is not None
            body = actions.reply.render(self.lookup)
            self._post(rule, "reply", lambda: body)
        else:
            assert actions.state is not None
            self._state(rule, action, actions.state[1])

    # --- attributes ----------------------------------------------------------------------

    def _attributes(self, rule: Rule, wanted: dict[str, Any]) -> None:
        current = self.conversation.get("custom_attributes")
        current = current if isinstance(current, Mapping) else {}
        changes = {k: v for k, v in wanted.items() if current.get(k) != v}
        if self.shadow:
            self._plan(rule, "attributes", attributes=changes or None,
                       note=None if changes else "already set")  # fmt: skip
            return
        if changes:
            self.intercom.update_conversation_attributes(self.conversation_id, changes)
        self.records.done(rule.name, "attributes", how="written" if changes else "already set")
        self.outcome.done.append(f"{rule.name}:attributes")

    # --- once-only calls ------------------------------------------------------------------

    def _adopt_earlier(self, rule: Rule, action: str, record: Mapping[str, Any] | None,
                       body_digest: str | None) -> bool:  # fmt: skip
        """An intent without an outcome: the call may have reached Intercom before its job died.
        Adopt our admin's part of that kind posted since the intent (with that body, for notes
        and replies) rather than post again; True when one was adopted."""
        if not record or record.get("state") != "intent" or self.shadow:
            return False
        part = find_part(self.conversation, PART_TYPES[action], self.admin_id,
                         since=float(record.get("at") or 0) - CLOCK_SKEW_SECONDS,
                         body_digest=body_digest)  # fmt: skip
        if part is None:
            return False
        self._adopted(rule, action, part, "an earlier attempt's part")
        return True

    def _send(self, rule: Rule, action: str, call: Callable[[], Any]) -> None:
        """The one Intercom call of an action, made after its intent is recorded: its outcome is
        recorded after it; a call that certainly did not reach Intercom takes the intent back."""
        try:
            answer = call()
        except ServiceError as exc:
            if certainly_not_sent(exc):
                self.records.clear(rule.name, action)
            raise
        self.records.done(rule.name, action, how="sent",
                          part_id=new_part_id(answer, PART_TYPES[action]))  # fmt: skip
        self.outcome.done.append(f"{rule.name}:{action}")

    # --- notes and replies ---------------------------------------------------------------

    def _post(self, rule: Rule, action: str, make_body: Callable[[], str]) -> None:
        part_type = PART_TYPES[action]
        record = self.records.get(rule.name, action)
        if self._adopt_earlier(rule, action, record, record and record.get("digest")):
            return
        body = make_body()
        body_digest = digest(body)
        if record is None:
            part = find_part(self.conversation, part_type, self.admin_id, since=None,
                             body_digest=body_digest)  # fmt: skip
            if part is not None:
                if self.shadow:
                    self._plan(rule, action, note="not sent: the same text is already there")
                    return
                self._adopted(rule, action, part, "the same text by our admin")
                return
        if self.shadow:
            self._plan(rule, action, characters=len(html_to_text(body)))
            return
        self.records.intent(rule.name, action, body_digest)
        self._send(rule, action, lambda: self.intercom.reply_conversation(
            self.conversation_id, self.admin_id, body, note=action == "note"))
        log_event(logger, "triage.posted", conversation_id=self.conversation_id, rule=rule.name,
                  action=action)  # fmt: skip

    def _adopted(self, rule: Rule, action: str, part: Mapping[str, Any], what: str) -> None:
        part_id = str(part.get("id")) if part.get("id") is not None else None
        self.records.done(rule.name, action, how="adopted", part_id=part_id)
        self.outcome.adopted.append(f"{rule.name}:{action}")
        log_event(logger, "triage.adopted", conversation_id=self.conversation_id,
                  rule=rule.name, action=action, part_id=part_id, found=what)  # fmt: skip

    def _article_reply(self, rule: Rule, reply: ArticleReply) -> str:
        """The reply body linking ``reply.document_id``'s article; waits (ArticleNotSynced)
        while it is not synced, skips (WARNING) when it has no public URL."""
        document_id = reply.document_id
        article_id = help_center.synced_article(self.redis, document_id) or \
            self._article_from_sanity(document_id)  # fmt: skip
        article = help_center.fetch_article(self.redis, self.intercom, article_id) \
            if article_id else None  # fmt: skip
        if article is None:
            if self.shadow:
                self._plan(rule, "reply", article=document_id,
                           note="would wait: the article is not synced yet")  # fmt: skip
                raise _Skip
            log_event(logger, "triage.article_not_synced", conversation_id=self.conversation_id,
                      rule=rule.name, article=document_id)  # fmt: skip
            raise ArticleNotSynced(f"rule {rule.name!r}: article {document_id!r} is not synced "
                                   "to Intercom yet", service="intercom-sync")  # fmt: skip
        url = article.get("url")
        if not isinstance(url, str) or not url or article.get("state") != "published":
            published = article.get("state") == "published"
            reason = "no public URL (is the Help Center website on?)" if published \
                else "the article is not published"  # fmt: skip
            log_event(logger, "triage.article_without_url", logging.WARNING,
                      conversation_id=self.conversation_id, rule=rule.name, article=document_id,
                      article_id=article_id, reason=reason)  # fmt: skip
            raise _Skip
        if self.shadow:
            self._plan(rule, "reply", article=document_id, url=url)
            raise _Skip
        return article_body(reply.text.render(self.lookup), str(article.get("title") or ""), url)

    def _article_from_sanity(self, document_id: str) -> str | None:
        """The article id Sanity holds for the document (the mapping that survives a Redis
        flush); None when Sanity is not configured or has none yet."""
        settings = self.services.settings
        if not settings.sanity_api_base or not settings.SANITY_DATASET:
            return None
        value = self.services.sanity.query("*[_id == $id][0].intercomArticleId",
                                           {"id": document_id}, tag="triage.article")  # fmt: skip
        return str(value) if isinstance(value, str | int) and value else None

    # --- snooze, close, open -------------------------------------------------------------

    def _state(self, rule: Rule, action: str, minutes: int) -> None:
        state = self.conversation.get("state")
        if self._adopt_earlier(rule, action, self.records.get(rule.name, action), None):
            return
        already = state == {"close": "closed", "open": "open"}.get(action)
        if self.shadow:
            self._plan(rule, action, minutes=minutes or None,
                       note="already " + str(state) if already else None)  # fmt: skip
            return
        if already:
            self.records.done(rule.name, action, how=f"already {state}")
            self.outcome.done.append(f"{rule.name}:{action}")
            return
        self.records.intent(rule.name, action)
        if action == "snooze":
            until = int(self.clock()) + minutes * 60
            self._send(rule, action, lambda: self.intercom.snooze_conversation(
                self.conversation_id, self.admin_id, until))
        elif action == "close":
            self._send(rule, action, lambda: self.intercom.close_conversation(
                self.conversation_id, self.admin_id))
        else:
            self._send(rule, action, lambda: self.intercom.open_conversation(
                self.conversation_id, self.admin_id))

    # --- shadow mode ---------------------------------------------------------------------

    def _plan(self, rule: Rule, action: str, **details: Any) -> None:
        self.outcome.planned.append(f"{rule.name}:{action}")
        log_event(logger, "rules.shadow", conversation_id=self.conversation_id, rule=rule.name,
                  action=action, **{k: v for k, v in details.items() if v is not None})  # fmt: skip


def _action_names(rule: Rule) -> list[str]:
    """The record names of a rule's actions, in the order a run performs them."""
    actions = rule.actions
    names = []
    if actions.attributes:
        names.append("attributes")
    if actions.note:
        names.append("note")
    if actions.reply or actions.article:
        names.append("reply")
    if actions.state:
        names.append("snooze" if actions.state[0] == "snoozed" else actions.state[0])
    return names


# --------------------------------------------------------------------------- configuration


def attributes_used(ruleset: RuleSet) -> dict[str, list[str]]:
    """Conversation attribute name -> the enabled rules that set it."""
    used: dict[str, list[str]] = {}
    for rule in ruleset.rules:
        if rule.enabled:
            for name, _ in rule.actions.attributes:
                used.setdefault(name, []).append(rule.name)
    return used


def missing_attributes(intercom: IntercomClient, ruleset: RuleSet) -> list[str]:
    """One problem per conversation attribute a rule sets that Intercom does not have (or will
    not let the API write); empty when all exist. Costs one ``GET /data_attributes`` when some
    rule sets attributes, nothing otherwise. The 2.14 API cannot create conversation
    attributes: a teammate creates them in Intercom's settings."""
    used = attributes_used(ruleset)
    if not used:
        return []
    known = {str(a.get("name")): a for a in intercom.list_data_attributes("conversation")
             if isinstance(a, Mapping) and not a.get("archived")}  # fmt: skip
    problems = []
    for name, rules in used.items():
        attribute = known.get(name)
        rules_text = ", ".join(rules)
        if attribute is None:
            problems.append(f"conversation attribute {name!r} (set by rule {rules_text}) does "
                            "not exist in Intercom; create it in Settings > Data > "
                            "Conversations (the API cannot)")  # fmt: skip
        elif attribute.get("api_writable") is False:
            problems.append(f"conversation attribute {name!r} (set by rule {rules_text}) is "
                            "not writable through the API")  # fmt: skip
    return problems


# --------------------------------------------------------------------------- review


def describe_actions(rules: Iterable[Rule], lookup: Lookup) -> list[str]:
    """One line per action of ``rules``, placeholders filled in by ``lookup`` (no I/O): what
    ``intercom-sync rules test`` prints."""
    lines = []
    for rule in rules:
        actions = rule.actions
        for action in _action_names(rule):
            if action == "attributes":
                shown = ", ".join(f"{k}={v!r}" for k, v in actions.attributes)
                lines.append(f"  [{rule.name}] attributes: {shown}")
            elif action == "note" and actions.note is not None:
                lines.append(f"  [{rule.name}] note: {actions.note.render(lookup)}")
            elif action == "reply" and actions.article is not None:
                lines.append(f"  [{rule.name}] reply: {actions.article.text.render(lookup)} "
                             f"+ a link to the article of document {actions.article.document_id}"
                             " (its title and URL are filled in when sent)")  # fmt: skip
            elif action == "reply" and actions.reply is not None:
                lines.append(f"  [{rule.name}] reply: {actions.reply.render(lookup)}")
            elif action == "snooze" and actions.state is not None:
                lines.append(f"  [{rule.name}] snooze for {actions.state[1]} minutes")
            else:
                lines.append(f"  [{rule.name}] {action}")
    return lines


def actions_cli(rules_path: str | Path, file_or_text: str | Path) -> str:
    """The actions part of ``intercom-sync rules test``: what the matching rules would do to
    the given conversation (or text), placeholders filled in from it; empty when no rule of
    the file acts. Makes no call."""
    ruleset = load_rules(Path(rules_path))
    if not any(rule.actions for rule in ruleset.rules):
        return ""
    ctx = _context_from_input(file_or_text)
    conversation: Mapping[str, Any] = {}
    path = Path(file_or_text)
    if "\n" not in str(file_or_text) and len(str(file_or_text)) < 4096 and path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            loaded = None
        if isinstance(loaded, Mapping):
            conversation = _unwrap_item(loaded)
    lines = describe_actions(ruleset.matched(ctx),
                             lookup_for(conversation, ctx.contact, ctx.companies))  # fmt: skip
    return "\n".join(["actions (placeholders filled in; nothing is sent):", *lines]
                     if lines else ["actions: (none)"])  # fmt: skip


def attribute_problems(services: Services) -> list[str] | None:
    """What ``check`` and the worker at start report about conversation attributes: None when
    there is nothing to check (tagging off, a rules file that does not load, which is reported
    on its own, or no rule setting attributes), else the problems (empty when all is well)."""
    settings = services.settings
    if not settings.enabled("tagging"):
        return None
    try:
        ruleset = load_rules(Path(str(settings.RULES_PATH)))
    except (RulesError, OSError):
        return None
    if not attributes_used(ruleset):
        return None
    return missing_attributes(services.intercom, ruleset)
