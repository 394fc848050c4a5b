"""Portable Text -> Intercom article HTML, in pure Python.

Why this module exists: Sanity stores article bodies as Portable Text (JSON), Intercom wants
HTML, and Intercom only keeps a small set of tags ("Allowed HTML for Articles",
developers.intercom.com docs/guides/help-center/supported-html; help article 4103903).
Two references, for two questions:

* *How the structure is read* (list grouping, mark nesting order, escaping, which link schemes
  are safe) follows the npm package ``@portabletext/to-html``: this is a port of its
  ``nestLists``/``buildMarksTree`` (``@portabletext/toolkit``), checked against fixtures it
  generated (``tests/fixtures/portable_text``). The PyPI package ``portabletext-html`` is
  unmaintained and unsafe (no escaping inside marks, ``javascript:`` links pass).
* *What is sent* uses only what Intercom keeps, checked by
  :mod:`workers.articles.conformance`. Where to-html's HTML is not kept, the mapping is:

=========================  ======================  ==============================================
Portable Text              sent as                 why
=========================  ======================  ==============================================
style ``normal``           ``p``                   all text must be in paragraphs
``h1``, ``h2``             ``h1``, ``h2``          kept as they are
``h3``-``h6``              ``h2``                  Intercom replaces them anyway; the developer
                                                   docs say by ``h2`` (the help article's
                                                   "hierarchy" reading could promote them to
                                                   ``h1``): sending ``h2`` makes the result the
                                                   same under both readings
``blockquote``, unknown    ``p``                   not kept; as a paragraph the text stays where
                                                   it is instead of being moved
``strong``, ``em``         ``strong``, ``em``      kept
``code`` decorator         ``code``                kept ("Inline code" in Intercom's example)
``underline``,             text only               no tag for them is kept; a dropped tag would
``strike-through``,                                have its text moved into a paragraph of its
unknown decorators                                 own, so the text stays inline, unformatted
nested lists               one level               nesting is unproven (the documented example is
                                                   single-level and one converter reports it as a
                                                   hard failure); each nested item becomes a line
                                                   (``<br/>``) of its top-level ``li``, marked
                                                   ``•`` or with its number and indented by
                                                   level, so order, text and the top-level
                                                   numbering all stay
styled list item           ``li`` text             a heading inside a list item is not worth a
                                                   structure Intercom may refuse
empty list                 nothing                 a list without a non-empty ``li`` is a 400
``image``                  ``img`` on the          absolute public URL; formats Intercom does not
                           Sanity CDN              take (webp, avif, tiff, bmp, heic ...) are
                                                   asked of the CDN as PNG (``?fm=png``; HEIC/
                                                   HEIF photos as ``?fm=jpg``); ``alt`` kept; a
                                                   ``link``/``href`` wraps it in ``a``
``code`` (code-input)      ``pre``/``code``        kept; the language class would be dropped
``table`` (@sanity/table)  ``table``               ``rows[].cells[]`` strings as ``td``; never in
                                                   a list item; a table without text is skipped
                                                   (an empty table is a 400)
any type with a ``url``    ``iframe``              YouTube, Vimeo, Loom, Wistia, Vidyard,
of a video page                                    StreamIO: the provider's embed URL
any other ``url`` block    ``p`` with a link       Intercom refuses other iframes; the link keeps
                                                   the content reachable
``callout``                its blocks, the first   no callout markup is kept (a ``div`` becomes a
                           paragraph led by the    paragraph and would swallow the structure);
                           tone's sign (info,      the sign (an emoji) is language-neutral
                           tip, success, warning,
                           danger)
internal links             ``a`` to the article    through the caller's resolver, else text
unknown block types        nothing                 skipped and logged once per render
=========================  ======================  ==============================================

Every such change is counted in :attr:`Rendered.degradations` so editors can see what a sync
did to their content (``intercom-sync articles preview``) and each sync logs it.

Input is untrusted. Anything malformed (wrong types, missing fields, odd nesting) is skipped
where to-html would throw or print warning markup; C0/C1 control characters are dropped and
lone surrogates replaced (they would break the JSON/UTF-8 request to Intercom); list levels
are made whole numbers and capped, marks per span and nested custom content are capped, and
every pass over the input is linear, so hostile input can neither exhaust the Python stack
nor the task's time limit.

:data:`RENDERER_VERSION` is part of every content hash: changing what is sent for the same
document must bump it, so every article is re-sent once (see the README).
"""

from __future__ import annotations

import functools
import html as htmllib
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workers.articles.embeds import embed_url

__all__ = [
    "BLOCK_RENDERERS",
    "CALLOUT_TONES",
    "RENDERER_VERSION",
    "BlockRenderer",
    "RenderContext",
    "RenderOptions",
    "Rendered",
    "escape_html",
    "escape_html_chars",
    "register_block_type",
    "render",
    "uri_looks_safe",
]

logger = logging.getLogger(__name__)

#: What the renderer sends for a given document; part of every content hash, so bumping it
#: re-sends every article once. Bump it with every change to the output.
RENDERER_VERSION = "intercom-2"

#: A list nested deeper than this is flattened onto this level. to-html has no limit, but
#: every level costs Python stack frames and no help-centre article needs 32 levels.
MAX_LIST_LEVEL = 32
#: Marks beyond this many on one span are ignored (each one is a nested element).
MAX_MARKS_PER_SPAN = 32
#: How deep custom blocks may nest Portable Text inside themselves (callout in callout ...).
MAX_NESTING_DEPTH = 8
#: Type names are logged and returned; a hostile 1 MB ``_type`` must not be.
_MAX_TYPE_NAME = 100


