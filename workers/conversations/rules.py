"""Conversation tagging rules: load, validate, evaluate and explain.

A rules file (``RULES_PATH``, YAML or JSON) lists rules; each rule gives a tag when every
condition in its ``when`` map holds::

    rules:
      - tag: billing
        when:
          text_any: [refund, "charged twice", invoice]
      - tag: bug
        when:
          text_regex: "(doesn't|does not|won't) (work|load)|does nothing"
      - tag: enterprise
        when:
          company.plan: enterprise
        assign_to: {team_id: "5017"}          # optional
      - tag: big-account-email
        enabled: true                          # optional, default true
        description: free text for humans      # optional
        when:
          channel: [email, whatsapp]           # list = "any of"
          any:                                 # at least one map holds
            - company.size: {gte: 100}
            - contact.vip: true
          not: {contact.role: lead}            # the map must NOT hold

Conditions (keys of a ``when`` map; every key must hold):

``text_any``   phrase or list of phrases; holds when ANY occurs as whole words.
``text_all``   phrase or list of phrases; holds when ALL occur as whole words.
``text_regex`` regular expression or list of them (any may match); case-insensitive search.
``channel``    the conversation source ``type`` (``conversation`` for the Messenger, ``email``,
               ``whatsapp``, ``sms``, ``phone_call``, ``facebook``, ``instagram``, ``twitter``...).
               ``delivered_as`` is not a channel but who started it, so it is its own key:
``delivered_as`` ``customer_initiated``, ``admin_initiated``, ``operator_initiated``, ...
``contact.<attr>`` / ``company.<attr>``  the standard attribute (dotted paths such as
               ``contact.location.country`` walk into objects), else ``custom_attributes[attr]``.
               ``company.plan`` compares the plan's name; ``contact.email_domain`` is derived
               from the email when Intercom did not send it. With several companies, any one
               company satisfying the condition is enough (each condition is checked on its own).
``any`` / ``all``  a list of condition maps (nestable).  ``not``  one condition map.

Values: a scalar means equality (strings compare case-insensitively, numbers numerically, a
numeric string equals the number, booleans only equal booleans, ``null`` equals a missing
value); a list means ``in``; a map of operators applies all of them:
``eq``, ``ne``, ``gt``, ``gte``, ``lt``, ``lte`` (numbers only), ``in``, ``not_in`` (lists),
``exists`` (true/false). A missing attribute fails every operator except ``ne``, ``not_in`` and
``exists: false``.

Text: only customer-written text is matched: the conversation ``title``, the source
``subject``, the source ``body`` when its author is a user/lead/contact, and conversation parts
written by a user/lead/contact (never admin replies, bot parts or notes). HTML tags become
spaces, entities are unescaped, the text is NFKC-normalised, typographic quotes become ASCII
(so ``doesn't`` also matches a U+2019 apostrophe) and runs of whitespace collapse to one space;
pieces are joined with newlines.

Whole words: a phrase matches only when the characters just before and after it are not word
characters. ``invoice`` matches ``Invoice!`` and ``(invoice)`` but not ``invoices`` or
``reinvoice``; write both forms (``[invoice, invoices]``) or use ``text_regex`` for stems.
Whitespace inside a phrase matches any run of whitespace.

Safety: neither a rules file nor a conversation may hang a worker.

* Text: at most ``MAX_HTML_LENGTH`` characters of raw HTML are read per conversation (cut
  *before* stripping), tags are stripped by a linear scan (no regular expression: the pattern
  ``<[a-z][^>]*>`` costs quadratic time on ``<a<a<a...``), and matching sees at most
  ``max_text_length`` characters (default 64 KiB).
* Regexes: every pattern is compiled once at load with the ``regex`` module. Each search runs
  with a timeout (``regex_timeout``, default 0.1 s), and all searches for one conversation
  (``text_any``, ``text_all`` and ``text_regex`` of every rule) share one budget
  (``regex_budget``, default 0.5 s). A timeout counts as "no match" and is logged naming the
  rule; once the budget is spent the remaining text conditions count as "no match" without
  running, logged once per conversation. At load, the classic catastrophic shapes are rejected:
  a nested unbounded quantifier whose body is just that quantifier (``(a+)+``,
  ``(\\w+\\s?)*``) and an unbounded repeat of alternatives that can match the same text
  (``(a|aa)+``, ``(a|a?)+``, ``(.|\\s)*``); the budget covers the rest.
* Files: YAML anchors and aliases are refused (an alias "bomb" expands a 2 KB file into
  gigabytes), and so is nesting deeper than ``MAX_NESTING`` levels (the error names the line
  or the path), so loading is linear in the file's size.
"""

from __future__ import annotations

import html
import json
import logging
import time
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import regex
import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from workers.conversations.actions import Actions, check_names, load_actions, rule_name

log = logging.getLogger(__name__)

DEFAULT_REGEX_TIMEOUT = 0.1
DEFAULT_REGEX_BUDGET = 0.5  # seconds of regex searching per conversation, all rules together
DEFAULT_MAX_TEXT_LENGTH = 64 * 1024
# Raw HTML read per conversation before stripping: generous (markup often outweighs the text)
# yet a fixed bound, so stripping costs at most a few milliseconds whatever Intercom returns.
MAX_HTML_LENGTH = 4 * DEFAULT_MAX_TEXT_LENGTH
MAX_PATTERN_LENGTH = 2000
# Deepest nesting a rules file may have (YAML nodes or JSON containers). The sample files need
# about 8; 40 leaves room for hand-written any/all/not trees and keeps every recursive walk
# (composer, constructor, validation, evaluation) far below Python's recursion limit.
MAX_NESTING = 40
CUSTOMER_AUTHOR_TYPES = frozenset({"user", "lead", "contact"})

_FLAGS = regex.IGNORECASE | regex.UNICODE
_TAG_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ/!?")
_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201f": '"',
        "\u2033": '"',
    }
)
_MISSING: Any = object()


class RulesError(ValueError):
    """A rules file that cannot be used; the message names each bad rule index and field.

    ``errors`` holds one ``rules[2].when.text_regex: ...`` line per problem, so a worker can
    fail at start with one clear line and the CLI can print them all.
    """

    def __init__(self, errors: Sequence[str], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(self.errors))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Assignment:
    """Where a matching rule wants the conversation assigned (``assign_to`` in the file)."""

    assignee_type: Literal["team", "admin"]
    assignee_id: str


@dataclass(frozen=True)
class Match:
    """One tag to apply: the first rule (in file order) that produced it."""

    tag: str
    rule_index: int
    assign_to: Assignment | None = None


@dataclass(frozen=True)
class Trace:
    """Why one condition held or failed, with the traces of nested conditions."""

    condition: str
    held: bool
    detail: str
    children: tuple[Trace, ...] = ()


