"""One log line per event, as text or JSON, with ids as fields rather than prose.

Operators grep and ship these lines, so every event is a single line whose fields are stable
keys (``event``, ``task``, ``task_id``, ``document_id`` ...). Values are never secrets: callers
pass ids, not payloads, and both formatters pass every line through :func:`scrub`, which masks
anything that looks like a credential, an email address or a phone number (also in lines that
libraries such as urllib3 or Celery log).
"""

from __future__ import annotations

import _thread
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """The fields a caller added to ``record`` (``extra=``), in the order they were given; both
    formatters leave out those whose value is None."""
    return [(key, value) for key, value in record.__dict__.items()
            if key not in _RESERVED and key[:1] != "_"]  # fmt: skip


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


# What each pattern needs to be present before it can match: a substring test or a short scan costs
# a fraction of the pattern itself, and most lines (ids, statuses, durations) hold none of these, so
# a line pays for the patterns it might trigger only (the webhook log line is on the receiver's hot
# path). A property test checks that the result equals running every pattern.
# The North American "415-555-0100" shape, found from its first separator (rarer than a digit);
# in ASCII text (almost every line) as a substring once each digit reads "0" and each "." "-".
_PHONE_DIGITS_HINT = re.compile(r"[-.](?<=\d\d\d[-.])\d\d\d[-.]\d")
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789.", b"000000000-")
_PHONE_PLUS_HINT = re.compile(r"\+[1-9]")
_PHONE_PAREN_HINT = re.compile(r"\)\s?\d{3}[-.]")


def _may_hold_token(text: str) -> bool:
    """Whether ``text`` holds a prefix ``_BARE_TOKEN`` starts with (a few substring tests are
    cheaper than one scan by a pattern of alternatives)."""
    return (
        "_live_" in text or "_test_" in text or "gh" in text or "xox" in text
        or "AKIA" in text or "whsec_" in text or "eyJ" in text
    )


def _may_hold_phone(text: str) -> bool:
    if ("+" in text and _PHONE_PLUS_HINT.search(text)) or (
            ")" in text and _PHONE_PAREN_HINT.search(text)):  # fmt: skip
        return True
    if text.isascii():  # \d is [0-9] here; elsewhere it also matches other scripts' digits
        return b"000-000-0" in text.encode().translate(_DIGITS_AS_ZERO)
    return _PHONE_DIGITS_HINT.search(text) is not None


def scrub(text: str) -> str:
    """Mask emails (plain, non-ASCII or URL-encoded), credentials (after ``Authorization:``,
    ``Bearer``, ``Basic``, ``token=``..., or recognisable by their prefix) and phone numbers in
    free text (errors, exceptions, log lines). Linear in the length of ``text``."""
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    if "%" in text and "%40" in text:  # one character is a cheaper search than three
        text = _EMAIL_ENCODED.sub("[email]", text)
    low = text.lower()
    if "authorization" in low:
        text = _AUTHORIZATION.sub(r"\1[redacted]", text)
    if "bearer" in low:
        text = _BEARER.sub(r"\1[redacted]", text)
    # "tok" in any case: a line without it holds neither "token" nor a "tok-" token.
    tok = "tok" in low
    if ((tok and "token" in low) or "secret" in low or "passw" in low or "api" in low
            or "dsn" in low):  # fmt: skip
        text = _SECRETISH.sub(r"\1[redacted]", text)
        text = _WORD_THEN_SECRET.sub(_mask_word_secret, text)
    if (tok and "tok" in text) or _may_hold_token(text):
        text = _BARE_TOKEN.sub("[redacted]", text)
    if "basic" in low:
        text = _BASIC.sub(r"\1[redacted]", text)
    if _may_hold_phone(text):
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


class _SecondStamp:
    """A record's time to the second, formatted once per second: ``strftime`` is a tenth of the
    cost of a webhook's log line, and a busy receiver writes hundreds of lines a second."""

    def __init__(self, fmt: str, convert: Callable[[float], time.struct_time]) -> None:
        self._fmt = fmt
        self._convert = convert
        self._second: int | None = None
        self._text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._text = time.strftime(self._fmt, self._convert(second))
            self._second = second
        return self._text


