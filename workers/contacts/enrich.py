"""Contact enrichment: read the contact, ask the sources, write only what differs.

The tasks ``contacts.enrich`` and ``contacts.refresh_stale`` are thin wrappers around
:func:`enrich_contact` and :func:`refresh_stale_contacts`. Why the steps are what they are:

* **A merged or deleted contact is not an error.** Contact ids change when contacts merge; the
  old id answers 404 (2.14) or 410 (2.16). The surviving contact has its own events, so the job
  logs "merged or deleted, nothing to do" and succeeds instead of filling the dead-letter store.
* **Source errors speak the shared retry policy's language.** ``TransientSourceError`` becomes
  :class:`~workers.jobs.errors.TransientServiceError` (retried, honouring ``Retry-After``) and
  ``PermanentSourceError`` becomes :class:`~workers.jobs.errors.PermanentServiceError` (parked).
* **Writes are minimal.** ``prepare_contact_update`` / ``prepare_company`` diff against current
  values, so an unchanged contact costs no ``PUT``, an unchanged attached company no
  ``POST /companies`` and an attached one no second attach. Rejected attributes (deny-list,
  Intercom's length limits, wrong types) are logged by those functions, one line each, naming
  the attribute and the reason, never the value, and are not sent.
* **Data attributes are listed once per TTL for all processes** (a Redis hash per model) and a
  missing one is created once (:func:`workers.jobs.locks.single_flight` per model), because
  Intercom refuses a custom attribute that does not exist yet, and refuses a second creation.
* **The nightly refresh pages, it does not enrich.** It searches contacts updated since the last
  complete pass and enqueues one ``contacts.enrich`` per contact with a de-duplication key of id
  and ``updated_at``; its position is saved after every page, so a pass interrupted by the rate
  limit (or a restart) resumes where it stopped, and the watermark moves only after a complete
  pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis

from workers.clients.intercom import IntercomClient, attached_company_count
from workers.clients.services import Services
from workers.contacts import (
    EnrichmentResult,
    EnrichmentSource,
    PermanentSourceError,
    PreparedCompany,
    PreparedUpdate,
    TransientSourceError,
    build_sources,
    contact_ref,
    gather,
    prepare_company,
    prepare_contact_update,
)
from workers.contacts.free_mail import registrable_domain
from workers.jobs import routing
from workers.jobs.errors import (
    NotFound,
    PermanentServiceError,
    TransientServiceError,
    ValidationFailed,
)
from workers.jobs.locks import acquire, exclusive, new_lock, release, single_flight
from workers.jobs.logs import log_event
from workers.settings import Settings

logger = logging.getLogger("intercom_sync.enrich")

P = TypeVar("P", PreparedUpdate, PreparedCompany)

ATTRIBUTES_KEY = "intercom-sync:data-attributes:"  # + model: hash name -> data_type
ATTRIBUTES_LOCK = "intercom-sync:data-attributes:lock:"  # + model (listing and creating)
ATTRIBUTES_TTL = 3600
_LISTED = ""  # marker field: the hash holds a complete listing (no attribute has an empty name)

WATERMARK_KEY = "intercom-sync:contacts:refresh:watermark"  # Unix seconds of the last full pass
PROGRESS_KEY = "intercom-sync:contacts:refresh:progress"  # hash: since, started, cursor
REFRESH_LOCK = "intercom-sync:contacts:refresh:lock"
CONTACT_LOCK_PREFIX = "intercom-sync:enrich:lock:"  # + contact id, held for one job
REFRESH_DEDUP = "refresh:" + routing.CONTACTS_ENRICH + ":"  # + contact id + ":" + updated_at
FIRST_PASS_LOOKBACK = 86400  # without a watermark: the last day (webhooks covered the rest)


# --------------------------------------------------------------------------- sources


_SOURCES: tuple[Settings, list[EnrichmentSource]] | None = None


def sources_for(services: Services) -> list[EnrichmentSource]:
    """The configured sources, built once per process (a file source keeps its data loaded,
    an HTTP source its connection pool), all spending one shared enrichment budget."""
    global _SOURCES
    if _SOURCES is None or _SOURCES[0] is not services.settings:
        built = build_sources(services.settings.ENRICHMENT_SOURCES, services.settings,
                              acquire=services.enrichment_limiter.acquire)  # fmt: skip
        _SOURCES = (services.settings, built)
    return _SOURCES[1]


def gather_for(sources: list[EnrichmentSource], contact: Mapping[str, Any]) -> EnrichmentResult:
    """``gather`` with source errors turned into the errors the retry policy knows."""
    try:
        return gather(sources, contact)
    except TransientSourceError as exc:
        raise TransientServiceError(str(exc), service="enrichment", status=exc.status,
                                    retry_after=exc.retry_after) from None  # fmt: skip
    except PermanentSourceError as exc:
        raise PermanentServiceError(str(exc), service="enrichment",
                                    status=exc.status) from None  # fmt: skip


# --------------------------------------------------------------------------- data attributes


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class DataAttributes:
    """Custom data attributes per model (name -> ``data_type``), cached in Redis for all."""

    def __init__(self, client: redis.Redis, intercom: IntercomClient, *,
                 ttl: int = ATTRIBUTES_TTL) -> None:  # fmt: skip
        self._redis = client
        self._intercom = intercom
        self._ttl = ttl

    def _cached(self, model: str) -> dict[str, str] | None:
        raw = self._redis.hgetall(ATTRIBUTES_KEY + model)
        if not raw:
            return None
        known = {_decode(k): _decode(v) for k, v in raw.items()}
        return known if known.pop(_LISTED, None) is not None else None

    def _list(self, model: str) -> dict[str, str]:
        """``GET /data_attributes?model=...`` into the cache (custom attributes only: standard
        ones are written top level by the prepare functions)."""
        known = {
            str(a["name"]): str(a.get("data_type") or "string")
            for a in self._intercom.list_data_attributes(model)
            if isinstance(a, Mapping) and a.get("custom") and a.get("name")
        }
        key = ATTRIBUTES_KEY + model
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping={_LISTED: "1", **known})
        pipe.expire(key, self._ttl)
        pipe.execute()
        return known

    def known(self, model: str) -> dict[str, str]:
        """The custom attributes of ``model``; one process lists them when the cache is cold."""
        return single_flight(self._redis, ATTRIBUTES_LOCK + model, lambda: self._cached(model),
                             lambda: self._list(model),
                             what=f"the {model} data attribute list")  # fmt: skip

    def ensure(self, model: str, wanted: Mapping[str, str]) -> dict[str, str]:
        """Create the attributes of ``wanted`` (name -> data_type) that do not exist yet.

        One process per model creates at a time; the others wait and then find the names in
        the cache. Returns the known attributes afterwards.
        """
        if not wanted:
            return self.known(model)

        def complete() -> dict[str, str] | None:
            known = self.known(model)
            return known if all(name in known for name in wanted) else None

        def create() -> dict[str, str]:
            known = self.known(model)
            for name, data_type in wanted.items():
                if name not in known:
                    known[name] = self._create(model, name, data_type)
            return known

        return single_flight(self._redis, ATTRIBUTES_LOCK + "create:" + model, complete, create,
                             what=f"{model} data attributes")  # fmt: skip

    def _create(self, model: str, name: str, data_type: str) -> str:
        try:
            made = self._intercom.create_data_attribute(name, model, data_type)
        except ValidationFailed:
            # Most likely created outside this service since our listing: list again.
            existing = self._list(model).get(name)
            if existing is None:
                raise
            return existing
        created = str(made.get("data_type") or data_type)
        # Added only to a listing that still exists: a partial hash would look complete.
        self._redis.eval(_HSET_IF_EXISTS, 1, ATTRIBUTES_KEY + model, name, created)
        log_event(logger, "enrich.attribute_created", model=model, attribute=name,
                  data_type=created)  # fmt: skip
        return created


_HSET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
"""


