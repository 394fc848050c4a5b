"""Tagging rules: DESIGN's examples, the sample notifications, matching details, load errors,
regex safety and the explain output."""

from __future__ import annotations

import copy
import json
import logging
import time

import pytest

from tests.conftest import VECTORS
from workers.conversations.rules import (
    Assignment,
    MatchContext,
    RulesError,
    context_from_conversation,
    context_from_text,
    explain_cli,
    first_assignment,
    format_explanation,
    html_to_text,
    load_rules,
)

NOTIFICATIONS = VECTORS / "intercom-notifications"

# DESIGN.md §3 "Tagging rules file" (only the comment spacing shortened to fit a line).
DESIGN_RULES = """\
rules:
  - tag: billing                      # Intercom tag name
    when:                             # every condition listed must hold
      text_any: [refund, "charged twice", invoice] # words or phrases, case-insensitive, whole words
  - tag: bug
    when:
      text_regex: "(doesn't|does not|won't) (work|load)|does nothing"
  - tag: enterprise
    when:
      company.plan: enterprise        # equality on contact.<attr> or company.<attr>
"""

# A fuller rule file for the sample notifications.
SAMPLE_RULES = """\
rules:
  - tag: billing
    when:
      text_any: [refund, "charged twice", invoice]
  - tag: bug
    when:
      text_regex: "(doesn't|does not|won't) (work|load)|does nothing"
  - tag: browser-firefox
    when:
      text_any: firefox
      channel: conversation
  - tag: email-channel
    when:
      channel: email
  - tag: pro-plan-mentioned
    when:
      all:
        - text_any: "pro plan"
        - delivered_as: customer_initiated
  - tag: acme-customer
    when:
      contact.email_domain: acme.example
  - tag: billing
    when:
      text_any: invoice
"""


def tags(ruleset, ctx) -> list[str]:
    return [m.tag for m in ruleset.evaluate(ctx)]


def notification(name: str) -> dict:
    return json.loads((NOTIFICATIONS / f"{name}.json").read_text(encoding="utf-8"))


def conversation(
    *parts: dict,
    body: str = "<p>Hello</p>",
    author_type: str = "user",
    source_type: str = "conversation",
    subject: str = "",
    title=None,
) -> dict:
    """A minimal GET /conversations/{id} answer."""
    return {
        "type": "conversation",
        "id": "1",
        "title": title,
        "source": {
            "type": source_type,
            "delivered_as": "customer_initiated" if author_type != "admin" else "admin_initiated",
            "subject": subject,
            "body": body,
            "author": {"type": author_type, "id": "9", "email": "pat@initech.example"},
        },
        "conversation_parts": {
            "type": "conversation_part.list",
            "conversation_parts": list(parts),
            "total_count": len(parts),
        },
    }


def part(body: str, author_type: str = "user", part_type: str = "comment") -> dict:
    return {
        "type": "conversation_part",
        "part_type": part_type,
        "body": body,
        "author": {"type": author_type, "id": "5"},
    }


@pytest.fixture
def design_rules():
    return load_rules(DESIGN_RULES)


# --------------------------------------------------------------------------- DESIGN examples


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I was charged twice this month", ["billing"]),
        ("Can I get a REFUND please?", ["billing"]),
        ("Where is my Invoice!", ["billing"]),
        ("The dashboard doesn't load", ["bug"]),
        ("Export does not work at all", ["bug"]),
        ("the save button does nothing", ["bug"]),
        ("It WON'T WORK since Tuesday and I want a refund", ["billing", "bug"]),
        ("Hello, just saying thanks", []),
    ],
)
def test_design_text_examples(design_rules, text, expected):
    assert tags(design_rules, context_from_text(text)) == expected


