"""Conversation tagging: rules in, tags (and an optional assignment) out, at minimum cost.

The task ``conversations.tag`` is a thin wrapper around :func:`tag_conversation`. What this
module adds to the rules engine (:mod:`workers.conversations.rules`) is everything that costs
Intercom calls, and the reasons it is shaped the way it is:

* **The conversation is fetched** (``GET /conversations/{id}``): a webhook carries only the new
  part, and a job must re-read current state anyway (duplicates and replays are normal).
* **The contact and its companies are fetched only when a rule needs them**: a rules file
  without ``contact.*`` / ``company.*`` conditions costs no extra call.
* **Tag names resolve to ids through one Redis hash shared by every process**
  (:class:`TagCache`). A miss is filled by ``POST /tags`` (create-or-get) under a short Redis
  lock per name, so twenty jobs racing for the same new tag make one ``POST /tags``, not twenty;
  the others wait for the hash entry. A tag deleted in Intercom answers 404 when applied: the
  entry is dropped, the tag re-created once and the application retried once.
* **Only missing tags are applied**, so a duplicate job or a replay makes no write at all; jobs
  for the same conversation run one at a time (:func:`exclusive`), so a duplicate running
  alongside the original sees its writes instead of repeating them.
* **An assignment runs only for a rule whose tag is new on the conversation** and only when the
  conversation is not already with that assignee, and it runs *before* the tags are applied.
  Why: a customer reply re-runs the rules, and re-assigning a conversation that a teammate has
  since moved elsewhere would fight the humans; and assigning first means a job that dies between
  the two calls still assigns on its retry (the tag, not yet applied, is still "new").
* **Rule actions** (notes, replies, attributes, snooze/close/open) run after the tags, each at
  most once per conversation and rule: :mod:`workers.conversations.triage`. With
  ``RULES_MODE=shadow`` nothing is written; every tag, assignment and action is logged instead.

:func:`single_flight` (one process creates, the others wait) and :func:`exclusive` (one job per
object at a time) are also used by :mod:`workers.contacts.enrich`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from workers.clients.intercom import IntercomClient, attached_company_count, items
from workers.clients.services import Services
from workers.conversations.rules import (
    Assignment,
    Match,
    RulesError,
    RuleSet,
    context_from_conversation,
    first_assignment,
    load_rules,
    tag_matches,
)
from workers.conversations.triage import Triage, TriageOutcome
from workers.jobs.errors import NotFound
from workers.jobs.locks import LOCK_SECONDS, WAIT_SECONDS, exclusive, single_flight
from workers.jobs.logs import log_event

logger = logging.getLogger("intercom_sync.tagging")

TAGS_KEY = "intercom-sync:tags"  # hash: casefolded tag name -> Intercom tag id
TAG_LOCK_PREFIX = "intercom-sync:tags:lock:"  # + casefolded name, held while one job POSTs
# The cache is rebuilt by the beat job (conversations.refresh_tag_cache); the TTL only bounds
# how long a cache survives when beat is down, after which each name costs one POST /tags again.
TAG_CACHE_TTL = 86400
CONVERSATION_LOCK_PREFIX = "intercom-sync:tag:lock:"  # + conversation id, held for one job
# Renewed while the job runs (exclusive's keep_alive), so it can be short: a job whose worker
# died releases its conversation to the redelivered job within this many seconds.
CONVERSATION_LOCK_SECONDS = 15.0


# --------------------------------------------------------------------------- tag cache


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class TagCache:
    """Tag name -> id, shared by all processes (``TAGS_KEY``); names compare case-insensitively
    because Intercom's tag names do."""

    def __init__(
        self,
        client: redis.Redis,
        intercom: IntercomClient,
        *,
        ttl: int = TAG_CACHE_TTL,
        lock_seconds: float = LOCK_SECONDS,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self._redis = client
        self._intercom = intercom
        self._ttl = ttl
        self._lock_seconds = lock_seconds
        self._wait_seconds = wait_seconds

    @staticmethod
    def field(name: str) -> str:
        return name.strip().casefold()

    def cached(self, name: str) -> str | None:
        """The cached id of ``name`` (no Intercom call)."""
        return _text(self._redis.hget(TAGS_KEY, self.field(name)))

    def _store(self, name: str, tag_id: str) -> None:
        # EXPIRE NX needs Redis 7; the embedded Redis of `intercom-sync dev` is 6.2.
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(TAGS_KEY, self.field(name), tag_id)
        pipe.ttl(TAGS_KEY)
        _, ttl = pipe.execute()
        if ttl is not None and int(ttl) < 0:
            self._redis.expire(TAGS_KEY, self._ttl)

    def ensure(self, name: str) -> str:
        """The id of tag ``name``; on a miss one process creates it (``POST /tags``)."""

        def create() -> str:
            tag = self._intercom.create_or_get_tag(name)
            tag_id = str(tag["id"])
            self._store(name, tag_id)
            log_event(logger, "tag.created_or_found", tag=name, tag_id=tag_id)
            return tag_id

        return single_flight(
            self._redis, TAG_LOCK_PREFIX + self.field(name), lambda: self.cached(name), create,
            what=f"tag {name!r}", lock_seconds=self._lock_seconds,
            wait_seconds=self._wait_seconds,
        )  # fmt: skip

    def forget(self, name: str, stale_id: str) -> bool:
        """Drop ``name`` if it still maps to ``stale_id`` (racing jobs drop it only once)."""
        return bool(_compare_hdel(self._redis, TAGS_KEY, self.field(name), stale_id))

    def rebuild(self) -> int:
        """Re-list tags (``GET /tags``) and make the cache match; returns the number of tags.

        Listed names are written; an entry that the listing no longer has is removed only if it
        still holds the id it had before the listing, so a tag that a job created while the
        listing was in flight keeps its entry (no second ``POST /tags`` for it).
        """
        before = {_text(k): _text(v) for k, v in self._redis.hgetall(TAGS_KEY).items()}
        listed: dict[str, str] = {}
        for tag in self._intercom.list_tags():
            if isinstance(tag, Mapping) and tag.get("name") and tag.get("id") is not None:
                listed[self.field(str(tag["name"]))] = str(tag["id"])
        pipe = self._redis.pipeline(transaction=True)
        if listed:
            pipe.hset(TAGS_KEY, mapping=listed)
        for name, old_id in before.items():
            if name is not None and old_id is not None and listed.get(name) != old_id:
                _compare_hdel(pipe, TAGS_KEY, name, old_id)
        pipe.expire(TAGS_KEY, self._ttl)
        pipe.execute()
        return len(listed)


_COMPARE_HDEL_LUA = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


def _compare_hdel(client: Any, key: str, field: str, expected: str) -> Any:
    """Delete a hash field only while it holds ``expected`` (works on a pipeline too)."""
    return client.eval(_COMPARE_HDEL_LUA, 1, key, field, expected)


# --------------------------------------------------------------------------- rules per process


@dataclass(frozen=True)
class LoadedRules:
    """A rules file as loaded, plus which attribute scopes its enabled rules read."""

    ruleset: RuleSet
    scopes: frozenset[str]
    stamp: tuple[int, int]


_RULES: dict[str, LoadedRules] = {}
_FAILED: dict[str, tuple[int, int]] = {}


def attribute_scopes(ruleset: RuleSet) -> frozenset[str]:
    """``{"contact", "company"}`` or a subset: the scopes enabled rules have conditions on.

    Why: the contact and its companies cost one Intercom call each, so they are fetched only
    when some rule can look at them. The compiled conditions are walked by shape (``scope``,
    ``conditions``, ``options``, ``inner``) as :mod:`workers.conversations.rules` builds them.
    """
    found: set[str] = set()

    def walk(node: Any) -> None:
        scope = getattr(node, "scope", None)
        if scope in ("contact", "company"):
            found.add(scope)
        for child in (*getattr(node, "conditions", ()), *getattr(node, "options", ())):
            walk(child)
        inner = getattr(node, "inner", None)
        if inner is not None:
            walk(inner)

    for rule in ruleset.rules:
        if rule.enabled:
            walk(rule.when)
    return frozenset(found)


def rules_for(path: str) -> LoadedRules:
    """The rules at ``path``, loaded once per process and again only when the file changes.

    A change that does not load (a broken edit, a file missing while it is replaced, anything
    the loader raises) keeps the previous rules and logs one error per broken version, so a typo
    does not stop tagging; with no previous version the error propagates (the job is parked: a
    configuration problem).
    """
    loaded = _RULES.get(path)
    stamp = (0, 0)  # "could not even stat it"
    try:
        st = Path(path).stat()
        stamp = (st.st_mtime_ns, st.st_size)
        if loaded is not None and (loaded.stamp == stamp or _FAILED.get(path) == stamp):
            return loaded
        ruleset = load_rules(Path(path))
    except Exception as exc:  # whatever breaks a reload, the rules in use stay
        if loaded is None:
            raise
        if _FAILED.get(path) != stamp:
            errors = exc.errors[:20] if isinstance(exc, RulesError) else [type(exc).__name__]
            log_event(logger, "rules.reload_failed", logging.ERROR, errors=errors,
                      kept_rules=len(loaded.ruleset))  # fmt: skip
        _FAILED[path] = stamp
        return loaded
    loaded = LoadedRules(ruleset, attribute_scopes(ruleset), stamp)
    _RULES[path] = loaded
    _FAILED.pop(path, None)
    log_event(logger, "rules.loaded", rules=len(ruleset), tags=list(ruleset.tag_names),
              scopes=sorted(loaded.scopes) or None)  # fmt: skip
    return loaded


def rules_file_problem(path: str, *, most: int = 3) -> str | None:
    """What is wrong with the rules file at ``path``, in one line naming the file, the rule and
    the problem; ``None`` when it loads. The worker refuses to start on it, and ``check`` fails
    on it: a broken file must not wait for the first conversation to show."""
    try:
        load_rules(Path(path))
    except RulesError as exc:
        shown = "; ".join(exc.errors[:most])
        more = f" (and {len(exc.errors) - most} more)" if len(exc.errors) > most else ""
        return f"RULES_PATH: {path}: {shown}{more}"
    return None


# --------------------------------------------------------------------------- tagging


@dataclass
class TagOutcome:
    """What one job did (for its log line and for tests)."""

    conversation_id: str
    found: bool = True
    applied: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    assigned: Assignment | None = None
    triage: TriageOutcome | None = None


def first_contact_id(conversation: Mapping[str, Any]) -> str | None:
    """The conversation's first contact (the customer who wrote in)."""
    for ref in items(conversation.get("contacts"), "contacts"):
        if isinstance(ref, Mapping) and ref.get("id"):
            return str(ref["id"])
    return None


def _related(
    intercom: IntercomClient, conversation: Mapping[str, Any], scopes: frozenset[str]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The contact and its companies, fetched only for the scopes the rules read."""
    contact_id = first_contact_id(conversation)
    if contact_id is None or not scopes:
        return None, []
    contact: dict[str, Any] | None = None
    if "contact" in scopes:
        try:
            contact = intercom.get_contact(contact_id)
        except NotFound:  # merged away or deleted: rules see the conversation's own data
            log_event(logger, "tag.contact_gone", contact_id=contact_id)
            return None, []
    companies: list[dict[str, Any]] = []
    if "company" in scopes and (contact is None or attached_company_count(contact) > 0):
        try:
            companies = intercom.contact_companies(contact_id)
        except NotFound:
            log_event(logger, "tag.contact_gone", contact_id=contact_id)
    return contact, companies


def _present_tags(conversation: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    names, ids = set(), set()
    for tag in items(conversation.get("tags"), "tags"):
        if isinstance(tag, Mapping):
            if tag.get("name"):
                names.add(TagCache.field(str(tag["name"])))
            if tag.get("id") is not None:
                ids.add(str(tag["id"]))
    return names, ids


def _already_assigned(conversation: Mapping[str, Any], assignment: Assignment) -> bool:
    key = "team_assignee_id" if assignment.assignee_type == "team" else "admin_assignee_id"
    current = conversation.get(key)
    return current is not None and str(current) == assignment.assignee_id


def apply_tag(
    intercom: IntercomClient, cache: TagCache, conversation_id: str, name: str, admin_id: str
) -> None:
    """Tag the conversation; a 404 that turns out to be a deleted tag is repaired once.

    Why the check: 404 also means "no such conversation". Re-creating the tag tells the two
    apart: a different id means our cached id was stale (retry with the new one); the same id
    means the tag is fine and the 404 was about the conversation (re-raised).
    """
    tag_id = cache.ensure(name)
    try:
        intercom.tag_conversation(conversation_id, tag_id, admin_id)
        return
    except NotFound:
        cache.forget(name, tag_id)
        fresh = cache.ensure(name)
        if fresh == tag_id:
            raise
        log_event(logger, "tag.cache_stale", tag=name, stale_id=tag_id, tag_id=fresh)
    intercom.tag_conversation(conversation_id, fresh, admin_id)


def tag_conversation(services: Services, conversation_id: str) -> TagOutcome:
    """Evaluate the rules on a conversation and apply the tags it lacks (see module docstring);
    one job per conversation at a time. Raises ``FeatureOff`` when tagging is not configured."""
    services.require("tagging")
    with exclusive(services.redis, CONVERSATION_LOCK_PREFIX + str(conversation_id),
                   what=f"conversation {conversation_id}",
                   lock_seconds=CONVERSATION_LOCK_SECONDS, keep_alive=True):  # fmt: skip
        return _tag_conversation(services, conversation_id)


def _tag_conversation(services: Services, conversation_id: str) -> TagOutcome:
    settings = services.settings
    admin_id = str(settings.INTERCOM_ADMIN_ID)
    rules = rules_for(str(settings.RULES_PATH))
    intercom = services.intercom
    outcome = TagOutcome(str(conversation_id))
    try:
        conversation = intercom.get_conversation(conversation_id)
    except NotFound:
        outcome.found = False
        log_event(logger, "tag.conversation_gone", conversation_id=conversation_id)
        return outcome
    contact, companies = _related(intercom, conversation, rules.scopes)
    ctx = context_from_conversation(conversation, contact, companies)
    matched = rules.ruleset.matched(ctx)
    matches = tag_matches(matched)
    shadow = settings.RULES_MODE == "shadow"

    cache = TagCache(services.redis, intercom)
    present_names, present_ids = _present_tags(conversation)
    new: list[Match] = []
    for match in matches:
        # By name first (no lookup); by cached id too: a tag renamed in Intercom keeps its id.
        present = TagCache.field(match.tag) in present_names or (
            bool(present_ids) and cache.cached(match.tag) in present_ids
        )
        if present:
            outcome.already_present.append(match.tag)
        else:
            new.append(match)

    assignment = first_assignment(new)
    if shadow:
        _log_planned(conversation_id, new, assignment, conversation,
                     {r.index: r.name for r in matched})  # fmt: skip
        new, assignment = [], None
    if assignment is not None and not _already_assigned(conversation, assignment):
        intercom.assign_conversation(conversation_id, admin_id, assignment.assignee_id,
                                     kind=assignment.assignee_type)  # fmt: skip
        outcome.assigned = assignment
    for match in new:
        apply_tag(intercom, cache, str(conversation_id), match.tag, admin_id)
        outcome.applied.append(match.tag)

    outcome.triage = Triage(
        services, conversation, contact=contact, companies=companies, have=rules.scopes,
        fetch=lambda scopes: _related(intercom, conversation, scopes), shadow=shadow,
    ).run(matched)  # fmt: skip

    assigned = outcome.assigned
    acted = outcome.triage
    log_event(
        logger, "tag.done", conversation_id=conversation_id, tags_applied=outcome.applied,
        tags_already_present=outcome.already_present,
        actions_done=(acted.done or None) if acted else None,
        actions_adopted=(acted.adopted or None) if acted else None,
        actions_skipped=(acted.skipped or None) if acted else None,
        assigned_to=f"{assigned.assignee_type}:{assigned.assignee_id}" if assigned else None,
    )  # fmt: skip
    return outcome


def _log_planned(conversation_id: str, new: list[Match], assignment: Assignment | None,
                 conversation: Mapping[str, Any], names: Mapping[int, str]) -> None:  # fmt: skip
    """Shadow mode: one INFO line per tag and assignment a live run would write."""
    for match in new:
        log_event(logger, "rules.shadow", conversation_id=conversation_id,
                  rule=names.get(match.rule_index, match.tag), action="tag",
                  tag=match.tag)  # fmt: skip
    if assignment is not None and not _already_assigned(conversation, assignment):
        index = next((m.rule_index for m in new if m.assign_to == assignment), -1)
        log_event(logger, "rules.shadow", conversation_id=conversation_id,
                  rule=names.get(index), action="assign",
                  assignee=f"{assignment.assignee_type}:{assignment.assignee_id}")  # fmt: skip


def refresh_tag_cache(services: Services) -> int | None:
    """Rebuild the tag cache from ``GET /tags`` (beat); None when tagging is off."""
    if not services.settings.enabled("tagging"):
        log_event(logger, "tag_cache.skipped", reason="tagging is off",
                  missing=services.settings.missing("tagging"))  # fmt: skip
        return None
    count = TagCache(services.redis, services.intercom).rebuild()
    log_event(logger, "tag_cache.rebuilt", tags=count)
    return count
