"""The action keys of a rules file and their templates: what loads, what is refused and why."""

from __future__ import annotations

import pytest

from workers.conversations.actions import MAX_SNOOZE_MINUTES
from workers.conversations.rules import RulesError, load_rules
from workers.conversations.templates import TemplateError, parse


def one(rule: str) -> str:
    return f"rules:\n  - {rule}\n"


def test_every_action_loads_and_a_rule_may_act_without_a_tag() -> None:
    ruleset = load_rules("""
rules:
  - name: refund-request
    when: {text_any: [refund]}
    note: "For {{ contact.name }}"
    reply: {article: faq-refunds, text: "This should help:"}
    attributes: {Category: Billing, Level: 2}
    snooze: {minutes: 240}
  - name: outage
    tag: incident
    when: {text_any: [down]}
    reply: "We are on it."
    close: true
  - tag: vip
    when: {contact.vip: true}
    open: true
""")
    refund, outage, vip = ruleset.rules
    assert refund.tag is None and refund.name == "refund-request"
    assert refund.actions.article.document_id == "faq-refunds"
    assert refund.actions.attributes == (("Category", "Billing"), ("Level", 2))
    assert refund.actions.state == ("snoozed", 240)
    assert refund.actions.scopes == {"contact"}
    assert outage.actions.reply.source == "We are on it." and outage.actions.state == ("close", 0)
    assert vip.name == "vip" and vip.actions.state == ("open", 0)  # the name defaults to the tag
    assert ruleset.tag_names == ("incident", "vip")


def test_rules_that_only_tag_may_still_share_a_tag() -> None:
    ruleset = load_rules("""
rules:
  - tag: billing
    when: {text_any: [invoice]}
  - tag: billing
    when: {text_any: [refund]}
""")
    assert [r.name for r in ruleset.rules] == ["billing", "billing"]


@pytest.mark.parametrize(("text", "error"), [
    ("rules:\n  - {name: a, tag: x, when: {text_any: [y]}}\n"
     "  - {name: A, when: {text_any: [z]}, close: true}",
     "rules[1].name: 'A' is already the name of rules[0]"),
    ("rules:\n  - {tag: a, when: {text_any: [y]}}\n"
     "  - {tag: a, when: {text_any: [z]}, close: true}",
     "rules[1].name: 'a' is already the name of rules[0]"),
    (one("{when: {text_any: [y]}, close: true}"), "rules[0].name: a rule without a tag needs"),
    (one("{name: n, when: {text_any: [y]}}"), "rules[0]: a rule needs a tag or at least one"),
    (one("{name: n, when: {text_any: [y]}, assign_to: {team_id: '1'}}"),
     "rules[0].assign_to: needs a tag"),
    (one("{name: n, when: {text_any: [y]}, close: false}"), "rules[0].close: must be true"),
    (one("{name: n, when: {text_any: [y]}, close: true, snooze: {minutes: 5}}"),
     "rules[0]: give at most one of snooze, close and open"),
    (one("{name: n, when: {text_any: [y]}, snooze: {minutes: 0}}"), "rules[0].snooze: must be"),
    (one(f"{{name: n, when: {{text_any: [y]}}, snooze: {{minutes: {MAX_SNOOZE_MINUTES + 1}}}}}"),
     "rules[0].snooze: must be"),
    (one("{name: n, when: {text_any: [y]}, snooze: 240}"), "rules[0].snooze: must be"),
    (one("{name: n, when: {text_any: [y]}, reply: 3}"), "rules[0].reply: must be a text or"),
    (one("{name: n, when: {text_any: [y]}, reply: {article: '../x'}}"),
     "rules[0].reply: article must be a Sanity document id"),
    (one("{name: n, when: {text_any: [y]}, reply: {article: a, link: b}}"),
     "rules[0].reply: unknown key(s) link"),
    (one("{name: n, when: {text_any: [y]}, attributes: {}}"), "rules[0].attributes: must be"),
    (one("{name: n, when: {text_any: [y]}, attributes: {Escalated: true}}"),
     "rules[0].attributes: Escalated: values are strings or integers"),
    (one("{name: n, when: {text_any: [y]}, attributes: {Score: 1.5}}"),
     "rules[0].attributes: Score: values are strings or integers"),
    (one("{name: n, when: {text_any: [y]}, attributes: {A: " + "x" * 255 + "}}"),
     "shorter than 255"),
    (one("{name: n, when: {text_any: [y]}, note: 'Hi {{ user.name }}'}"),
     "rules[0].note: placeholder {{ user.name }} is not"),
    (one("{name: n, when: {text_any: [y]}, note: 'Hi {{ contact.name'}"),
     "rules[0].note: unbalanced"),
    (one("{name: \"a\\tb\", when: {text_any: [y]}, note: x}"), "rules[0].name: must be"),
])  # fmt: skip
def test_bad_actions_name_the_rule_and_the_key(text: str, error: str) -> None:
    with pytest.raises(RulesError) as caught:
        load_rules(text)
    assert any(e.startswith(error) or error in e for e in caught.value.errors), caught.value.errors


def test_placeholders_are_escaped_and_nothing_else_is_evaluated() -> None:
    template = parse("<b>{{ contact.name }}</b> {{company.plan}} {{ conversation.custom.x }} "
                     "{% if 1 %} ${7*7} {{ contact.missing }}.")  # fmt: skip
    values = {("contact", "name"): "<script>alert('x')</script>", ("company", "plan"): "pro",
              ("conversation", "custom.x"): 7.0}  # fmt: skip
    rendered = template.render(lambda scope, path: values.get((scope, path)))
    assert rendered == ("<b>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</b> pro 7 "
                        "{% if 1 %} ${7*7} .")  # fmt: skip
    assert template.scopes == {"contact", "company", "conversation"}


@pytest.mark.parametrize("source", [
    "", "   ", "{{ }}", "{{ contact }}", "{{ contact.name | upper }}", "{{ contact.__class__ }}x}}",
    "{{ secrets.token }}", "{{ contact.a.b.c.d.e.f }}", "x" * 10_001,
    "{{ contact.name }}" * 51,
])  # fmt: skip
def test_templates_that_are_refused(source: str) -> None:
    with pytest.raises(TemplateError):
        parse(source)


def test_a_placeholder_value_is_bounded() -> None:
    rendered = parse("{{ contact.name }}").render(lambda scope, path: "&" * 5000)
    assert rendered == "&amp;" * 1000