# --------------------------------------------------------------------------- enrich one contact


@dataclass
class EnrichOutcome:
    """What one job did (for its log line and for tests); names only, never values."""

    contact_id: str
    found: bool = True
    updated: list[str] = field(default_factory=list)
    company_upserted: bool = False
    company_attached: bool = False
    rejected: list[str] = field(default_factory=list)


def _prepared(attributes: DataAttributes, model: str,
              prepare: Callable[[Mapping[str, str]], P]) -> P:  # fmt: skip
    """Prepare against the known attributes, create the missing ones, and prepare again if
    creating found some of them already there with another type (made outside this service)."""
    prepared = prepare(attributes.known(model))
    if prepared.new_attributes:
        after = attributes.ensure(model, prepared.new_attributes)
        if any(after.get(n) != t for n, t in prepared.new_attributes.items()):
            prepared = prepare(after)
    return prepared


def _alnum(value: object) -> str:
    return "".join(ch for ch in str(value or "").lower() if ch.isalnum())


def _attached_with_domain(attached: list[Mapping[str, Any]],
                          proposed: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The attached company with the proposed company's web domain, if any: its website's
    domain is the same, or its ``company_id`` spells the domain (``acme-example``)."""
    host = urlsplit(str(proposed.get("website") or "")).hostname
    if not host:
        return None
    domain = registrable_domain(host)
    for company in attached:
        website = urlsplit(str(company.get("website") or "")).hostname
        if website and registrable_domain(website) == domain:
            return company
        if _alnum(company.get("company_id")) == _alnum(domain):
            return company
    return None


def _write_company(intercom: IntercomClient, attributes: DataAttributes,
                   contact: Mapping[str, Any], proposed: Mapping[str, Any],
                   outcome: EnrichOutcome) -> None:  # fmt: skip
    """Upsert the company unless it is attached and unchanged; attach it unless attached."""
    contact_id = str(contact["id"])
    attached = intercom.contact_companies(contact_id) if attached_company_count(contact) else []
    wanted_id = proposed.get("company_id")
    current = next((c for c in attached if wanted_id is not None
                    and str(c.get("company_id")) == str(wanted_id)), None)  # fmt: skip
    if current is None:
        same_domain = _attached_with_domain(attached, proposed)
        if same_domain is not None:
            # A company guessed from the email domain ("acme.example") next to the company the
            # contact already belongs to ("Acme Example", acme-example) would be a duplicate.
            log_event(logger, "enrich.company_kept", contact_id=contact_id,
                      company_id=same_domain.get("company_id"),
                      detail="already in a company with this domain")  # fmt: skip
            return
    prepared = _prepared(
        attributes,
        "company",
        lambda known: prepare_company(proposed, known, current_company=current),
    )
    outcome.rejected += [f"company.{r.attribute}" for r in prepared.rejected]
    body = prepared.body()
    if body is None:
        return
    if current is None or not prepared.is_empty:
        company = intercom.upsert_company(body)
        outcome.company_upserted = True
        current = company
    if (
        current is not None
        and current.get("id")
        and not any(str(c.get("id")) == str(current["id"]) for c in attached)
    ):
        intercom.attach_company(contact_id, str(current["id"]))
        outcome.company_attached = True


def enrich_contact(services: Services, contact_id: str) -> EnrichOutcome:
    """Enrich one contact and its company (see the module docstring); one job per contact at
    a time, so a duplicate running alongside sees the first one's writes. Raises
    ``FeatureOff`` when enrichment is not configured."""
    services.require("enrichment")
    with exclusive(services.redis, CONTACT_LOCK_PREFIX + str(contact_id),
                   what=f"contact {contact_id}"):  # fmt: skip
        return _enrich_contact(services, contact_id)


def _enrich_contact(services: Services, contact_id: str) -> EnrichOutcome:
    intercom = services.intercom
    outcome = EnrichOutcome(str(contact_id))
    try:
        contact = intercom.get_contact(contact_id)
    except NotFound as exc:
        outcome.found = False
        log_event(logger, "enrich.contact_gone", contact_id=contact_id, status=exc.status,
                  detail="merged or deleted, nothing to do")  # fmt: skip
        return outcome
    result = gather_for(sources_for(services), contact)
    if result.is_empty:
        log_event(logger, "enrich.done", contact_id=contact_id, contact_ref=contact_ref(contact),
                  detail="no source knows this contact")  # fmt: skip
        return outcome

    attributes = DataAttributes(services.redis, intercom)
    if result.contact:
        update = _prepared(
            attributes,
            "contact",
            lambda known: prepare_contact_update(contact, result.contact, known),
        )
        outcome.rejected += [f"contact.{r.attribute}" for r in update.rejected]
        if not update.is_empty:
            intercom.update_contact(str(contact_id), update.body())
            outcome.updated = [*update.standard, *update.custom]
    if result.company:
        _write_company(intercom, attributes, contact, result.company, outcome)

    log_event(
        logger, "enrich.done", contact_id=contact_id, contact_ref=contact_ref(contact),
        updated=outcome.updated,
        company_upserted=outcome.company_upserted, company_attached=outcome.company_attached,
        rejected=outcome.rejected or None,
    )  # fmt: skip
    return outcome


# --------------------------------------------------------------------------- nightly refresh


@dataclass
class RefreshOutcome:
    """One call of :func:`refresh_stale_contacts` (a pass, or the rest of a resumed one)."""

    since: int
    pages: int = 0
    contacts: int = 0
    enqueued: int = 0
    complete: bool = False
    skipped: str | None = None


def _updated_at(contact: Mapping[str, Any]) -> str:
    value = contact.get("updated_at")
    return str(value) if value is not None else "unknown"


def refresh_stale_contacts(services: Services, *, per_page: int = 150,
                           now: float | None = None) -> RefreshOutcome:  # fmt: skip
    """Enqueue ``contacts.enrich`` for every contact updated since the last complete pass.

    Each page is one budgeted ``POST /contacts/search``; when the shared budget runs out the
    limiter raises ``RateLimited`` and the task is retried later, resuming from the saved
    cursor. The watermark becomes the pass's start time (minus one second, because the search
    compares whole seconds with ``>``) only after the last page.
    """
    settings = services.settings
    client = services.redis
    if not settings.enabled("enrichment"):
        log_event(logger, "refresh.skipped", reason="enrichment is off",
                  missing=settings.missing("enrichment"))  # fmt: skip
        return RefreshOutcome(since=0, skipped="enrichment is off")
    lock = new_lock(client, REFRESH_LOCK, seconds=settings.TASK_TIME_LIMIT + 60)
    if not acquire(lock, blocking=False):
        log_event(logger, "refresh.skipped", reason="another pass is running")
        return RefreshOutcome(since=0, skipped="another pass is running")
    try:
        return _refresh_pass(services, per_page, time.time() if now is None else now)
    finally:
        if not release(lock):
            log_event(logger, "refresh.lock_lost", logging.WARNING)


def _refresh_pass(services: Services, per_page: int, now: float) -> RefreshOutcome:
    client = services.redis
    saved = {_decode(k): _decode(v) for k, v in client.hgetall(PROGRESS_KEY).items()}
    if saved:
        since, started = int(saved["since"]), int(saved["started"])
        cursor: str | None = saved.get("cursor") or None
        log_event(logger, "refresh.resumed", since=since, pages_done=int(saved.get("pages", 0)))
    else:
        watermark = client.get(WATERMARK_KEY)
        since = int(watermark) if watermark else int(now) - FIRST_PASS_LOOKBACK
        started, cursor = int(now), None
        client.hset(PROGRESS_KEY, mapping={"since": since, "started": started, "cursor": "",
                                       "pages": 0})  # fmt: skip
    outcome = RefreshOutcome(since=since)
    query = {"field": "updated_at", "operator": ">", "value": since}
    while True:
        try:
            page = services.intercom.search_contacts(query, per_page=per_page,
                                                     starting_after=cursor)  # fmt: skip
        except ValidationFailed:
            if cursor is None:
                raise
            # A saved cursor can expire; start the pass over (the de-duplication keys make
            # the contacts already enqueued cost nothing).
            log_event(logger, "refresh.cursor_rejected", logging.WARNING, since=since)
            cursor = None
            client.hset(PROGRESS_KEY, mapping={"cursor": ""})
            continue
        for contact in page.get("data") or []:
            if not contact.get("id"):
                continue
            outcome.contacts += 1
            dedup = f"{REFRESH_DEDUP}{contact['id']}:{_updated_at(contact)}"
            queued = services.enqueuer.enqueue(routing.CONTACTS_ENRICH, (str(contact["id"]),),
                                               dedup_key=dedup)  # fmt: skip
            outcome.enqueued += int(queued.queued)
        outcome.pages += 1
        cursor = ((page.get("pages") or {}).get("next") or {}).get("starting_after")
        if not cursor:
            break
        client.hset(PROGRESS_KEY, mapping={"cursor": cursor})
        client.hincrby(PROGRESS_KEY, "pages", 1)
    pipe = client.pipeline(transaction=True)
    pipe.set(WATERMARK_KEY, started - 1)
    pipe.delete(PROGRESS_KEY)
    pipe.execute()
    outcome.complete = True
    log_event(logger, "refresh.done", since=since, watermark=started - 1, pages=outcome.pages,
              contacts=outcome.contacts, enqueued=outcome.enqueued)  # fmt: skip
    return outcome