@dataclass(frozen=True)
class Explanation:
    """Per rule: did it match, and the trace of each condition in its ``when`` map."""

    rule_index: int
    tag: str
    matched: bool
    enabled: bool
    conditions: tuple[Trace, ...]
    assign_to: Assignment | None = None
    timed_out: bool = False
    name: str = ""
    actions: Actions | None = None


@dataclass(frozen=True)
class MatchContext:
    """Everything rules look at, already reduced to plain data (no Intercom calls needed).

    ``text`` is the customer-written text (HTML stripped); ``contact`` an Intercom contact
    object (or a subset); ``companies`` Intercom company objects; ``channel`` the source
    ``type``; ``delivered_as`` the source ``delivered_as``.
    """

    text: str
    contact: Mapping[str, Any] = field(default_factory=dict)
    companies: tuple[Mapping[str, Any], ...] = ()
    channel: str | None = None
    delivered_as: str | None = None


# --------------------------------------------------------------------------- text


def strip_tags(value: str) -> str:
    """Replace each tag with a space in one left-to-right pass (linear time).

    Only ``<`` followed by a letter, ``/``, ``!`` or ``?`` starts a tag, which runs to the next
    ``>``; so plain text such as ``a < b`` or ``<3`` survives. Why not a regular expression:
    ``<[a-z][^>]*>`` retries from every ``<`` when no ``>`` follows, which is quadratic on
    ``"<a" * n``; here, once no ``>`` is left, the rest is text and the scan ends.
    """
    out: list[str] = []
    pos, end = 0, len(value)
    while pos < end:
        start = value.find("<", pos)
        if start < 0 or start + 1 >= end:
            break
        if value[start + 1] not in _TAG_START:
            out.append(value[pos : start + 1])
            pos = start + 1
            continue
        close = value.find(">", start + 2)
        if close < 0:
            break  # no tag can close: everything left is text
        out.append(value[pos:start])
        out.append(" ")
        pos = close + 1
    out.append(value[pos:])
    return "".join(out)


def html_to_text(value: str | None, limit: int = MAX_HTML_LENGTH) -> str:
    """Strip tags to spaces, unescape entities and normalise, as DESIGN's Rules detail asks.

    At most ``limit`` characters of ``value`` are read: the cap comes first, so the cost of
    a hostile body is bounded before any work is done on it.
    """
    if not value:
        return ""
    text = strip_tags(value[:limit])
    text = html.unescape(text)
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    return " ".join(text.split())  # str.split: one pass, faster than a regex sub


def _unwrap_item(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept a notification envelope as well as the bare object (``data.item``)."""
    if obj.get("type") == "notification_event":
        item = (obj.get("data") or {}).get("item")
        if isinstance(item, Mapping):
            return item
    return obj


def _as_list(value: Any, *keys: str) -> list[Any]:
    """Intercom wraps lists in objects (``{"type": "...list", "data"|"<name>": [...]}``)."""
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        for key in (*keys, "data"):
            inner = value.get(key)
            if isinstance(inner, list):
                return inner
    return []


def _author_type(obj: Mapping[str, Any]) -> str | None:
    author = obj.get("author")
    return author.get("type") if isinstance(author, Mapping) else None


def conversation_text(conversation: Mapping[str, Any], limit: int = MAX_HTML_LENGTH) -> str:
    """The customer-written text of a conversation (see the module docstring for what counts).

    ``limit`` bounds the raw HTML read over all pieces together (in order), so a conversation
    with many huge parts costs no more than one with a single part of that size.
    """
    conversation = _unwrap_item(conversation)
    source = conversation.get("source") if isinstance(conversation.get("source"), Mapping) else {}
    raw: list[Any] = [conversation.get("title"), source.get("subject")]
    if _author_type(source) in CUSTOMER_AUTHOR_TYPES:
        raw.append(source.get("body"))
    parts = _as_list(conversation.get("conversation_parts"), "conversation_parts")
    for part in parts:
        if not isinstance(part, Mapping) or part.get("part_type") == "note":
            continue
        if _author_type(part) in CUSTOMER_AUTHOR_TYPES:
            raw.append(part.get("body"))
    pieces: list[str] = []
    left = limit
    for value in raw:
        if left <= 0:
            break
        if isinstance(value, str) and value:
            pieces.append(html_to_text(value, left))
            left -= len(value)
    return "\n".join(p for p in pieces if p)


def _normalise_companies(companies: Any) -> tuple[Mapping[str, Any], ...]:
    return tuple(c for c in _as_list(companies, "companies") if isinstance(c, Mapping))


def context_from_conversation(
    conversation: Mapping[str, Any],
    contact: Mapping[str, Any] | None = None,
    companies: Any = None,
) -> MatchContext:
    """Build the rules input from a conversation (``GET /conversations/{id}`` or a notification).

    ``contact`` should be the full contact (``GET /contacts/{id}``); without it, the source
    author (id, email, name, role) and the conversation's first contact reference stand in, so
    ``contact.email_domain`` still works from a notification alone. ``companies`` are full
    company objects; Intercom's list wrappers (``{"data": [...]}``) are accepted too.
    """
    conversation = _unwrap_item(conversation)
    source = conversation.get("source") if isinstance(conversation.get("source"), Mapping) else {}
    if contact is None:
        contact = _fallback_contact(conversation, source)
    return MatchContext(
        text=conversation_text(conversation),
        contact=contact,
        companies=_normalise_companies(companies),
        channel=source.get("type"),
        delivered_as=source.get("delivered_as"),
    )


def _fallback_contact(conversation: Mapping[str, Any], source: Mapping[str, Any]) -> dict:
    contact: dict[str, Any] = {}
    refs = _as_list(conversation.get("contacts"), "contacts")
    if refs and isinstance(refs[0], Mapping):
        contact.update({k: refs[0][k] for k in ("id", "external_id") if k in refs[0]})
    author = source.get("author")
    if isinstance(author, Mapping) and author.get("type") in CUSTOMER_AUTHOR_TYPES:
        for key in ("id", "email", "name"):
            if author.get(key) is not None:
                contact.setdefault(key, author[key])
        if author["type"] in ("user", "lead"):
            contact["role"] = author["type"]
    return contact


def context_from_text(
    text: str,
    *,
    contact: Mapping[str, Any] | None = None,
    companies: Any = None,
    channel: str | None = None,
) -> MatchContext:
    """Build the rules input from plain text (the CLI's ``rules test "some text"``)."""
    return MatchContext(
        text=html_to_text(text),
        contact=contact or {},
        companies=_normalise_companies(companies),
        channel=channel,
    )


# --------------------------------------------------------------------------- values


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any) -> float | None:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _equal(actual: Any, expected: Any) -> bool:
    """Equality as the module docstring describes it (case-insensitive, numeric-aware)."""
    if expected is None:
        return actual is _MISSING or actual is None
    if actual is _MISSING or actual is None:
        return False
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, str) and isinstance(actual, str):
        return expected.casefold() == actual.casefold()
    if _is_number(expected) or _is_number(actual):
        a, e = _as_number(actual), _as_number(expected)
        return a is not None and e is not None and a == e
    return False


