"""Turn enrichment data into safe, minimal Intercom contact and company writes.

Why this exists: an enrichment source is someone else's data. Before anything reaches
``PUT /contacts/{id}`` or ``POST /companies`` it must (a) only change what actually differs, so a
refresh of unchanged data costs no Intercom call, (b) respect Intercom's limits (attribute
names under 190 characters, string values under 255), (c) never carry secrets or regulated
identifiers (the deny-list), and (d) say which new data attributes must be created first
(``POST /data_attributes``) and with which ``data_type``.

Placement: keys Intercom accepts on the update request (API 2.14 ``update_contact_request``:
``name``, ``phone``, ``avatar``, ``owner_id``, ``unsubscribed_from_emails``, ``signed_up_at``,
``last_seen_at``) go top level. Identity keys (``email``, ``external_id``, ``role``) are never
changed by enrichment. Other standard contact attributes (``email_domain``, ``browser``,
``language_override``, ``location``...) are read-only for the 2.14 update request and are
rejected rather than shadowed by a custom attribute of the same name. Everything else goes into
``custom_attributes``; a proposed ``custom_attributes`` map is flattened into the same place.

Deny-list matching: keys are NFKC-normalised, letters that only look Latin (Cyrillic U+0430,
Greek U+03BF...) folded to the Latin letter they imitate, camelCase and digit boundaries split,
``-``, space, ``.`` and other separators turned into ``_`` and lower-cased, so ``apiKey``,
``API-Key``, ``api key`` and ``p\\u0430ssword`` (Cyrillic a) all compare as ASCII words. An entry
matches when its words appear in that order in the key (the last one optionally plural:
``tokens``) or run together as one word (``CARDNO``), and entries of five or more letters
also match inside a word (``userpassword``, ``accesstoken``), except those in
``WHOLE_WORDS_ONLY`` whose letters run on into ordinary words (``discardnotice``,
``taxidermy``). Short entries (``pin``, ``dob``, ``ssn``) match whole words only, so
``pinned``, ``spinner`` and ``shipping`` pass. ``deny=None`` uses ``DEFAULT_DENY``; pass
``DEFAULT_DENY | {...}`` to extend it, or your own set to replace it.

Names and values are also checked against what Intercom stores: names made of letters, marks,
digits, spaces and a few punctuation marks (no control, format or line-separator characters,
no leading or trailing space); integers that fit 64 bits; finite floats; dates (the standard
``*_at`` fields, ``date`` attributes and new ``*_at`` attributes) as Unix seconds between 1970
and 2100.

Every rejection is logged once, as one line naming the attribute (``repr``, so a newline in a
name cannot forge a log line) and the reason, never the value (values may be personal data).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 190  # Intercom: attribute names under 190 characters
MAX_STRING_LENGTH = 255  # Intercom: string values under 255 characters
MAX_MONTHLY_SPEND = 2**31 - 1  # Intercom: upper limit of monthly_spend

DEFAULT_DENY: frozenset[str] = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "ssn",
        "national_id",
        "card_number",
        "credit_card",
        "cvv",
        "iban",
        "social_security_number",
        "cc_number",
        "card_no",
        "cvc",
        "private_key",
        "aws_access_key_id",
        "passport",
        "passport_number",
        "tax_id",
        "date_of_birth",
        "birth_date",
        "dob",
        "drivers_license",
        "driver_license",
        "routing_number",
        "account_number",
        "pin",
    }
)
# Entries matched only as whole words: their letters run on into ordinary words
# ("discard_notice" holds "cardno", "taxidermy" holds "taxid").
WHOLE_WORDS_ONLY: frozenset[str] = frozenset({"card_no", "tax_id"})

# Dates are Unix seconds (Intercom's date attributes); outside this window a value is a unit
# mistake (milliseconds) or garbage, and Intercom would show it as a date far off.
MIN_DATE = 0  # 1970-01-01
MAX_DATE = 4_102_444_800  # 2100-01-01
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
CONTACT_DATES: frozenset[str] = frozenset({"signed_up_at", "last_seen_at"})
COMPANY_DATES: frozenset[str] = frozenset({"remote_created_at"})

# Writable on PUT /contacts (2.14 update_contact_request), with the JSON types Intercom takes.
CONTACT_STANDARD: Mapping[str, tuple[type, ...]] = {
    "name": (str,),
    "phone": (str,),
    "avatar": (str,),
    "owner_id": (int,),
    "unsubscribed_from_emails": (bool,),
    "signed_up_at": (int,),
    "last_seen_at": (int,),
}
CONTACT_IDENTITY: frozenset[str] = frozenset({"email", "external_id", "role"})
CONTACT_READ_ONLY: frozenset[str] = frozenset(
    {
        "id",
        "type",
        "workspace_id",
        "email_domain",
        "has_hard_bounced",
        "marked_email_as_spam",
        "created_at",
        "updated_at",
        "last_replied_at",
        "last_contacted_at",
        "last_email_opened_at",
        "last_email_clicked_at",
        "language_override",
        "browser",
        "browser_version",
        "browser_language",
        "os",
        "android_app_name",
        "android_app_version",
        "android_device",
        "android_os_version",
        "android_sdk_version",
        "android_last_seen_at",
        "ios_app_name",
        "ios_app_version",
        "ios_device",
        "ios_os_version",
        "ios_sdk_version",
        "ios_last_seen_at",
        "tags",
        "notes",
        "companies",
        "location",
        "social_profiles",
        "formatted_phone",
        "opted_in_subscription_types",
        "opted_out_subscription_types",
        "referrer",
        "utm_campaign",
        "utm_content",
        "utm_medium",
        "utm_source",
        "utm_term",
    }
)

# Keys of POST /companies (create_or_update_company_request).
COMPANY_STANDARD: Mapping[str, tuple[type, ...]] = {
    "company_id": (str, int),
    "name": (str,),
    "plan": (str,),
    "size": (int,),
    "website": (str,),
    "industry": (str,),
    "monthly_spend": (int, float),
    "remote_created_at": (int,),
}
COMPANY_READ_ONLY: frozenset[str] = frozenset(
    {
        "id",
        "type",
        "app_id",
        "created_at",
        "updated_at",
        "last_request_at",
        "session_count",
        "user_count",
        "tags",
        "segments",
    }
)

_CONTACT_RESERVED = frozenset(CONTACT_STANDARD) | CONTACT_IDENTITY | CONTACT_READ_ONLY
_COMPANY_RESERVED = frozenset(COMPANY_STANDARD) | COMPANY_READ_ONLY

# Existing data attribute type -> JSON value types it accepts (dates are Unix timestamps).
_COMPATIBLE: Mapping[str, tuple[type, ...]] = {
    "string": (str,),
    "options": (str,),
    "integer": (int,),
    "float": (int, float),
    "boolean": (bool,),
    "date": (int,),
    "datetime": (int,),
}


@dataclass(frozen=True)
class Rejection:
    """One proposed attribute that will not be written, and why (never the value).

    The log line shortens names over 80 characters; ``attribute`` keeps the full name.
    """

    attribute: str
    reason: str
    model: str = "contact"


class PreparedUpdate(NamedTuple):
    """What to send for a contact: top-level fields, custom attributes, attributes to create."""

    standard: dict[str, Any]
    custom: dict[str, Any]
    new_attributes: dict[str, str]
    rejected: list[Rejection]

    @property
    def is_empty(self) -> bool:
        """True when nothing differs: the task makes no Intercom call."""
        return not self.standard and not self.custom

    def body(self) -> dict[str, Any]:
        """The ``PUT /contacts/{id}`` request body."""
        out = dict(self.standard)
        if self.custom:
            out["custom_attributes"] = dict(self.custom)
        return out


class PreparedCompany(NamedTuple):
    """What to send for a company (``POST /companies`` upserts by ``company_id``)."""

    standard: dict[str, Any]
    custom: dict[str, Any]
    new_attributes: dict[str, str]
    rejected: list[Rejection]

    @property
    def company_id(self) -> str | None:
        return self.standard.get("company_id")

    @property
    def is_empty(self) -> bool:
        """True without a usable company, or when nothing besides ``company_id`` differs."""
        return self.company_id is None or (set(self.standard) <= {"company_id"} and not self.custom)

    def body(self) -> dict[str, Any] | None:
        """The ``POST /companies`` body, or None when the company part was rejected."""
        if self.company_id is None:
            return None
        out = dict(self.standard)
        if self.custom:
            out["custom_attributes"] = dict(self.custom)
        return out


# --------------------------------------------------------------------------- deny-list

_CAMEL_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_DIGIT_EDGE = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")
_SEPARATORS = re.compile(r"[\W_]+")


_LATIN_LETTER_NAME = re.compile(r"LATIN (?:SMALL |CAPITAL )?LETTER (?:SMALL CAPITAL )?([A-Z])")


@functools.lru_cache(maxsize=4096)
def _latin_lookalike(char: str) -> str:
    """The ASCII letter or digit ``char`` imitates, else ``char``.

    Why a library: Unicode's confusables table (``confusables.txt``, which
    ``confusable_homoglyphs`` ships and looks up) has thousands of entries across Cyrillic,
    Greek, Armenian, Cherokee, mathematical letters...; a hand table would miss most of them.
    Two adjustments: the table's prototype for every I-like letter is ``l``, so an upper-case
    one becomes ``I`` (Greek ``API`` must still read ``API``); and Latin letters the table
    leaves alone (small capitals such as U+1D18) fall back on their Unicode name.
    """
    # Imported here: the table is 900 KB of JSON, loaded only once a non-ASCII name shows up.
    from confusable_homoglyphs import confusables

    for entry in confusables.is_confusable(char, greedy=True) or ():
        for glyph in entry.get("homoglyphs", ()):
            candidate = glyph.get("c", "")
            if len(candidate) == 1 and candidate.isascii() and candidate.isalnum():
                return "I" if candidate == "l" and char.isupper() else candidate
    named = _LATIN_LETTER_NAME.fullmatch(unicodedata.name(char, ""))
    return named.group(1).lower() if named else char


def fold_confusables(text: str) -> str:
    """Accents dropped, NFKC, then every non-ASCII character that imitates an ASCII letter or
    digit replaced by it: ``"p\\u0430ssw\\u00f6rd"`` (Cyrillic a, o with diaeresis) ->
    ``"password"``."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    text = unicodedata.normalize(
        "NFKC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    )
    return "".join(c if c.isascii() else _latin_lookalike(c) for c in text)


