"""Placeholders in the text of notes and replies: ``{{ contact.name }}``, nothing more.

A rules file is configuration, but what a placeholder brings in is customer data (a contact's
name, a company written by anyone with access to Intercom), and the result is HTML that Intercom
shows to teammates or to the customer. So:

* a template is split once, at load, into literal pieces and placeholders; a placeholder names
  ``contact.<path>``, ``company.<path>`` or ``conversation.<path>`` (dotted identifiers) and
  nothing else: no filters, no expressions, no attribute access beyond the data given, so no
  template engine that could run code is involved;
* every value is HTML-escaped (``html.escape`` with quotes) as it is inserted; the literal text
  around the placeholders is the rules author's own HTML and is sent as written;
* a missing value renders as an empty string, so a template never fails at send time.

Errors are found at load: an unknown scope, a malformed placeholder or an unclosed ``{{``
is a rules-file error naming the template.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SCOPES = ("contact", "company", "conversation")
MAX_TEMPLATE_LENGTH = 10_000
MAX_PLACEHOLDERS = 50
MAX_VALUE_LENGTH = 1000  # a placeholder's value is cut here: a note stays a note

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){1,4}\Z")

#: ``lookup(scope, path)``: the raw value of a placeholder, or None when there is none.
Lookup = Callable[[str, str], Any]


class TemplateError(ValueError):
    """A template that cannot be used (the message says why)."""


@dataclass(frozen=True)
class Placeholder:
    scope: str
    path: str

    @property
    def name(self) -> str:
        return f"{self.scope}.{self.path}"


@dataclass(frozen=True)
class Template:
    """A parsed template: literal strings and placeholders, in order."""

    source: str
    pieces: tuple[str | Placeholder, ...]

    @property
    def scopes(self) -> frozenset[str]:
        """Which data the template reads (``contact``, ``company``, ``conversation``)."""
        return frozenset(p.scope for p in self.pieces if isinstance(p, Placeholder))

    def render(self, lookup: Lookup) -> str:
        """The template with every placeholder replaced by its HTML-escaped value."""
        out: list[str] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(piece)
            else:
                value = display(lookup(piece.scope, piece.path))[:MAX_VALUE_LENGTH]
                out.append(html.escape(value, quote=True))
        return "".join(out)


def display(value: Any) -> str:
    """A value as text: strings as they are, booleans as ``true``/``false``, whole floats
    without ``.0``, numbers as written; objects, lists and missing values as nothing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    return ""


def parse(source: Any) -> Template:
    """Parse ``source``; :class:`TemplateError` when it is not a usable template."""
    if not isinstance(source, str) or not source.strip():
        raise TemplateError("must be a non-empty string")
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise TemplateError(f"longer than {MAX_TEMPLATE_LENGTH} characters")
    pieces: list[str | Placeholder] = []
    position = 0
    for match in _PLACEHOLDER.finditer(source):
        literal = source[position : match.start()]
        _check_literal(literal)
        if literal:
            pieces.append(literal)
        name = match.group(1).strip()
        if not _PATH.match(name) or name.split(".", 1)[0] not in SCOPES:
            raise TemplateError(
                f"placeholder {{{{ {name[:60]} }}}} is not contact.<field>, company.<field> or "
                "conversation.<field>"
            )
        scope, path = name.split(".", 1)
        pieces.append(Placeholder(scope, path))
        position = match.end()
        if sum(isinstance(p, Placeholder) for p in pieces) > MAX_PLACEHOLDERS:
            raise TemplateError(f"more than {MAX_PLACEHOLDERS} placeholders")
    tail = source[position:]
    _check_literal(tail)
    if tail:
        pieces.append(tail)
    return Template(source, tuple(pieces))


def _check_literal(text: str) -> None:
    if "{{" in text or "}}" in text:
        raise TemplateError("unbalanced {{ or }} (a placeholder is {{ scope.field }})")