# --------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderOptions:
    """What the renderer needs to know beyond the blocks themselves.

    ``link_resolver`` maps a Sanity document id to the URL of its Intercom article, or
    ``None`` when that document has no article yet. It is called at most once per id per
    render. Exceptions it raises propagate: a lookup failure (e.g. Redis down) must fail the
    sync task so it retries, rather than publish an article with silently missing links.

    ``block_renderers`` adds or overrides custom block types for this render only; it is
    merged over the module-level :data:`BLOCK_RENDERERS`.
    """

    project_id: str
    dataset: str
    link_resolver: Callable[[str], str | None] | None = None
    block_renderers: Mapping[str, Callable[[dict, RenderContext], str]] | None = None


@dataclass(frozen=True)
class Rendered:
    """The HTML plus what the caller needs to schedule follow-up work.

    ``references``: ids of every document referenced by an internal link, resolved or not, so
    the caller can re-render this article when one of them is published or moved.
    ``unresolved``: the subset rendered as plain text because the resolver had no (safe) URL.
    ``skipped_types``: unknown block, inline-object and mark types that were dropped, in the
    order first seen, for telling editors that part of their content did not sync.
    ``degradations``: ``(what, count)`` for every way the HTML differs from what the editor
    made (a mapped heading, dropped formatting, a flattened list, a skipped type ...), in the
    order first seen.
    """

    html: str
    references: frozenset[str] = field(default_factory=frozenset)
    unresolved: frozenset[str] = field(default_factory=frozenset)
    skipped_types: tuple[str, ...] = ()
    degradations: tuple[tuple[str, int], ...] = ()


BlockRenderer = Callable[[dict, "RenderContext"], str]


class RenderContext:
    """Handed to block renderers: the options, where the object sits, and helpers.

    A renderer returns trusted HTML, so it must escape everything taken from the block (use
    :func:`escape_html_chars` for attributes, :meth:`render_text` for prose) and run any URL
    through :func:`uri_looks_safe`. Returning ``""`` renders nothing.
    """

    __slots__ = ("_depth", "_renderer", "is_inline")

    def __init__(self, renderer: _Renderer, *, is_inline: bool, depth: int) -> None:
        self._renderer = renderer
        self._depth = depth
        #: True for an object inside a text block's children (must return inline markup).
        self.is_inline = is_inline

    @property
    def options(self) -> RenderOptions:
        return self._renderer.options

    @property
    def depth(self) -> int:
        """How many custom blocks enclose this one (0 at the top level)."""
        return self._depth

    def render_blocks(self, blocks: Any) -> str:
        """Render nested Portable Text (e.g. a callout's body) with the same options.

        Links, references and skipped types found inside are collected into the same
        :class:`Rendered`. Beyond :data:`MAX_NESTING_DEPTH` nothing is rendered, so
        self-similar hostile input cannot recurse without bound.
        """
        if self._depth + 1 > MAX_NESTING_DEPTH:
            logger.warning(
                "portable text nested deeper than %d levels; inner content skipped",
                MAX_NESTING_DEPTH,
            )
            return ""
        return self._renderer.render_document(blocks, depth=self._depth + 1)

    @staticmethod
    def render_text(text: str) -> str:
        """Escape plain text the way span text is escaped, with ``\\n`` as ``<br/>``."""
        return _render_plain_text(text)

    def degrade(self, what: str) -> None:
        """Count one way the output differs from the content (see :attr:`Rendered.degradations`)."""
        self._renderer.degrade(what)


# --------------------------------------------------------------------------------------------
# Escaping and URL safety (ports of to-html's escapeHTML / uriLooksSafe)
# --------------------------------------------------------------------------------------------

_ESCAPE_TABLE = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}
)
_MULTIPLE_SPACES = re.compile(r" {2,}")
# C0 controls except tab, LF, FF, CR; DEL and C1 controls: parse errors in HTML and noise in
# Intercom. Lone surrogates (possible after json.loads of "\ud800") cannot be UTF-8 encoded.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# What JavaScript's String.prototype.trim() removes (WhiteSpace + LineTerminator): Python's
# str.strip() uses a different set (it strips \x1c-\x1f, keeps \ufeff).
_JS_TRIM_CHARS = (
    "\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto", "tel"})
# Browsers strip leading C0 controls/space and drop tab/LF/CR anywhere before parsing a URL.
_URL_LEADING_JUNK = re.compile(r"^[\x00-\x20]+")
_URL_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")


def _clean(text: str) -> str:
    """Drop control characters and replace lone surrogates (see module docstring)."""
    text = _CONTROL_CHARS.sub("", text)
    return _SURROGATES.sub("\ufffd", text)


def escape_html_chars(text: str) -> str:
    """Escape ``& < > " '`` exactly like to-html's ``escapeHTMLChars`` (for attributes)."""
    return text.translate(_ESCAPE_TABLE)


def escape_html(text: str) -> str:
    """to-html's ``escapeHTML``: escape, then turn each run of n>=2 spaces into n-1 ``&nbsp;``
    and one space, so runs survive HTML whitespace collapsing. to-html also applies this to
    link hrefs; so do we, to match it."""
    return _MULTIPLE_SPACES.sub(
        lambda m: "&nbsp;" * (len(m.group(0)) - 1) + " ", escape_html_chars(text)
    )