class JsonFormatter(logging.Formatter):
    """``{"ts":..., "level":..., "logger":..., "event":..., <extra fields>}`` on one line."""

    def __init__(self) -> None:
        super().__init__()
        self._stamp = _SecondStamp("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        exc = self.formatException(record.exc_info) if record.exc_info else None
        return self._line(record.created, record.msecs, record.levelname, record.name,
                          record.getMessage(), _fields(record), exc)  # fmt: skip

    def format_event(self, created: float, levelname: str, name: str, event: str,
                     fields: dict[str, Any]) -> str:  # fmt: skip
        """The line ``format`` writes for ``log_event``'s record, from its parts."""
        return self._line(created, _msecs(created), levelname, name, event, fields.items(), None)

    def _line(self, created: float, msecs: float, levelname: str, name: str, message: str,
              fields: Iterable[tuple[str, Any]], exc: str | None) -> str:  # fmt: skip
        payload: dict[str, Any] = {
            "ts": f"{self._stamp(created)}.{int(msecs):03d}Z",
            "level": levelname,
            "logger": name,
            "event": scrub(message),
        }
        for key, value in fields:
            if value is not None:
                payload[key] = _scrub_fields(value)
        if exc:
            payload["exc"] = scrub(exc)
        return json.dumps(payload, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time level logger event key=value ...`` on one line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._stamp = _SecondStamp(self.default_time_format, self.converter)

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            # the traceback follows on the next lines
            return _with_fields(super().format(record), _fields(record))
        # What ``super().format`` writes for a record without a traceback, cheaper.
        record.message = record.getMessage()
        return self._line(record.created, record.msecs, record.levelname, record.name,
                          record.message, _fields(record))  # fmt: skip

    def format_event(self, created: float, levelname: str, name: str, event: str,
                     fields: dict[str, Any]) -> str:  # fmt: skip
        """The line ``format`` writes for ``log_event``'s record, from its parts."""
        return self._line(created, _msecs(created), levelname, name, event, fields.items())

    def _line(self, created: float, msecs: float, levelname: str, name: str, message: str,
              fields: Iterable[tuple[str, Any]]) -> str:  # fmt: skip
        return _with_fields(f"{self._stamp(created)},{int(msecs):03d} {levelname} {name} {message}",
                            fields)  # fmt: skip


def _with_fields(line: str, fields: Iterable[tuple[str, Any]]) -> str:
    """``line`` with the fields as ``key=value`` at the end of its first line, scrubbed.

    A value is written as it is when it is an int or a non-empty string with no space and
    nothing unprintable; anything else goes through :func:`_text_value`, which quotes such a
    string as JSON, so that a value holding a line break (a notification id is the sender's
    text) cannot start a forged line. (The test is written out here rather than called: this
    runs for every field of every line.)
    """
    extras = " ".join([
        f"{key}={value}"
        if (type(value) is str and value.isprintable() and " " not in value and value)
        or type(value) is int
        else f"{key}={_text_value(value)}"
        for key, value in fields if value is not None
    ])  # fmt: skip
    if extras:
        if "\n" in line:
            head, sep, tail = line.partition("\n")
            line = head + " " + extras + sep + tail
        else:
            line = line + " " + extras
    return scrub(line)  # the last word: whatever a caller or a library logged


def _msecs(created: float) -> float:
    """A record's milliseconds as ``LogRecord`` derives them from its time."""
    return (created - int(created)) * 1000


def _text_value(value: Any) -> str:
    """A field's value in a text line: a finite float as ``repr`` (what ``json.dumps`` writes,
    without its encoder), anything else not a string as JSON, and a string quoted as JSON when
    it is empty or holds a space or an unprintable character."""
    if type(value) is float and value - value == 0:  # inf and nan are not
        return repr(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (" " in text or not text or not text.isprintable()) else text


class LineHandler(logging.StreamHandler):
    """``StreamHandler`` writing each line and flushing it under the one lock ``handle`` holds
    (the stock ``flush`` takes the lock again: a cost on every line).

    That lock is the interpreter's own re-entrant lock (``_thread.RLock``) even where gevent has
    patched ``threading`` (the receiver's workers): there ``threading.RLock`` is the pure-Python
    one, and taking and releasing it cost about 7,000 instructions more per line (the receiver
    writes one per webhook). Nothing done while holding it lets another greenlet run
    (formatting, then a blocking write to a file or pipe), so a greenlet-aware lock would
    protect nothing more; between real threads (Celery's thread pool, gevent's) the
    interpreter's lock excludes as it should, and it is re-initialised after a fork as the stock
    one is.
    """

    def createLock(self) -> None:
        super().createLock()  # also registers the handler to re-initialise its lock after a fork
        self.lock = _thread.RLock()

    def emit(self, record: logging.LogRecord) -> None:
        self._write(lambda: self.format(record), lambda: record)

    def write_event(self, name: str, level: int, event: str, fields: dict[str, Any]) -> None:
        """What ``handle`` does with ``log_event``'s record, without making the record: the same
        line, from the formatter's ``format_event``, written under the same lock."""
        formatter: TextFormatter | JsonFormatter = self.formatter  # type: ignore[assignment]
        created = time.time()
        levelname = logging.getLevelName(level)
        with self.lock:
            self._write(
                lambda: formatter.format_event(created, levelname, name, event, fields),
                lambda: _event_record(name, level, event, fields),
            )  # fmt: skip

    def _write(self, line: Callable[[], str], record: Callable[[], logging.LogRecord]) -> None:
        """Write and flush ``line()``; a failure goes to ``handleError`` with ``record()``."""
        try:
            text = line() + self.terminator
            stream = self.stream
            stream.write(text)
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record())


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Route the root logger (and Celery's, which hijacks it) to stderr in the chosen format."""
    handler = LineHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _event_record(name: str, level: int, event: str, fields: dict[str, Any]) -> logging.LogRecord:
    record = logging.getLogRecordFactory()(name, level, "(unknown file)", 0, event, (), None,
                                           "(unknown function)")  # fmt: skip
    record.__dict__.update({key: value for key, value in fields.items() if value is not None})
    return record


def _sole_line_handler(logger: logging.Logger, level: int) -> LineHandler | None:
    """The one handler a record of ``logger`` at ``level`` would reach, when it is this module's
    handler and formatter and nothing else would see the record: no other handler, no filter,
    no other record factory, no wrapped dispatch (Sentry's logging integration wraps
    ``Logger.callHandlers`` to make breadcrumbs). Otherwise None, and the record goes the stock
    way."""
    if (type(logger) is not logging.Logger or logger.filters or logger.disabled
            or logging.Logger.callHandlers.__module__ != "logging"
            or logging.getLogRecordFactory() is not logging.LogRecord):  # fmt: skip
        return None
    found = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if (found is not None or type(handler) is not LineHandler or handler.filters
                    or level < handler.level
                    or type(handler.formatter) not in (TextFormatter, JsonFormatter)):  # fmt: skip
                return None
            found = handler
        current = current.parent if current.propagate else None
    return found


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with ``fields`` as structured extras (None values are left out).

    The record names no calling file and line: the event's name says where it comes from, and
    finding the caller (``Logger.findCaller`` walks the stack) is a large part of a line's cost.
    When the line can only go to one of this module's handlers (the services' own set-up,
    :func:`configure_logging`), it is written without making a record and sending it through
    ``logging``'s dispatch, which cost as much as the line itself: the receiver writes one per
    webhook.
    """
    log_fields(logger, event, level, fields)


def log_fields(logger: logging.Logger, event: str, level: int, fields: dict[str, Any]) -> None:
    """:func:`log_event` with the fields as a dict, for a caller that has them as one already
    (the receiver's answer); the dict is read, not kept or changed."""
    if logger.isEnabledFor(level):
        if not _RESERVED.isdisjoint(fields):  # as Logger.makeRecord refuses them
            raise KeyError(f"attempt to overwrite {sorted(_RESERVED & fields.keys())} in LogRecord")
        handler = _sole_line_handler(logger, level)
        if handler is not None:
            handler.write_event(logger.name, level, event, fields)
        else:
            logger.handle(_event_record(logger.name, level, event, fields))
