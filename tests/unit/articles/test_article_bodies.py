"""Article bodies end to end through the sync path: a document holding every Portable Text
construct becomes an article the fake Intercom (which refuses and keeps bodies as Intercom does)
accepts and shows in full; degradations reach the log line, ``articles preview`` and the
dry run; the renderer version is part of the content hash."""

# ruff: noqa: F811  (pytest fixtures imported from the harness are redefined as arguments)
from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.unit.articles.test_harness import (  # noqa: F401 (fixtures)
    Harness,
    article_doc,
    article_fakes,
    harness,
)
from tests.unit.articles.test_portable_text import assert_words_in_order
from workers.articles import backfill, content, queries
from workers.articles.portable_text import Rendered, RenderOptions, render
from workers.articles.preview import run_preview
from workers.ops import cli

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "portable_text"
POST, PUT = "POST /articles", "PUT /articles/{article_id}"


def every_construct() -> list[dict[str, Any]]:
    """Blocks of every construct the renderer maps: the Intercom fixtures (images, code,
    tables, embeds, callouts ...) and the to-html ones with nested lists, h3-h6, blockquotes,
    underline and strike-through."""
    names = [
        *sorted(p.name for p in FIXTURES.glob("intercom_*.json")),
        "article_realistic.json", "styles_all.json", "decorators_nested.json",
        "list_mixed_nested.json", "list_deep_ten_levels.json", "escaping_text.json",
    ]  # fmt: skip
    blocks: list[dict[str, Any]] = []
    for name in names:
        blocks.extend(json.loads((FIXTURES / name).read_text(encoding="utf-8"))["blocks"])
    return blocks


def render_every_construct() -> Rendered:
    return render(every_construct(), RenderOptions("sandbox", "production"))


def _calls_since(h: Harness, before: dict[str, int]) -> dict[str, int]:
    after = h.calls()
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def test_every_construct_is_accepted_and_shown_in_full(harness: Harness, caplog) -> None:
    blocks = every_construct()
    harness.sanity.seed([{**article_doc("every", "Everything"), "body": blocks}])
    with caplog.at_level(logging.INFO, logger="intercom_sync.articles"):
        result = harness.sync("every")
    assert result.outcome == "created"  # no 400 (a refused body raises and would park)
    assert harness.calls() == {POST: 1}
    stored = harness.article("every")["body"]
    assert_words_in_order(blocks, stored)  # nothing Intercom keeps was lost or moved
    (sent,) = [body["body"] for method, _, body in harness.sent if method == "POST"]
    assert "<iframe" in stored and "<table>" in stored and "?fm=png" in stored
    assert "<h3>" not in sent and "<blockquote>" not in sent and "<span" not in sent
    (line,) = [r for r in caplog.records if r.getMessage() == "article.synced"]
    assert "heading h3 sent as h2" in line.degradations
    assert "nested list flattened x" in line.degradations
    assert "image webp sent as png x" in line.degradations


def test_what_the_fake_does_to_the_old_output_shows_in_the_stored_body(harness: Harness) -> None:
    """The guard on the test above: a body Intercom mangles is visible through GET."""
    old = '<p>Press <span style="text-decoration:underline">Save</span> now</p>'
    article = harness.services.intercom.create_article(
        {"title": "Old", "author_id": 1295, "body": old, "state": "draft"})
    assert article["body"] == "<p>Press </p><p>Save</p><p> now</p>"


def test_renderer_version_change_resends_each_article_once(harness: Harness, monkeypatch) -> None:
    harness.sanity.seed([article_doc("v1", "Versioned")])
    assert harness.sync("v1").outcome == "created"
    assert harness.sync("v1").outcome == "unchanged"
    monkeypatch.setattr(content, "RENDERER_VERSION", "next-version")
    before = harness.calls()
    assert harness.sync("v1").outcome == "updated"
    assert harness.sync("v1").outcome == "unchanged"
    assert _calls_since(harness, before) == {PUT: 1}


def test_preview_prints_html_and_changes_and_writes_nothing(harness: Harness) -> None:
    blocks = every_construct()
    harness.sanity.seed([{**article_doc("pv", "Preview me"), "body": blocks}])
    transactions = harness.sanity.stats()["transactions"]
    out = io.StringIO()
    assert run_preview(harness.services, "pv", out) == 0
    text = out.getvalue()
    assert "create a new article for pv 'Preview me'" in text
    assert "<h2>Style h3</h2>" in text and "<iframe src=" in text
    for change in ("heading h3 sent as h2", "blockquote sent as a paragraph",
                   "underline formatting dropped", "nested list flattened (x",
                   "image webp sent as png", "callout sent as paragraphs"):  # fmt: skip
        assert change in text, change
    assert "no violation" in text and "nothing was sent or written" in text
    assert harness.calls() == {}
    assert harness.sanity.stats()["transactions"] == transactions


def test_preview_of_a_missing_document_exits_1(harness: Harness) -> None:
    out = io.StringIO()
    assert run_preview(harness.services, "nope", out) == 1
    assert "no body would be sent" in out.getvalue()


def test_preview_is_a_cli_command() -> None:
    args = cli.build_parser().parse_args(["articles", "preview", "doc-1"])
    assert args.handler is cli._cmd_articles and args.document_id == "doc-1"


def test_dry_run_counts_changes_per_document(harness: Harness) -> None:
    harness.sanity.seed([{**article_doc("d1", "Plain")},
                         {**article_doc("d2", "Rich"), "body": every_construct()}])  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    totals = backfill.dry_run(harness.services, queries.EPOCH, out, err)
    lines = out.getvalue().splitlines()
    (plain,) = [line for line in lines if " d1 " in line]
    (rich,) = [line for line in lines if " d2 " in line]
    assert "change" not in plain
    expected = sum(n for _, n in render_every_construct().degradations)
    assert f"; {expected} change(s) to the content: " in rich and "heading h3 sent as h2" in rich
    assert "break" not in rich
    assert any(line.startswith("content changes in 1 document(s): ") for line in lines)
    assert totals["create"] == 2 and totals["degraded"] == 1
    assert harness.calls() == {}


@pytest.mark.parametrize("extra", [{}, {"body": "not a list"}, {"body": [{"_type": 5}]}])
def test_odd_bodies_still_sync(harness: Harness, extra: dict[str, Any]) -> None:
    harness.sanity.seed([{**article_doc("odd", "Odd"), **extra}])
    assert harness.sync("odd").outcome == "created"


def test_preview_command_with_sanity_down_is_one_line_and_exit_1(monkeypatch, capsys) -> None:
    import fakeredis

    from tests.conftest import make_settings
    from workers.clients.services import Services

    settings = make_settings(INTERCOM_ACCESS_TOKEN="t", INTERCOM_AUTHOR_ID="1",
                             INTERCOM_DEFAULT_COLLECTION_ID="2", SANITY_PROJECT_ID="p",
                             SANITY_DATASET="d", SANITY_TOKEN="s",
                             SANITY_API_BASE="http://127.0.0.1:9", REDIS_URL="redis://127.0.0.1:9/0",
                             SANITY_RATE_LIMIT_PER_SECOND="500")  # fmt: skip
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    monkeypatch.setattr(cli, "_services",
                        lambda s: Services(s, redis_client=fakeredis.FakeRedis()))  # fmt: skip
    assert cli.main(["articles", "preview", "doc-1"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("intercom-sync: could not read 'doc-1': "), err