def test_design_enterprise_on_company_plan_name(design_rules):
    enterprise = {
        "type": "company",
        "company_id": "c1",
        "plan": {"type": "plan", "id": "269315", "name": "Enterprise"},
    }
    pro = {"type": "company", "company_id": "c2", "plan": {"type": "plan", "name": "Pro"}}
    assert tags(design_rules, context_from_text("hi", companies=[enterprise])) == ["enterprise"]
    assert tags(design_rules, context_from_text("hi", companies=[pro])) == []
    # several companies: any one matching is enough
    assert tags(design_rules, context_from_text("hi", companies=[pro, enterprise])) == [
        "enterprise"
    ]
    # the plan's id is not its name
    by_id = {"company_id": "c3", "plan": {"id": "enterprise", "name": "Starter"}}
    assert tags(design_rules, context_from_text("hi", companies=[by_id])) == []
    # Intercom's list wrapper (GET /contacts/{id}/companies) is accepted as well
    wrapped = {"type": "list", "data": [enterprise]}
    assert tags(design_rules, context_from_text("hi", companies=wrapped)) == ["enterprise"]


# --------------------------------------------------------------------------- sample notifications


def test_sample_conversation_created_gets_billing():
    ruleset = load_rules(SAMPLE_RULES)
    ctx = context_from_conversation(notification("conversation.user.created"))
    assert ctx.channel == "conversation"
    assert tags(ruleset, ctx) == ["billing", "pro-plan-mentioned", "acme-customer"]


def test_sample_conversation_replied_gets_billing_and_bug():
    ruleset = load_rules(SAMPLE_RULES)
    item = notification("conversation.user.replied")["data"]["item"]
    ctx = context_from_conversation(item)  # the bare item works as well as the envelope
    assert "does nothing on Firefox" in ctx.text
    assert tags(ruleset, ctx) == [
        "billing",
        "bug",
        "browser-firefox",
        "pro-plan-mentioned",
        "acme-customer",
    ]
    matches = ruleset.evaluate(ctx)
    assert [m.rule_index for m in matches] == [0, 1, 2, 4, 5]


def test_sample_notification_as_email_channel():
    ruleset = load_rules(SAMPLE_RULES)
    data = notification("conversation.user.replied")
    data["data"]["item"]["source"]["type"] = "email"
    assert tags(ruleset, context_from_conversation(data)) == [
        "billing",
        "bug",
        "email-channel",
        "pro-plan-mentioned",
        "acme-customer",
    ]


def test_tag_names_are_deduplicated_in_rule_order():
    ruleset = load_rules(SAMPLE_RULES)
    assert ruleset.tag_names == (
        "billing",
        "bug",
        "browser-firefox",
        "email-channel",
        "pro-plan-mentioned",
        "acme-customer",
    )


def test_duplicate_tag_yields_one_match_from_the_first_rule():
    ruleset = load_rules(SAMPLE_RULES)
    matches = ruleset.evaluate(context_from_text("invoice"))
    assert [(m.tag, m.rule_index) for m in matches] == [("billing", 0)]


# --------------------------------------------------------------------------- what text counts


def test_admin_notes_and_replies_are_ignored(design_rules):
    conv = conversation(
        part("<p>Internal: they want a refund</p>", author_type="admin", part_type="note"),
        part("<p>Sure, I will refund you</p>", author_type="admin"),
        part("<p>Bot: refund policy</p>", author_type="bot"),
        part("<p>Team note: refund</p>", author_type="team", part_type="note"),
    )
    ctx = context_from_conversation(conv)
    assert "refund" not in ctx.text
    assert tags(design_rules, ctx) == []


def test_user_and_lead_parts_count(design_rules):
    assert tags(
        design_rules,
        context_from_conversation(conversation(part("<p>I want a refund</p>", author_type="lead"))),
    ) == ["billing"]
    assert tags(
        design_rules,
        context_from_conversation(conversation(part("<p>I want a refund</p>", author_type="user"))),
    ) == ["billing"]


def test_a_user_note_part_type_is_still_ignored(design_rules):
    conv = conversation(part("refund", author_type="user", part_type="note"))
    assert tags(design_rules, context_from_conversation(conv)) == []


