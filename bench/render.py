"""Render time of article bodies: a realistic 5,000-word article and a 1.5 MB hostile document.

Rendering runs inside the ``articles.sync`` task under its time limit, on content any editor
(or a compromised editor account) controls, so it must stay linear whatever the JSON holds.
This builds both documents deterministically, round-trips them through JSON (what the Sanity
client hands the renderer), renders each ``--repeat`` times and checks every output with
Intercom's article rules (:mod:`workers.articles.conformance`). It prints one table row per
document and exits non-zero when the hostile document takes ``--limit`` seconds or more, or when
any output breaks a rule.

    python bench/render.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.articles.conformance import SANITY_CDN_HOST, violations
from workers.articles.portable_text import RenderOptions, render

OPTIONS = RenderOptions(
    project_id="bench01",
    dataset="production",
    link_resolver=lambda doc: f"https://help.example.com/articles/{doc}",
)
IMAGE = "image-a1b2c3d4e5f60718293a4b5c6d7e8f9012345678-1600x900-{}"
WORDS = [
    "account", "billing", "invoice", "password", "reset", "workspace", "admin", "export",
    "import", "settings", "member", "plan", "upgrade", "refund", "team", "integration",
    "webhook", "token", "limit", "report",
]  # fmt: skip
CURL = "curl -H 'Authorization: Bearer $TOKEN' \\\n  https://api.example.com/v1/export"


def _span(text: str, marks: list[str] | None = None) -> dict[str, Any]:
    return {"_type": "span", "_key": "s", "text": text, "marks": marks or []}


def _block(children: list[dict[str, Any]], style: str = "normal", mark_defs: list | None = None,
           **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"_type": "block", "_key": "b", "style": style, "markDefs": mark_defs or [],
            "children": children, **extra}  # fmt: skip


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def realistic(words: int = 5000, seed: int = 7) -> list[dict[str, Any]]:
    """A long help article as editors write them: sections with h2/h3 headings, paragraphs
    with bold, italic, inline code, links and internal links, bullet and numbered lists (some
    nested), images (some webp), code blocks, a table, callouts and a video."""
    rng = random.Random(seed)
    blocks: list[dict[str, Any]] = []
    count = 0
    section = 0
    while count < words:
        section += 1
        blocks.append(_block([_span(f"Section {section}")], style="h2" if section % 3 else "h3"))
        for _ in range(3):
            text = [_sentence(rng, rng.randint(8, 18)) for _ in range(3)]
            count += sum(len(t.split()) for t in text)
            defs = [{"_type": "link", "_key": "l1", "href": "https://example.com/docs"},
                    {"_type": "internalLink", "_key": "l2",
                     "reference": {"_type": "reference", "_ref": f"doc-{section}"}}]  # fmt: skip
            blocks.append(_block([_span(text[0] + " "), _span(text[1], ["strong", "l1"]),
                                  _span(" "), _span(text[2], ["em", "l2"]),
                                  _span(" run "), _span("sync --all", ["code"])],
                                 mark_defs=defs))  # fmt: skip
        for n in range(5):
            item = _sentence(rng, 8)
            count += len(item.split())
            blocks.append(_block([_span(item)], listItem="number" if section % 2 else "bullet",
                                 level=1 + (n % 3 == 2)))  # fmt: skip
        if section % 2:
            ext = "webp" if section % 4 == 1 else "png"
            blocks.append({"_type": "image", "_key": "i", "alt": f"Screenshot {section}",
                           "asset": {"_type": "reference", "_ref": IMAGE.format(ext)}})  # fmt: skip
        if section % 3 == 0:
            blocks.append({"_type": "code", "_key": "c", "language": "bash",
                           "code": CURL})  # fmt: skip
            blocks.append({"_type": "callout", "_key": "k", "tone": "warning",
                           "body": [_block([_span(_sentence(rng, 15))])]})  # fmt: skip
        if section % 5 == 0:
            blocks.append({"_type": "table", "_key": "t", "rows": [
                {"_key": f"r{r}", "cells": [_sentence(rng, 2) for _ in range(4)]}
                for r in range(6)]})  # fmt: skip
            blocks.append({"_type": "youtube", "_key": "y", "url": "https://youtu.be/dQw4w9WgXcQ"})
    return blocks


def hostile(target_bytes: int = 1_500_000) -> list[dict[str, Any]]:
    """What review found and more: fractional and astronomically large list levels, a span
    with 100,000 marks, thousands of spans each with many marks, a level jump per item, deep
    callout nesting, unknown types, empty lists and tables, odd values everywhere; padded
    with many-marked spans until the JSON is ``target_bytes`` long."""
    blocks: list[dict[str, Any]] = []
    blocks += [_block([_span(f"frac {n}")], listItem="bullet", level=1 + n / 997)
               for n in range(1000)]  # fmt: skip
    blocks += [_block([_span("huge")], listItem="number", level=10**400),
               _block([_span("negative")], listItem="number", level=-(10**400))]  # fmt: skip
    blocks.append(_block([_span("marked", [f"m{n}" for n in range(100_000)])]))
    blocks += [_block([_span(f"deep {n}")], listItem="bullet", level=1 + n % 40)
               for n in range(500)]  # fmt: skip
    inner: dict[str, Any] = {"_type": "callout", "text": "bottom"}
    for n in range(200):  # as deep as JSON encoders and decoders nest by default
        inner = {"_type": "callout", "body": [_block([_span(f"nest {n}")]), inner]}
    blocks.append(inner)
    blocks += [{"_type": f"unknown{n % 7}", "x": n} for n in range(2000)]
    blocks += [{"_type": "table", "rows": [{"cells": ["", " "]}] * 50}] * 20
    blocks += [_block([_span("")], listItem="bullet", level=1)] * 500
    defs = [{"_type": "link", "_key": f"k{n}", "href": "https://e.example/" + "a" * 20}
            for n in range(40)]  # fmt: skip
    pad = _block([_span(f"w{n} ", [f"k{n % 40}", f"k{(n + 1) % 40}", "strong", "em", "underline"])
                  for n in range(200)], mark_defs=defs)  # fmt: skip
    size = len(json.dumps(blocks))
    step = len(json.dumps(pad))
    while size < target_bytes:
        blocks.append(pad)
        size += step + 2
    return blocks


def measure(name: str, blocks: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    text = json.dumps(blocks)
    parsed = json.loads(text)  # what the Sanity client hands the renderer
    times: list[float] = []
    html = ""
    for _ in range(repeat):
        started = time.perf_counter()
        html = render(parsed, OPTIONS).html
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    broken = violations(html, image_hosts={SANITY_CDN_HOST})
    check = time.perf_counter() - started
    words = sum(len(s.get("text", "").split()) for b in parsed if isinstance(b, dict)
                for s in b.get("children") or [] if isinstance(s, dict))  # fmt: skip
    return {"name": name, "json_kb": len(text) // 1024, "blocks": len(parsed), "words": words,
            "render_ms": median(times) * 1000, "max_ms": max(times) * 1000,
            "check_ms": check * 1000, "html_kb": len(html) // 1024,
            "violations": len(broken)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="renders per document (default 5)")
    parser.add_argument("--limit", type=float, default=2.0,
                        help="seconds the hostile document must stay under (default 2)")
    args = parser.parse_args()
    rows = [measure("realistic 5,000-word article", realistic(), args.repeat),
            measure("hostile 1.5 MB document", hostile(), args.repeat)]  # fmt: skip
    print("| document | JSON KiB | blocks | words | render ms (median) | render ms (max) "
          "| conformance check ms | HTML KiB | violations |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['json_kb']} | {r['blocks']} | {r['words']} | "
              f"{r['render_ms']:.0f} | {r['max_ms']:.0f} | {r['check_ms']:.0f} | {r['html_kb']} | "
              f"{r['violations']} |")  # fmt: skip
    failed = [r["name"] for r in rows if r["violations"]]
    if rows[1]["max_ms"] >= args.limit * 1000:
        failed.append(f"hostile document took {rows[1]['max_ms']:.0f} ms")
    if failed:
        print(f"FAILED: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
