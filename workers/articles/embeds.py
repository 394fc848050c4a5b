"""Video page URL -> the provider's embed URL, for the providers Intercom embeds.

Why: Intercom keeps an ``<iframe>`` only for YouTube, Wistia, Vimeo, Loom, Vidyard and
StreamIO (developers.intercom.com, docs/guides/help-center/supported-html), and an iframe
needs the provider's *player* URL, while editors paste the *page* URL they see in the
browser. Each pattern below accepts the page and player forms a provider publishes and
rebuilds the embed URL from the matched id alone, so nothing else from the document (query
strings, fragments, quotes) reaches ``src``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

__all__ = ["embed_url"]

_YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{6,20}")
_DIGITS = re.compile(r"[0-9]{1,20}")
_HASH = re.compile(r"[0-9a-f]{6,40}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{4,64}")


def _youtube(host: str, segments: list[str], query: dict[str, list[str]]) -> str | None:
    video: str | None = None
    if host == "youtu.be" and segments:
        video = segments[0]
    elif host.endswith(("youtube.com", "youtube-nocookie.com")):
        if segments[:1] == ["watch"]:
            video = (query.get("v") or [""])[0]
        elif len(segments) >= 2 and segments[0] in ("embed", "shorts", "live", "v"):
            video = segments[1]
    if video and _YOUTUBE_ID.fullmatch(video):
        return f"https://www.youtube.com/embed/{video}"
    return None


def _vimeo(host: str, segments: list[str], query: dict[str, list[str]]) -> str | None:
    if host == "player.vimeo.com":
        ids = segments[1:2] if segments[:1] == ["video"] else []
        private = (query.get("h") or [""])[0]
    else:
        ids = [s for s in segments if _DIGITS.fullmatch(s)][:1]
        after = segments[segments.index(ids[0]) + 1:] if ids else []  # fmt: skip
        private = after[0] if after else ""
    if not ids or not _DIGITS.fullmatch(ids[0]):
        return None
    suffix = f"?h={private}" if _HASH.fullmatch(private) else ""
    return f"https://player.vimeo.com/video/{ids[0]}{suffix}"


def _loom(host: str, segments: list[str], query: dict[str, list[str]]) -> str | None:
    if len(segments) >= 2 and segments[0] in ("share", "embed") and _TOKEN.fullmatch(segments[1]):
        return f"https://www.loom.com/embed/{segments[1]}"
    return None


def _wistia(host: str, segments: list[str], query: dict[str, list[str]]) -> str | None:
    media: str | None = None
    if len(segments) >= 2 and segments[0] == "medias":
        media = segments[1]
    elif len(segments) >= 3 and segments[:2] == ["embed", "iframe"]:
        media = segments[2]
    elif len(segments) >= 3 and segments[:2] == ["embed", "medias"]:
        media = segments[2].removesuffix(".jsonp")
    if media and _TOKEN.fullmatch(media):
        return f"https://fast.wistia.net/embed/iframe/{media}"
    return None


def _vidyard(host: str, segments: list[str], query: dict[str, list[str]]) -> str | None:
    video: str | None = None
    if host == "play.vidyard.com" and segments:
        video = segments[0].removesuffix(".html")
    elif len(segments) >= 2 and segments[0] in ("watch", "share"):
        video = segments[1]
    if video and _TOKEN.fullmatch(video):
        return f"https://play.vidyard.com/{video}"
    return None


def _streamio(host: str, segments: list[str], query: dict[str, list[str]]) -> str | None:
    if "videos" in segments:
        at = segments.index("videos")
        video = segments[at + 1] if at + 1 < len(segments) else ""
        if _TOKEN.fullmatch(video):
            return f"https://streamio.com/api/v1/videos/{video}/public_show"
    return None


_PROVIDERS = (
    (("youtube.com", "youtube-nocookie.com", "youtu.be"), _youtube),
    (("vimeo.com",), _vimeo),
    (("loom.com",), _loom),
    (("wistia.com", "wistia.net", "wi.st"), _wistia),
    (("vidyard.com",), _vidyard),
    (("streamio.com",), _streamio),
)


def embed_url(page: str) -> str | None:
    """The embed URL for a video page of a supported provider, else None."""
    if not isinstance(page, str) or len(page) > 2048:
        return None
    try:
        parts = urlsplit(page.strip())
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    segments = [s for s in parts.path.split("/") if s]
    query = parse_qs(parts.query)
    for domains, build in _PROVIDERS:
        if any(host == d or host.endswith("." + d) for d in domains):
            return build(host, segments, query)
    return None
