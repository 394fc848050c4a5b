"""Hostile conversations and rules files: every cost of tagging has a bound.

Conversation text is cut before its tags are stripped and stripped in linear time; all regex
searches for one conversation share one budget; rules files cannot expand (aliases) or recurse
(deep nesting) their way past the loader; a broken reload keeps the rules in use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO_ROOT
from workers.conversations import rules as rules_module
from workers.conversations import tagging
from workers.conversations.rules import (
    MAX_HTML_LENGTH,
    MAX_NESTING,
    RulesError,
    context_from_conversation,
    conversation_text,
    html_to_text,
    load_rules,
    strip_tags,
)

HOSTILE = REPO_ROOT / "tests" / "fixtures" / "hostile"
ONE_MB = 1024 * 1024


def customer_conversation(body: str) -> dict:
    return {"type": "conversation", "title": None,
            "source": {"type": "conversation", "subject": "", "body": body,
                       "author": {"type": "user", "id": "u1"}},
            "conversation_parts": {"conversation_parts": []}}  # fmt: skip


# --------------------------------------------------------------------------- HTML stripping

_OLD_TAG_RE = regex.compile(r"<[A-Za-z/!?][^>]*>")  # the pattern the scanner replaces


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/!?aZ b&;\n")), max_size=60))
def test_strip_tags_removes_exactly_what_the_tag_pattern_matched(value: str) -> None:
    assert strip_tags(value) == _OLD_TAG_RE.sub(" ", value)


def test_tags_and_plain_angle_brackets() -> None:
    assert html_to_text("<p>I was <b>charged</b> twice</p>") == "I was charged twice"
    assert html_to_text("a < b, <3, 1<2 and <a") == "a < b, <3, 1<2 and <a"
    assert html_to_text("<!-- note --><?xml?>ok</p >") == "ok"


@pytest.mark.timeout(30)  # the scan takes milliseconds; the old regex took 324 s on this
@pytest.mark.parametrize("unit", ["<a ", "<a", "<a<b ", "<" + "x" * 7 + " "])
def test_a_megabyte_of_unclosed_tags_is_bounded(unit: str) -> None:
    body = unit * (ONE_MB // len(unit))
    text = conversation_text(customer_conversation(body))
    assert 0 < len(text) <= MAX_HTML_LENGTH
    assert text.startswith(unit.strip())


def test_text_is_cut_before_stripping_over_all_parts() -> None:
    # 600 KB of words in ten parts: only the first MAX_HTML_LENGTH characters are read.
    conversation = customer_conversation("<p>" + "word " * 12_000 + "</p>")
    conversation["conversation_parts"]["conversation_parts"] = [
        {"part_type": "comment", "author": {"type": "user"}, "body": "<p>" + "part " * 12_000}
        for _ in range(10)
    ]
    text = conversation_text(conversation)
    assert len(text) <= MAX_HTML_LENGTH
    assert text.startswith("word word") and "part part" in text
    assert html_to_text("<p>" + "word " * 100_000, limit=1000).count("word") < 200


# --------------------------------------------------------------------------- regex budget


def _catastrophic_rules(count: int, **kwargs: float):
    rules = [{"tag": f"slow-{i}", "when": {"text_regex": "(a|aa)+$"}} for i in range(count)]
    return load_rules(json.dumps({"rules": rules}), check_patterns=False, **kwargs)


def test_all_searches_of_one_conversation_share_one_budget(caplog) -> None:
    ruleset = _catastrophic_rules(200, regex_timeout=0.05, regex_budget=0.3)
    ctx = context_from_conversation(customer_conversation("a" * 5000 + "!"))
    caplog.set_level(logging.WARNING, logger="workers.conversations.rules")
    started = time.thread_time()
    assert ruleset.evaluate(ctx) == []
    spent = time.thread_time() - started
    # 200 searches at 0.05 s each would be 10 s of CPU; the budget stops them at 0.3 s.
    assert spent < 1.5, spent
    messages = [r.getMessage() for r in caplog.records]
    timeouts = [m for m in messages if "timed out" in m]
    spent_lines = [m for m in messages if "regex budget" in m]
    assert 1 <= len(timeouts) <= 0.3 / 0.05 + 1
    assert len(spent_lines) == 1 and "0.3s" in spent_lines[0]


def test_a_spent_budget_marks_the_explanation_timed_out() -> None:
    ruleset = _catastrophic_rules(3, regex_timeout=0.05, regex_budget=0.05)
    ctx = context_from_conversation(customer_conversation("a" * 5000 + "!"))
    explanations = ruleset.explain(ctx)
    assert [e.timed_out for e in explanations] == [True, True, True]
    assert "timed out" in explanations[2].conditions[0].detail


@pytest.mark.parametrize("pattern", ["(a|aa)+$", "(a|a?)+$", "(?:ab|a|b)+$", "(.|a)+$",
                                     "(x+x+)+y", "((a|aa))*b", "(\\w+\\d+)+$"])  # fmt: skip
def test_the_ambiguous_alternation_family_is_refused_at_load(pattern: str) -> None:
    with pytest.raises(RulesError, match=r"rules\[0\]\.when\.text_regex: unsafe"):
        load_rules(json.dumps({"rules": [{"tag": "t", "when": {"text_regex": pattern}}]}))


ORDINARY = ["(bar|baz)+", "(foo|bar|baz)+$", "(a|ab)+", "(?>a|aa)+$", "(\\w|\\d)+",
            "(\\d{3}-)+\\d{4}", "(https?://)?[a-z]+",
            "(doesn't|does not|won't) (work|load)|does nothing"]  # fmt: skip


@pytest.mark.parametrize("pattern", ORDINARY)
def test_ordinary_alternations_still_load(pattern: str) -> None:
    load_rules(json.dumps({"rules": [{"tag": "t", "when": {"text_regex": pattern}}]}))


# --------------------------------------------------------------------------- rules files


@pytest.mark.timeout(30)  # the old loader needed minutes and gigabytes for this file
def test_the_alias_bomb_is_refused_at_its_first_anchor() -> None:
    path = HOSTILE / "alias-bomb.yaml"
    with pytest.raises(RulesError, match=r"anchor &level_0 is not allowed.*line 4"):
        load_rules(path)


@pytest.mark.parametrize("text", [
    "base: &b {text_any: [refund]}\nrules: [{tag: a, when: {text_any: [x]}}]\n",
    "rules:\n  - tag: a\n    when: &w {text_any: [refund]}\n  - tag: b\n    when: *w\n",
])  # fmt: skip
def test_even_a_harmless_anchor_or_alias_is_refused(text: str) -> None:
    with pytest.raises(RulesError, match="is not allowed in a rules file"):
        load_rules(text)


def _nested_not(levels: int, fmt: str) -> str:
    if fmt == "json":
        inner = '{"text_any": ["refund"]}'
        for _ in range(levels):
            inner = '{"not": ' + inner + "}"
        return json.dumps({"rules": [{"tag": "deep", "when": "WHEN"}]}).replace('"WHEN"', inner)
    return "rules:\n  - tag: deep\n    when: " + "{not: " * levels + "{text_any: [refund]}" + (
        "}" * levels) + "\n"  # fmt: skip


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("levels", [400, 5000, 100_000])
def test_deep_nesting_is_a_rules_error_naming_the_place(tmp_path, fmt, levels) -> None:
    path = tmp_path / f"rules.{fmt}"
    path.write_text(_nested_not(levels, fmt))
    with pytest.raises(RulesError, match=f"nested deeper than {MAX_NESTING} levels") as info:
        load_rules(path)
    assert ("line 3, column" if fmt == "yaml" else "line 1, column") in str(info.value)


def test_nesting_within_the_limit_loads_and_evaluates() -> None:
    ruleset = load_rules(_nested_not(30, "yaml"))  # even count of `not`: same as the inner
    assert [m.tag for m in ruleset.evaluate(context_from_conversation(
        customer_conversation("please refund me")))] == ["deep"]  # fmt: skip


def test_the_structure_check_names_the_path_of_the_first_deep_container() -> None:
    deep: object = {"text_any": ["refund"]}
    for _ in range(MAX_NESTING):
        deep = {"not": deep}
    path = rules_module._too_deep({"rules": [{"tag": "t", "when": deep}]})
    assert path is not None and path.startswith("rules[0].when.not.not") and path.endswith("...")
    assert rules_module._too_deep({"rules": [{"tag": "t", "when": {"not": {"a": 1}}}]}) is None


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}[]:,&*!- \nabnot\"'|>#")), max_size=200))
def test_any_rules_text_loads_or_raises_rules_error(text: str) -> None:
    with contextlib.suppress(RulesError):  # anything else (RecursionError...) fails the test
        load_rules("rules:\n" + text)


# --------------------------------------------------------------------------- reloads

GOOD = "rules:\n  - tag: billing\n    when: {text_any: [refund]}\n"


@pytest.mark.parametrize("broken", [
    _nested_not(400, "yaml"),
    (HOSTILE / "alias-bomb.yaml").read_text(),
    "rules: [{tag: broken}]\n",
    b"\xff\xfe rules".decode("latin-1"),
])  # fmt: skip
def test_a_failed_reload_keeps_the_rules_in_use_and_says_why(tmp_path, caplog, broken) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD)
    first = tagging.rules_for(str(path))
    path.write_text(broken + "\n# edited\n", encoding="utf-8" if broken.isascii() else "latin-1")
    caplog.set_level(logging.ERROR, logger="intercom_sync.tagging")
    assert tagging.rules_for(str(path)) is first
    assert tagging.rules_for(str(path)) is first
    failures = [r for r in caplog.records if r.getMessage() == "rules.reload_failed"]
    assert len(failures) == 1 and failures[0].errors and failures[0].kept_rules == 1


def test_a_reload_that_raises_anything_keeps_the_rules(tmp_path, monkeypatch, caplog) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD)
    first = tagging.rules_for(str(path))
    path.write_text(GOOD + "# touched\n")

    def explode(*_args: object, **_kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(tagging, "load_rules", explode)
    caplog.set_level(logging.ERROR, logger="intercom_sync.tagging")
    assert tagging.rules_for(str(path)) is first
    assert [r.errors for r in caplog.records] == [["MemoryError"]]


@pytest.fixture(autouse=True)
def _fresh_rules_cache(monkeypatch) -> None:
    monkeypatch.setattr(tagging, "_RULES", {})
    monkeypatch.setattr(tagging, "_FAILED", {})


def test_fixture_file_is_small() -> None:
    assert Path(HOSTILE / "alias-bomb.yaml").stat().st_size < 2048