def uri_looks_safe(uri: str | None) -> bool:
    """to-html's ``uriLooksSafe``, verbatim: allow http(s), mailto, tel, ``#`` and ``/``-led
    and colon-free (relative) URLs, and URLs whose first colon comes after a ``?`` or ``#``
    (so it cannot be a scheme). Everything else (``javascript:``, ``data:``, ``vbscript:``,
    ``file:`` ... in any case, with leading whitespace) is unsafe."""
    url = (uri or "").strip(_JS_TRIM_CHARS)
    first = url[:1]
    if first in ("#", "/"):
        return True
    colon = url.find(":")
    if colon == -1:
        return True
    if url[:colon].lower() in _ALLOWED_PROTOCOLS:
        return True
    query = url.find("?")
    if query != -1 and colon > query:
        return True
    hash_ = url.find("#")
    return hash_ != -1 and colon > hash_


def _href_is_safe(raw: str) -> bool:
    """to-html's rule on both the raw and the cleaned href, plus a browser-eye check.

    The last check parses the scheme the way a browser would (leading controls stripped,
    tabs/newlines removed) and rejects any scheme outside the allow-list. It never rejects a
    URL that to-html's rule accepts; it is there so a future edit of the port cannot open a
    ``java\\tscript:`` hole unnoticed.
    """
    cleaned = _clean(raw)
    if not (uri_looks_safe(raw) and uri_looks_safe(cleaned)):
        return False
    browser_view = _URL_TAB_NEWLINE.sub("", _URL_LEADING_JUNK.sub("", cleaned))
    scheme = _URL_SCHEME.match(browser_view)
    return scheme is None or scheme.group(1).lower() in _ALLOWED_PROTOCOLS


def _render_plain_text(text: str) -> str:
    """Escape text, turning each ``\\n`` into to-html's hard break ``<br/>``."""
    return "<br/>".join(escape_html(part) for part in _clean(text).split("\n"))


def _type_label(value: Any) -> str:
    """A short, printable name for a (possibly hostile) ``_type`` value."""
    if value is None:
        return "<missing>"
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    value = _clean(value)
    return value if len(value) <= _MAX_TYPE_NAME else value[:_MAX_TYPE_NAME] + "..."


# --------------------------------------------------------------------------------------------
# Internal tree (the shapes @portabletext/toolkit builds, as Python classes so that user data
# can never masquerade as one: to-html trusts any object whose _type is "@list")
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Span:
    text: str
    marks: list[str]


@dataclass(eq=False)
class _Inline:
    """A non-span child of a text block (inline object)."""

    value: dict


@dataclass(eq=False)
class _Custom:
    """A top-level non-text block."""

    value: dict


@dataclass(eq=False)
class _Skipped:
    """Where a skipped block was. Like to-html's node for an unknown type, it ends a list
    that runs through it (so numbering restarts as it does there), but renders nothing."""


@dataclass(eq=False)
class _TextBlock:
    style: str | None
    list_item: str | None
    level: int
    children: list[_Span | _Inline | _List]
    mark_defs: dict[str, dict]


@dataclass(eq=False)
class _List:
    list_item: str
    level: int
    items: list[_TextBlock]


@dataclass(eq=False)
class _MarkNode:
    mark_type: str | None
    mark_key: str
    mark_def: dict | None
    children: list[_MarkNode | str | _Inline | _List]


_BLOCK_TAGS = {"normal": "p", "h1": "h1", "h2": "h2", **{f"h{n}": "h2" for n in range(3, 7)}}
_DECORATORS = {
    "strong": ("<strong>", "</strong>"),
    "em": ("<em>", "</em>"),
    "code": ("<code>", "</code>"),
}
#: Decorators Intercom has no tag for: their text stays inline, unformatted.
_DROPPED_DECORATORS = frozenset({"underline", "strike-through"})
# Order used by the toolkit to break ties when sorting marks (unknown marks sort first).
_KNOWN_DECORATORS = ("strong", "em", "code", "underline", "strike-through")
_LIST_TAGS = {"bullet": "ul", "number": "ol"}
_INTERNAL_LINK_TYPES = frozenset({"internalLink", "reference"})
_RESERVED_TYPES = frozenset({"block", "span"})
_DOCUMENT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _normalise_level(value: Any) -> int:
    """``block.level || 1`` from the toolkit, made a whole number in ``1..MAX_LIST_LEVEL``.

    Fractions are floored (``1.1, 1.2, ...`` would otherwise each be a deeper level, past any
    cap) and huge integers are compared as integers (``10**400`` cannot become a float)."""
    if not _is_number(value):
        return 1
    if isinstance(value, float):
        if not math.isfinite(value):
            return 1
        value = math.floor(value)
    return max(1, min(int(value), MAX_LIST_LEVEL))


def _locale_compare_key(value: str) -> tuple[str, str]:
    """Approximates JavaScript's ``localeCompare`` (ICU root collation) for mark keys:
    case-insensitive first, lower case before upper case on ties. Only decides the nesting
    order of two annotations spanning exactly the same text."""
    return value.casefold(), value.swapcase()


def _sort_marks(marks: list[str], occurrences: dict[str, int]) -> list[str]:
    """The toolkit's ``sortMarks``: marks that run longer go outside; on ties, marks that are
    not known decorators (annotations) first, then decorators in their known order."""

    def compare(a: str, b: str) -> int:
        if occurrences[a] != occurrences[b]:
            return occurrences[b] - occurrences[a]
        pos_a = _KNOWN_DECORATORS.index(a) if a in _KNOWN_DECORATORS else -1
        pos_b = _KNOWN_DECORATORS.index(b) if b in _KNOWN_DECORATORS else -1
        if pos_a == pos_b:
            key_a, key_b = _locale_compare_key(a), _locale_compare_key(b)
            return (key_a > key_b) - (key_a < key_b)
        return pos_a - pos_b

    return sorted(marks, key=functools.cmp_to_key(compare))