def _compare(op: str, actual: Any, operand: Any) -> bool:
    if op == "eq":
        return _equal(actual, operand)
    if op == "ne":
        return not _equal(actual, operand)
    if op == "in":
        return any(_equal(actual, o) for o in operand)
    if op == "not_in":
        return not any(_equal(actual, o) for o in operand)
    if op == "exists":
        present = actual is not _MISSING and actual is not None
        return present is operand
    number = _as_number(actual) if actual is not _MISSING else None
    if number is None:
        return False
    return {
        "gt": number > operand,
        "gte": number >= operand,
        "lt": number < operand,
        "lte": number <= operand,
    }[op]


_OP_SYMBOLS = {
    "eq": "=",
    "ne": "!=",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "in": "in",
    "not_in": "not in",
    "exists": "exists",
}
_SCALAR = (str, int, float, bool, type(None))


def _compile_value(value: Any) -> tuple[tuple[str, Any], ...]:
    """Turn a condition value into ``((op, operand), ...)``; ValidationError when malformed."""
    if isinstance(value, list):
        return (("in", _check_list(value)),)
    if isinstance(value, Mapping):
        if not value:
            raise ValidationError(["operator map must not be empty"])
        ops: list[tuple[str, Any]] = []
        errors: dict[str, list[str]] = {}
        for op, operand in value.items():
            try:
                ops.append((op, _check_operand(op, operand)))
            except ValidationError as exc:
                errors[str(op)] = exc.messages if isinstance(exc.messages, list) else [str(exc)]
        if errors:
            raise ValidationError(errors)
        return tuple(ops)
    if isinstance(value, _SCALAR):
        return (("eq", value),)
    raise ValidationError([f"unsupported value {value!r}"])