def key_tokens(key: str) -> list[str]:
    """``"userPassword-Hash"`` -> ``["user", "password", "hash"]`` (see module docstring)."""
    text = fold_confusables(key)
    text = _CAMEL_ACRONYM.sub(r"\1_\2", text)
    text = _CAMEL.sub(r"\1_\2", text)
    text = _DIGIT_EDGE.sub("_", text.casefold())
    return [t for t in _SEPARATORS.split(text) if t]


def normalise_key(key: str) -> str:
    """``"API-Key"`` -> ``"api_key"``."""
    return "_".join(key_tokens(key))


class DenyList:
    """Matches attribute names against deny entries (words in order, or long ones inside)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries: list[tuple[str, list[str], str, bool]] = []
        for entry in entries:
            tokens = key_tokens(entry)
            if tokens:
                compact = "".join(tokens)
                inside = len(compact) >= 5 and entry not in WHOLE_WORDS_ONLY
                self.entries.append((entry, tokens, compact, inside))

    def match(self, key: str) -> str | None:
        """The deny entry that ``key`` matches, or None."""
        tokens = key_tokens(key)
        compact = "".join(tokens)
        for entry, words, entry_compact, inside in self.entries:
            if inside and entry_compact in compact:
                return entry
            n = len(words)
            for i in range(len(tokens) - n + 1):
                window = tokens[i : i + n]
                if window[:-1] == words[:-1] and window[-1] in (words[-1], words[-1] + "s"):
                    return entry
            if n > 1 and any(t in (entry_compact, entry_compact + "s") for t in tokens):
                return entry  # the words run together: "CARDNO", "taxid"
        return None


def _deny_list(deny: Iterable[str] | DenyList | None) -> DenyList:
    if isinstance(deny, DenyList):
        return deny
    return DenyList(DEFAULT_DENY if deny is None else deny)


# --------------------------------------------------------------------------- values


def value_data_type(value: Any) -> str | None:
    """The Intercom ``data_type`` for a JSON value (bool before int: bool is an int in Python)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return None