def _build_marks_tree(block: _TextBlock) -> list[_MarkNode | str | _Inline | _List]:
    """Port of the toolkit's ``buildMarksTree``: group consecutive spans sharing marks into
    nested mark nodes so ``<strong>a<em>b</em></strong>`` is not split into two strongs.

    The toolkit counts, for every mark of every span, how many following siblings carry it
    (quadratic); here a backward pass computes the same run lengths in linear time so a block
    of 10k spans stays fast.
    """
    children = block.children
    if not children:
        return []
    # streak[i][m]: number of consecutive spans from i onward that carry mark m.
    streak: list[dict[str, int]] = [{} for _ in range(len(children) + 1)]
    for i in range(len(children) - 1, -1, -1):
        child = children[i]
        if isinstance(child, _Span):
            following = streak[i + 1]
            streak[i] = {mark: 1 + following.get(mark, 0) for mark in child.marks}
    root = _MarkNode(mark_type=None, mark_key="", mark_def=None, children=[])
    stack: list[_MarkNode] = [root]
    for i, child in enumerate(children):
        if isinstance(child, _Span) and child.marks:
            following = streak[i + 1]
            occurrences = {mark: 1 + following.get(mark, 0) for mark in child.marks}
            needed = _sort_marks(child.marks, occurrences)
        else:
            needed = []
        pos = 1
        while pos < len(stack):
            key = stack[pos].mark_key
            if key not in needed:
                break
            needed.remove(key)
            pos += 1
        del stack[pos:]
        current = stack[-1]
        for mark_key in needed:
            mark_def = block.mark_defs.get(mark_key)
            if mark_def is None:
                mark_type: str | None = mark_key
            else:
                declared = mark_def.get("_type")
                mark_type = declared if isinstance(declared, str) else None
            node = _MarkNode(mark_type=mark_type, mark_key=mark_key, mark_def=mark_def, children=[])
            current.children.append(node)
            stack.append(node)
            current = node
        if isinstance(child, _Span):
            lines = child.text.split("\n")
            for n, line in enumerate(lines):
                if n:
                    current.children.append("\n")
                current.children.append(line)
        else:
            current.children.append(child)
    return root.children


def _find_list_matching(root: Any, level: int, list_item: str | None) -> _List | None:
    """The toolkit's ``findListMatching``, iteratively: walk down the last branch of the tree
    looking for a list at ``level`` of type ``list_item``. As in the toolkit, with no
    ``list_item`` nothing ever matches (that is why a type switch at a nested level starts
    a new top-level list in to-html)."""
    node = root
    while node is not None:
        if isinstance(node, _List):
            if node.level == level and list_item is not None and node.list_item == list_item:
                return node
            node = node.items[-1] if node.items else None
        elif isinstance(node, _TextBlock):
            last = node.children[-1] if node.children else None
            node = last if isinstance(last, _List) else None
        else:
            return None
    return None


def _nest_lists(
    nodes: list[_TextBlock | _Custom | _Skipped],
) -> list[_TextBlock | _Custom | _Skipped | _List]:
    """Port of the toolkit's ``nestLists`` in "html" mode: consecutive list items become
    lists, and a deeper item opens a list inside the previous ``<li>``."""
    tree: list[_TextBlock | _Custom | _Skipped | _List] = []
    current: _List | None = None
    for node in nodes:
        if not isinstance(node, _TextBlock) or node.list_item is None:
            tree.append(node)
            current = None
            continue
        if current is None:
            current = _List(node.list_item, node.level, [node])
            tree.append(current)
            continue
        if node.level == current.level and node.list_item == current.list_item:
            current.items.append(node)
            continue
        if node.level > current.level:
            new_list = _List(node.list_item, node.level, [node])
            current.items[-1].children.append(new_list)
            current = new_list
            continue
        if node.level < current.level:
            match = _find_list_matching(tree[-1], node.level, node.list_item)
            if match is not None:
                current = match
                match.items.append(node)
                continue
        # Lower level with no matching ancestor, or a type switch at the same level: the
        # toolkit starts a new top-level list (its lookup for the latter can never match).
        current = _List(node.list_item, node.level, [node])
        tree.append(current)
    return tree


# --------------------------------------------------------------------------------------------
# The renderer
# --------------------------------------------------------------------------------------------