def test_admin_initiated_source_body_is_ignored_but_subject_counts(design_rules):
    outbound = conversation(body="<p>Your invoice is ready</p>", author_type="admin")
    assert tags(design_rules, context_from_conversation(outbound)) == []
    with_subject = conversation(body="<p>hi</p>", author_type="admin", subject="Refund")
    assert tags(design_rules, context_from_conversation(with_subject)) == ["billing"]


def test_title_counts(design_rules):
    conv = conversation(title="Charged twice?")
    assert tags(design_rules, context_from_conversation(conv)) == ["billing"]


def test_html_is_stripped_and_entities_unescaped(design_rules):
    assert html_to_text("<p>charged&nbsp;<b>twice</b></p>") == "charged twice"
    assert html_to_text("a < b &amp; c") == "a < b & c"
    ctx = context_from_conversation(conversation(body="<p>charged</p><p>TWICE</p>"))
    assert tags(design_rules, ctx) == ["billing"]
    # tags become spaces, so a word split by markup is two words
    split = context_from_conversation(conversation(body="<p>re<b>fund</b></p>"))
    assert tags(design_rules, split) == []
    # markup never matches: an attribute value is not text
    attr = context_from_conversation(conversation(body='<a href="/refund">link</a>'))
    assert tags(design_rules, attr) == []


def test_typographic_apostrophe_matches_ascii_regex(design_rules):
    assert tags(design_rules, context_from_text("It doesn\u2019t work")) == ["bug"]


# --------------------------------------------------------------------------- whole words


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("Invoice!", True),
        ("(invoice)", True),
        ("invoice.", True),
        ("INVOICE", True),
        ("invoices", False),
        ("reinvoice", False),
        ("invoice_id", False),
        ("my invoice2 is wrong", False),
        ("charged  \n twice", True),
        ("chargedtwice", False),
        ("charged twiceover", False),
    ],
)
def test_text_any_matches_whole_words_only(design_rules, text, hit):
    assert ("billing" in tags(design_rules, context_from_text(text))) is hit


def test_text_all_requires_every_phrase():
    ruleset = load_rules("rules: [{tag: t, when: {text_all: [export, firefox]}}]")
    assert tags(ruleset, context_from_text("Export fails on Firefox")) == ["t"]
    assert tags(ruleset, context_from_text("Export fails on Chrome")) == []


def test_text_regex_list_any_may_match():
    ruleset = load_rules("rules: [{tag: t, when: {text_regex: ['^never$', 'err(or)? \\d+']}}]")
    assert tags(ruleset, context_from_text("got ERROR 502")) == ["t"]
    assert tags(ruleset, context_from_text("all fine")) == []


# --------------------------------------------------------------------------- attributes


def test_contact_attributes_standard_then_custom():
    ruleset = load_rules("""
rules:
  - tag: vip
    when: {contact.vip: true}
  - tag: user
    when: {contact.role: user}
  - tag: acme
    when: {contact.email_domain: ACME.example}
  - tag: germany
    when: {contact.location.country: Germany}
  - tag: named
    when: {contact.name: {exists: true}}
""")
    contact = {
        "role": "user",
        "email": "avery@acme.example",
        "name": None,
        "location": {"country": "Germany"},
        "custom_attributes": {"vip": True, "role": "admin", "name": "Avery"},
    }
    assert tags(ruleset, context_from_text("x", contact=contact)) == [
        "vip",
        "user",
        "acme",
        "germany",
        "named",
    ]
    # a boolean is not the string "true" nor the number 1
    assert tags(ruleset, context_from_text("x", contact={"custom_attributes": {"vip": 1}})) == []
    assert tags(ruleset, context_from_text("x", contact={"vip": "true"})) == []