def _check_list(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise ValidationError(["must be a non-empty list"])
    if not all(isinstance(v, _SCALAR) for v in value):
        raise ValidationError(["list items must be strings, numbers, booleans or null"])
    return tuple(value)


def _check_operand(op: Any, operand: Any) -> Any:
    if op in ("gt", "gte", "lt", "lte"):
        if not _is_number(operand):
            raise ValidationError([f"{op} needs a number"])
        return float(operand)
    if op in ("in", "not_in"):
        return _check_list(operand)
    if op == "exists":
        if not isinstance(operand, bool):
            raise ValidationError(["exists needs true or false"])
        return operand
    if op in ("eq", "ne"):
        if not isinstance(operand, _SCALAR):
            raise ValidationError([f"{op} needs a string, number, boolean or null"])
        return operand
    raise ValidationError([f"unknown operator; use one of {', '.join(_OP_SYMBOLS)}"])


def _describe_ops(ops: Iterable[tuple[str, Any]]) -> str:
    def show(v: Any) -> str:
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        if isinstance(v, tuple):
            return "[" + ", ".join(show(x) for x in v) + "]"
        return json.dumps(v) if isinstance(v, str | bool | type(None)) else str(v)

    return " and ".join(f"{_OP_SYMBOLS[op]} {show(v)}" for op, v in ops)


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# --------------------------------------------------------------------------- conditions


class _Run:
    """State of one evaluation: the capped text and settings, shared by all conditions.

    ``deadline`` is the shared regex budget of this evaluation: every search gets at most
    ``timeout`` and never more than what is left, so the total over all rules is bounded
    (one catastrophic pattern per search costs ``timeout``; two hundred cost ``budget``).
    """

    __slots__ = ("budget", "ctx", "deadline", "exhausted", "rule_label", "text", "timed_out",
                 "timeout")  # fmt: skip

    def __init__(
        self, ctx: MatchContext, text: str, timeout: float, budget: float | None = None
    ) -> None:
        self.ctx = ctx
        self.text = text
        self.timeout = timeout
        self.budget = timeout * 5 if budget is None else budget
        # CPU time of this thread, the clock the regex module's own timeout counts in: a busy
        # machine slows a search down without spending the budget that bounds its work.
        self.deadline = time.thread_time() + self.budget
        self.rule_label = ""
        self.timed_out = False
        self.exhausted = False

    def search(self, pattern: regex.Pattern[str], key: str) -> regex.Match[str] | bool | None:
        """Search within the timeout and the shared budget; ``False`` (not ``None``) tells the
        caller it timed out or was not run because the budget is spent."""
        left = self.deadline - time.thread_time()
        if left <= 0:
            self.timed_out = True
            if not self.exhausted:
                self.exhausted = True
                log.warning(
                    "rules: regex budget of %.3gs spent at rule %s; the remaining text "
                    "conditions count as no match (%d characters)",
                    self.budget,
                    self.rule_label,
                    len(self.text),
                )
            return False
        try:
            return pattern.search(self.text, timeout=min(self.timeout, left))
        except TimeoutError:
            self.timed_out = True
            log.warning(
                "rule %s: %s timed out after %.3gs on %d characters; counted as no match",
                self.rule_label,
                key,
                min(self.timeout, left),
                len(self.text),
            )
            return False


class _Condition:
    key: str

    def check(self, run: _Run, explain: bool) -> tuple[bool, Trace | None]:
        raise NotImplementedError


def _span_detail(m: regex.Match[str]) -> str:
    return f"{_short(m.group(0))!r} at {m.start()}..{m.end()}"


class _TextPhrases(_Condition):
    """``text_any`` / ``text_all``: whole-word phrases, one compiled pattern per phrase."""

    def __init__(self, key: str, phrases: Sequence[str], require_all: bool) -> None:
        self.key = key
        self.phrases = tuple(phrases)
        self.require_all = require_all
        self.patterns = tuple(_phrase_pattern(p) for p in phrases)
        # One alternation for text_any keeps evaluation to a single pass over the text.
        alternation = "|".join(f"(?P<p{i}>{_phrase_body(p)})" for i, p in enumerate(phrases))
        self.combined = regex.compile(rf"(?<!\w)(?:{alternation})(?!\w)", _FLAGS)

    def check(self, run: _Run, explain: bool) -> tuple[bool, Trace | None]:
        if not self.require_all:
            m = run.search(self.combined, self.key)
            if m is False:
                return False, Trace(self.key, False, "timed out (counted as no match)")
            if m is None:
                detail = "none of " + ", ".join(repr(p) for p in self.phrases) + " found"
                return False, Trace(self.key, False, detail) if explain else None
            if not explain:
                return True, None
            phrase = self.phrases[int(m.lastgroup[1:])] if m.lastgroup else m.group(0)
            return True, Trace(self.key, True, f"phrase {phrase!r} matched {_span_detail(m)}")
        found, missing = [], []
        for phrase, pattern in zip(self.phrases, self.patterns, strict=True):
            m = run.search(pattern, self.key)
            if m:
                found.append(f"{phrase!r} matched {_span_detail(m)}")
            else:
                missing.append(repr(phrase) + (" (timed out)" if m is False else ""))
                if not explain:
                    return False, None
        held = not missing
        if not explain:
            return held, None
        detail = "; ".join(found + ([f"missing {', '.join(missing)}"] if missing else []))
        return held, Trace(self.key, held, detail)


def _phrase_body(phrase: str) -> str:
    words = phrase.split()
    return r"\s+".join(regex.escape(w) for w in words)


def _phrase_pattern(phrase: str) -> regex.Pattern[str]:
    return regex.compile(rf"(?<!\w){_phrase_body(phrase)}(?!\w)", _FLAGS)


class _TextRegex(_Condition):
    """``text_regex``: holds when any of the (pre-compiled) patterns finds a match."""

    def __init__(self, key: str, sources: Sequence[str], patterns: Sequence[regex.Pattern]):
        self.key = key
        self.sources = tuple(sources)
        self.patterns = tuple(patterns)

    def check(self, run: _Run, explain: bool) -> tuple[bool, Trace | None]:
        notes = []
        for source, pattern in zip(self.sources, self.patterns, strict=True):
            m = run.search(pattern, self.key)
            if m:
                detail = f"/{_short(source)}/ matched {_span_detail(m)}"
                return True, Trace(self.key, True, detail) if explain else None
            notes.append(f"/{_short(source)}/ " + ("timed out" if m is False else "no match"))
        return False, Trace(self.key, False, "; ".join(notes)) if explain else None


def _resolve(obj: Mapping[str, Any], scope: str, path: str) -> Any:
    """Standard attribute first (dotted paths walk objects), then ``custom_attributes``."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part, _MISSING) if isinstance(value, Mapping) else _MISSING
        if value is _MISSING:
            break
    if scope == "company" and path == "plan" and value is not _MISSING:
        value = value.get("name", _MISSING) if isinstance(value, Mapping) else value
    if scope == "contact" and path == "email_domain" and value in (_MISSING, None, ""):
        email = obj.get("email")
        if isinstance(email, str) and "@" in email:
            value = email.rsplit("@", 1)[1].strip().lower()
    if value is _MISSING or value is None:
        custom = obj.get("custom_attributes")
        if isinstance(custom, Mapping) and path in custom:
            value = custom[path]
    return value


class _Attribute(_Condition):
    """``contact.<attr>`` / ``company.<attr>`` compared with the rule's value or operators."""

    def __init__(self, key: str, scope: str, path: str, ops: tuple[tuple[str, Any], ...]):
        self.key = key
        self.scope = scope
        self.path = path
        self.ops = ops

    def _holds(self, actual: Any) -> bool:
        return all(_compare(op, actual, operand) for op, operand in self.ops)

    def check(self, run: _Run, explain: bool) -> tuple[bool, Trace | None]:
        want = _describe_ops(self.ops)
        if self.scope == "contact":
            subjects = [("contact", run.ctx.contact)]
        else:
            subjects = [
                (f"company {c.get('company_id') or c.get('id') or i}", c)
                for i, c in enumerate(run.ctx.companies)
            ]
        if not subjects:
            held = self._holds(_MISSING)
            return held, Trace(self.key, held, f"{want}; no companies") if explain else None
        seen = []
        for label, obj in subjects:
            actual = _resolve(obj, self.scope, self.path)
            shown = "missing" if actual is _MISSING else repr(_short(actual))
            if self._holds(actual):
                return True, Trace(self.key, True, f"{want}; {label}: {shown}") if explain else None
            seen.append(f"{label}: {shown}")
        return False, Trace(self.key, False, f"{want}; " + ", ".join(seen)) if explain else None


class _ContextField(_Condition):
    """``channel`` / ``delivered_as``: a plain field of the context."""

    def __init__(self, key: str, ops: tuple[tuple[str, Any], ...]) -> None:
        self.key = key
        self.ops = ops

    def check(self, run: _Run, explain: bool) -> tuple[bool, Trace | None]:
        actual = getattr(run.ctx, self.key)
        actual = _MISSING if actual is None else actual
        held = all(_compare(op, actual, operand) for op, operand in self.ops)
        if not explain:
            return held, None
        shown = "missing" if actual is _MISSING else repr(actual)
        return held, Trace(self.key, held, f"{_describe_ops(self.ops)}; is {shown}")


class _AllOf(_Condition):
    """A condition map: every condition must hold (explain evaluates all of them)."""

    def __init__(self, key: str, conditions: Sequence[_Condition]) -> None:
        self.key = key
        self.conditions = tuple(conditions)

    def check_each(self, run: _Run, explain: bool) -> tuple[bool, tuple[Trace, ...]]:
        traces: list[Trace] = []
        held = True
        for condition in self.conditions:
            ok, trace = condition.check(run, explain)
            if trace is not None and explain:
                traces.append(trace)
            if not ok:
                held = False
                if not explain:
                    break
        return held, tuple(traces)

    def check(self, run: _Run, explain: bool) -> tuple[bool, Trace | None]:
        held, traces = self.check_each(run, explain)
        if not explain:
            return held, None
        return held, Trace(self.key, held, "all held" if held else "not all held", traces)


class _AnyOf(_Condition):
    def __init__(self, key: str, options: Sequence[_AllOf]) -> None:
        self.key = key
        self.options = tuple(options)

    def check(self, run: _Run, explain: bool) -> tuple[bool, Trace | None]:
        traces = []
        held = False
        for option in self.options:
            ok, trace = option.check(run, explain)
            if trace is not None:
                traces.append(trace)
            if ok:
                held = True
                if not explain:
                    break
        if not explain:
            return held, None
        count = sum(t.held for t in traces)
        return held, Trace(self.key, held, f"{count} of {len(traces)} held", tuple(traces))


class _Not(_Condition):
    def __init__(self, inner: _AllOf) -> None:
        self.key = "not"
        self.inner = inner

    def check(self, run: _Run, explain: bool) -> tuple[bool, Trace | None]:
        ok, trace = self.inner.check(run, explain)
        if not explain:
            return not ok, None
        detail = "the conditions below failed" if not ok else "the conditions below held"
        return not ok, Trace("not", not ok, detail, trace.children if trace else ())


# --------------------------------------------------------------------------- compiling


def _unbounded_repeat_bodies(seq: Any, c: Any) -> Iterator[Any]:
    """The body of every unbounded repeat (``x*``, ``x+``, ``x{n,}``) anywhere in a parsed
    pattern, inside groups, alternatives, lookarounds and atomic groups too: where both
    load-time checks look for a body that can match the same text in more than one way."""
    possessive = getattr(c, "POSSESSIVE_REPEAT", None)
    atomic = getattr(c, "ATOMIC_GROUP", None)
    for op, av in seq:
        if op in (c.MAX_REPEAT, c.MIN_REPEAT):
            if av[1] == c.MAXREPEAT:
                yield av[2]
            yield from _unbounded_repeat_bodies(av[2], c)
        elif op is c.SUBPATTERN:
            yield from _unbounded_repeat_bodies(av[3], c)
        elif op is c.BRANCH:
            for alt in av[1]:
                yield from _unbounded_repeat_bodies(alt, c)
        elif op in (c.ASSERT, c.ASSERT_NOT):
            yield from _unbounded_repeat_bodies(av[1], c)
        elif possessive is not None and op is possessive:
            yield from _unbounded_repeat_bodies(av[2], c)
        elif atomic is not None and op is atomic:
            yield from _unbounded_repeat_bodies(av, c)


def _catastrophic_reason(pattern: str) -> str | None:
    """Best-effort static check for nested unbounded quantifiers (``(a+)+``, ``(\\w+\\s?)*``).

    Uses the standard library's regular-expression parser (private, so any failure simply
    skips the check: the runtime timeout still protects the worker). Syntax only the
    ``regex`` module knows is skipped the same way.
    """
    try:
        from re import _constants as c  # private; failures skip the check
        from re import _parser as p
    except ImportError:  # pragma: no cover - other Python versions
        return None
    try:
        tree = p.parse(pattern)
    except Exception:
        return None
    repeats = (c.MAX_REPEAT, c.MIN_REPEAT)

    def min_width(item: tuple[Any, Any]) -> int:
        return p.SubPattern(tree.state, [item]).getwidth()[0]

    def lone_unbounded(seq: Iterable[tuple[Any, Any]]) -> bool:
        items = list(seq)
        for i, (op, av) in enumerate(items):
            if unbounded_item(op, av) and all(
                min_width(other) == 0 for j, other in enumerate(items) if j != i
            ):
                return True
        return False

    def unbounded_item(op: Any, av: Any) -> bool:
        if op in repeats:
            return av[1] == c.MAXREPEAT and av[2].getwidth()[1] > 0
        if op is c.SUBPATTERN:
            return lone_unbounded(av[3])
        if op is c.BRANCH:
            return any(lone_unbounded(alt) for alt in av[1])
        return False

    try:
        risky = any(lone_unbounded(body) for body in _unbounded_repeat_bodies(tree, c))
    except Exception:
        return None
    if risky:
        return (
            "nested unbounded quantifier (like (a+)+) can backtrack catastrophically; "
            "rewrite it, e.g. with a possessive quantifier (a++) or an atomic group"
        )
    try:
        ambiguous = _ambiguous_repeat(tree, c)
    except Exception:
        return None
    if ambiguous:
        return (
            "an unbounded repeat of alternatives that can match the same text (like (a|aa)+) "
            "can backtrack catastrophically; rewrite it, e.g. as an atomic group (?>a|aa)+"
        )
    return None


# Characters standing in for "any character" when first-character sets of classes are
# compared: ASCII plus a few non-ASCII letters, digits and spaces. An approximation that only
# decides whether the static check complains; the runtime budget is the real guarantee.
_SAMPLE = frozenset([chr(i) for i in range(9, 127)] + ["\u00e9", "\u0430", "\u0663", "\u00a0"])


def _ambiguous_repeat(tree: Any, c: Any) -> bool:
    """True when an unbounded repeat's body can split the same text in two ways.

    Checked on the body of every unbounded repeat (groups flattened), the shapes behind the
    ``(a|aa)+`` family: an alternation with an empty alternative whose other alternatives can
    start where the loop goes on (``(a|a?)+``, and ``a(?:|a)``, which is how ``(a|aa)``
    parses); two alternatives that can start with the same character, unless both have the
    same fixed width over one character (``(ab|a|b)+`` and ``(.|a)+`` fail, ``(bar|baz)+``
    passes); two unbounded repeats in a row that can start with the same character
    (``(x+x+)+``). Atomic groups and possessive repeats never backtrack and are skipped.
    """

    repeats = (c.MAX_REPEAT, c.MIN_REPEAT)
    categories = {
        c.CATEGORY_DIGIT: str.isdigit,
        c.CATEGORY_NOT_DIGIT: lambda ch: not ch.isdigit(),
        c.CATEGORY_SPACE: str.isspace,
        c.CATEGORY_NOT_SPACE: lambda ch: not ch.isspace(),
        c.CATEGORY_WORD: lambda ch: ch.isalnum() or ch == "_",
        c.CATEGORY_NOT_WORD: lambda ch: not (ch.isalnum() or ch == "_"),
    }

    def chars(code: int) -> set[str]:
        ch = chr(code)
        return {ch, ch.lower(), ch.upper()}  # rules match case-insensitively

    def first(item: tuple[Any, Any]) -> tuple[set[str] | None, bool]:
        """(first characters, None = any; can it match the empty string?)"""
        op, av = item
        if op is c.LITERAL:
            return chars(av), False
        if op is c.NOT_LITERAL:
            return set(_SAMPLE) - chars(av), False
        if op is c.ANY:
            return None, False
        if op is c.IN:
            found: set[str] = set()
            negate = False
            for sub_op, sub_av in av:
                if sub_op is c.NEGATE:
                    negate = True
                elif sub_op is c.LITERAL:
                    found |= chars(sub_av)
                elif sub_op is c.RANGE:
                    lo, hi = sub_av
                    found |= {ch for ch in _SAMPLE if lo <= ord(ch) <= hi} | chars(lo) | chars(hi)
                elif sub_op is c.CATEGORY and sub_av in categories:
                    found |= {ch for ch in _SAMPLE if categories[sub_av](ch)}
                else:
                    return None, False
            return (set(_SAMPLE) - found if negate else found), False
        if op is c.SUBPATTERN:
            return first_seq(av[3])
        if op in repeats or op is getattr(c, "POSSESSIVE_REPEAT", None):
            f, nullable = first_seq(av[2])
            return f, nullable or av[0] == 0
        if op is c.BRANCH:
            out: set[str] | None = set()
            any_nullable = False
            for alt in av[1]:
                f, nullable = first_seq(alt)
                out = None if out is None or f is None else out | f
                any_nullable = any_nullable or nullable
            return out, any_nullable
        if op is getattr(c, "ATOMIC_GROUP", None):
            return first_seq(av)
        if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
            return set(), True
        return None, True  # back-references, conditionals: assume anything

    def first_seq(seq: Any) -> tuple[set[str] | None, bool]:
        out: set[str] | None = set()
        for item in seq:
            f, nullable = first(item)
            out = None if out is None or f is None else out | f
            if not nullable:
                return out, False
        return out, True

    def overlap(a: set[str] | None, b: set[str] | None) -> bool:
        if a is None or b is None:
            return bool(a if b is None else b) or (a is None and b is None)
        return bool(a & b)

    def flat(seq: Any) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        for op, av in seq:
            if op is c.SUBPATTERN:
                out.extend(flat(av[3]))
            else:
                out.append((op, av))
        return out

    def ambiguous_body(body: Any) -> bool:
        items = flat(body)
        loop_first, _ = first_seq(items)
        for i, (op, av) in enumerate(items):
            follow, nullable = first_seq(items[i + 1 :])
            if nullable:
                follow = None if follow is None or loop_first is None else follow | loop_first
            if op is c.BRANCH:
                alts = [(first_seq(alt), p_width(alt)) for alt in av[1]]
                starts = [f for (f, nullable_alt), _ in alts if not nullable_alt]
                if any(n for (_, n), _ in alts) and any(overlap(f, follow) for f in starts):
                    return True
                for j, ((f1, _), w1) in enumerate(alts):
                    for (f2, _), w2 in alts[j + 1 :]:
                        # Same fixed width over one character would be the same text.
                        fixed_same = w1[0] == w1[1] == w2[0] == w2[1] > 1
                        if overlap(f1, f2) and not fixed_same:
                            return True
            if op in repeats and av[1] == c.MAXREPEAT:
                own, _ = first_seq(av[2])
                nxt = next((it for it in items[i + 1 :] if not first(it)[1]), None)
                if (
                    nxt is not None
                    and nxt[0] in repeats
                    and nxt[1][1] == c.MAXREPEAT
                    and overlap(own, first(nxt)[0])
                ):
                    return True
        return False

    from re import _parser as p  # private; the caller treats any failure as "not checked"

    def p_width(seq: Any) -> tuple[int, int]:
        return p.SubPattern(tree.state, list(seq)).getwidth()

    return any(ambiguous_body(body) for body in _unbounded_repeat_bodies(tree, c))


class _Compiler:
    """Turns raw ``when`` maps into condition objects, collecting marshmallow-style errors."""

    def __init__(self, check_patterns: bool) -> None:
        self.check_patterns = check_patterns

    def condition_map(self, raw: Any, key: str = "when") -> _AllOf:
        if not isinstance(raw, Mapping):
            raise ValidationError(["must be a mapping of conditions"])
        if not raw:
            raise ValidationError(["must contain at least one condition"])
        conditions: list[_Condition] = []
        errors: dict[str, Any] = {}
        for name, value in raw.items():
            if not isinstance(name, str):
                errors[str(name)] = ["condition names must be strings"]
                continue
            try:
                conditions.append(self.condition(name, value))
            except ValidationError as exc:
                errors[name] = exc.messages
        if errors:
            raise ValidationError(errors)
        return _AllOf(key, conditions)

    def condition(self, name: str, value: Any) -> _Condition:
        if name in ("text_any", "text_all"):
            return _TextPhrases(name, self.phrases(value), require_all=name == "text_all")
        if name == "text_regex":
            return self.text_regex(value)
        if name in ("channel", "delivered_as"):
            return _ContextField(name, _compile_value(value))
        if name in ("any", "all"):
            if not isinstance(value, list) or not value:
                raise ValidationError(["must be a non-empty list of condition maps"])
            options: list[_AllOf] = []
            errors: dict[int, Any] = {}
            for i, item in enumerate(value):
                try:
                    options.append(self.condition_map(item, key=f"{name}[{i}]"))
                except ValidationError as exc:
                    errors[i] = exc.messages
            if errors:
                raise ValidationError(errors)
            return _AnyOf(name, options) if name == "any" else _AllOf(name, options)
        if name == "not":
            return _Not(self.condition_map(value, key="not"))
        scope, _, path = name.partition(".")
        if scope in ("contact", "company") and path:
            return _Attribute(name, scope, path, _compile_value(value))
        raise ValidationError(
            [
                "unknown condition; use text_any, text_all, text_regex, channel, delivered_as, "
                "any, all, not, contact.<attribute> or company.<attribute>"
            ]
        )

    @staticmethod
    def phrases(value: Any) -> list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise ValidationError(["must be a phrase or a non-empty list of phrases"])
        out = []
        for item in items:
            if not isinstance(item, str) or not item.strip():
                raise ValidationError(["phrases must be non-empty strings"])
            out.append(html_to_text(item))
        return out

    def text_regex(self, value: Any) -> _TextRegex:
        items = [value] if isinstance(value, str) else value
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(i, str) and i for i in items)
        ):
            raise ValidationError(["must be a regular expression or a non-empty list of them"])
        patterns = []
        for source in items:
            if len(source) > MAX_PATTERN_LENGTH:
                raise ValidationError([f"pattern longer than {MAX_PATTERN_LENGTH} characters"])
            try:
                patterns.append(regex.compile(source, _FLAGS))
            except regex.error as exc:
                raise ValidationError([f"invalid regular expression: {exc}"]) from None
            if self.check_patterns and (reason := _catastrophic_reason(source)):
                raise ValidationError([f"unsafe regular expression: {reason}"])
        return _TextRegex("text_regex", items, patterns)


