"""Contact enrichment tasks: thin wrappers over :mod:`workers.contacts.enrich`."""

from __future__ import annotations

from celery import Task

from workers.clients.services import get_services
from workers.contacts.enrich import enrich_contact, refresh_stale_contacts
from workers.jobs import routing
from workers.tasks.base import sync_task


@sync_task(routing.CONTACTS_ENRICH)
def enrich(self: Task, contact_id: str) -> None:
    """Write enrichment attributes onto a contact and its company (only what differs).

    Enqueued for ``contact.user.created``, ``contact.lead.created`` and
    ``contact.lead.signed_up`` alike, and by the nightly refresh.
    """
    enrich_contact(get_services(), str(contact_id))


@sync_task(routing.CONTACTS_REFRESH_STALE)
def refresh_stale(self: Task) -> None:
    """Enqueue re-enrichment of contacts updated since the last complete pass (beat)."""
    refresh_stale_contacts(get_services())
