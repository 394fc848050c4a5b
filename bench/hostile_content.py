"""Hostile content: worker time to tag pathological conversations and to load hostile rules.

    python bench/hostile_content.py

Why: a conversation is written by anyone who can open the Messenger, and a tagging job that
takes minutes holds a worker, hits the soft time limit and is retried for hours. The bound to
keep: a 1 MB hostile conversation tagged (or refused) in under 2 s of worker time, a rules
alias bomb refused in under 1 s.

What runs, in this process, the code a tagging job runs between fetching the conversation and
applying tags: ``context_from_conversation`` (text extraction, tag stripping, normalisation)
and ``RuleSet.evaluate`` with the sandbox's sample rules. Worker time is this thread's CPU
time; wall time is shown beside it (a busy machine stretches wall time, not work). Side by
side in the same run:

* tag stripping by the regular expression ``<[A-Za-z/!?][^>]*>`` (the textbook approach) and by
  the linear scan in use, on growing inputs of ``"<a"`` (small sizes only for the regex: it is
  quadratic);
* 200 rules of ``(a|aa)+$`` (loaded with the static check off) evaluated with the shared budget
  and with only a per-search timeout (20 rules for the latter, then per-rule cost);
* the alias-bomb file refused by the loader, and bombs of 4 and 5 levels expanded by a plain
  ``yaml.SafeLoader`` plus validation, to show the growth the refusal avoids;
* log scrubbing (``workers.jobs.logs.scrub``) on 256 KiB and 1 MiB of hostile text: the ratio
  shows it stays linear.

Prints Markdown tables; exits 1 when a bound above is missed.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import regex
import yaml

from workers.conversations import rules as rules_module
from workers.conversations.rules import RulesError, context_from_conversation, load_rules
from workers.sandbox.samples import SAMPLE_RULES

ONE_MB = 1024 * 1024
BOMB = ROOT / "tests" / "fixtures" / "hostile" / "alias-bomb.yaml"
REGEX_STRIP = regex.compile(r"<[A-Za-z/!?][^>]*>")


def measure(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(cpu seconds of this thread, wall seconds, result)."""
    cpu, wall = time.thread_time(), time.perf_counter()
    result = fn()
    return time.thread_time() - cpu, time.perf_counter() - wall, result


def conversation(body: str) -> dict[str, Any]:
    return {"type": "conversation", "title": "Help",
            "source": {"type": "conversation", "subject": "", "body": body,
                       "author": {"type": "user", "id": "u1"}},
            "conversation_parts": {"conversation_parts": [
                {"part_type": "comment", "author": {"type": "user"}, "body": body},
            ]}}  # fmt: skip


