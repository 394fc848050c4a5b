"""Tests for workers.sandbox.article_html: how the fake Intercom refuses or keeps a body, and that
it answers Intercom's 400 over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.sandbox.test_fake_intercom import (
    HEADERS,
    Clock,
    assert_error,
    make_app,
    new_article,
)
from workers.sandbox.article_html import hard_failures, keep

IMG = "https://cdn.sanity.io/images/p/d/abc-10x10"


@pytest.fixture
def client() -> Any:
    return make_app(Clock()).test_client()


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("<p>a</p>", "<p>a</p>"),
        ("<h3>x</h3><h6>y</h6>", "<h2>x</h2><h2>y</h2>"),
        ("<blockquote>quote</blockquote>", "<p>quote</p>"),
        ("<div><p>x</p></div>", "<p>x</p>"),
        ("loose <b>bold</b>", "<p>loose <b>bold</b></p>"),
        ("<p>a<script>alert(1)</script>b</p>", "<p>ab</p>"),
        ("<form><p>x</p><input name=q></form><p>y</p>", "<p>y</p>"),
        ('<p><span style="text-decoration:underline">a</span>b</p>', "<p></p><p>a</p><p>b</p>"),
        ('<pre><code class="language-python">x</code></pre>', "<pre><code>x</code></pre>"),
        ('<p onclick="x()" class="intercom-align-center">c</p>',
         '<p class="intercom-align-center">c</p>'),
        ('<a href="https://x.io" data-x="1">l</a>', '<a href="https://x.io"><p>l</p></a>'),
        (f'<img src="{IMG}.png" alt="a" onerror="x">', f'<img src="{IMG}.png" alt="a">'),
    ],
)
def test_kept_as_intercom_keeps_it(sent: str, kept: str) -> None:
    assert keep(sent).replace("<p></p>", "") == kept.replace("<p></p>", "")


def test_underlined_word_becomes_a_paragraph_of_its_own() -> None:
    """What the renderer used to send: the sentence is split where the span was."""
    kept = keep('<p>Press <span style="text-decoration:underline">Save</span> now</p>')
    assert kept == "<p>Press </p><p>Save</p><p> now</p>"


def test_keep_is_the_identity_on_conformant_html() -> None:
    body = (
        f'<h1>T</h1><p>a <strong>b</strong><br>c</p><ul><li>x</li></ul><img src="{IMG}.png" '
        'alt="i"><table><tbody><tr><td>c</td></tr></tbody></table><pre><code>x</code></pre>'
    )
    assert keep(body) == body


@pytest.mark.parametrize(
    "body",
    [
        "<ul><li></li></ul>",
        "<ol><li><table><tr><td>x</td></tr></table></li></ol>",
        "<table><tr><td><table><tr><td>x</td></tr></table></td></tr></table>",
        '<iframe src="https://evil.example/x"></iframe>',
        '<img src="/a.png">',
        f'<img src="{IMG}.webp">',
        '<img src="https://elsewhere.example/a.png">',
        "<ul><li>a<ul><li>b</li></ul></li></ul>",
    ],
)
def test_hard_failures(body: str) -> None:
    assert hard_failures(body)


def test_fake_answers_400_for_a_body_intercom_refuses(client: Any) -> None:
    body = {"title": "T", "author_id": 1295, "body": f'<p>x</p><img src="{IMG}.webp">'}
    refused = assert_error(client.post("/articles", json=body, headers=HEADERS), 400,
                           "parameter_invalid")  # fmt: skip
    assert "PNG, JPEG, SVG or GIF" in refused["errors"][0]["message"]
    article = new_article(client, body="<p>fine</p>")
    update = {"body": "<ul><li> </li></ul>", "state": "published"}
    assert_error(client.put(f"/articles/{article['id']}", json=update, headers=HEADERS), 400,
                 "parameter_invalid")  # fmt: skip
    translated = {"type": "article_translated_content",
                  "fr": {"type": "article_content", "title": "T", "author_id": 1295,
                         "body": '<iframe src="https://evil.example/x"></iframe>'}}  # fmt: skip
    assert_error(client.put(f"/articles/{article['id']}", json={"translated_content": translated},
                            headers=HEADERS), 400, "parameter_invalid")  # fmt: skip
    stored = client.get(f"/articles/{article['id']}", headers=HEADERS).get_json()
    assert stored["body"] == "<p>fine</p>" and "translated_content" not in stored


def test_fake_stores_what_a_reader_sees(client: Any) -> None:
    translated = {"type": "article_translated_content",
                  "de": {"type": "article_content", "title": "T", "author_id": 1295,
                         "body": "<h4>Kopf</h4>"}}  # fmt: skip
    article = new_article(client, body="<h3>Head</h3><blockquote>q</blockquote>",
                          translated_content=translated)  # fmt: skip
    fetched = client.get(f"/articles/{article['id']}", headers=HEADERS).get_json()
    assert fetched["body"] == "<h2>Head</h2><p>q</p>"
    assert fetched["translated_content"]["de"]["body"] == "<h2>Kopf</h2>"
