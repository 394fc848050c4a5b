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

from marshmallow import Schema, ValidationError, validate, validates_schema
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
            raise ValidationError(f"must be {_schemes_phrase(self.schemes)} URL")
        return text.rstrip("/") if parts.scheme in ("http", "https") else text


def _schemes_phrase(schemes: tuple[str, ...]) -> str:
    """``a redis://, rediss:// or unix://`` / ``an http:// or https://``: how a person says it."""
    names = [f"{scheme}://" for scheme in schemes]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    article = "an" if names[0][0] in "aeioh" else "a"  # an http://, a unix://
    return f"{article} {listed}"


class _UpperChoice(mf.String):
    """A choice that reads as users write it: ``LOG_LEVEL=info`` means ``INFO``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip().upper()


def _cross_field_problems(data: Mapping[str, Any]) -> dict[str, str]:
    """Rules between settings, checked wherever settings are read (every process, ``check``)."""
    problems: dict[str, str] = {}
    visibility = data["BROKER_VISIBILITY_TIMEOUT"]
    longest = max(data["TASK_TIME_LIMIT"], data["RETRY_BACKOFF_MAX"])
    if longest * 2 >= visibility:
        problems["BROKER_VISIBILITY_TIMEOUT"] = (
            f"must be more than twice TASK_TIME_LIMIT ({data['TASK_TIME_LIMIT']}) and "
            f"RETRY_BACKOFF_MAX ({data['RETRY_BACKOFF_MAX']}), or Redis would hand jobs that are "
            f"still running to a second worker; it is {visibility}"
        )
    return problems


@dataclass(frozen=True, repr=False)
class SentinelUrl:
    """A ``sentinel://`` REDIS_URL taken apart: where the Sentinels are, and the data's database
    and password (the password of the master, never of the Sentinels: see
    ``REDIS_SENTINEL_PASSWORD``)."""

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    password: str | None = None

    def __repr__(self) -> str:
        return f"SentinelUrl(sentinels={self.sentinels!r}, db={self.db})"


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().startswith("sentinel://")


def parse_sentinel_url(url: str) -> SentinelUrl:
    """``sentinel://[:password@]host:port[;sentinel://host:port…][/db]`` (Celery's own form,
    one ``sentinel://`` entry per Sentinel, ``;`` between them). The database may end any entry
    (Celery reads it from the first, so it is moved there); a password may be on any entry, and
    two different ones are an error. Raises ``ValueError`` saying what is wrong."""
    entries = [part.strip() for part in url.strip().split(";")]
    sentinels: list[tuple[str, int]] = []
    dbs: set[int] = set()
    passwords: set[str] = set()
    for entry in entries:
        parts = urlsplit(entry)
        if parts.scheme.lower() != "sentinel" or not parts.hostname:
            raise ValueError("each Sentinel must be written sentinel://host:port, "
                             "with ; between them")  # fmt: skip
        if parts.query or parts.fragment:
            raise ValueError("a sentinel:// URL takes no ?options or #fragment")
        try:
            port = parts.port or 26379
        except ValueError:
            raise ValueError("a Sentinel's port must be a number from 1 to 65535") from None
        sentinels.append((parts.hostname, port))
        path = parts.path.strip("/")
        if path:
            if not path.isdigit() or int(path) > 15:
                raise ValueError("the database after the last Sentinel must be a number 0-15")
            dbs.add(int(path))
        if parts.password:
            passwords.add(parts.password)
    if len(dbs) > 1:
        raise ValueError("the Sentinels name different databases")
    if len(passwords) > 1:
        raise ValueError("the Sentinels carry different passwords")
    if len(set(sentinels)) != len(sentinels):
        raise ValueError("a Sentinel is listed twice")
    return SentinelUrl(tuple(sentinels), dbs.pop() if dbs else 0,
                       passwords.pop() if passwords else None)  # fmt: skip


class _RedisUrlField(_UrlField):
    """``redis://``, ``rediss://``, ``unix://``, or the Sentinel form
    (:func:`parse_sentinel_url`)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = mf.String._deserialize(self, value, attr, data, **kwargs).strip()
        if is_sentinel_url(text):
            try:
                parse_sentinel_url(text)
            except ValueError as exc:
                raise ValidationError(str(exc)) from None
            return text
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError:
            schemes = (*self.schemes, "sentinel")
            raise ValidationError(f"must be {_schemes_phrase(schemes)} URL") from None


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


