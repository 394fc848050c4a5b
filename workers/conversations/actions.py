"""What a matching rule does besides tagging: the action keys of a rules file (no I/O).

::

    rules:
      - name: refund-request        # identifies the rule (default: its tag); unique in the file
        tag: billing                # optional: a rule may act without tagging
        when: {text_any: [refund, "charged twice"]}
        note: "Refund asked by {{ contact.name }} ({{ company.name }}, plan {{ company.plan }})"
        reply: {article: faq-refunds, text: "This should help:"}   # or reply: "We are on it."
        attributes: {Category: Billing}     # conversation data attributes
        snooze: {minutes: 240}              # or close: true, or open: true
        assign_to: {team_id: "5017"}        # as before

The keys are parsed here into :class:`Actions`; :mod:`~workers.conversations.rules` calls
:func:`load_actions` for each rule and :func:`check_names` for the file. Running them once per
conversation is :mod:`~workers.conversations.triage`'s job.

Why these limits: a note or reply is at most one Intercom part (a template of at most 10,000
characters); attribute names follow Intercom's limits for data attributes (under 190
characters; string values under 255); a snooze lasts from a minute to a year. Priority is not
an action: the 2.14 API cannot set it (only the Preview version can).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError

from workers.conversations.templates import Template, TemplateError, parse

ATTRIBUTE_NAME_LIMIT = 190  # Intercom: names shorter than this
ATTRIBUTE_VALUE_LIMIT = 255  # Intercom: string values shorter than this
MAX_ATTRIBUTES = 50
MAX_SNOOZE_MINUTES = 366 * 24 * 60
NAME_LIMIT = 100
DEFAULT_ARTICLE_TEXT = "This article should help:"
#: A Sanity document id: what ``reply: {article: ...}`` names.
_DOCUMENT_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
_NAME = re.compile(r"^[^\x00-\x1f\x7f]+\Z")

#: The action keys of a rule, in the order one run performs them (see triage).
ACTION_KEYS = ("attributes", "note", "reply", "snooze", "close", "open")


@dataclass(frozen=True)
class ArticleReply:
    """``reply: {article: <Sanity document id>, text: ...}``: a link to a synced article."""

    document_id: str
    text: Template


@dataclass(frozen=True)
class Actions:
    """A rule's actions; ``state`` is ``("snoozed", minutes)``, ``("close", 0)`` or
    ``("open", 0)``."""

    note: Template | None = None
    reply: Template | None = None
    article: ArticleReply | None = None
    attributes: tuple[tuple[str, Any], ...] = ()
    state: tuple[str, int] | None = None

    def __bool__(self) -> bool:
        return bool(self.note or self.reply or self.article or self.attributes or self.state)

    @property
    def scopes(self) -> frozenset[str]:
        """The data the templates read (``contact``, ``company``, ``conversation``)."""
        found: set[str] = set()
        for template in (self.note, self.reply, self.article.text if self.article else None):
            if template is not None:
                found |= template.scopes
        return frozenset(found)

    def describe(self) -> list[str]:
        """One short line per action, placeholders unfilled (for logs and explanations)."""
        lines = []
        if self.attributes:
            lines.append("attributes " + ", ".join(f"{k}={v!r}" for k, v in self.attributes))
        if self.note:
            lines.append(f"note {self.note.source!r}")
        if self.reply:
            lines.append(f"reply {self.reply.source!r}")
        if self.article:
            lines.append(f"reply with article {self.article.document_id}")
        if self.state:
            kind, minutes = self.state
            lines.append(f"snooze {minutes} minutes" if kind == "snoozed" else kind)
        return lines


def _template(value: Any) -> Template:
    try:
        return parse(value)
    except TemplateError as exc:
        raise ValidationError([str(exc)]) from None


def _reply(value: Any) -> tuple[Template | None, ArticleReply | None]:
    if isinstance(value, str):
        return _template(value), None
    if not isinstance(value, Mapping):
        raise ValidationError(["must be a text or {article: <document id>, text: ...}"])
    unknown = sorted(str(k) for k in value if k not in ("article", "text"))
    if unknown:
        raise ValidationError([f"unknown key(s) {', '.join(unknown)}; use article and text"])
    article = value.get("article")
    if article is None:
        if "text" not in value:
            raise ValidationError(["give text, article or both"])
        return _template(value["text"]), None
    if not isinstance(article, str) or not _DOCUMENT_ID.match(article):
        raise ValidationError(["article must be a Sanity document id"])
    text = _template(value["text"]) if "text" in value else parse(DEFAULT_ARTICLE_TEXT)
    return None, ArticleReply(article, text)


def _attributes(value: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, Mapping) or not value:
        raise ValidationError(["must be a non-empty map of attribute name to value"])
    if len(value) > MAX_ATTRIBUTES:
        raise ValidationError([f"at most {MAX_ATTRIBUTES} attributes"])
    out = []
    for name, item in value.items():
        if not isinstance(name, str) or not name.strip() or len(name) >= ATTRIBUTE_NAME_LIMIT:
            raise ValidationError([f"attribute names are strings under {ATTRIBUTE_NAME_LIMIT} "
                                   "characters"])  # fmt: skip
        if isinstance(item, str):
            if len(item) >= ATTRIBUTE_VALUE_LIMIT:
                raise ValidationError([f"{name}: string values must be shorter than "
                                       f"{ATTRIBUTE_VALUE_LIMIT} characters"])  # fmt: skip
        elif isinstance(item, bool) or not isinstance(item, int):
            # The 2.14 description allows strings and integers (its example shows booleans
            # and floats, its schema does not: the strict reading wins).
            raise ValidationError([f"{name}: values are strings or integers"])
        out.append((name, item))
    return tuple(out)


def _state(data: Mapping[str, Any]) -> tuple[str, int] | None:
    given = [k for k in ("snooze", "close", "open") if k in data]
    if len(given) > 1:
        raise ValidationError({"_schema": ["give at most one of snooze, close and open"]})
    if not given:
        return None
    key = given[0]
    value = data[key]
    if key in ("close", "open"):
        if value is not True:
            raise ValidationError({key: ["must be true (leave the key out otherwise)"]})
        return (key, 0)
    minutes = value.get("minutes") if isinstance(value, Mapping) else None
    if not isinstance(value, Mapping) or set(value) != {"minutes"} or isinstance(minutes, bool) \
            or not isinstance(minutes, int) or not 1 <= minutes <= MAX_SNOOZE_MINUTES:  # fmt: skip
        raise ValidationError({"snooze": [f"must be {{minutes: N}} with 1 <= N <= "
                                          f"{MAX_SNOOZE_MINUTES}"]})  # fmt: skip
    return ("snoozed", minutes)


def load_actions(data: Mapping[str, Any]) -> Actions:
    """The actions of one rule (its raw mapping); ``ValidationError`` keyed by action key."""
    errors: dict[str, Any] = {}
    note = reply = article = None
    attributes: tuple[tuple[str, Any], ...] = ()
    state = None
    if "note" in data:
        try:
            note = _template(data["note"])
        except ValidationError as exc:
            errors["note"] = exc.messages
    if "reply" in data:
        try:
            reply, article = _reply(data["reply"])
        except ValidationError as exc:
            errors["reply"] = exc.messages
    if "attributes" in data:
        try:
            attributes = _attributes(data["attributes"])
        except ValidationError as exc:
            errors["attributes"] = exc.messages
    try:
        state = _state(data)
    except ValidationError as exc:
        errors.update(exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages})
    if errors:
        raise ValidationError(errors)
    return Actions(note, reply, article, attributes, state)


def rule_name(data: Mapping[str, Any]) -> str:
    """A rule's name: ``name`` if given, else its tag; ValidationError if neither is usable."""
    name = data.get("name")
    if name is None:
        name = data.get("tag")
        if name is None:
            raise ValidationError({"name": ["a rule without a tag needs a name"]})
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_LIMIT \
            or not _NAME.match(name):  # fmt: skip
        raise ValidationError({"name": [f"must be a string of 1 to {NAME_LIMIT} characters "
                                        "without control characters"]})  # fmt: skip
    return name.strip()


def check_names(rules: Iterable[tuple[int, str, bool, bool]]) -> list[str]:
    """``rules[i].name`` errors for names that are not unique.

    ``rules`` gives ``(index, name, explicit, has_actions)``. A name keys the once-only records
    of its actions, so it must be unique when the rule acts or was named on purpose; rules that
    only tag may share their default name (their tag), as files written before rules had names
    do.
    """
    first: dict[str, tuple[int, bool]] = {}
    errors = []
    for index, name, explicit, acts in rules:
        key = name.casefold()
        strict = explicit or acts
        if key in first:
            other, other_strict = first[key]
            if strict or other_strict:
                errors.append(f"rules[{index}].name: {name!r} is already the name of "
                              f"rules[{other}]; names must be unique")  # fmt: skip
            continue
        first[key] = (index, strict)
    return errors
