"""Video page URLs -> embed URLs for the providers Intercom embeds, built from the id alone."""

from __future__ import annotations

import pytest

from workers.articles.conformance import is_video_host
from workers.articles.embeds import embed_url

YT = "https://www.youtube.com/embed/dQw4w9WgXcQ"


@pytest.mark.parametrize(
    ("page", "embed"),
    [
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", YT),
        ("https://m.youtube.com/watch?v=dQw4w9WgXcQ&t=42s", YT),
        ("https://youtu.be/dQw4w9WgXcQ?si=abc", YT),
        ("https://www.youtube.com/shorts/dQw4w9WgXcQ", YT),
        ("https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ", YT),
        ("https://vimeo.com/76979871", "https://player.vimeo.com/video/76979871"),
        ("https://vimeo.com/76979871/abcdef1234", "https://player.vimeo.com/video/76979871?h=abcdef1234"),
        ("https://vimeo.com/channels/staffpicks/76979871", "https://player.vimeo.com/video/76979871"),
        ("https://player.vimeo.com/video/76979871", "https://player.vimeo.com/video/76979871"),
        ("https://www.loom.com/share/0123456789abcdef0123456789abcdef",
         "https://www.loom.com/embed/0123456789abcdef0123456789abcdef"),
        ("https://acme.wistia.com/medias/abc123xyz", "https://fast.wistia.net/embed/iframe/abc123xyz"),
        ("https://fast.wistia.net/embed/iframe/abc123xyz?x=1",
         "https://fast.wistia.net/embed/iframe/abc123xyz"),
        ("https://share.vidyard.com/watch/AbCd1234EfGh", "https://play.vidyard.com/AbCd1234EfGh"),
        ("https://play.vidyard.com/AbCd1234EfGh.html", "https://play.vidyard.com/AbCd1234EfGh"),
        ("https://streamio.com/api/v1/videos/5f1e2d3c4b5a6978/public_show",
         "https://streamio.com/api/v1/videos/5f1e2d3c4b5a6978/public_show"),
    ],
)  # fmt: skip
def test_provider_pages(page: str, embed: str) -> None:
    assert embed_url(page) == embed
    assert is_video_host(embed.split("/")[2])


@pytest.mark.parametrize(
    "page",
    [
        "https://example.com/watch?v=dQw4w9WgXcQ",
        "https://youtube.com.evil.example/watch?v=dQw4w9WgXcQ",
        "https://www.youtube.com/watch?v=<script>",
        'https://youtu.be/dQw4w9WgXcQ"onload="x',
        "javascript:alert(1)//youtube.com/watch?v=dQw4w9WgXcQ",
        "https://www.youtube.com/",
        "https://vimeo.com/about",
        "https://[::1",
        "",
        "https://youtu.be/" + "a" * 5000,
    ],
)
def test_other_urls_have_no_embed(page: str) -> None:
    assert embed_url(page) is None
