"""What the fake Intercom does with an article body: refuse it, or keep it as Intercom would.

Intercom's documented behaviour (developers.intercom.com, docs/guides/help-center/supported-html,
"Allowed HTML for Articles"; help article 4103903, "Formatting your articles with the Articles
API"), taken at its strictest where the two disagree:

* **400 Bad Request** for an image that cannot be uploaded (relative URL, not PNG/JPEG/SVG/GIF,
  or a host the fake cannot "download" from: ``image_hosts``, default the Sanity CDN), a list
  without a non-empty ``li``, a ``table`` inside a list item or another table, a table without
  a cell, an ``iframe`` that is not YouTube/Wistia/Vimeo/Loom/Vidyard/StreamIO, and a list inside
  a list (nesting is unproven: the documented example is single-level and a public converter
  reports it as a hard failure). The rules live in :mod:`workers.articles.conformance`, shared
  with the renderer's tests and ``--dry-run``.
* otherwise the body is **kept as a reader would see it**: ``h3``-``h6`` become ``h2``
  ("All others will be replaced with <h2>"), ``script``/``style``/``form`` and inputs are removed
  with their content, every other unsupported tag (``div``, ``span``, ``blockquote``, ``u``,
  ``del`` ...) is dropped and its text moved into a paragraph of its own, text outside a text
  container is wrapped in a paragraph ("All text must be placed within paragraph tags"), and
  attributes Intercom does not document are dropped. So ``GET /articles/{id}`` shows mangled
  content the way Intercom would mangle it, and tests can see it.

Both passes are linear (``html.parser`` with an explicit stack).
"""

from __future__ import annotations

import html as htmllib
from collections.abc import Iterable
from html.parser import HTMLParser

from workers.articles.conformance import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    SANITY_CDN_HOST,
    TEXT_CONTAINERS,
    Violation,
    violations,
)

__all__ = ["DEFAULT_IMAGE_HOSTS", "hard_failures", "keep"]

#: Where the fake can "download" images from: the CDN the renderer uses.
DEFAULT_IMAGE_HOSTS = (SANITY_CDN_HOST,)

_VOID = frozenset({"br", "hr", "img", "input", "wbr", "area", "col", "embed", "source",
                   "track", "meta", "link", "base", "param"})  # fmt: skip
_REMOVED = frozenset({"script", "style", "form", "input", "button", "select", "textarea",
                      "option", "template", "noscript", "object", "embed", "title"})  # fmt: skip
_RENAMED = {"h3": "h2", "h4": "h2", "h5": "h2", "h6": "h2"}
#: Kept tags that start a new block: a paragraph opened for loose text ends before them.
_BLOCKS = frozenset({"p", "h1", "h2", "ul", "ol", "table", "pre", "hr", "iframe"})


def hard_failures(body: str, image_hosts: Iterable[str] = DEFAULT_IMAGE_HOSTS) -> list[Violation]:
    """The violations for which Intercom answers 400 (empty: the body is accepted)."""
    return [v for v in violations(body, image_hosts=image_hosts) if v.hard]


class _Keeper(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.stack: list[str] = []  # kept tags open in the output ("p*": opened by us)
        self.containers = 0  # text containers open in the output
        self.removed = 0  # depth inside removed elements

    def _emit_start(self, tag: str, attrs: list[tuple[str, str | None]], synthetic: bool = False,
                    void: bool = False) -> None:  # fmt: skip
        allowed = ALLOWED_ATTRIBUTES.get(tag, frozenset())
        kept = "".join(f' {name}="{htmllib.escape(value or "", quote=True)}"'
                       for name, value in attrs if name in allowed)  # fmt: skip
        self.out.append(f"<{tag}{kept}>")
        if not void:
            self.stack.append(f"{tag}*" if synthetic else tag)
            if tag in TEXT_CONTAINERS:
                self.containers += 1

    def _pop(self) -> None:
        entry = self.stack.pop()
        tag = entry.rstrip("*")
        self.out.append(f"</{tag}>")
        if tag in TEXT_CONTAINERS:
            self.containers -= 1

    def _end_loose_paragraph(self) -> None:
        """Close a paragraph we opened for loose text (and what is open inside it)."""
        if "p*" in self.stack:
            while self.stack and self.stack[-1] != "p*":
                self._pop()
            self._pop()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, void=tag in _VOID)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, void=True)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], void: bool) -> None:
        if tag in _REMOVED:
            if not void:
                self.removed += 1
            return
        if self.removed:
            return
        tag = _RENAMED.get(tag, tag)
        if tag in ALLOWED_TAGS:
            if tag in _BLOCKS:
                self._end_loose_paragraph()
            self._emit_start(tag, attrs, void=void)
        elif not void:
            # Dropped with its text moved into a paragraph of its own: end the text container
            # it sits in (and what is open inside it); its text becomes loose text.
            self._end_loose_paragraph()
            if self.containers:
                while self.stack and self.containers:
                    self._pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in _REMOVED:
            self.removed = max(0, self.removed - 1)
            return
        if self.removed:
            return
        tag = _RENAMED.get(tag, tag)
        if tag not in ALLOWED_TAGS:
            self._end_loose_paragraph()  # the dropped element's own paragraph ends with it
            return
        if tag in self.stack:
            while self.stack:
                top = self.stack[-1]
                self._pop()
                if top == tag:
                    break

    def handle_data(self, data: str) -> None:
        if self.removed:
            return
        if not self.containers and data.strip():
            self._emit_start("p", [], synthetic=True)
        if self.containers or not data.strip():
            self.out.append(htmllib.escape(data, quote=False))

    def result(self) -> str:
        self.close()
        while self.stack:
            self._pop()
        return "".join(self.out).replace("<p></p>", "")


def keep(body: str) -> str:
    """``body`` as Intercom keeps it (call :func:`hard_failures` first)."""
    keeper = _Keeper()
    keeper.feed(body)
    return keeper.result()
