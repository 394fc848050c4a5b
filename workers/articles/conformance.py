"""Intercom's rules for article bodies, as one checker: given a body, every way it breaks them.

Why one module: the renderer's tests, the fake Intercom (which answers ``400`` for the hard
failures and keeps the rest the way Intercom would) and ``backfill articles --dry-run`` /
``articles preview`` must all agree on what Intercom accepts. The rules come from Intercom's
"Allowed HTML for Articles" (developers.intercom.com, docs/guides/help-center/supported-html)
and help article 4103903 ("Formatting your articles with the Articles API"); where the two
disagree the strictest reading is taken:

=====================  =======================================================================
construct              rule (``hard``: Intercom answers 400 Bad Request)
=====================  =======================================================================
text                   must sit in ``p``, ``li``, ``td``/``th``, ``h1``/``h2`` or ``pre``
                       ("All text must be placed within paragraph tags"); else it is moved
``h3``-``h6``          replaced (developer docs: by ``h2``; help article: "converted to H1
                       and H2 while maintaining the hierarchy")
``ul``/``ol``          at least one non-empty ``li`` (**hard**); an ``li`` holds no ``table``
                       (**hard**); a list inside a list is **hard** here: the documented
                       example is single-level and nesting is unproven
``table``              at least one row with a cell, no ``table`` inside (**hard**)
``img``                absolute URL of a PNG, JPEG, SVG or GIF that Intercom can download,
                       else the upload fails (**hard**). The format is read from the ``fm``
                       query parameter (the Sanity CDN's format switch) or the extension;
                       "can download" is approximated by a host allow-list when one is given
``iframe``             only YouTube, Wistia, Vimeo, Loom, Vidyard and StreamIO (**hard**)
other tags             ``div``/``span`` become paragraphs, ``script``/``form``/inputs are
                       removed, the rest are dropped with their text moved into paragraphs
attributes             only ``href``/``target``/``rel`` and the button class on ``a``,
                       ``src``/``alt`` (and size) on ``img``, ``src`` (and size) on
                       ``iframe``, ``intercom-align-*`` classes on ``p``/``h1``/``h2``/``div``
=====================  =======================================================================

Parsing uses the standard library's ``html.parser`` with an explicit stack (no recursion, so
nesting depth costs no Python stack) and counters per open tag, so checking is linear in the
size of the body.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "ALLOWED_ATTRIBUTES",
    "ALLOWED_TAGS",
    "IMAGE_FORMATS",
    "SANITY_CDN_HOST",
    "TEXT_CONTAINERS",
    "VIDEO_HOSTS",
    "Violation",
    "image_format",
    "is_video_host",
    "violations",
]

#: Tags Intercom keeps (developer docs' "Supported HTML"; table rows and cells are the parts
#: of the ``table`` it documents).
ALLOWED_TAGS = frozenset({
    "p", "br", "hr", "h1", "h2", "a", "img", "ul", "ol", "li", "table", "thead", "tbody",
    "tfoot", "tr", "td", "th", "iframe", "pre", "code", "b", "strong", "i", "em",
})  # fmt: skip
#: Where text may sit (developer docs: "All text must be placed within paragraph tags"; list
#: items, cells, headings and pre-formatted code hold text in the documented examples).
TEXT_CONTAINERS = frozenset({"p", "li", "td", "th", "h1", "h2", "pre"})
#: Attributes Intercom's documented examples use, per tag; anything else is dropped by it.
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "target", "rel", "class"}),
    "img": frozenset({"src", "alt", "width", "height"}),
    "iframe": frozenset({"src", "width", "height", "frameborder", "allowfullscreen"}),
    "p": frozenset({"class"}),
    "h1": frozenset({"class"}),
    "h2": frozenset({"class"}),
    "div": frozenset({"class"}),
}
_CLASSES = {
    "a": frozenset({"intercom-h2b-button"}),
    "p": frozenset({"intercom-align-center", "intercom-align-left", "intercom-align-right"}),
    "div": frozenset(
        {"intercom-align-center", "intercom-align-left", "intercom-align-right",
         "intercom-container"}
    ),
}
_CLASSES["h1"] = _CLASSES["h2"] = _CLASSES["p"]
#: Image formats Intercom takes (help article 4103903: "PNG, JPEG, SVG & GIF").
IMAGE_FORMATS = frozenset({"png", "jpg", "jpeg", "svg", "gif"})
SANITY_CDN_HOST = "cdn.sanity.io"
#: Registered domains of the video providers Intercom embeds (developer docs: "Only works for
#: Youtube, Wistia, Vimeo, Loom, Vidyard or StreamIO").
VIDEO_HOSTS = frozenset({
    "youtube.com", "youtube-nocookie.com", "vimeo.com", "wistia.com", "wistia.net",
    "loom.com", "vidyard.com", "streamio.com",
})  # fmt: skip
_VOID = frozenset({"br", "hr", "img", "input", "wbr", "area", "col", "embed", "source",
                   "track", "meta", "link", "base", "param"})  # fmt: skip
_REMOVED = frozenset({"script", "style", "form", "input", "button", "select", "textarea",
                      "option", "template", "noscript", "object", "embed"})  # fmt: skip
_LISTS = frozenset({"ul", "ol"})
_EXTENSION = re.compile(r"\.([A-Za-z0-9]{1,8})$")
#: Violations listed per body at most (a hostile body must not produce a million of them).
MAX_VIOLATIONS = 200


@dataclass(frozen=True)
class Violation:
    """One broken rule. ``hard``: Intercom refuses the whole body with ``400``; otherwise it
    accepts the body and changes what readers see (drops, replaces or moves content)."""

    rule: str
    message: str
    hard: bool = False

    def __str__(self) -> str:
        return f"{'400' if self.hard else 'changed'}: {self.message}"


def is_video_host(host: str) -> bool:
    """Whether ``host`` belongs to a video provider Intercom embeds."""
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in VIDEO_HOSTS)


def image_format(url: str) -> str | None:
    """The format an image URL serves: the ``fm`` parameter, else the path's extension."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    fm = parse_qs(parts.query).get("fm")
    if fm:
        return fm[-1].lower()
    match = _EXTENSION.search(parts.path)
    return match.group(1).lower() if match else None