class _WhenField(fields.Field):
    """A marshmallow field that compiles a ``when`` map (nested errors keep their path)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> _AllOf:
        return _Compiler(self.metadata.get("check_patterns", True)).condition_map(value)


class _AssignSchema(Schema):
    class Meta:
        unknown = RAISE

    team_id = fields.Raw()
    admin_id = fields.Raw()

    @validates_schema
    def _exactly_one(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        given = [k for k in ("team_id", "admin_id") if data.get(k) not in (None, "")]
        if len(given) != 1:
            raise ValidationError("give exactly one of team_id or admin_id")
        value = data[given[0]]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValidationError("must be a string or integer id", given[0])


def _rule_schema(check_patterns: bool) -> type[Schema]:
    class _RuleSchema(Schema):
        class Meta:
            unknown = RAISE

        tag = fields.String(
            required=False,
            validate=validate.Length(min=1, max=255),
            error_messages={
                "invalid": "must be a string (quote it: YAML reads yes, no, on, "
                "off, true, false and numbers as other types)"
            },
        )
        when = _WhenField(required=True, metadata={"check_patterns": check_patterns})
        assign_to = fields.Nested(_AssignSchema)
        description = fields.String()
        enabled = fields.Boolean(load_default=True)
        # Actions (workers.conversations.actions checks them; they may come without a tag).
        name = fields.Raw()
        note = fields.Raw()
        reply = fields.Raw()
        attributes = fields.Raw()
        snooze = fields.Raw()
        close = fields.Raw()
        open = fields.Raw()

        @validates_schema
        def _actions(self, data: Mapping[str, Any], **kwargs: Any) -> None:
            errors: dict[str, Any] = {}
            for check in (rule_name, load_actions):
                try:
                    check(data)
                except ValidationError as exc:
                    errors.update(exc.messages if isinstance(exc.messages, dict)
                                  else {"_schema": exc.messages})  # fmt: skip
            if not errors and data.get("tag") is None:
                if data.get("assign_to"):
                    errors["assign_to"] = ["needs a tag: a rule assigns when its tag is new"]
                elif not load_actions(data):
                    errors["_schema"] = ["a rule needs a tag or at least one action (note, "
                                         "reply, attributes, snooze, close, open)"]  # fmt: skip
            if errors:
                raise ValidationError(errors)

    return _RuleSchema


def _file_schema(check_patterns: bool) -> Schema:
    class _FileSchema(Schema):
        class Meta:
            unknown = RAISE

        rules = fields.List(fields.Nested(_rule_schema(check_patterns)), required=True)

    return _FileSchema()


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    """marshmallow's nested error dict -> ``rules[2].when.text_regex: message`` lines."""
    if isinstance(messages, Mapping):
        out: list[str] = []
        for key, value in messages.items():
            if key == "_schema":
                path = prefix
            elif isinstance(key, int):
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            out.extend(_flatten(value, path))
        return out
    if isinstance(messages, list | tuple):
        out = []
        for item in messages:
            out.extend(
                _flatten(item, prefix)
                if isinstance(item, Mapping | list)
                else [f"{prefix}: {item}" if prefix else str(item)]
            )
        return out
    return [f"{prefix}: {messages}" if prefix else str(messages)]


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML would silently keep the last one), anchors
    and aliases, and nesting deeper than ``MAX_NESTING``.

    Why no aliases: each ``*ref`` re-uses a whole subtree, so nine levels of nine aliases make
    a 2 KB file describe 387 million conditions (a "billion laughs" bomb); a rules file has no
    need for them. Why the depth check lives here: the composer builds nodes recursively, so a
    few hundred nested maps would end in ``RecursionError`` before any validation ran. Both are
    checked on the parser's events, before a node is built, naming the line and column.
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            raise yaml.composer.ComposerError(
                None, None, f"YAML {kind}{event.anchor} is not allowed in a rules file",
                event.start_mark,
            )  # fmt: skip
        if self._depth >= MAX_NESTING and isinstance(event, yaml.CollectionStartEvent):
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_NESTING} levels", event.start_mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _json_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _too_deep(data: Any) -> str | None:
    """The path of the first container nested deeper than ``MAX_NESTING``, or None.

    Iterative (an explicit stack), so it cannot itself run out of recursion; it guards JSON,
    whose parser has no depth option, and anything handed over already parsed.
    """
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, Mapping):
            children: Iterable[tuple[str, Any]] = (
                (f"{path}.{k}" if path else str(k), v) for k, v in value.items()
            )
        elif isinstance(value, list):
            children = ((f"{path}[{i}]", v) for i, v in enumerate(value))
        else:
            continue
        if depth > MAX_NESTING:
            return (path if len(path) <= 100 else path[:100] + "...") or "(top level)"
        stack.extend((v, p, depth + 1) for p, v in children)
    return None