def test_company_custom_attribute_fallback_and_numbers():
    ruleset = load_rules("""
rules:
  - tag: big
    when: {company.size: {gte: 100}}
  - tag: mid
    when: {company.size: {gte: 10, lt: 100}}
  - tag: emea
    when: {company.region: [emea, europe]}
  - tag: not-apac
    when: {company.region: {not_in: [apac]}}
  - tag: spend
    when: {company.monthly_spend: {gt: 99.5}}
""")
    big = {"company_id": "a", "size": 250, "custom_attributes": {"region": "EMEA"}}
    mid = {"company_id": "b", "size": 50, "monthly_spend": 100}
    numeric_string = {"company_id": "c", "custom_attributes": {"size": "150"}}
    assert tags(ruleset, context_from_text("x", companies=[big])) == ["big", "emea", "not-apac"]
    assert tags(ruleset, context_from_text("x", companies=[mid])) == ["mid", "not-apac", "spend"]
    assert tags(ruleset, context_from_text("x", companies=[numeric_string]))[:1] == ["big"]
    # boundaries
    edge = {"company_id": "d", "size": 100, "custom_attributes": {"region": "apac"}}
    assert tags(ruleset, context_from_text("x", companies=[edge])) == ["big"]
    # no companies: numeric comparisons fail, negative ones hold
    assert tags(ruleset, context_from_text("x")) == ["not-apac"]


def test_any_all_not_nesting():
    ruleset = load_rules("""
rules:
  - tag: route
    when:
      any:
        - all:
            - text_any: refund
            - company.plan: pro
        - contact.vip: true
      not:
        any:
          - contact.role: lead
          - text_any: test
""")
    pro = [{"company_id": "p", "plan": {"name": "Pro"}}]
    user = {"role": "user"}
    assert tags(ruleset, context_from_text("refund", contact=user, companies=pro)) == ["route"]
    assert tags(ruleset, context_from_text("refund", contact=user)) == []  # all: needs both
    assert tags(ruleset, context_from_text("hi", contact={"role": "user", "vip": True})) == [
        "route"
    ]
    lead = {"role": "lead", "vip": True}
    assert tags(ruleset, context_from_text("hi", contact=lead)) == []  # not: excludes leads
    assert tags(ruleset, context_from_text("a test", contact={"vip": True})) == []


def test_channel_and_delivered_as():
    ruleset = load_rules("""
rules:
  - tag: messaging
    when: {channel: [whatsapp, sms, conversation]}
  - tag: email
    when: {channel: email}
  - tag: outbound
    when: {delivered_as: {ne: customer_initiated}}
""")
    inbound = context_from_conversation(conversation(source_type="whatsapp"))
    assert tags(ruleset, inbound) == ["messaging"]
    outbound = context_from_conversation(conversation(source_type="email", author_type="admin"))
    assert tags(ruleset, outbound) == ["email", "outbound"]


def test_assign_to_and_disabled_rules():
    ruleset = load_rules("""
rules:
  - tag: "off"
    enabled: false
    when: {text_any: refund}
  - tag: billing
    when: {text_any: refund}
    assign_to: {team_id: 5017}
  - tag: vip
    when: {text_any: refund}
    assign_to: {admin_id: "42"}
""")
    matches = ruleset.evaluate(context_from_text("refund"))
    assert [m.tag for m in matches] == ["billing", "vip"]
    assert matches[0].assign_to == Assignment("team", "5017")
    assert first_assignment(matches) == Assignment("team", "5017")
    assert ruleset.tag_names == ("billing", "vip")


