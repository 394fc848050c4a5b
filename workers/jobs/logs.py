"""One log line per event, as text or JSON, with ids as fields rather than prose.

Operators grep and ship these lines, so every event is a single line whose fields are stable
keys (``event``, ``task``, ``task_id``, ``document_id`` ...). Values are never secrets: callers
pass ids, not payloads, and both formatters pass every line through :func:`scrub`, which masks
anything that looks like a credential, an email address or a phone number (also in lines that
libraries such as urllib3 or Celery log).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

# Every pattern below is linear in its input: runs are anchored at their start (a lookbehind
# refuses a start inside a run) and consumed possessively, so a megabyte of "aaaa" or of
# "a@a@a@" costs one pass, not one pass per position.
_LOCAL = r"(?<![\w.+%-])[\w.+-]++"  # an email's local part (any script), from its start
_DOMAIN = r"(?:[\w-]++\.)++[^\W\d_]{2,}+"  # labels, then a top-level domain of letters
_EMAIL = re.compile(_LOCAL + "@" + _DOMAIN)
# URL-encoded: "jane%40acme.example", "jane%2Bops%40acme.example" (Sentry's query_string).
_EMAIL_ENCODED = re.compile(
    r"(?<![\w.+%-])(?:[\w.+-]|%(?!40)[0-9A-Fa-f]{2})++%40" + _DOMAIN, re.IGNORECASE
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
# "Authorization: Basic <credential>" keeps the scheme and masks what follows it.
_AUTHORIZATION = re.compile(
    r"(?i)(authorization[\"']?\s{0,8}[:=]\s{0,8}[\"']?"
    r"(?:(?:basic|bearer|token|digest|negotiate|apikey|api-key)\s{1,8})?)[^\s\"',;&]+"
)
_SECRETISH = re.compile(
    r"(?i)((?:token|secret|password|passwd|api[_-]?key|dsn)[\"']?\s{0,8}[:=]\s{0,8}[\"']?)"
    r"[^\s\"',;&]+"
)
# Credentials that announce themselves by their prefix: Stripe-style keys (sk_live_...),
# "tok-"/"tok_" tokens, GitHub and Slack tokens, AWS access key ids, webhook secrets, JWTs.
_BARE_TOKEN = re.compile(
    r"\b(?:(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{4,}+|tok[-_][A-Za-z0-9_-]{3,}+"
    r"|gh[pousr]_[A-Za-z0-9]{10,}+|github_pat_[A-Za-z0-9_]{10,}+|xox[abprs]-[A-Za-z0-9-]{8,}+"
    r"|AKIA[0-9A-Z]{16}|whsec_[A-Za-z0-9_-]{4,}+"
    r"|eyJ[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]*+)"
)
# "token abc": a credential word then the credential, unless the next word is ordinary prose
# ("the token is invalid" stays readable).
_WORD_THEN_SECRET = re.compile(
    r"(?i)\b((?:token|secret|password|passwd|api[ _-]?key)\s{1,8})([^\s\"',;&]{3,}+)"
)
# "Basic dXNlcjpwYXNz" without "Authorization:" before it (base64 of user:password); "Basic
# plan" is not one.
_BASIC = re.compile(r"(?i)\b(basic\s{1,8})[A-Za-z0-9+/]{8,}+={0,2}")
_PROSE = frozenset(
    (
        "is", "was", "are", "were", "has", "had", "have", "not", "for", "from", "of", "the", "a",
        "an", "and", "or", "in", "on", "to", "with", "without", "expired", "invalid", "missing",
        "rejected", "revoked", "refreshed", "required", "unset", "set", "empty", "given", "found",
        "none", "null", "true", "false", "auth", "authentication",
    )
)
# Phone numbers: "+" and a country code (E.164: 8 to 15 digits), or the North American
# "(415) 555-0100" / "415-555-0100" shapes.
_PHONE = re.compile(
    r"(?<![\w+])\+[1-9][\d ().-]{6,20}(?<=\d)|(?<!\w)\(\d{3}\)\s?\d{3}[-.]\d{4}\b"
    r"|(?<![\w-])\d{3}[-.]\d{3}[-.]\d{4}\b"
)


def _mask_word_secret(match: re.Match[str]) -> str:
    word = match.group(2)
    return match.group(0) if word.lower() in _PROSE else match.group(1) + "[redacted]"


def _mask_phone(match: re.Match[str]) -> str:
    digits = sum(c.isdigit() for c in match.group(0))
    return "[phone]" if 8 <= digits <= 15 else match.group(0)


# What each pattern needs to be present before it can match: a substring test costs a fraction of
# a regex scan, and most lines (ids, statuses, durations) hold none of these, so a line pays for
# the patterns it might trigger only (the webhook log line is on the receiver's hot path).
_SECRET_WORDS = ("token", "secret", "passw", "api", "dsn")
_TOKEN_PREFIXES = ("_live_", "_test_", "tok-", "tok_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
                   "github_pat_", "xox", "AKIA", "whsec_", "eyJ")  # fmt: skip
_PHONE_HINT = re.compile(r"\+[1-9]|\d{3}[-.]\d{3}[-.]\d|\)\s?\d{3}[-.]")


def scrub(text: str) -> str:
    """Mask emails (plain, non-ASCII or URL-encoded), credentials (after ``Authorization:``,
    ``Bearer``, ``Basic``, ``token=``..., or recognisable by their prefix) and phone numbers in
    free text (errors, exceptions, log lines). Linear in the length of ``text``."""
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    if "%40" in text:
        text = _EMAIL_ENCODED.sub("[email]", text)
    low = text.lower()
    if "authorization" in low:
        text = _AUTHORIZATION.sub(r"\1[redacted]", text)
    if "bearer" in low:
        text = _BEARER.sub(r"\1[redacted]", text)
    if any(word in low for word in _SECRET_WORDS):
        text = _SECRETISH.sub(r"\1[redacted]", text)
        text = _WORD_THEN_SECRET.sub(_mask_word_secret, text)
    if any(prefix in text for prefix in _TOKEN_PREFIXES):
        text = _BARE_TOKEN.sub("[redacted]", text)
    if "basic" in low:
        text = _BASIC.sub(r"\1[redacted]", text)
    if _PHONE_HINT.search(text):
        text = _PHONE.sub(_mask_phone, text)
    return text


def _scrub_fields(value: Any, depth: int = 0) -> Any:
    """``scrub`` every string inside a log record's extra field (lists and dicts walked)."""
    if isinstance(value, str):
        return scrub(value)
    if depth > 6:
        return value
    if isinstance(value, dict):
        return {k: _scrub_fields(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_fields(v, depth + 1) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """``{"ts":..., "level":..., "logger":..., "event":..., <extra fields>}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": scrub(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = _scrub_fields(value)
        if record.exc_info:
            payload["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(payload, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time level logger event key=value ...`` on one line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={_text_value(value)}"
            for key, value in record.__dict__.items()
            if key not in _RESERVED and not key.startswith("_")
        ]
        if extras:
            head, sep, tail = line.partition("\n")
            line = head + " " + " ".join(extras) + sep + tail
        return scrub(line)  # the last word: whatever a caller or a library logged


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (" " in text or not text) else text


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Route the root logger (and Celery's, which hijacks it) to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with ``fields`` as structured extras (None values are left out)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={k: v for k, v in fields.items() if v is not None})
