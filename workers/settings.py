"""Every setting of the service, read from the environment in one place.

All processes (receiver, workers, beat, CLI) call :func:`get_settings`, so a malformed value fails
every one of them at start with the same single line naming the variable. A feature whose
required variables are missing is not an error: it is switched off, and :meth:`Settings.missing`
says which variables it lacks so that the receiver can answer that source's webhooks with a clear
``503`` instead of accepting unverified events.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError, validate
from marshmallow import fields as mf


class SettingsError(ValueError):
    """A malformed environment variable; the message is one line naming the variable."""


class Secret:
    """A secret value that never shows itself in a ``repr``, ``str``, log line or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that needs it (a header, an HMAC key)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class _SecretField(mf.String):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Secret:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise ValidationError("must not be empty when set")
        return Secret(text)


class _SecretListField(mf.String):
    """Comma-separated secrets: the old and new value during a rotation are both accepted."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple:
        text = super()._deserialize(value, attr, data, **kwargs)
        items = tuple(Secret(part.strip()) for part in text.split(",") if part.strip())
        if not items:
            raise ValidationError("must hold at least one secret when set")
        return items


class _UrlField(mf.String):
    def __init__(self, *, schemes: tuple[str, ...] = ("http", "https"), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.schemes = schemes

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        parts = urlsplit(text)
        if parts.scheme not in self.schemes or not (parts.netloc or parts.path):
            raise ValidationError(f"must be a URL starting with {' or '.join(self.schemes)}://")
        return text.rstrip("/") if parts.scheme in ("http", "https") else text


def _cron(value: str) -> bool:
    """Five cron fields that Celery's ``crontab`` accepts."""
    from celery.schedules import crontab

    parts = value.split()
    if len(parts) != 5:
        raise ValidationError("must be five cron fields: minute hour day month weekday")
    try:
        crontab(*parts[:2], day_of_week=parts[4], day_of_month=parts[2], month_of_year=parts[3])
    except ValueError as exc:
        raise ValidationError(f"not a valid cron expression ({exc})") from None
    return True


_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_SANITY_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2}|1|X)\Z")