class _Renderer:
    """State for one :func:`render` call (collected ids, skipped types, resolver cache)."""

    def __init__(self, options: RenderOptions) -> None:
        self.options = options
        self.renderers: dict[str, BlockRenderer] = dict(BLOCK_RENDERERS)
        extra = options.block_renderers
        if isinstance(extra, Mapping):
            for name, fn in extra.items():
                if isinstance(name, str) and callable(fn):
                    self.renderers[name] = fn
        self.references: set[str] = set()
        self.unresolved: set[str] = set()
        self.skipped: dict[str, None] = {}
        self.degraded: dict[str, int] = {}
        self._resolved: dict[str, str | None] = {}
        self._depth = 0

    # -- bookkeeping ---------------------------------------------------------------------

    def skip(self, kind: str, type_name: Any) -> None:
        """Record an unknown type; log it once per render (10k unknown blocks, one line)."""
        label = _type_label(type_name)
        self.degrade(f"{kind} type {label!r} skipped")
        if label not in self.skipped:
            self.skipped[label] = None
            logger.warning("portable text: skipped unknown %s type %r", kind, label)

    def degrade(self, what: str) -> None:
        self.degraded[what] = self.degraded.get(what, 0) + 1

    def resolve(self, document_id: str) -> str | None:
        if document_id not in self._resolved:
            resolver = self.options.link_resolver
            url = resolver(document_id) if resolver is not None else None
            if url is not None and not isinstance(url, str):
                logger.warning(
                    "portable text: link resolver returned %s for %r; ignored",
                    type(url).__name__,
                    document_id,
                )
                url = None
            if url and not _href_is_safe(url):
                logger.warning(
                    "portable text: unsafe URL for document %r; link dropped", document_id
                )
                url = None
            self._resolved[document_id] = url or None
        return self._resolved[document_id]

    def renderer_for(self, value: dict) -> BlockRenderer | None:
        """The renderer of a custom block or inline object: registered by type, else the
        embed renderer for any object with a ``url`` (``youtube``, ``videoEmbed``, ...)."""
        type_name = value.get("_type")
        renderer = self.renderers.get(type_name) if isinstance(type_name, str) else None
        if renderer is None and isinstance(value.get("url"), str) and "children" not in value:
            return render_embed
        return renderer

    # -- input normalisation -------------------------------------------------------------

    def _classify(self, value: Any) -> _TextBlock | _Custom | _Skipped | None:
        if not isinstance(value, dict):
            if value is not None:
                logger.debug("portable text: skipped non-object block (%s)", type(value).__name__)
            return None
        type_name = value.get("_type")
        if not isinstance(type_name, str) or type_name.startswith("@"):
            self.skip("block", type_name)
            return _Skipped()
        if type_name == "block":
            return self._text_block(value)
        if self.renderer_for(value) is not None:
            return _Custom(value)
        if isinstance(value.get("children"), list):
            # to-html treats any typed object with a children array as a text block.
            return self._text_block(value)
        self.skip("block", type_name)
        return _Skipped()

    def _text_block(self, value: dict) -> _TextBlock:
        mark_defs: dict[str, dict] = {}
        raw_defs = value.get("markDefs")
        if isinstance(raw_defs, list):
            for mark_def in raw_defs:
                if isinstance(mark_def, dict) and isinstance(mark_def.get("_key"), str):
                    mark_defs.setdefault(mark_def["_key"], mark_def)  # first wins, like find()
        children: list[_Span | _Inline | _List] = []
        raw_children = value.get("children")
        if isinstance(raw_children, list):
            for child in raw_children:
                normalised = self._child(child)
                if normalised is not None:
                    children.append(normalised)
        style = value.get("style")
        list_item = value.get("listItem")
        level = value.get("level")
        # The toolkit's isPortableTextListItemBlock: string listItem, level absent or a number.
        is_list_item = isinstance(list_item, str) and ("level" not in value or _is_number(level))
        return _TextBlock(
            style=style if isinstance(style, str) and style else None,
            list_item=list_item if is_list_item else None,
            level=_normalise_level(level),
            children=children,
            mark_defs=mark_defs,
        )

    def _child(self, child: Any) -> _Span | _Inline | None:
        if not isinstance(child, dict) or not isinstance(child.get("_type"), str):
            return None
        if child["_type"] != "span":
            if child["_type"].startswith("@"):
                self.skip("inline object", child["_type"])
                return None
            return _Inline(child)
        text = child.get("text")
        if not isinstance(text, str):
            return None
        raw_marks = child.get("marks")
        seen: dict[str, None] = {}
        if isinstance(raw_marks, list):
            for mark in raw_marks:
                # Duplicates would nest the same element twice; drop them (to-html keeps them).
                # A dict keeps this linear: 100,000 marks on one span stay cheap.
                if isinstance(mark, str) and mark not in seen:
                    if len(seen) == MAX_MARKS_PER_SPAN:
                        logger.warning("portable text: span with more than %d marks; only the "
                                       "first %d kept", MAX_MARKS_PER_SPAN, MAX_MARKS_PER_SPAN)
                        self.degrade("marks beyond the limit dropped")
                        break
                    seen[mark] = None
        return _Span(_clean(text), list(seen))

    # -- rendering -----------------------------------------------------------------------

    def render_document(self, blocks: Any, *, depth: int = 0) -> str:
        if isinstance(blocks, dict):
            blocks = [blocks]  # to-html accepts a single block too
        if not isinstance(blocks, list | tuple):
            if blocks is not None:
                logger.warning(
                    "portable text: expected a list of blocks, got %s", type(blocks).__name__
                )
            return ""
        saved_depth, self._depth = self._depth, depth
        try:
            nodes = [n for n in (self._classify(b) for b in blocks) if n is not None]
            return "".join(self._render_top(node) for node in _nest_lists(nodes))
        finally:
            self._depth = saved_depth

    def _render_top(self, node: _TextBlock | _Custom | _Skipped | _List) -> str:
        if isinstance(node, _Skipped):
            return ""
        if isinstance(node, _List):
            return self._render_list(node)
        if isinstance(node, _Custom):
            return self._render_custom(node.value, is_inline=False)
        return self._render_block(node)  # list items were all moved into lists

    def _render_list(self, node: _List) -> str:
        """A top-level list; nested lists are folded into their items (module docstring).
        Items without text or image are left out, and a list of none is not sent at all:
        Intercom answers 400 to a list without a non-empty ``li``."""
        tag = _LIST_TAGS.get(node.list_item, "ul")  # to-html: unknown list styles are <ul>
        items: list[str] = []
        for item in node.items:
            inner = self._render_list_item(item)
            if inner:
                items.append(f"<li>{inner}</li>")
        if not items:
            self.degrade("empty list skipped")
            return ""
        return f"<{tag}>{''.join(items)}</{tag}>"

    def _render_list_item(self, item: _TextBlock) -> str:
        """The item's own text, then every item of the lists nested in it as a line of its
        own (``<br/>``), in document order."""
        own = self._item_line(item)
        lines = [own] if _has_content(own) else []
        lines += self._flatten(self._nested(item))
        return "<br/>".join(lines)  # "" when neither the item nor its children show anything

    def _flatten(self, lists: list[_List]) -> list[str]:
        """Nested lists as lines, depth first with an explicit stack (no recursion): each
        marked ``•`` or with its number in its own list, indented two spaces per level."""
        out: list[str] = []
        work: list[tuple[_TextBlock | None, _List | None, int, int]] = [
            (None, nested, 1, 0) for nested in reversed(lists)
        ]
        while work:
            item, nested, depth, number = work.pop()
            if nested is not None:
                self.degrade("nested list flattened")
                numbered = nested.list_item == "number"
                for n in range(len(nested.items), 0, -1):
                    work.append((nested.items[n - 1], None, depth, n if numbered else 0))
                continue
            assert item is not None
            own = self._item_line(item)
            if _has_content(own):
                marker = f"{number}." if number else "\u2022"
                out.append(f"{'&nbsp;' * (2 * (depth - 1))}{marker} {own}")
            work.extend((None, deeper, depth + 1, 0) for deeper in reversed(self._nested(item)))
        return out

    @staticmethod
    def _nested(item: _TextBlock) -> list[_List]:
        return [child for child in item.children if isinstance(child, _List)]

    def _item_line(self, item: _TextBlock) -> str:
        if item.style is not None and item.style != "normal":
            self.degrade("list item style dropped")
        own = [child for child in item.children if not isinstance(child, _List)]
        block = _TextBlock(item.style, item.list_item, item.level, own, item.mark_defs)
        return self._render_children(block)

    def _render_block(self, node: _TextBlock) -> str:
        style = node.style or "normal"
        tag = _BLOCK_TAGS.get(style)
        if tag is None:
            tag = "p"  # unknown styles are <p> in to-html too
            what = "blockquote" if style == "blockquote" else f"style {_type_label(style)!r}"
            self.degrade(f"{what} sent as a paragraph")
        elif tag != style and style != "normal":
            self.degrade(f"heading {style} sent as {tag}")
        return f"<{tag}>{self._render_children(node)}</{tag}>"

    def _render_children(self, node: _TextBlock) -> str:
        return "".join(self._render_inline(child) for child in _build_marks_tree(node))

    def _render_inline(self, node: _MarkNode | str | _Inline | _List) -> str:
        if isinstance(node, str):
            return "<br/>" if node == "\n" else escape_html(node)
        if isinstance(node, _MarkNode):
            return self._render_mark(node)
        if isinstance(node, _List):
            return ""  # nested lists are folded in by _render_list_item
        return self._render_custom(node.value, is_inline=True)

    def _render_mark(self, node: _MarkNode) -> str:
        inner = "".join(self._render_inline(child) for child in node.children)
        mark_type = node.mark_type
        decorator = _DECORATORS.get(mark_type) if mark_type is not None else None
        if decorator is not None:
            return f"{decorator[0]}{inner}{decorator[1]}"
        if mark_type in _DROPPED_DECORATORS:
            self.degrade(f"{mark_type} formatting dropped")
            return inner
        if mark_type == "link":
            return self._render_link(node.mark_def, inner)
        if mark_type in _INTERNAL_LINK_TYPES:
            return self._render_internal_link(node.mark_def, inner)
        self.skip("mark", mark_type if mark_type is not None else "<untyped markDef>")
        return inner

    @staticmethod
    def _render_link(mark_def: dict | None, inner: str) -> str:
        href = mark_def.get("href") if mark_def is not None else None
        if href is None:
            href = ""  # to-html: value?.href || "" -> <a href="">
        if not isinstance(href, str):
            logger.debug("portable text: link href is %s; rendered as text", type(href).__name__)
            return inner
        if not _href_is_safe(href):
            return inner
        return f'<a href="{escape_html(_clean(href))}">{inner}</a>'

    def _render_internal_link(self, mark_def: dict | None, inner: str) -> str:
        document_id = None
        if mark_def is not None:
            reference = mark_def.get("reference")
            if isinstance(reference, dict) and isinstance(reference.get("_ref"), str):
                document_id = reference["_ref"]
            elif isinstance(mark_def.get("_ref"), str):
                document_id = mark_def["_ref"]
        if document_id is None or not _DOCUMENT_ID.fullmatch(document_id):
            logger.warning(
                "portable text: internal link without a valid reference; rendered as text"
            )
            return inner
        self.references.add(document_id)
        url = self.resolve(document_id)
        if url is None:
            self.unresolved.add(document_id)
            return inner
        return f'<a href="{escape_html(_clean(url))}">{inner}</a>'

    def _render_custom(self, value: dict, *, is_inline: bool) -> str:
        type_name = value.get("_type")
        renderer = self.renderer_for(value)
        if renderer is None:
            self.skip("inline object" if is_inline else "block", type_name)
            return ""
        context = RenderContext(self, is_inline=is_inline, depth=self._depth)
        try:
            html = renderer(value, context)
        except Exception:
            # A renderer bug must not take down the whole article; it is logged with its
            # traceback (Sentry picks ERROR records up) and the block is left out.
            logger.exception(
                "portable text: renderer for %r failed; block skipped", _type_label(type_name)
            )
            self.degrade(f"block type {_type_label(type_name)!r} failed to render")
            return ""
        if not isinstance(html, str):
            logger.error(
                "portable text: renderer for %r returned %s; block skipped",
                _type_label(type_name),
                type(html).__name__,
            )
            return ""
        return html