def _json_too_deep(text: str) -> str | None:
    """``line L, column C`` where JSON text nests deeper than ``MAX_NESTING``, or None.

    One pass over the characters (strings skipped), before ``json.loads``, whose C parser
    recurses and would raise ``RecursionError`` on a few thousand levels.
    """
    depth, line, line_start, in_string, escaped = 0, 1, 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return f"line {line}, column {i - line_start + 1}"
        elif ch in "]}":
            depth -= 1
        if ch == "\n":
            line, line_start = line + 1, i + 1
    return None


def _parse(text: str, fmt: str, source: str | None) -> Any:
    if fmt == "json" and (place := _json_too_deep(text)) is not None:
        raise RulesError([f"{place}: nested deeper than {MAX_NESTING} levels"], source)
    try:
        if fmt == "json":
            data = json.loads(text, object_pairs_hook=_json_no_duplicates)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except (ValueError, yaml.YAMLError) as exc:
        one_line = " ".join(str(exc).split())
        raise RulesError([f"cannot parse {fmt.upper()}: {one_line}"], source) from None
    except RecursionError:
        raise RulesError(
            [f"cannot parse {fmt.upper()}: nested deeper than {MAX_NESTING} levels"], source
        ) from None
    if (path := _too_deep(data)) is not None:
        raise RulesError([f"{path}: nested deeper than {MAX_NESTING} levels"], source)
    return data