def tagging_rows(failures: list[str]) -> list[str]:
    ruleset = load_rules(SAMPLE_RULES)
    cases = {
        '1 MB of `"<a "` (x2: body and a part)': "<a " * (ONE_MB // 3),
        '1 MB of `"<a"` (x2)': "<a" * (ONE_MB // 2),
        "1 MB of `<p>refund</p>` (x2)": "<p>refund</p>" * (ONE_MB // 13),
        "1 MB of words (x2)": "please refund my invoice " * (ONE_MB // 25),
    }
    rows = ["| conversation | worker time (CPU) | wall | text extracted | tags |",
            "|---|---:|---:|---:|---|"]
    for label, body in cases.items():
        def run(body: str = body) -> tuple[int, list[str]]:
            ctx = context_from_conversation(conversation(body))
            return len(ctx.text), [m.tag for m in ruleset.evaluate(ctx)]

        cpu, wall, (chars, tags) = measure(run)
        rows.append(f"| {label} | {cpu:.3f} s | {wall:.3f} s | {chars:,} chars | "
                    f"{', '.join(tags) or '(none)'} |")  # fmt: skip
        if cpu >= 2.0:
            failures.append(f"{label}: {cpu:.2f} s of worker time (bound: 2 s)")
    return rows


def end_to_end_rows(failures: list[str]) -> list[str]:
    """The whole job: ``tag_conversation`` fetching a 1 MB hostile conversation from the fake
    Intercom (real HTTP on loopback, OpenAPI-checked), evaluating and applying the tags."""
    import fakeredis

    from tests.unit.conversations.test_tagging import FakeIntercom, services_for
    from workers.conversations.tagging import tag_conversation

    rows = ["| job | worker time (CPU) | wall | outcome |", "|---|---:|---:|---|"]
    fake = FakeIntercom()
    rules = Path(tempfile.mkdtemp()) / "rules.yaml"
    rules.write_text(SAMPLE_RULES)
    try:
        services = services_for(fake, fakeredis.FakeRedis(), RULES_PATH=str(rules))
        for label, body in {'1 MB of `"<a "`': "<a " * (ONE_MB // 3),
                            '"refund" + 1 MB of `"<a"`': "refund " + "<a" * (ONE_MB // 2)}.items():
            ids = fake.state.seed({"conversations": [{"body": body}]})
            cid = ids["conversations"][0]
            cpu, wall, outcome = measure(lambda cid=cid: tag_conversation(services, cid))
            rows.append(f"| `conversations.tag` on {label} | {cpu:.3f} s | {wall:.3f} s | "
                        f"tags applied: {', '.join(outcome.applied) or '(none)'} |")
            if cpu >= 2.0:
                failures.append(f"tag job on {label}: {cpu:.2f} s of worker time")
    finally:
        fake.server.stop()
        shutil.rmtree(rules.parent, ignore_errors=True)
    return rows


def stripping_rows() -> list[str]:
    rows = ['| input (`"<a"` repeated) | regex stripper (CPU) | linear scan (CPU) | ratio |',
            "|---:|---:|---:|---:|"]
    for size in (10_000, 20_000, 40_000, 80_000):
        text = "<a" * (size // 2)
        old, _, _ = measure(lambda text=text: REGEX_STRIP.sub(" ", text))
        new, _, _ = measure(lambda text=text: rules_module.strip_tags(text))
        rows.append(f"| {size // 1000} KB | {old:.3f} s | {new * 1000:.3f} ms | "
                    f"{old / max(new, 1e-6):,.0f}x |")  # fmt: skip
    return rows


def budget_rows(failures: list[str]) -> list[str]:
    def ruleset(count: int, budget: float):
        data = {"rules": [{"tag": f"slow-{i}", "when": {"text_regex": "(a|aa)+$"}}
                          for i in range(count)]}  # fmt: skip
        return load_rules(json.dumps(data), check_patterns=False, regex_budget=budget)

    ctx = context_from_conversation(conversation("a" * 5000 + "!"))
    rows = ["| `(a\\|aa)+$` rules | limit | worker time per conversation (CPU) | wall |",
            "|---:|---|---:|---:|"]
    shared = ruleset(200, rules_module.DEFAULT_REGEX_BUDGET)
    cpu, wall, _ = measure(lambda: shared.evaluate(ctx))
    rows.append(f"| 200 | shared budget {rules_module.DEFAULT_REGEX_BUDGET} s + "
                f"{rules_module.DEFAULT_REGEX_TIMEOUT} s per search | {cpu:.3f} s | {wall:.3f} s |")
    if cpu >= 2.0:
        failures.append(f"200 catastrophic rules: {cpu:.2f} s per conversation")
    per_search = ruleset(20, 1e9)
    cpu20, wall20, _ = measure(lambda: per_search.evaluate(ctx))
    rows.append(f"| 20 | {rules_module.DEFAULT_REGEX_TIMEOUT} s per search only | {cpu20:.3f} s "
                f"| {wall20:.3f} s |")  # fmt: skip
    rows.append(f"| 200 | per search only (20 measured x 10) | {cpu20 * 10:.1f} s | — |")
    refused, _, error = measure(lambda: _load_error(json.dumps(
        {"rules": [{"tag": f"slow-{i}", "when": {"text_regex": "(a|aa)+$"}}
                   for i in range(200)]})))  # fmt: skip
    rows.append(f"| 200 | static check at load (default) | refused in {refused:.3f} s, "
                f"{len(error.errors) if error else 0} errors | — |")  # fmt: skip
    if error is None:
        failures.append("200 catastrophic rules were not refused at load")
    return rows


def _load_error(text: str | Path) -> RulesError | None:
    try:
        load_rules(text)
    except RulesError as exc:
        return exc
    return None


def _plain_bomb(levels: int) -> str:
    lines = ["anchors:", '  - &l0 {text_any: ["lol lol lol", refund]}']
    for i in range(1, levels + 1):
        lines.append(f"  - &l{i} {{any: [" + ", ".join([f"*l{i - 1}"] * 9) + "]}")
    return "\n".join([*lines, "rules:", "  - tag: boom", f"    when: *l{levels}", ""])


def bomb_rows(failures: list[str]) -> list[str]:
    rows = ["| rules file | loader | CPU | wall | outcome |", "|---|---|---:|---:|---|"]
    cpu, wall, error = measure(lambda: _load_error(BOMB))
    rows.append(f"| `tests/fixtures/hostile/alias-bomb.yaml` ({BOMB.stat().st_size:,} bytes, "
                f"9⁹ conditions) | `load_rules` | {cpu:.4f} s | {wall:.4f} s | "
                f"{'refused: ' + error.errors[0][:60] + '…' if error else 'LOADED'} |")
    if error is None or cpu >= 1.0:
        failures.append(f"alias bomb: {'loaded' if error is None else f'{cpu:.2f} s'}")
    schema = rules_module._file_schema(True)
    for levels in (4, 5):
        text = _plain_bomb(levels)

        def expand(text: str = text) -> int:
            data = yaml.load(text, Loader=yaml.SafeLoader)
            data.pop("anchors")
            return len(schema.load(data)["rules"])

        cpu, wall, _ = measure(expand)
        rows.append(f"| {len(text):,}-byte bomb, 9^{levels} conditions | plain SafeLoader + "
                    f"validation | {cpu:.3f} s | {wall:.3f} s | expanded |")  # fmt: skip
    return rows


def scrub_rows() -> list[str]:
    """Log scrubbing on hostile lines: 256 KiB and 1 MiB side by side (linear: about 4x)."""
    from workers.jobs.logs import scrub

    rows = ["| input repeated | 256 KiB (CPU) | 1 MiB (CPU) | ratio |", "|---|---:|---:|---:|"]
    for unit in ("a", "a@", "a.", "a%40", "token ", "+1 ", "1-"):
        small, _, _ = measure(lambda unit=unit: scrub(unit * (256 * 1024 // len(unit))))
        large, _, _ = measure(lambda unit=unit: scrub(unit * (ONE_MB // len(unit))))
        rows.append(f"| `{unit!r}` | {small:.3f} s | {large:.3f} s | "
                    f"{large / max(small, 1e-6):.1f} |")  # fmt: skip
    return rows


def main() -> int:
    logging.getLogger("workers.conversations.rules").setLevel(logging.ERROR)  # timeouts: expected
    failures: list[str] = []
    print("### Tagging a hostile conversation (sample rules)\n")
    print("\n".join(tagging_rows(failures)))
    print("\n### The tagging job end to end (fake Intercom over loopback)\n")
    print("\n".join(end_to_end_rows(failures)))
    print("\n### Tag stripping, side by side\n")
    print("\n".join(stripping_rows()))
    print("\n### 200 catastrophic rules on one conversation (10,008 characters)\n")
    print("\n".join(budget_rows(failures)))
    print("\n### Alias bomb\n")
    print("\n".join(bomb_rows(failures)))
    print("\n### Log and Sentry scrubbing on hostile text\n")
    print("\n".join(scrub_rows()))
    for failure in failures:
        print(f"\nBOUND MISSED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