_TAGS = re.compile(r"<[^>]*>")


def _has_content(html: str) -> bool:
    """Whether rendered inline HTML shows anything: text other than white space, or an image
    (what Intercom's "non-empty ``li``" asks for)."""
    if "<img " in html or "<iframe " in html:
        return True
    text = _TAGS.sub("", html).replace("&nbsp;", " ").strip()
    if "&" not in text:
        return bool(text)  # the common case, without decoding entities
    return bool(htmllib.unescape(text).strip())


def render(blocks: list[dict] | None, options: RenderOptions) -> Rendered:
    """Render Portable Text ``blocks`` to Intercom article HTML.

    Never raises because of the blocks' content: malformed parts are skipped. Exceptions from
    ``options.link_resolver`` do propagate (see :class:`RenderOptions`)."""
    renderer = _Renderer(options)
    html = renderer.render_document(blocks)
    return Rendered(
        html=html,
        references=frozenset(renderer.references),
        unresolved=frozenset(renderer.unresolved),
        skipped_types=tuple(renderer.skipped),
        degradations=tuple(renderer.degraded.items()),
    )


# --------------------------------------------------------------------------------------------
# Built-in block types and the registry
# --------------------------------------------------------------------------------------------

_IMAGE_REF = re.compile(
    r"image-(?P<id>[A-Za-z0-9]{1,128})-(?P<w>[1-9][0-9]{0,5})x(?P<h>[1-9][0-9]{0,5})"
    r"-(?P<ext>[a-z0-9]{1,10})"
)
_SANITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: Formats Intercom takes as they are (help article 4103903: PNG, JPEG, SVG and GIF).
_KEPT_IMAGE_FORMATS = frozenset({"png", "jpg", "jpeg", "svg", "gif"})
#: Photo formats asked of the CDN as JPEG; every other format is asked as PNG (lossless,
#: keeps transparency, which webp/avif/tiff images may have).
_PHOTO_FORMATS = frozenset({"heic", "heif"})