@dataclass(frozen=True)
class Rule:
    """One validated rule; ``when`` is compiled once at load."""

    index: int
    tag: str | None
    when: _AllOf
    assign_to: Assignment | None = None
    description: str | None = None
    enabled: bool = True
    name: str = ""
    actions: Actions = field(default_factory=Actions)


class RuleSet:
    """Validated, compiled rules plus the safety limits used when evaluating them."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        regex_timeout: float = DEFAULT_REGEX_TIMEOUT,
        max_text_length: int = DEFAULT_MAX_TEXT_LENGTH,
        source: str | None = None,
        regex_budget: float = DEFAULT_REGEX_BUDGET,
    ) -> None:
        self.rules = tuple(rules)
        self.regex_timeout = regex_timeout
        self.regex_budget = max(regex_budget, regex_timeout)
        self.max_text_length = max_text_length
        self.source = source

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"RuleSet({len(self.rules)} rules, source={self.source!r})"

    @property
    def tag_names(self) -> tuple[str, ...]:
        """Every tag an enabled rule can give, de-duplicated in file order (for the tag cache)."""
        return tuple(dict.fromkeys(r.tag for r in self.rules if r.enabled and r.tag))

    def _run(self, ctx: MatchContext) -> _Run:
        text = ctx.text
        if len(text) > self.max_text_length:
            log.info("rules: text of %d characters capped to %d", len(text), self.max_text_length)
            text = text[: self.max_text_length]
        return _Run(ctx, text, self.regex_timeout, self.regex_budget)

    def evaluate(self, ctx: MatchContext) -> list[Match]:
        """Tags to apply, one ``Match`` per tag (its first rule), in rule order."""
        run = self._run(ctx)
        matches: dict[str, Match] = {}
        for rule in self.rules:
            if not rule.enabled or rule.tag is None or rule.tag in matches:
                continue
            run.rule_label = f"{rule.index} ({rule.tag})"
            held, _ = rule.when.check_each(run, explain=False)
            if held:
                matches[rule.tag] = Match(rule.tag, rule.index, rule.assign_to)
        return list(matches.values())

    def matched(self, ctx: MatchContext) -> list[Rule]:
        """Every enabled rule whose conditions hold, in file order (one evaluation each): the
        tags come from :func:`tag_matches`, the actions from each rule."""
        run = self._run(ctx)
        out = []
        for rule in self.rules:
            if not rule.enabled:
                continue
            run.rule_label = f"{rule.index} ({rule.name or rule.tag})"
            held, _ = rule.when.check_each(run, explain=False)
            if held:
                out.append(rule)
        return out

    def explain(self, ctx: MatchContext) -> list[Explanation]:
        """Per rule: matched or not, and each condition's trace (nothing short-circuits)."""
        run = self._run(ctx)
        out = []
        for rule in self.rules:
            run.rule_label = f"{rule.index} ({rule.tag})"
            run.timed_out = False
            held, traces = rule.when.check_each(run, explain=True)
            out.append(
                Explanation(
                    rule_index=rule.index,
                    tag=rule.tag,
                    matched=held and rule.enabled,
                    enabled=rule.enabled,
                    conditions=traces,
                    assign_to=rule.assign_to,
                    timed_out=run.timed_out,
                    name=rule.name,
                    actions=rule.actions,
                )
            )
        return out


