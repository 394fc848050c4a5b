"""Contact enrichment: pluggable sources (:mod:`~workers.contacts.sources`), safe attribute
preparation (:mod:`~workers.contacts.attributes`, no I/O) and the job that writes them to Intercom
(:mod:`~workers.contacts.enrich`). May import the clients, the job machinery and settings; never
another domain.

The job does: ``sources = build_sources(names, settings, acquire=limiter.acquire)`` once
per process, then per contact ``result = gather(sources, contact)``,
``prepare_contact_update(contact, result.contact, known, deny)`` and, when
``result.company``, ``prepare_company(result.company, known_company, deny)``; it creates
``new_attributes`` with ``POST /data_attributes`` before writing.
"""

from workers.contacts.attributes import (
    DEFAULT_DENY,
    MAX_NAME_LENGTH,
    MAX_STRING_LENGTH,
    DenyList,
    PreparedCompany,
    PreparedUpdate,
    Rejection,
    normalise_key,
    prepare_company,
    prepare_contact_update,
    value_data_type,
)
from workers.contacts.free_mail import is_disposable, is_free_mail, is_personal_domain
from workers.contacts.sources import (
    ENTRY_POINT_GROUP,
    EmailDomainSource,
    EnrichmentResult,
    EnrichmentSource,
    FileSource,
    HttpSource,
    PermanentSourceError,
    SourceConfigError,
    SourceContext,
    SourceDisabled,
    SourceError,
    TransientSourceError,
    build_sources,
    contact_ref,
    gather,
    register_source,
    registered_sources,
)

__all__ = [
    "DEFAULT_DENY",
    "ENTRY_POINT_GROUP",
    "MAX_NAME_LENGTH",
    "MAX_STRING_LENGTH",
    "DenyList",
    "EmailDomainSource",
    "EnrichmentResult",
    "EnrichmentSource",
    "FileSource",
    "HttpSource",
    "PermanentSourceError",
    "PreparedCompany",
    "PreparedUpdate",
    "Rejection",
    "SourceConfigError",
    "SourceContext",
    "SourceDisabled",
    "SourceError",
    "TransientSourceError",
    "build_sources",
    "contact_ref",
    "gather",
    "is_disposable",
    "is_free_mail",
    "is_personal_domain",
    "normalise_key",
    "prepare_company",
    "prepare_contact_update",
    "register_source",
    "registered_sources",
    "value_data_type",
]