def _long_secret(value: Secret, minimum: int) -> bool:
    if len(value.reveal()) < minimum:
        raise ValidationError(f"must be at least {minimum} characters")
    return True


def _writable_dir(path: str) -> bool:
    """The metrics directory: created when missing, and it must take new files."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ValidationError(f"cannot create the directory ({exc.strerror})") from None
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise ValidationError("must be a directory this process can write to")
    return True


_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_SANITY_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2}|1|X)\Z")
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}\Z")  # a host name or an IPv4 address


class _Env(Schema):
    """The environment contract (DESIGN §3), field names are the variable names."""

    REDIS_URL = _RedisUrlField(schemes=("redis", "rediss", "unix"), load_default=None)
    # With a sentinel:// REDIS_URL: the name the Sentinels know the master by (their
    # ``sentinel monitor <name> ...``), and the Sentinels' own password when they have one.
    REDIS_SENTINEL_MASTER = mf.String(load_default=None, validate=validate.Regexp(_ID))
    REDIS_SENTINEL_PASSWORD = _SecretField(load_default=None)
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
    RULES_MODE = mf.String(load_default="live", validate=validate.OneOf(["live", "shadow"]))
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
    LOG_LEVEL = _UpperChoice(
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
    # Metrics: the token guards both endpoints (and turns the receiver's on); a token anyone
    # could guess would put the service's traffic figures on the internet.
    METRICS_TOKEN = _SecretField(load_default=None, validate=lambda v: _long_secret(v, 16))
    METRICS_PORT = mf.Integer(load_default=None, validate=validate.Range(min=1, max=65535))
    METRICS_HOST = mf.String(load_default="0.0.0.0", validate=validate.Regexp(_HOST))  # noqa: S104
    PROMETHEUS_MULTIPROC_DIR = mf.String(load_default=None, validate=lambda v: _writable_dir(v))

    @validates_schema(skip_on_field_errors=True)
    def _cross_field(self, data: dict[str, Any], **_: Any) -> None:
        problems = _cross_field_problems(data)
        if problems:
            raise ValidationError({name: [text] for name, text in problems.items()})

    @validates_schema
    def _sentinel_pairs(self, data: dict[str, Any], **_: Any) -> None:
        """The Sentinel variables go with a sentinel:// REDIS_URL, and only with one."""
        sentinel = bool(data.get("REDIS_URL")) and is_sentinel_url(data["REDIS_URL"])
        if sentinel and not data.get("REDIS_SENTINEL_MASTER"):
            raise ValidationError("required with a sentinel:// REDIS_URL: the master's name "
                                  "as the Sentinels know it", "REDIS_SENTINEL_MASTER")  # fmt: skip
        for name in ("REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD"):
            if data.get(name) and not sentinel:
                raise ValidationError("only used with a sentinel:// REDIS_URL; unset it", name)


@dataclass(frozen=True, repr=False)
class Settings:
    """Validated settings. Secrets are :class:`Secret`; lists of secrets are tuples."""

    REDIS_URL: str | None
    REDIS_SENTINEL_MASTER: str | None
    REDIS_SENTINEL_PASSWORD: Secret | None
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
    RULES_MODE: str
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
    METRICS_TOKEN: Secret | None
    METRICS_PORT: int | None
    METRICS_HOST: str
    PROMETHEUS_MULTIPROC_DIR: str | None

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
    """Drop a password from a URL such as ``redis://:pw@host:6379/0`` (from each entry of a
    Sentinel URL)."""
    if ";" in url:
        return ";".join(_redact_url(entry) for entry in url.split(";"))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:" if parts.username else ":"
    return parts._replace(netloc=f"{user}****@{host}").geturl()


redact_url = _redact_url  # for the command line, which says which Redis it talks to


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