def _type_name(value: Any) -> str:
    return value_data_type(value) or type(value).__name__


def _same(current: Any, proposed: Any) -> bool:
    """Equal for diffing: booleans never equal numbers; 3 equals 3.0."""
    if isinstance(current, bool) or isinstance(proposed, bool):
        return isinstance(current, bool) and isinstance(proposed, bool) and current == proposed
    if isinstance(current, int | float) and isinstance(proposed, int | float):
        return current == proposed
    return type(current) is type(proposed) and current == proposed


_TYPE_NAMES: Mapping[type, str] = {str: "string", int: "integer", float: "float", bool: "boolean"}


def _accepts(allowed: tuple[type, ...], value: Any) -> bool:
    if isinstance(value, bool):
        return bool in allowed
    return isinstance(value, allowed)


def _value_problem(value: Any) -> str | None:
    """Why a value cannot be sent as a custom attribute value, or None if it can."""
    data_type = value_data_type(value)
    if data_type is None:
        return f"unsupported value type {type(value).__name__}"
    if data_type == "string" and len(value) >= MAX_STRING_LENGTH:
        return f"string value of {len(value)} characters (Intercom takes under {MAX_STRING_LENGTH})"
    return _range_problem(value)


def _range_problem(value: Any, *, date: bool = False) -> str | None:
    """Why a number is outside what Intercom stores (or, for a date, outside 1970..2100)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "float value is not finite"
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return "integer value does not fit 64 bits"
    if date and not MIN_DATE <= value < MAX_DATE:
        hint = " (milliseconds?)" if MAX_DATE * 1000 > value >= MAX_DATE else ""
        return f"date is not Unix seconds between 1970 and 2100{hint}"
    return None


# Characters an attribute name may hold besides letters, marks and digits (any script): what
# people type into Intercom's attribute editor. Control, format (zero-width, bidi overrides),
# line-separator and private-use characters are refused: they hide or forge names in the
# Intercom UI and in logs.
_NAME_PUNCTUATION = frozenset(" _-/()#&'+:,!?%.$")  # custom names are then refused '.' and '$'



def _charset_problem(name: str) -> str | None:
    if name != name.strip():
        return "name starts or ends with a space"
    for char in name:
        if char in _NAME_PUNCTUATION or unicodedata.category(char)[0] in "LMN":
            continue
        return f"name holds the character U+{ord(char):04X} (letters, digits, spaces and " \
               f"{''.join(sorted(_NAME_PUNCTUATION - {' '}))} only)"
    return None


def _name_problem(name: Any, deny: DenyList) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return "attribute name must be a non-empty string"
    if len(name) >= MAX_NAME_LENGTH:
        return f"name of {len(name)} characters (Intercom takes under {MAX_NAME_LENGTH})"
    entry = deny.match(name)
    if entry is not None:
        return f"denied by deny-list entry {entry!r}"
    return _charset_problem(name)


def _shown_name(name: Any) -> str:
    text = str(name)
    return text if len(text) <= 80 else text[:77] + "..."


class _Collector:
    """Shared bookkeeping of one preparation: outputs plus one log line per rejection."""

    def __init__(self, model: str, deny: DenyList, known: Mapping[str, str]) -> None:
        self.model = model
        self.deny = deny
        self.known = {k: str(v).lower() for k, v in known.items()}
        self.standard: dict[str, Any] = {}
        self.custom: dict[str, Any] = {}
        self.new_attributes: dict[str, str] = {}
        self.rejected: list[Rejection] = []

    def reject(self, name: Any, reason: str) -> None:
        self.rejected.append(Rejection(str(name), reason, self.model))
        log.warning(
            "enrichment: %s attribute %r rejected: %s", self.model, _shown_name(name), reason
        )

    def add_standard(
        self, name: str, value: Any, allowed: tuple[type, ...], current: Mapping[str, Any] | None
    ) -> None:
        if (problem := _name_problem(name, self.deny)) is not None:
            self.reject(name, problem)
            return
        if not _accepts(allowed, value):
            wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in allowed)
            self.reject(name, f"{_type_name(value)} value where Intercom expects {wanted}")
            return
        if isinstance(value, str) and len(value) >= MAX_STRING_LENGTH:
            self.reject(
                name,
                f"string value of {len(value)} characters (Intercom takes under "
                f"{MAX_STRING_LENGTH})",
            )
            return
        dates = CONTACT_DATES if self.model == "contact" else COMPANY_DATES
        if (problem := _range_problem(value, date=name in dates)) is not None:
            self.reject(name, problem)
            return
        if current is not None and name in current and _same(current[name], value):
            return
        self.standard[name] = value

    def add_custom(self, name: Any, value: Any, current_custom: Mapping[str, Any]) -> None:
        if (problem := _name_problem(name, self.deny)) is not None:
            self.reject(name, problem)
            return
        if value is None:
            log.debug("enrichment: %s attribute %r skipped: no value", self.model, name)
            return
        if (problem := _value_problem(value)) is not None:
            self.reject(name, problem)
            return
        if "." in name or "$" in name:
            self.reject(name, "custom attribute names cannot contain '.' or '$'")
            return
        existing = self.known.get(name)
        if existing == "integer" and isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON sources often send 3.0 for 3
        is_date = existing in ("date", "datetime") or (existing is None and name.endswith("_at"))
        if (problem := _range_problem(value, date=is_date)) is not None:
            self.reject(name, problem)
            return
        if existing is not None:
            allowed = _COMPATIBLE.get(existing)
            if allowed is not None and not _accepts(allowed, value):
                self.reject(name, f"{_type_name(value)} value for an existing {existing} attribute")
                return
        if name in current_custom and _same(current_custom[name], value):
            return
        self.custom[name] = value
        if existing is None:
            self.new_attributes[name] = value_data_type(value) or "string"


# --------------------------------------------------------------------------- contact


def prepare_contact_update(
    current_contact: Mapping[str, Any],
    proposed: Mapping[str, Any],
    known_attributes: Mapping[str, str],
    deny: Iterable[str] | DenyList | None = None,
) -> PreparedUpdate:
    """Diff ``proposed`` against ``current_contact`` into a minimal, safe contact update.

    ``known_attributes`` maps existing custom data attribute names to their ``data_type``
    (from ``GET /data_attributes?model=contact``); names not in it are returned in
    ``new_attributes`` with the type their value implies, to be created first.
    """
    c = _Collector("contact", _deny_list(deny), known_attributes)
    current_custom = current_contact.get("custom_attributes") or {}
    for name, value in _flatten_proposed(proposed, c, _CONTACT_RESERVED):
        if isinstance(name, str) and name in CONTACT_STANDARD:
            if value is None:
                continue
            c.add_standard(name, value, CONTACT_STANDARD[name], current_contact)
        elif isinstance(name, str) and name in CONTACT_IDENTITY:
            c.reject(name, "identity attribute; enrichment never changes it")
        elif isinstance(name, str) and name in CONTACT_READ_ONLY:
            c.reject(name, "standard attribute that PUT /contacts does not accept (API 2.14)")
        else:
            c.add_custom(name, value, current_custom)
    return PreparedUpdate(c.standard, c.custom, c.new_attributes, c.rejected)


def _flatten_proposed(
    proposed: Mapping[str, Any], c: _Collector, reserved: frozenset[str]
) -> list[tuple[Any, Any]]:
    """Top-level keys, then a nested ``custom_attributes`` map (explicitly custom, so a name
    that belongs to a standard attribute is rejected instead of shadowing it)."""
    items: list[tuple[Any, Any]] = []
    nested: Any = None
    for name, value in proposed.items():
        if name == "custom_attributes":
            nested = value
        else:
            items.append((name, value))
    if isinstance(nested, Mapping):
        seen = {n for n, _ in items}
        for name, value in nested.items():
            if name in seen:
                c.reject(name, "given both top level and in custom_attributes")
            elif name in reserved:
                c.reject(name, "custom attribute would shadow a standard attribute")
            else:
                items.append((name, value))
    elif nested is not None:
        c.reject("custom_attributes", "must be an object")
    return items


# --------------------------------------------------------------------------- company


def _plan_name(plan: Any) -> Any:
    return plan.get("name") if isinstance(plan, Mapping) else plan


def prepare_company(
    proposed_company: Mapping[str, Any],
    known_company_attributes: Mapping[str, str],
    deny: Iterable[str] | DenyList | None = None,
    current_company: Mapping[str, Any] | None = None,
) -> PreparedCompany:
    """Split a proposed company into ``POST /companies`` fields and custom attributes.

    ``company_id`` is required (it is the upsert key) and is always kept, even when unchanged;
    without it the whole company part is rejected. With ``current_company`` the other fields
    are diffed like contacts, so an unchanged company gives ``is_empty``.
    """
    c = _Collector("company", _deny_list(deny), known_company_attributes)
    company_id = proposed_company.get("company_id")
    if isinstance(company_id, int) and not isinstance(company_id, bool):
        company_id = str(company_id)
    if not isinstance(company_id, str) or not company_id.strip():
        c.reject("company_id", "missing or not a string; the company part is skipped")
        return PreparedCompany({}, {}, {}, c.rejected)
    if len(company_id) >= MAX_STRING_LENGTH:
        c.reject("company_id", "longer than Intercom accepts; the company part is skipped")
        return PreparedCompany({}, {}, {}, c.rejected)
    c.standard["company_id"] = company_id

    current: dict[str, Any] | None = None
    if current_company is not None:
        current = dict(current_company)
        if "plan" in current:
            current["plan"] = _plan_name(current["plan"])
    current_custom = (current_company or {}).get("custom_attributes") or {}

    for name, value in _flatten_proposed(proposed_company, c, _COMPANY_RESERVED):
        if name == "company_id":
            continue
        if isinstance(name, str) and name in COMPANY_STANDARD:
            if name == "plan":
                value = _plan_name(value)
            if value is None:
                continue
            if name == "monthly_spend" and _accepts((int, float), value):
                if not math.isfinite(value) or not 0 <= value <= MAX_MONTHLY_SPEND:
                    c.reject(name, f"must be between 0 and {MAX_MONTHLY_SPEND}")
                    continue
                value = int(value)  # Intercom truncates floats; send what it will store
            c.add_standard(name, value, COMPANY_STANDARD[name], current)
        elif isinstance(name, str) and name in COMPANY_READ_ONLY:
            c.reject(name, "company attribute that POST /companies does not accept")
        else:
            c.add_custom(name, value, current_custom)
    return PreparedCompany(c.standard, c.custom, c.new_attributes, c.rejected)