def _image_link(block: dict) -> str | None:
    """An image's optional link (``link``: a URL or ``{href}``; or ``href``), if safe."""
    link = block.get("link", block.get("href"))
    if isinstance(link, dict):
        link = link.get("href")
    if isinstance(link, str) and link.strip() and _href_is_safe(link):
        return escape_html(_clean(link))
    return None


def render_image(block: dict, context: RenderContext) -> str:
    """``image`` with ``asset._ref`` ``image-<id>-<w>x<h>-<ext>`` -> a Sanity CDN ``<img>``.

    The ref is matched strictly and the URL assembled only from the matched parts, so a
    hostile ref can never smuggle anything into ``src``. ``asset._id`` is accepted too,
    because a GROQ query that dereferences ``asset->`` returns the asset document itself.
    A format Intercom does not take is converted by the CDN (``?fm=png``/``?fm=jpg``): an
    image Intercom cannot upload fails the whole article with 400.
    """
    options = context.options
    if not (
        isinstance(options.project_id, str)
        and isinstance(options.dataset, str)
        and _SANITY_NAME.fullmatch(options.project_id)
        and _SANITY_NAME.fullmatch(options.dataset)
    ):
        logger.warning("portable text: invalid Sanity project id or dataset; image skipped")
        context.degrade("image skipped (no Sanity project)")
        return ""
    asset = block.get("asset")
    ref = None
    if isinstance(asset, dict):
        ref = asset.get("_ref") if isinstance(asset.get("_ref"), str) else asset.get("_id")
    match = _IMAGE_REF.fullmatch(ref) if isinstance(ref, str) else None
    if match is None:
        logger.warning("portable text: image with a malformed asset reference skipped")
        context.degrade("image without a valid asset skipped")
        return ""
    asset_id, width, height, ext = match.groups()
    alt = block.get("alt")
    alt_text = escape_html_chars(_clean(alt)) if isinstance(alt, str) else ""
    src = (
        f"https://cdn.sanity.io/images/{options.project_id}/{options.dataset}/"
        f"{asset_id}-{width}x{height}.{ext}"
    )
    if ext not in _KEPT_IMAGE_FORMATS:
        target = "jpg" if ext in _PHOTO_FORMATS else "png"
        src += f"?fm={target}"
        context.degrade(f"image {ext} sent as {target}")
    img = f'<img src="{src}" alt="{alt_text}">'
    link = _image_link(block)
    return f'<a href="{link}">{img}</a>' if link is not None else img


def render_code(block: dict, context: RenderContext) -> str:
    """``{"_type": "code", "code": "...", "language": "python"}`` (the shape of Sanity's
    ``@sanity/code-input``) -> ``<pre><code>...</code></pre>``; inline, just the ``<code>``.
    No ``language-*`` class: Intercom drops attributes it does not know. Whitespace is kept
    as is (no ``&nbsp;``): ``<pre>`` preserves it."""
    code = block.get("code")
    if not isinstance(code, str) or not code:
        logger.warning("portable text: code block without code skipped")
        return ""
    inner = f"<code>{escape_html_chars(_clean(code))}</code>"
    return inner if context.is_inline else f"<pre>{inner}</pre>"