def tag_matches(rules: Iterable[Rule]) -> list[Match]:
    """The tags of matched rules, one ``Match`` per tag (its first rule), as ``evaluate``."""
    matches: dict[str, Match] = {}
    for rule in rules:
        if rule.tag is not None and rule.tag not in matches:
            matches[rule.tag] = Match(rule.tag, rule.index, rule.assign_to)
    return list(matches.values())


def first_assignment(matches: Iterable[Match]) -> Assignment | None:
    """The assignment of the first matching rule that has one (rule order decides)."""
    return next((m.assign_to for m in matches if m.assign_to is not None), None)


def _looks_like_path(value: str) -> bool:
    if "\n" in value or value.lstrip().startswith(("{", "rules:")):
        return False
    return value.lower().endswith((".yaml", ".yml", ".json")) or Path(value).is_file()


def load_rules(
    path_or_text: str | Path,
    *,
    regex_timeout: float = DEFAULT_REGEX_TIMEOUT,
    max_text_length: int = DEFAULT_MAX_TEXT_LENGTH,
    check_patterns: bool = True,
    regex_budget: float = DEFAULT_REGEX_BUDGET,
) -> RuleSet:
    """Load and validate a rules file (by extension: ``.json`` JSON, else YAML) or rules text.

    A ``Path`` is always a file; a string is a file when it has a ``.yaml``/``.yml``/``.json``
    extension or names an existing file, else it is parsed as YAML (which also reads JSON).
    Raises ``RulesError`` listing every problem as ``rules[i].field: message``.
    ``check_patterns=False`` skips the static catastrophic-pattern check (the timeout stays).
    """
    source: str | None = None
    if isinstance(path_or_text, Path) or _looks_like_path(path_or_text):
        path = Path(path_or_text)
        source = path.name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RulesError([f"cannot read rules file: {exc.strerror or exc}"], source) from None
        except UnicodeDecodeError as exc:
            raise RulesError([f"not UTF-8 text (byte {exc.start})"], source) from None
        fmt = "json" if path.suffix.lower() == ".json" else "yaml"
    else:
        text, fmt = str(path_or_text), "yaml"
    raw = _parse(text, fmt, source)
    if not isinstance(raw, Mapping):
        raise RulesError(["the file must be a mapping with a 'rules' list"], source)
    try:
        data = _file_schema(check_patterns).load(raw)
    except ValidationError as exc:
        raise RulesError(_flatten(exc.messages), source) from None
    rules = []
    for index, item in enumerate(data["rules"]):
        assign = item.get("assign_to")
        assignment = None
        if assign:
            kind = "team" if assign.get("team_id") not in (None, "") else "admin"
            assignment = Assignment(kind, str(assign[f"{kind}_id"]))
        rules.append(
            Rule(
                index,
                item["tag"].strip() if item.get("tag") is not None else None,
                item["when"],
                assignment,
                item.get("description"),
                item["enabled"],
                rule_name(item),
                load_actions(item),
            )
        )
    duplicates = check_names((r.index, r.name, "name" in raw_rule, bool(r.actions))
                             for r, raw_rule in zip(rules, data["rules"], strict=True))  # fmt: skip
    if duplicates:
        raise RulesError(duplicates, source)
    return RuleSet(
        rules, regex_timeout=regex_timeout, max_text_length=max_text_length, source=source,
        regex_budget=regex_budget,
    )  # fmt: skip


# --------------------------------------------------------------------------- CLI support


def _format_trace(trace: Trace, depth: int) -> list[str]:
    mark = "+" if trace.held else "-"
    lines = [f"{'  ' * depth}{mark} {trace.condition}: {trace.detail}"]
    for child in trace.children:
        lines.extend(_format_trace(child, depth + 1))
    return lines


def format_explanation(explanations: Iterable[Explanation]) -> str:
    """Human-readable report: one block per rule, ``+`` for held and ``-`` for failed."""
    explanations = list(explanations)
    lines: list[str] = []
    for exp in explanations:
        status = "MATCH" if exp.matched else ("disabled" if not exp.enabled else "no match")
        extra = ""
        if exp.assign_to:
            extra = f" -> assign to {exp.assign_to.assignee_type} {exp.assign_to.assignee_id}"
        lines.append(f"rule {exp.rule_index} [{exp.name or exp.tag}]: {status}{extra}")
        for trace in exp.conditions:
            lines.extend(_format_trace(trace, 2))
    tags = list(dict.fromkeys(e.tag for e in explanations if e.matched and e.tag))
    lines.append("tags: " + (", ".join(tags) if tags else "(none)"))
    return "\n".join(lines)


def _context_from_input(file_or_text: str | Path) -> MatchContext:
    path = Path(file_or_text)
    is_file = isinstance(file_or_text, Path)
    if not is_file and "\n" not in str(file_or_text) and len(str(file_or_text)) < 4096:
        try:
            is_file = path.is_file()
        except OSError:
            is_file = False
    if not is_file:
        return context_from_text(str(file_or_text))
    content = path.read_text(encoding="utf-8")
    try:
        data = json.loads(content)
    except ValueError:
        return context_from_text(content)
    if isinstance(data, Mapping):
        item = _unwrap_item(data)
        if item.get("type") == "conversation" or "source" in item:
            return context_from_conversation(item)
    return context_from_text(content)


def explain_cli(rules_path: str | Path, file_or_text: str | Path) -> str:
    """``intercom-sync rules test FILE_OR_TEXT``: the report for a JSON conversation or
    notification file, any other file's text, or the given text itself."""
    ruleset = load_rules(Path(rules_path))
    ctx = _context_from_input(file_or_text)
    shown = ctx.text if len(ctx.text) <= 300 else ctx.text[:299] + "\u2026"
    header = [f"text ({len(ctx.text)} characters): {shown!r}"]
    if ctx.channel:
        header.append(f"channel: {ctx.channel}")
    return "\n".join([*header, format_explanation(ruleset.explain(ctx))])