@dataclass
class _Frame:
    tag: str
    nonempty: bool = False  # li: holds text or an image; list: holds such an li
    cells: int = 0  # table: cells seen


class _Checker(HTMLParser):
    def __init__(self, image_hosts: frozenset[str] | None) -> None:
        super().__init__(convert_charrefs=True)
        self.image_hosts = image_hosts
        self.found: list[Violation] = []
        self.stack: list[_Frame] = []
        self.open: Counter[str] = Counter()
        self.removed_depth = 0

    def add(self, rule: str, message: str, hard: bool = False) -> None:
        if len(self.found) < MAX_VIOLATIONS:
            self.found.append(Violation(rule, message, hard))

    def _innermost(self, tags: frozenset[str]) -> _Frame | None:
        for frame in reversed(self.stack):
            if frame.tag in tags:
                return frame
        return None

    def _mark_nonempty(self) -> None:
        if self.open["li"]:
            item = self._innermost(frozenset({"li"}))
            if item is not None:
                item.nonempty = True

    # --- tags ---------------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs)
        if tag not in _VOID:
            self.stack.append(_Frame(tag))
            self.open[tag] += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _REMOVED:
            self.add("removed", f"<{tag}> is removed with its content")
        elif tag in ("h3", "h4", "h5", "h6"):
            self.add("heading", f"<{tag}> is replaced by a level Intercom has (h1/h2)")
        elif tag not in ALLOWED_TAGS and tag != "div":
            # (a div is a paragraph to Intercom, or the documented wrapper of an image or
            # button: what matters is the text in it, which is checked as loose text)
            self.add("tag", f"<{tag}> is not kept (its text is moved into a paragraph)")
        self._attributes(tag, attrs)
        if tag in _LISTS and self.open["li"]:
            self.add("nested_list", f"<{tag}> inside a list item (nested lists are unproven)",
                     hard=True)  # fmt: skip
        if tag == "table":
            if self.open["li"]:
                self.add("table_in_list", "<table> inside a list item", hard=True)
            if self.open["table"]:
                self.add("table_in_table", "<table> inside a table", hard=True)
        if tag in ("td", "th"):
            table = self._innermost(frozenset({"table"}))
            if table is not None:
                table.cells += 1
        if tag == "img":
            self._image(dict(attrs).get("src"))
            self._mark_nonempty()
        if tag == "iframe":
            self._iframe(dict(attrs).get("src"))
            self._mark_nonempty()

    def _attributes(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        allowed = ALLOWED_ATTRIBUTES.get(tag, frozenset())
        for name, value in attrs:
            if name not in allowed:
                self.add("attribute", f'<{tag} {name}="..."> attribute is dropped')
            elif name == "class":
                unknown = set((value or "").split()) - _CLASSES.get(tag, frozenset())
                if unknown:
                    self.add("attribute", f"<{tag}> class {' '.join(sorted(unknown))!r} "
                             "has no effect in Intercom")  # fmt: skip

    def _image(self, src: str | None) -> None:
        src = (src or "").strip()
        try:
            parts = urlsplit(src)
        except ValueError:
            parts = None
        if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            self.add("image_url", f"image URL {src[:80]!r} is not absolute", hard=True)
            return
        fmt = image_format(src)
        if fmt not in IMAGE_FORMATS:
            self.add("image_format", f"image {src[:80]!r} is not PNG, JPEG, SVG or GIF",
                     hard=True)  # fmt: skip
        if self.image_hosts is not None and parts.hostname.lower() not in self.image_hosts:
            self.add("image_host", f"image host {parts.hostname!r} is not reachable", hard=True)

    def _iframe(self, src: str | None) -> None:
        try:
            parts = urlsplit((src or "").strip())
            host = parts.hostname or ""
        except ValueError:
            host = ""
        if not is_video_host(host):
            self.add("iframe", f"<iframe> source {host or src!r} is not a supported video",
                     hard=True)  # fmt: skip

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or not self.open[tag]:
            return  # a stray end tag: nothing to close
        while self.stack:
            frame = self.stack.pop()
            self._close(frame)
            if frame.tag == tag:
                break

    def _close(self, frame: _Frame) -> None:
        self.open[frame.tag] -= 1
        if frame.tag == "li":
            owner = self._innermost(_LISTS)
            if owner is not None and frame.nonempty:
                owner.nonempty = True
            if frame.nonempty:
                self._mark_nonempty()  # an enclosing li holds it too
        elif frame.tag in _LISTS and not frame.nonempty:
            self.add("empty_list", f"<{frame.tag}> without a non-empty <li>", hard=True)
        elif frame.tag == "table" and not frame.cells:
            self.add("empty_table", "<table> without a row and a cell", hard=True)

    # --- text ---------------------------------------------------------------------------

    def handle_data(self, data: str) -> None:
        if not data.strip():
            return
        self._mark_nonempty()
        if any(self.open[t] for t in _REMOVED):
            return
        if not any(self.open[t] for t in TEXT_CONTAINERS) and not any(
            self.open[t] for t in ("h3", "h4", "h5", "h6")
        ):
            self.add("loose_text", f"text {data.strip()[:40]!r} is outside a paragraph")

    def handle_comment(self, data: str) -> None:
        self.add("comment", "HTML comment is dropped")

    def finish(self) -> list[Violation]:
        self.close()
        while self.stack:
            self._close(self.stack.pop())
        return self.found


def violations(html: str, *, image_hosts: Iterable[str] | None = None) -> list[Violation]:
    """Every violation of Intercom's article-body rules in ``html``, in document order (at most
    :data:`MAX_VIOLATIONS`). ``image_hosts``: hosts images may come from (None: any host).
    """
    hosts = frozenset(h.lower() for h in image_hosts) if image_hosts is not None else None
    checker = _Checker(hosts)
    checker.feed(html)
    return checker.finish()