# --------------------------------------------------------------------------- load errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rules:\n  - {tag: a, when: {text_any: x}}\n  - {tag: b, when: {text_any: y}}\n"
            "  - {tag: c, when: {text_regex: '(unclosed'}}\n",
            "rules[2].when.text_regex: invalid regular expression",
        ),
        ("rules: [{tag: a, when: {colour: red}}]", "rules[0].when.colour: unknown condition"),
        (
            "rules: [{tag: a, when: {company.size: {gte: big}}}]",
            "rules[0].when.company.size.gte: gte needs a number",
        ),
        (
            "rules: [{tag: a, when: {company.size: {between: [1, 2]}}}]",
            "rules[0].when.company.size.between: unknown operator",
        ),
        (
            "rules: [{tag: a, when: {any: [{text_any: x}, {text_regex: '['}]}}]",
            "rules[0].when.any[1].text_regex: invalid regular expression",
        ),
        ("rules: [{tag: a, when: {any: []}}]", "rules[0].when.any: must be a non-empty list"),
        ("rules: [{tag: a, when: {not: [1]}}]", "rules[0].when.not: must be a mapping"),
        ("rules: [{tag: a, when: {}}]", "rules[0].when: must contain at least one condition"),
        ("rules: [{tag: a, when: {text_any: []}}]", "rules[0].when.text_any: must be a phrase"),
        (
            "rules: [{tag: a, when: {text_any: 'x'}}, {when: {text_any: y}}]",
            "rules[1].name: a rule without a tag needs a name",
        ),
        ("rules: [{tag: '', when: {text_any: 'x'}}]", "rules[0].tag:"),
        ("rules: [{tag: off, when: {text_any: 'x'}}]", "rules[0].tag: must be a string (quote"),
        ("rules: [{tag: a, when: {text_any: x}, colour: red}]", "rules[0].colour: Unknown field"),
        (
            "rules: [{tag: a, when: {text_any: x}, assign_to: {team_id: 1, admin_id: 2}}]",
            "rules[0].assign_to: give exactly one of team_id or admin_id",
        ),
        (
            "rules: [{tag: a, when: {channel: {exists: maybe}}}]",
            "rules[0].when.channel.exists: exists needs true or false",
        ),
        ("rules: [{tag: a, when: {text_any: x, text_any: y}}]", "duplicate key 'text_any'"),
        ("rules: {tag: a}", "rules: Not a valid list"),
        ("- just a list", "must be a mapping with a 'rules' list"),
        ("rules: [", "cannot parse YAML"),
    ],
)
def test_load_errors_name_index_and_field(text, expected):
    with pytest.raises(RulesError) as info:
        load_rules(text)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)  # one clear line


def test_all_errors_are_reported_at_once():
    with pytest.raises(RulesError) as info:
        load_rules("rules: [{tag: a, when: {x: 1}}, {tag: b, when: {text_regex: '('}}]")
    assert [e.split(":")[0] for e in info.value.errors] == [
        "rules[0].when.x",
        "rules[1].when.text_regex",
    ]


def test_load_from_files_by_extension(tmp_path):
    yaml_file = tmp_path / "rules.yml"
    yaml_file.write_text(DESIGN_RULES, encoding="utf-8")
    json_file = tmp_path / "rules.json"
    json_file.write_text(
        json.dumps({"rules": [{"tag": "billing", "when": {"text_any": ["refund"]}}]})
    )
    assert load_rules(yaml_file).tag_names == ("billing", "bug", "enterprise")
    assert load_rules(str(json_file)).tag_names == ("billing",)
    broken = tmp_path / "broken.json"
    broken.write_text('{"rules": [{"tag": "a", "tag": "b", "when": {"text_any": "x"}}]}')
    with pytest.raises(RulesError, match=r"broken\.json: cannot parse JSON: duplicate key"):
        load_rules(broken)
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- regex safety

HAYSTACK = "a" * 50_000 + "b"


