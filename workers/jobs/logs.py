"""One log line per event, as text or JSON, with ids as fields rather than prose.

Operators grep and ship these lines, so every event is a single line whose fields are stable
keys (``event``, ``task``, ``task_id``, ``document_id`` ...). Values are never secrets: callers
pass ids, not payloads, and :func:`scrub` masks anything that looks like a token or an email.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_SECRETISH = re.compile(
    r"(?i)((?:token|secret|password|passwd|api[_-]?key|authorization|dsn)\s*[\"']?\s*[:=]\s*[\"']?)"
    r"[^\s\"',;&]+"
)


def scrub(text: str) -> str:
    """Mask emails, bearer tokens and ``key=value`` secrets in free text (errors, exceptions)."""
    text = _EMAIL.sub("[email]", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    return _SECRETISH.sub(r"\1[redacted]", text)


class JsonFormatter(logging.Formatter):
    """``{"ts":..., "level":..., "logger":..., "event":..., <extra fields>}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
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
        return line


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