#: Rows and cells of one table beyond these are left out (a hostile table stays bounded).
MAX_TABLE_ROWS = 1000
MAX_TABLE_CELLS = 100


def render_table(block: dict, context: RenderContext) -> str:
    """``@sanity/table``: ``{"rows": [{"cells": ["a", "b"]}, ...]}`` -> ``<table>`` of ``td``.

    A table needs a row with a cell or Intercom answers 400, so a table without any text is
    skipped. Tables never sit in a list item (400 too): they are blocks, and lists hold only
    text. Used inline (where a table cannot go), it is skipped."""
    if context.is_inline:
        context.degrade("table used inline skipped")
        return ""
    rows = block.get("rows")
    out: list[str] = []
    has_text = False
    for row in rows[:MAX_TABLE_ROWS] if isinstance(rows, list) else ():
        cells = row.get("cells") if isinstance(row, dict) else None
        if not isinstance(cells, list) or not cells:
            continue
        rendered = []
        for cell in cells[:MAX_TABLE_CELLS]:
            text = cell if isinstance(cell, str) else ""
            has_text = has_text or bool(text.strip())
            rendered.append(f"<td>{context.render_text(text)}</td>")
        out.append(f"<tr>{''.join(rendered)}</tr>")
    if not has_text:
        context.degrade("empty table skipped")
        return ""
    return f"<table><tbody>{''.join(out)}</tbody></table>"


def render_embed(block: dict, context: RenderContext) -> str:
    """Any object with a ``url`` (``youtube``, ``videoEmbed``, ``embed`` ...): a video page of
    a provider Intercom embeds becomes an ``<iframe>`` with the provider's embed URL; any
    other safe URL a link (in its own paragraph, or inline), labelled with the object's
    ``title`` or the URL. Intercom refuses iframes of other sources."""
    url = block.get("url")
    if not isinstance(url, str) or not url.strip() or not _href_is_safe(url):
        context.degrade("embed without a usable URL skipped")
        return ""
    embed = embed_url(url)
    if embed is not None and not context.is_inline:
        return f'<iframe src="{escape_html_chars(embed)}"></iframe>'
    context.degrade("embed sent as a link")
    title = block.get("title")
    label = title if isinstance(title, str) and title.strip() else url
    link = f'<a href="{escape_html(_clean(url))}">{context.render_text(label)}</a>'
    return link if context.is_inline else f"<p>{link}</p>"


#: Callout tones -> the sign that leads the callout's first paragraph. Intercom keeps no
#: callout markup (its editor's ``div`` becomes a paragraph), and a sign needs no translation.
CALLOUT_TONES: dict[str, str] = {
    "info": "\u2139\ufe0f",
    "note": "\u2139\ufe0f",
    "neutral": "\u2139\ufe0f",
    "tip": "\U0001f4a1",
    "success": "\u2705",
    "warning": "\u26a0\ufe0f",
    "caution": "\u26a0\ufe0f",
    "danger": "\u26d4",
    "error": "\u26d4",
    "critical": "\u26d4",
}
_DEFAULT_TONE = "info"


def render_callout(block: dict, context: RenderContext) -> str:
    """``callout`` with a ``tone`` and either ``body`` (nested Portable Text, rendered with the
    same rules, links and all) or plain ``text`` -> its blocks as they are, the first
    paragraph led by the tone's sign (:data:`CALLOUT_TONES`; unknown tones use ``info``), or a
    paragraph with just the sign when the callout starts with something else. An empty
    callout renders nothing; Intercom has no inline callout, so one used inline renders its
    text only."""
    body = block.get("body")
    text = block.get("text")
    if context.is_inline:
        context.degrade("callout used inline sent as text")
        return context.render_text(text) if isinstance(text, str) else ""
    if isinstance(body, list):
        inner = context.render_blocks(body)
    elif isinstance(text, str) and text:
        inner = f"<p>{context.render_text(text)}</p>"
    else:
        inner = ""
    if not inner:
        return ""
    context.degrade("callout sent as paragraphs")
    tone = block.get("tone")
    tone_key = tone.lower() if isinstance(tone, str) else _DEFAULT_TONE
    sign = CALLOUT_TONES.get(tone_key, CALLOUT_TONES[_DEFAULT_TONE])
    if inner.startswith("<p>"):
        return f"<p>{sign} {inner[3:]}"
    return f"<p>{sign}</p>{inner}"


#: Custom block types, by ``_type``: ``fn(block, context) -> html``. Extend it with
#: :func:`register_block_type` at import time, or per call with
#: :attr:`RenderOptions.block_renderers` (merged over this). Objects of other types that
#: carry a ``url`` go to :func:`render_embed`.
BLOCK_RENDERERS: dict[str, BlockRenderer] = {
    "image": render_image,
    "code": render_code,
    "table": render_table,
    "callout": render_callout,
}


def register_block_type(name: str, renderer: BlockRenderer) -> None:
    """Register (or replace) the renderer for custom block type ``name`` process-wide.

    ``block`` and ``span`` are Portable Text's own types and ``@``-names are the toolkit's
    internal ones; registering those is a programming error, so it raises ``ValueError``.
    """
    if not isinstance(name, str) or not name or name in _RESERVED_TYPES or name.startswith("@"):
        raise ValueError(f"cannot register a renderer for block type {name!r}")
    if not callable(renderer):
        raise TypeError("renderer must be callable as renderer(block, context) -> str")
    BLOCK_RENDERERS[name] = renderer