class _Env(Schema):
    """The environment contract (DESIGN §3), field names are the variable names."""

    REDIS_URL = _UrlField(schemes=("redis", "rediss", "unix"), load_default=None)
    INTERCOM_ACCESS_TOKEN = _SecretField(load_default=None)
    INTERCOM_CLIENT_SECRET = _SecretListField(load_default=())
    INTERCOM_API_BASE = _UrlField(load_default="https://api.intercom.io")
    INTERCOM_VERSION = mf.String(
        load_default="2.14", validate=validate.Regexp(r"^(\d+\.\d+|Unstable)\Z")
    )
    INTERCOM_ADMIN_ID = mf.String(load_default=None, validate=validate.Regexp(_ID))
    INTERCOM_AUTHOR_ID = mf.String(load_default=None, validate=validate.Regexp(r"^\d{1,20}\Z"))
    INTERCOM_DEFAULT_COLLECTION_ID = mf.String(
        load_default=None, validate=validate.Regexp(r"^\d{1,20}\Z")
    )
    INTERCOM_RATE_LIMIT_PER_MINUTE = mf.Integer(
        load_default=9000, validate=validate.Range(min=6, max=25000)
    )
    SANITY_PROJECT_ID = mf.String(
        load_default=None, validate=validate.Regexp(r"^[a-z0-9-]{1,64}\Z")
    )
    SANITY_DATASET = mf.String(load_default=None, validate=validate.Regexp(r"^[a-z0-9_-]{1,64}\Z"))
    SANITY_TOKEN = _SecretField(load_default=None)
    SANITY_API_BASE = _UrlField(load_default=None)
    SANITY_API_VERSION = mf.String(
        load_default="2025-02-19", validate=validate.Regexp(_SANITY_VERSION)
    )
    SANITY_WEBHOOK_SECRET = _SecretListField(load_default=())
    SANITY_WEBHOOK_TOLERANCE_SECONDS = mf.Integer(
        load_default=1800, validate=validate.Range(min=1, max=7 * 86400)
    )
    SANITY_RATE_LIMIT_PER_SECOND = mf.Integer(
        load_default=20, validate=validate.Range(min=1, max=500)
    )
    SANITY_ARTICLE_TYPE = mf.String(load_default="supportArticle", validate=validate.Regexp(_ID))
    SANITY_LOCALE_FIELD = mf.String(load_default="language", validate=validate.Regexp(_FIELD_NAME))
    DEFAULT_LOCALE = mf.String(
        load_default="en", validate=validate.Regexp(r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*\Z")
    )
    ARTICLE_DELETE_POLICY = mf.String(
        load_default="draft", validate=validate.OneOf(["draft", "delete"])
    )
    SENTRY_DSN = _SecretField(load_default=None)
    SENTRY_ENVIRONMENT = mf.String(load_default="production")
    SENTRY_RELEASE = mf.String(load_default=None)
    RULES_PATH = mf.String(load_default=None)
    ENRICHMENT_URL = _UrlField(load_default=None)
    ENRICHMENT_TOKEN = _SecretField(load_default=None)
    ENRICHMENT_FILE = mf.String(load_default=None)
    ENRICHMENT_SOURCES = mf.String(
        load_default="http,file",
        validate=validate.Regexp(r"^[A-Za-z0-9_.-]+(\s*,\s*[A-Za-z0-9_.-]+)*\Z"),
    )
    ENRICHMENT_RATE_LIMIT_PER_SECOND = mf.Integer(
        load_default=10, validate=validate.Range(min=1, max=10000)
    )
    LOG_LEVEL = mf.String(
        load_default="INFO",
        validate=validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
    )
    LOG_FORMAT = mf.String(load_default="text", validate=validate.OneOf(["text", "json"]))
    WEBHOOK_MAX_BODY_BYTES = mf.Integer(
        load_default=1024 * 1024, validate=validate.Range(min=1024, max=64 * 1024 * 1024)
    )
    DEDUP_TTL_SECONDS = mf.Integer(load_default=86400, validate=validate.Range(min=60))
    WEBHOOK_BODY_TIMEOUT_SECONDS = mf.Float(
        load_default=5.0, validate=validate.Range(min=0.1, max=60)
    )
    WEBHOOK_MAX_JSON_DEPTH = mf.Integer(load_default=64, validate=validate.Range(min=4, max=512))
    BROKER_VISIBILITY_TIMEOUT = mf.Integer(load_default=3600, validate=validate.Range(min=60))
    TASK_TIME_LIMIT = mf.Integer(load_default=300, validate=validate.Range(min=5))
    TASK_MAX_RETRIES = mf.Integer(load_default=8, validate=validate.Range(min=0, max=50))
    TASK_MAX_DELIVERIES = mf.Integer(load_default=5, validate=validate.Range(min=1, max=100))
    RETRY_BACKOFF_MAX = mf.Integer(load_default=600, validate=validate.Range(min=1))
    WORKER_CONCURRENCY = mf.Integer(load_default=None, validate=validate.Range(min=1, max=256))
    WORKER_SHUTDOWN_TIMEOUT = mf.Float(load_default=20.0, validate=validate.Range(min=0, max=3600))
    WORKER_MAX_MEMORY_MB = mf.Integer(load_default=512, validate=validate.Range(min=64))
    RECONCILE_INTERVAL_SECONDS = mf.Integer(load_default=600, validate=validate.Range(min=1))
    DLQ_REPLAY_INTERVAL_SECONDS = mf.Integer(load_default=900, validate=validate.Range(min=1))
    TAG_CACHE_REFRESH_SECONDS = mf.Integer(load_default=3600, validate=validate.Range(min=60))
    CONTACTS_REFRESH_CRON = mf.String(load_default="17 3 * * *", validate=lambda v: _cron(v))


@dataclass(frozen=True, repr=False)
class Settings:
    """Validated settings. Secrets are :class:`Secret`; lists of secrets are tuples."""

    REDIS_URL: str | None
    INTERCOM_ACCESS_TOKEN: Secret | None
    INTERCOM_CLIENT_SECRET: tuple[Secret, ...]
    INTERCOM_API_BASE: str
    INTERCOM_VERSION: str
    INTERCOM_ADMIN_ID: str | None
    INTERCOM_AUTHOR_ID: str | None
    INTERCOM_DEFAULT_COLLECTION_ID: str | None
    INTERCOM_RATE_LIMIT_PER_MINUTE: int
    SANITY_PROJECT_ID: str | None
    SANITY_DATASET: str | None
    SANITY_TOKEN: Secret | None
    SANITY_API_BASE: str | None
    SANITY_API_VERSION: str
    SANITY_WEBHOOK_SECRET: tuple[Secret, ...]
    SANITY_WEBHOOK_TOLERANCE_SECONDS: int
    SANITY_RATE_LIMIT_PER_SECOND: int
    SANITY_ARTICLE_TYPE: str
    SANITY_LOCALE_FIELD: str
    DEFAULT_LOCALE: str
    ARTICLE_DELETE_POLICY: str
    SENTRY_DSN: Secret | None
    SENTRY_ENVIRONMENT: str
    SENTRY_RELEASE: str | None
    RULES_PATH: str | None
    ENRICHMENT_URL: str | None
    ENRICHMENT_TOKEN: Secret | None
    ENRICHMENT_FILE: str | None
    ENRICHMENT_SOURCES: str
    ENRICHMENT_RATE_LIMIT_PER_SECOND: int
    LOG_LEVEL: str
    LOG_FORMAT: str
    WEBHOOK_MAX_BODY_BYTES: int
    DEDUP_TTL_SECONDS: int
    WEBHOOK_BODY_TIMEOUT_SECONDS: float
    WEBHOOK_MAX_JSON_DEPTH: int
    BROKER_VISIBILITY_TIMEOUT: int
    TASK_TIME_LIMIT: int
    TASK_MAX_RETRIES: int
    TASK_MAX_DELIVERIES: int
    RETRY_BACKOFF_MAX: int
    WORKER_CONCURRENCY: int | None
    WORKER_SHUTDOWN_TIMEOUT: float
    WORKER_MAX_MEMORY_MB: int
    RECONCILE_INTERVAL_SECONDS: int
    DLQ_REPLAY_INTERVAL_SECONDS: int
    TAG_CACHE_REFRESH_SECONDS: int
    CONTACTS_REFRESH_CRON: str

    # Which variables each feature needs; a feature missing any of them is switched off.
    FEATURES = {
        "intercom_webhooks": ("INTERCOM_CLIENT_SECRET",),
        "sanity_webhooks": ("SANITY_WEBHOOK_SECRET",),
        "intercom_api": ("INTERCOM_ACCESS_TOKEN",),
        "articles": (
            "INTERCOM_ACCESS_TOKEN",
            "INTERCOM_AUTHOR_ID",
            "INTERCOM_DEFAULT_COLLECTION_ID",
            "SANITY_PROJECT_ID",
            "SANITY_DATASET",
            "SANITY_TOKEN",
        ),
        "tagging": ("INTERCOM_ACCESS_TOKEN", "INTERCOM_ADMIN_ID", "RULES_PATH"),
        "enrichment": ("INTERCOM_ACCESS_TOKEN",),
        "sentry": ("SENTRY_DSN",),
    }

    def missing(self, feature: str) -> list[str]:
        """The variables ``feature`` needs that are not set (empty when it is on)."""
        return [name for name in self.FEATURES[feature] if not getattr(self, name)]

    def enabled(self, feature: str) -> bool:
        return not self.missing(feature)

    @property
    def sanity_api_base(self) -> str | None:
        """The Sanity API host: the override, else the project's own API host."""
        if self.SANITY_API_BASE:
            return self.SANITY_API_BASE
        if self.SANITY_PROJECT_ID:
            return f"https://{self.SANITY_PROJECT_ID}.api.sanity.io"
        return None

    @property
    def intercom_budget_per_window(self) -> int:
        """The app's Intercom budget per 10-second window (Intercom enforces 10 s windows)."""
        return max(1, self.INTERCOM_RATE_LIMIT_PER_MINUTE // 6)

    def __repr__(self) -> str:
        # A Redis URL may carry a password: show the redacted summary, never raw values.
        return f"Settings({self.summary()!r})"

    def summary(self) -> dict[str, Any]:
        """A loggable view: secrets show only whether they are set."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret) or (isinstance(value, tuple) and value):
                out[f.name] = "set"
            elif f.name == "REDIS_URL" and value:
                out[f.name] = _redact_url(value)
            else:
                out[f.name] = value
        return out


def _redact_url(url: str) -> str:
    """Drop a password from a URL such as ``redis://:pw@host:6379/0``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:" if parts.username else ":"
    return parts._replace(netloc=f"{user}****@{host}").geturl()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise :class:`SettingsError` naming the first bad one.

    An empty variable counts as unset, which is what ``.env`` files with ``NAME=`` mean.
    """
    env = os.environ if environ is None else environ
    names = [f.name for f in fields(Settings)]
    raw = {name: env[name] for name in names if env.get(name, "").strip() != ""}
    try:
        data = _Env().load(raw)
    except ValidationError as exc:
        name = sorted(exc.messages)[0]
        messages = exc.messages[name]
        message = messages[0] if isinstance(messages, list) else str(messages)
        raise SettingsError(f"{name}: {message}".rstrip(".") + ".") from None
    return Settings(**data)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (``get_settings.cache_clear()`` re-reads them)."""
    return load_settings()