def test_catastrophic_patterns_are_rejected_at_load():
    for pattern in ["(a+)+$", "(?:a*)*b", "(\\w+\\s?)*$", "((ab|cd+)+)*x"]:
        with pytest.raises(RulesError, match=r"rules\[0\]\.when\.text_regex: unsafe"):
            load_rules(json.dumps({"rules": [{"tag": "t", "when": {"text_regex": pattern}}]}))
    # delimited repetition is fine, and so is the DESIGN example
    load_rules(json.dumps({"rules": [{"tag": "t", "when": {"text_regex": "(\\d+,)*\\d+"}}]}))


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|aa)+$"])
def test_catastrophic_regex_times_out_as_no_match(pattern, caplog):
    ruleset = load_rules(
        json.dumps(
            {
                "rules": [
                    {"tag": "slow", "when": {"text_regex": pattern}},
                    {"tag": "billing", "when": {"text_any": ["refund"]}},
                ]
            }
        ),
        regex_timeout=0.05,
        check_patterns=False,
    )
    ctx = context_from_text(HAYSTACK + " refund")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="workers.conversations.rules"):
        result = tags(ruleset, ctx)
    assert time.monotonic() - started < 2.0
    assert result == ["billing"]  # the slow rule is "no match", the others still run
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("rule 0 (slow)" in w and "timed out" in w for w in warnings)
    explanation = ruleset.explain(ctx)[0]
    assert not explanation.matched and explanation.timed_out


def test_text_is_capped_before_matching():
    ruleset = load_rules(DESIGN_RULES, max_text_length=1000)
    assert tags(ruleset, context_from_text("x " * 600 + "refund")) == []
    assert tags(ruleset, context_from_text("refund " + "x " * 600)) == ["billing"]


def test_overlong_pattern_is_rejected():
    with pytest.raises(RulesError, match="longer than"):
        load_rules(json.dumps({"rules": [{"tag": "t", "when": {"text_regex": "a" * 5000}}]}))


# --------------------------------------------------------------------------- explain


def test_explain_names_the_matching_phrase_and_failures(design_rules):
    ctx = context_from_text("Hi, I was charged twice")
    explanations = design_rules.explain(ctx)
    assert [e.matched for e in explanations] == [True, False, False]
    billing = explanations[0].conditions[0]
    assert billing.condition == "text_any" and billing.held
    assert "'charged twice'" in billing.detail and "10..23" in billing.detail
    report = format_explanation(explanations)
    assert "rule 0 [billing]: MATCH" in report
    assert "rule 1 [bug]: no match" in report
    assert "no match" in report.splitlines()[3]  # the regex line says why
    assert "company.plan" in report and "no companies" in report
    assert report.endswith("tags: billing")


def test_explain_regex_span_and_nested_groups():
    ruleset = load_rules("""
rules:
  - tag: t
    when:
      text_regex: "does (nothing|not)"
      any:
        - contact.vip: true
        - not: {contact.role: lead}
""")
    ctx = context_from_text("Button does nothing", contact={"role": "user"})
    report = format_explanation(ruleset.explain(ctx))
    assert "matched 'does nothing' at 7..19" in report
    assert "- contact.vip" in report and "+ contact.role" not in report
    assert "+ not:" in report
    assert report.endswith("tags: t")


def test_explain_cli_with_notification_file_and_text(tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(SAMPLE_RULES, encoding="utf-8")
    report = explain_cli(rules_file, str(NOTIFICATIONS / "conversation.user.replied.json"))
    assert "channel: conversation" in report
    assert "'charged twice'" in report and "'does nothing'" in report
    assert report.endswith("tags: billing, bug, browser-firefox, pro-plan-mentioned, acme-customer")
    plain = explain_cli(str(rules_file), "the invoice is wrong")
    assert "phrase 'invoice' matched" in plain and plain.endswith("tags: billing")
    text_file = tmp_path / "message.txt"
    text_file.write_text("please refund me", encoding="utf-8")
    assert explain_cli(rules_file, text_file).endswith("tags: billing")


def test_context_from_conversation_does_not_mutate_and_uses_given_contact():
    data = notification("conversation.user.created")
    before = copy.deepcopy(data)
    ctx = context_from_conversation(data, contact={"role": "lead", "email": "x@y.example"})
    assert data == before
    assert isinstance(ctx, MatchContext)
    assert ctx.contact["role"] == "lead"
    assert ctx.delivered_as == "customer_initiated"
