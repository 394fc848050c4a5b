"""Enrichment sources: where contact and company attributes come from, behind one interface.

A source answers "what do we know about this contact?" with an ``EnrichmentResult`` (contact
attributes and optionally one company) or ``None``. Sources do no Intercom calls; the task
layer feeds the merged result to ``attributes.prepare_contact_update`` / ``prepare_company``.

Built-in sources (names for ``build_sources``):

``http``          DESIGN's HTTP contract (``ENRICHMENT_URL`` + ``ENRICHMENT_TOKEN``).
``file``          a CSV or JSON file (``ENRICHMENT_FILE``), reloaded when it changes.
``email_domain``  a company derived from a work email domain (no settings).

Adding your own source takes a class with ``name`` and ``lookup`` plus one registration, either
in code::

    register_source("crm", lambda ctx: CrmSource(ctx.get("CRM_URL"), acquire=ctx.acquire))

or from an installed package, with an entry point in the ``intercom_sync.enrichment_sources``
group (``crm = "mypkg.enrich:make_source"``) whose object is such a factory. A factory gets a
``SourceContext`` and returns a source, or raises ``SourceDisabled("CRM_URL is unset")`` to be
switched off with one log line.

Error contract (the task layer's retry policy relies on it): ``TransientSourceError`` for
timeouts, connection failures, 429 and 5xx (retry later); ``PermanentSourceError`` for answers
that will not improve by retrying (other 4xx, a body that breaks the contract). Neither message
ever contains the token, the email or the request URL's query.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import io
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import regex
import requests

from workers.contacts.bounded_http import (
    FetchBroken,
    FetchDeadline,
    FetchError,
    FetchRefused,
    FetchTooLarge,
    bounded_session,
    fetch,
)
from workers.contacts.free_mail import is_personal_domain, registrable_domain

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "intercom_sync.enrichment_sources"
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10)
DEFAULT_DEADLINE = 20.0  # seconds for a whole lookup: redirects, headers and body
MAX_ANSWER_BYTES = 1024 * 1024


# --------------------------------------------------------------------------- interface


@dataclass
class EnrichmentResult:
    """What one source (or ``gather`` over several) knows: contact attributes and a company."""

    contact: dict[str, Any] = field(default_factory=dict)
    company: dict[str, Any] | None = None

    @property
    def is_empty(self) -> bool:
        return not self.contact and not self.company


@runtime_checkable
class EnrichmentSource(Protocol):
    """The plug-in interface: a name for logs and one lookup per contact."""

    name: str

    def lookup(self, contact: Mapping[str, Any]) -> EnrichmentResult | None:
        """Return what is known about ``contact`` (an Intercom contact object), or None."""
        ...


class SourceError(Exception):
    """A source failed; the message is safe to log (no token, no email, no query string)."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.source = source
        self.status = status
        self.retry_after = retry_after


class TransientSourceError(SourceError):
    """Try again later (timeout, connection failure, 429, 5xx); ``retry_after`` when known."""


class PermanentSourceError(SourceError):
    """Retrying will not help (4xx other than 404/408/429, or an answer off the contract)."""


class SourceDisabled(Exception):
    """Raised by a factory whose settings are missing: the source is switched off, not broken."""


class SourceConfigError(ValueError):
    """A source's settings or data file are present but unusable (fail at start)."""


# --------------------------------------------------------------------------- registry


def setting(settings_like: Any, name: str, default: Any = None) -> Any:
    """Read ``ENRICHMENT_URL``-style settings from a mapping (``os.environ`` works; exact or
    lower-case key) or an object (lower-case attribute such as ``settings.enrichment_url``).

    Secret wrappers (``reveal()`` as in ``workers.settings.Secret``, or ``get_secret_value()``)
    are unwrapped. Empty strings count as unset.
    """
    value: Any = None
    if isinstance(settings_like, Mapping):
        for key in (name, name.lower()):
            if settings_like.get(key) not in (None, ""):
                value = settings_like[key]
                break
    elif settings_like is not None:
        for attr in (name.lower(), name):
            candidate = getattr(settings_like, attr, None)
            if candidate not in (None, ""):
                value = candidate
                break
    if value is not None and callable(getattr(value, "reveal", None)):
        value = value.reveal()  # workers.settings.Secret
    elif value is not None and callable(getattr(value, "get_secret_value", None)):
        value = value.get_secret_value()
    return default if value in (None, "") else value


@dataclass(frozen=True)
class SourceContext:
    """What a factory may use: the settings, the shared rate limiter's ``acquire``, a session."""

    settings: Any
    acquire: Callable[[], None] | None = None
    session: requests.Session | None = None

    def get(self, name: str, default: Any = None) -> Any:
        return setting(self.settings, name, default)


SourceFactory = Callable[[SourceContext], EnrichmentSource]

_REGISTRY: dict[str, SourceFactory] = {}
_REGISTRY_LOCK = threading.Lock()


def register_source(name: str, factory: SourceFactory, *, replace: bool = False) -> None:
    """Make ``name`` usable in ``build_sources``; refuses to shadow a name unless ``replace``."""
    with _REGISTRY_LOCK:
        if name in _REGISTRY and not replace:
            raise ValueError(f"enrichment source {name!r} is already registered")
        _REGISTRY[name] = factory


def registered_sources() -> list[str]:
    """Names registered in code (entry points are loaded on demand by ``build_sources``)."""
    return sorted(_REGISTRY)


def _factory_for(name: str) -> SourceFactory:
    with _REGISTRY_LOCK:
        factory = _REGISTRY.get(name)
    if factory is not None:
        return factory
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            loaded = ep.load()
            register_source(name, loaded, replace=True)
            return loaded
    available = sorted({*_REGISTRY, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
    raise SourceConfigError(
        f"unknown enrichment source {name!r}; available: {', '.join(available) or 'none'}"
    )


def build_sources(
    names: Iterable[str] | str,
    settings_like: Any,
    *,
    acquire: Callable[[], None] | None = None,
    session: requests.Session | None = None,
) -> list[EnrichmentSource]:
    """Instantiate sources in the given order (order = precedence in ``gather``).

    ``names`` may be a list or a comma-separated string. A source whose settings are missing is
    left out with one INFO line; an unknown name or unusable settings raise
    ``SourceConfigError`` so a worker fails at start instead of enriching half-way.
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    ctx = SourceContext(settings_like, acquire, session)
    sources: list[EnrichmentSource] = []
    for name in dict.fromkeys(n for n in names if n):
        factory = _factory_for(name)
        try:
            source = factory(ctx)
        except SourceDisabled as exc:
            log.info("enrichment source %r is off: %s", name, exc)
            continue
        if not isinstance(source, EnrichmentSource):
            raise SourceConfigError(f"factory for {name!r} did not return an EnrichmentSource")
        sources.append(source)
    return sources


def _merge_into(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Earlier values win; a missing or None value is filled; custom_attributes merge by key."""
    for key, value in extra.items():
        if key == "custom_attributes" and isinstance(value, Mapping):
            existing = target.get(key)
            if isinstance(existing, dict):
                _merge_into(existing, value)
                continue
            target[key] = dict(value)
        elif target.get(key) is None:
            target[key] = value


def gather(sources: Iterable[EnrichmentSource], contact: Mapping[str, Any]) -> EnrichmentResult:
    """Ask every source in order and merge: for each key, the earliest source that knows wins.

    Only one company is kept: the first source's company; a later source's company is merged
    into it only when it has the same ``company_id`` (or none), so two sources that disagree
    about the employer never produce a mixed company. Source errors propagate: the task layer
    retries transient ones as a whole, which is safe because the merge is deterministic.
    """
    merged: dict[str, Any] = {}
    company: dict[str, Any] | None = None
    for source in sources:
        result = source.lookup(contact)
        if result is None:
            continue
        _merge_into(merged, result.contact or {})
        if not result.company:
            continue
        if company is None:
            company = {}
            _merge_into(company, result.company)
            continue
        ours, theirs = company.get("company_id"), result.company.get("company_id")
        if ours is None or theirs is None or str(ours) == str(theirs):
            _merge_into(company, result.company)
        else:
            log.info(
                "enrichment source %r: company ignored, an earlier source chose another",
                source.name,
            )
    return EnrichmentResult(merged, company)


# --------------------------------------------------------------------------- helpers


def _email_domain(contact: Mapping[str, Any]) -> str | None:
    email = contact.get("email")
    if not isinstance(email, str) or "@" not in email:
        return None
    domain = email.rsplit("@", 1)[1].strip().strip(".").lower()
    return domain or None


def contact_ref(contact: Mapping[str, Any]) -> str:
    """A log-safe reference to a contact: a hash of its external id, else the email's domain."""
    external_id = contact.get("external_id")
    if external_id not in (None, ""):
        digest = hashlib.sha256(str(external_id).encode("utf-8")).hexdigest()[:12]
        return f"external_id#{digest}"
    domain = _email_domain(contact)
    if domain:
        return f"email at {domain}"  # not "x@domain": log scrubbing would mask it as an email
    if contact.get("id"):
        return f"contact {contact['id']}"
    return "contact (no identifiers)"


def _safe_url(url: str) -> str:
    """The URL without credentials, query or fragment (for logs and repr)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _check_result(data: Any) -> EnrichmentResult | None:
    """Validate a contract answer; ``{}`` or nulls mean nothing is known."""
    if not isinstance(data, Mapping):
        raise ValueError("answer is not a JSON object")
    contact, company = data.get("contact"), data.get("company")
    if contact is not None and not isinstance(contact, Mapping):
        raise ValueError("'contact' is not an object")
    if company is not None and not isinstance(company, Mapping):
        raise ValueError("'company' is not an object")
    result = EnrichmentResult(dict(contact or {}), dict(company) if company else None)
    return None if result.is_empty else result


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


# --------------------------------------------------------------------------- HTTP


class HttpSource:
    """DESIGN's HTTP enrichment contract: ``GET {url}?external_id=...&email=...``.

    ``acquire`` is called before every request so the source's own rate budget is shared by
    all worker processes. 200 gives a result, 404 gives None, 408/429/5xx/timeouts raise
    ``TransientSourceError``, other 4xx ``PermanentSourceError``. Logs and errors name the
    contact by ``contact_ref`` only; the token stays out of ``repr``.

    Bounds (:mod:`workers.contacts.bounded_http`): redirects only within the same origin (at
    most three; another origin is ``PermanentSourceError``), answers of at most 1 MiB, and a
    total ``deadline`` per lookup (20 s) that also ends a server dripping its answer byte by
    byte. An answer over the cap, cut off or late is ``TransientSourceError``: the next try
    may well get a complete one.
    """

    def __init__(
        self,
        url: str,
        token: str,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        acquire: Callable[[], None] | None = None,
        *,
        name: str = "http",
        deadline: float = DEFAULT_DEADLINE,
        max_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise SourceConfigError("enrichment URL must start with http:// or https://")
        self.name = name
        self.url = url
        self._token = token
        self._session = session
        self._timeout = timeout
        self._acquire = acquire
        self._deadline = deadline
        self._max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"HttpSource(name={self.name!r}, url={_safe_url(self.url)!r})"

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = bounded_session()
        return self._session

    def lookup(self, contact: Mapping[str, Any]) -> EnrichmentResult | None:
        params: dict[str, str] = {}
        if contact.get("external_id") not in (None, ""):
            params["external_id"] = str(contact["external_id"])
        if isinstance(contact.get("email"), str) and contact["email"]:
            params["email"] = contact["email"]
        ref = contact_ref(contact)
        if not params:
            log.debug("enrichment %s: %s has no external_id or email; skipped", self.name, ref)
            return None
        if self._acquire is not None:
            self._acquire()
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        response: requests.Response | None = None
        error: SourceError | None = None
        try:
            answer = fetch(self.session, self.url, params=params, headers=headers,
                           timeout=self._timeout, deadline=self._deadline,
                           max_bytes=self._max_bytes)  # fmt: skip
            response = answer.response
            response._content = answer.body  # read within the bounds; .json() uses it
        except (FetchTooLarge, FetchDeadline, FetchBroken) as exc:
            error = TransientSourceError(str(exc), source=self.name)
        except FetchRefused as exc:
            error = PermanentSourceError(str(exc), source=self.name)
        except FetchError as exc:  # pragma: no cover - every subclass is handled above
            error = TransientSourceError(str(exc), source=self.name)
        except requests.Timeout:
            error = TransientSourceError("request timed out", source=self.name)
        except requests.ConnectionError:
            error = TransientSourceError("connection failed", source=self.name)
        except requests.RequestException as exc:
            # The exception text can contain the URL with the email: keep only its class.
            error = PermanentSourceError(f"request failed ({type(exc).__name__})", source=self.name)
        if error is not None or response is None:
            # Raised outside the except block on purpose: no chained exception carries the
            # original message (and with it the query string) into logs or Sentry.
            log.warning("enrichment %s for %s", error, ref)  # error names the source
            raise error or PermanentSourceError("no response", source=self.name)
        return self._handle(response, ref)

    def _handle(self, response: requests.Response, ref: str) -> EnrichmentResult | None:
        status = response.status_code
        if status == 404 or status == 204:
            log.debug("enrichment %s: nothing known for %s", self.name, ref)
            return None
        if status == 200:
            try:
                data = response.json()
            except ValueError:
                error: SourceError = TransientSourceError(
                    "answered 200 with a body that is not JSON", source=self.name, status=200
                )
            else:
                try:
                    result = _check_result(data)
                except ValueError as exc:
                    error = PermanentSourceError(
                        f"answer breaks the contract: {exc}", source=self.name, status=200
                    )
                else:
                    log.debug(
                        "enrichment %s: %s for %s",
                        self.name,
                        "result" if result else "empty answer",
                        ref,
                    )
                    return result
        elif status in (408, 429) or status >= 500:
            error = TransientSourceError(
                f"answered {status}",
                source=self.name,
                status=status,
                retry_after=_retry_after(response),
            )
        else:
            error = PermanentSourceError(f"answered {status}", source=self.name, status=status)
        log.warning("enrichment %s for %s", error, ref)  # error names the source
        raise error


def _http_factory(ctx: SourceContext) -> HttpSource:
    url = ctx.get("ENRICHMENT_URL")
    if not url:
        raise SourceDisabled("ENRICHMENT_URL is unset")
    token = ctx.get("ENRICHMENT_TOKEN")
    if not token:
        raise SourceDisabled("ENRICHMENT_TOKEN is unset")
    return HttpSource(str(url), str(token), session=ctx.session, acquire=ctx.acquire)


# --------------------------------------------------------------------------- file

_CSV_TYPES = ("string", "integer", "float", "boolean")
_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f"}


def _csv_value(raw: str, data_type: str) -> Any:
    if data_type == "string":
        return raw
    if data_type == "integer":
        return int(raw)
    if data_type == "float":
        return float(raw)
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{raw!r} is not a boolean")


def _parse_csv(text: str) -> dict[str, EnrichmentResult]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or header[0].strip() != "key":
        raise ValueError("the first column must be 'key'")
    columns: list[tuple[str, str, str]] = []
    for column in header[1:]:
        spec, _, data_type = column.strip().partition(":")
        scope, _, attr = spec.partition(".")
        data_type = data_type.strip() or "string"
        if scope not in ("contact", "company") or not attr:
            raise ValueError(f"column {column!r} must be contact.<attr> or company.<attr>")
        if data_type not in _CSV_TYPES:
            raise ValueError(f"column {column!r}: type must be one of {', '.join(_CSV_TYPES)}")
        columns.append((scope, attr, data_type))
    records: dict[str, EnrichmentResult] = {}
    for line_no, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            raise ValueError(f"line {line_no}: more cells than columns")
        key = row[0].strip()
        if not key:
            raise ValueError(f"line {line_no}: empty key")
        contact: dict[str, Any] = {}
        company: dict[str, Any] = {}
        for (scope, attr, data_type), raw in zip(columns, row[1:], strict=False):
            if raw == "":
                continue
            try:
                value = _csv_value(raw, data_type)
            except ValueError:
                raise ValueError(
                    f"line {line_no}, column {scope}.{attr}: not a valid {data_type}"
                ) from None
            (contact if scope == "contact" else company)[attr] = value
        if key in records:
            raise ValueError(f"line {line_no}: duplicate key")
        records[key] = EnrichmentResult(contact, company or None)
    return records


def _parse_json(text: str) -> dict[str, EnrichmentResult]:
    data = json.loads(text)
    if not isinstance(data, Mapping):
        raise ValueError("the file must be a JSON object keyed by external_id or email domain")
    records: dict[str, EnrichmentResult] = {}
    for key, value in data.items():
        try:
            result = _check_result(value)
        except ValueError as exc:
            raise ValueError(f"entry {key!r}: {exc}") from None
        if result is not None:
            records[str(key)] = result
    return records


class FileSource:
    """Enrichment from a local CSV or JSON file, keyed by ``external_id`` or email domain.

    JSON (``.json``): an object whose keys are external ids or email domains and whose values
    follow the HTTP contract::

        {"usr_1042": {"contact": {"tier": "gold"}},
         "acme.example": {"company": {"company_id": "acme", "name": "Acme", "size": 120}}}

    CSV (any other extension): a header ``key,contact.<attr>,...,company.<attr>,...``; a
    column may end in ``:integer``, ``:float`` or ``:boolean`` (default string) so values keep
    their Intercom type; empty cells are left out::

        key,contact.tier,company.company_id,company.name,company.size:integer
        usr_1042,gold,,,
        acme.example,,acme,Acme,120

    Lookup: the contact's ``external_id`` first (exact), then its email domain (lower-case),
    then the domain's parents (``eu.acme.example`` -> ``acme.example``). The file is read at
    construction (errors raise ``SourceConfigError``) and re-read when its modification time
    or size changes; a bad re-read keeps the previous data and logs a warning, so a half-written
    file never empties the source.
    """

    def __init__(self, path: str | os.PathLike[str], *, name: str = "file") -> None:
        self.name = name
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._failed_stamp: tuple[int, int] | None = None
        self._exact: dict[str, EnrichmentResult] = {}
        self._lower: dict[str, EnrichmentResult] = {}
        try:
            self._load(self._current_stamp())
        except (OSError, ValueError) as exc:
            raise SourceConfigError(f"enrichment file {self.path}: {exc}") from None

    def __repr__(self) -> str:
        return f"FileSource(name={self.name!r}, path={str(self.path)!r})"

    def _current_stamp(self) -> tuple[int, int]:
        st = self.path.stat()
        return (st.st_mtime_ns, st.st_size)

    # The whole file is held in memory (twice while parsing): a bound, so that a wrong path (a
    # log, a database dump) or a runaway export cannot take the worker's memory with it.
    MAX_BYTES = 64 * 1024 * 1024

    def _load(self, stamp: tuple[int, int]) -> None:
        with self.path.open("rb") as handle:
            data = handle.read(self.MAX_BYTES + 1)  # bounded whatever stat said a moment ago
        if len(data) > self.MAX_BYTES:
            raise ValueError(f"larger than {self.MAX_BYTES} bytes")
        text = data.decode("utf-8-sig")
        records = _parse_json(text) if self.path.suffix.lower() == ".json" else _parse_csv(text)
        self._exact = records
        self._lower = {k.lower(): v for k, v in records.items()}
        self._stamp = stamp
        log.info("enrichment %s: loaded %d entries", self.name, len(records))

    def _maybe_reload(self) -> None:
        try:
            stamp = self._current_stamp()
        except OSError as exc:
            if self._failed_stamp != (0, 0):
                log.warning(
                    "enrichment %s: cannot stat file (%s); keeping previous data",
                    self.name,
                    exc.strerror or type(exc).__name__,
                )
                self._failed_stamp = (0, 0)
            return
        if stamp == self._stamp or stamp == self._failed_stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                self._load(stamp)
                self._failed_stamp = None
            except (OSError, ValueError) as exc:
                self._failed_stamp = stamp
                log.warning(
                    "enrichment %s: reload failed (%s); keeping previous data", self.name, exc
                )

    def lookup(self, contact: Mapping[str, Any]) -> EnrichmentResult | None:
        self._maybe_reload()
        exact, lower = self._exact, self._lower
        record = None
        external_id = contact.get("external_id")
        if external_id not in (None, ""):
            record = exact.get(str(external_id))
        domain = _email_domain(contact)
        while record is None and domain and "." in domain:
            record = lower.get(domain)
            domain = domain.split(".", 1)[1]
        if record is None:
            return None
        # Callers may mutate the result (gather merges into it); keep the loaded data intact.
        return copy.deepcopy(record)


def _file_factory(ctx: SourceContext) -> FileSource:
    path = ctx.get("ENRICHMENT_FILE")
    if not path:
        raise SourceDisabled("ENRICHMENT_FILE is unset")
    return FileSource(str(path))


# --------------------------------------------------------------------------- email domain

_DOMAIN_RE = regex.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
    r"[a-z0-9-]{2,63}$"
)


def company_name_from_domain(domain: str) -> str:
    """``acme-corp.co.uk`` -> ``Acme Corp``: a readable default, not a legal name."""
    label = registrable_domain(domain).split(".")[0]
    if label.startswith("xn--"):
        with contextlib.suppress(UnicodeError):
            label = label.encode("ascii").decode("idna")
    words = [w for w in regex.split(r"[-_]+", label) if w]
    return " ".join(w[:1].upper() + w[1:] for w in words) or domain


class EmailDomainSource:
    """A company from a work email's domain: ``company_id`` = registrable domain, a name derived
    from it, ``website`` = ``https://<domain>``.

    Free-mail (gmail, outlook, yahoo.*, ...) and disposable domains give None: an address there
    says nothing about an employer. ``extra_personal_domains`` adds more such domains.
    """

    def __init__(
        self, extra_personal_domains: Iterable[str] = (), *, name: str = "email_domain"
    ) -> None:
        self.name = name
        self._extra = frozenset(d.strip().lower() for d in extra_personal_domains if d.strip())

    def __repr__(self) -> str:
        return f"EmailDomainSource(name={self.name!r})"

    def lookup(self, contact: Mapping[str, Any]) -> EnrichmentResult | None:
        domain = _email_domain(contact)
        if not domain or not _DOMAIN_RE.match(domain):
            return None
        company_domain = registrable_domain(domain)
        if is_personal_domain(domain) or domain in self._extra or company_domain in self._extra:
            return None
        return EnrichmentResult(
            contact={},
            company={
                "company_id": company_domain,
                "name": company_name_from_domain(company_domain),
                "website": f"https://{company_domain}",
            },
        )


register_source("http", _http_factory)
register_source("file", _file_factory)
register_source("email_domain", lambda ctx: EmailDomainSource())
