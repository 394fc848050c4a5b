"""The Intercom REST client: the only code that talks to Intercom.

Every call carries the bearer token, ``Accept: application/json`` (Intercom answers 406
without it) and the pinned ``Intercom-Version``; every call spends from the shared limiter and
feeds Intercom's ``X-RateLimit-*`` headers back into it. Methods cover what the domain tasks need
and return Intercom's JSON as dicts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import requests

from workers.clients.http import JsonApi
from workers.jobs.errors import NotFound
from workers.jobs.ratelimit import RateLimiter


class IntercomClient(JsonApi):
    service = "intercom"
    counts_requests = True

    def __init__(
        self,
        base_url: str,
        token: str,
        version: str,
        *,
        limiter: RateLimiter | None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (3.05, 20.0),
    ) -> None:
        super().__init__(
            base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
                "Intercom-Version": version,
                "User-Agent": "intercom-sync",
            },
            limiter=limiter,
            session=session,
            timeout=timeout,
        )

    def error_code(self, body: Any) -> tuple[str | None, str | None]:
        # {"type": "error.list", "request_id": ..., "errors": [{"code": ..., "message": ...}]}
        if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            if isinstance(first, dict):
                return first.get("code"), first.get("message")
        return None, None

    def request_id(self, response: requests.Response) -> str | None:
        return response.headers.get("X-Request-Id") or response.headers.get("x-request-id")

    # --- workspace -------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """The admin behind the token and its workspace (``app``): proves token and region."""
        return self.call("GET", "/me")

    # --- articles ---------------------------------------------------------------------------

    def create_article(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", "/articles", json=body)

    def update_article(self, article_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``PUT /articles/{id}``. ``state`` must be in ``body``: without it Intercom publishes
        the edit to a live article."""
        if "state" not in body:
            raise ValueError("update_article needs 'state' (omitting it publishes the edit)")
        return self.call("PUT", self.path("/articles/{}", article_id), json=body)

    def delete_article(self, article_id: str) -> dict[str, Any]:
        return self.call("DELETE", self.path("/articles/{}", article_id))

    def get_article(self, article_id: str) -> dict[str, Any]:
        return self.call("GET", self.path("/articles/{}", article_id))

    def list_articles(self, page: int = 1, per_page: int = 50) -> dict[str, Any]:
        """One page of articles, newest first."""
        return self.call("GET", "/articles", params={"page": page, "per_page": per_page})

    # --- tags -------------------------------------------------------------------------------

    def create_or_get_tag(self, name: str) -> dict[str, Any]:
        """``POST /tags`` creates the tag, or returns the existing one of that name."""
        return self.call("POST", "/tags", json={"name": name})

    def list_tags(self) -> list[dict[str, Any]]:
        return (self.call("GET", "/tags") or {}).get("data", [])

    def tag_conversation(self, conversation_id: str, tag_id: str, admin_id: str) -> dict:
        return self.call(
            "POST",
            self.path("/conversations/{}/tags", conversation_id),
            json={"id": str(tag_id), "admin_id": str(admin_id)},
        )

    def untag_conversation(self, conversation_id: str, tag_id: str, admin_id: str) -> dict:
        return self.call(
            "DELETE",
            self.path("/conversations/{}/tags/{}", conversation_id, tag_id),
            json={"admin_id": str(admin_id)},
        )

    # --- conversations ----------------------------------------------------------------------

    def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        return self.call("GET", self.path("/conversations/{}", conversation_id))

    def assign_conversation(
        self, conversation_id: str, admin_id: str, assignee_id: str, *, kind: str = "admin"
    ) -> dict[str, Any]:
        """Assign to an admin or a team (``kind``) through the conversation parts API."""
        body = {
            "message_type": "assignment",
            "type": "team" if kind == "team" else "admin",
            "admin_id": str(admin_id),
            "assignee_id": str(assignee_id),
        }
        return self.call("POST", self.path("/conversations/{}/parts", conversation_id), json=body)

    def reply_conversation(self, conversation_id: str, admin_id: str, body: str, *,
                           note: bool = False) -> dict[str, Any]:  # fmt: skip
        """``POST /conversations/{id}/reply`` as an admin: a ``comment`` the customer sees, or
        a ``note`` (``note=True``) only teammates see. Not idempotent: every call adds a part.
        Intercom answers the conversation with the new part in ``conversation_parts``."""
        payload = {"message_type": "note" if note else "comment", "type": "admin",
                   "admin_id": str(admin_id), "body": body}  # fmt: skip
        return self.call("POST", self.path("/conversations/{}/reply", conversation_id),
                         json=payload)  # fmt: skip

    def snooze_conversation(self, conversation_id: str, admin_id: str,
                            until: int) -> dict[str, Any]:  # fmt: skip
        """Snooze until ``until`` (Unix seconds) through the conversation parts API."""
        body = {"message_type": "snoozed", "admin_id": str(admin_id), "snoozed_until": int(until)}
        return self.call("POST", self.path("/conversations/{}/parts", conversation_id), json=body)

    def close_conversation(self, conversation_id: str, admin_id: str) -> dict[str, Any]:
        body = {"message_type": "close", "type": "admin", "admin_id": str(admin_id)}
        return self.call("POST", self.path("/conversations/{}/parts", conversation_id), json=body)

    def open_conversation(self, conversation_id: str, admin_id: str) -> dict[str, Any]:
        body = {"message_type": "open", "admin_id": str(admin_id)}
        return self.call("POST", self.path("/conversations/{}/parts", conversation_id), json=body)

    def update_conversation_attributes(self, conversation_id: str,
                                       values: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
        """``PUT /conversations/{id}`` with ``custom_attributes`` (each must exist as a
        conversation data attribute: the 2.14 API cannot create them)."""
        return self.call("PUT", self.path("/conversations/{}", conversation_id),
                         json={"custom_attributes": dict(values)})  # fmt: skip

    # --- contacts and companies -------------------------------------------------------------

    def get_contact(self, contact_id: str) -> dict[str, Any]:
        return self.call("GET", self.path("/contacts/{}", contact_id))

    def find_contact_by_external_id(self, external_id: str) -> dict[str, Any] | None:
        """The contact with this ``external_id``: the stable key when contacts merge."""
        query = {"query": {"field": "external_id", "operator": "=", "value": external_id}}
        found = self.call("POST", "/contacts/search", json=query) or {}
        data = found.get("data") or []
        return data[0] if data else None

    def search_contacts(
        self, query: dict[str, Any], *, per_page: int = 150, starting_after: str | None = None
    ) -> dict[str, Any]:
        pagination: dict[str, Any] = {"per_page": per_page}
        if starting_after:
            pagination["starting_after"] = starting_after
        return self.call("POST", "/contacts/search", json={"query": query,
                                                            "pagination": pagination})  # fmt: skip

    def iter_contacts(self, query: dict[str, Any], per_page: int = 150) -> Iterator[dict]:
        """Every contact matching ``query``, page by page (each page one budgeted call)."""
        cursor: str | None = None
        while True:
            page = self.search_contacts(query, per_page=per_page, starting_after=cursor)
            yield from page.get("data") or []
            cursor = ((page.get("pages") or {}).get("next") or {}).get("starting_after")
            if not cursor:
                return

    def update_contact(self, contact_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("PUT", self.path("/contacts/{}", contact_id), json=body)

    def contact_companies(self, contact_id: str) -> list[dict[str, Any]]:
        """The full company objects attached to a contact (``GET /contacts/{id}/companies``)."""
        answer = self.call("GET", self.path("/contacts/{}/companies", contact_id)) or {}
        return [c for c in items(answer, "companies") if isinstance(c, dict)]

    def upsert_company(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /companies`` creates or updates the company with ``body['company_id']``."""
        if not body.get("company_id"):
            raise ValueError("upsert_company needs a company_id")
        return self.call("POST", "/companies", json=body)

    def attach_company(self, contact_id: str, company_intercom_id: str) -> dict[str, Any]:
        return self.call(
            "POST",
            self.path("/contacts/{}/companies", contact_id),
            json={"id": str(company_intercom_id)},
        )

    # --- data attributes --------------------------------------------------------------------

    def list_data_attributes(self, model: str) -> list[dict[str, Any]]:
        if model not in ("contact", "company", "conversation"):
            raise ValueError("model must be 'contact', 'company' or 'conversation'")
        return (self.call("GET", "/data_attributes", params={"model": model}) or {}).get(
            "data", []
        )

    def create_data_attribute(self, name: str, model: str, data_type: str) -> dict[str, Any]:
        body = {"name": name, "model": model, "data_type": data_type}
        return self.call("POST", "/data_attributes", json=body)


def gone(exc: BaseException) -> bool:
    """True for a 404/410: the object was deleted or merged away."""
    return isinstance(exc, NotFound)


def items(value: Any, key: str) -> list[Any]:
    """Intercom wraps lists: ``{"type": "tag.list", "tags": [...]}`` or ``{"data": [...]}``."""
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        for name in (key, "data"):
            if isinstance(value.get(name), list):
                return value[name]
    return []


def attached_company_count(contact: Mapping[str, Any]) -> int:
    """How many companies the contact object says are attached (no call)."""
    companies = contact.get("companies")
    if isinstance(companies, Mapping) and isinstance(companies.get("total_count"), int):
        return max(companies["total_count"], len(items(companies, "companies")))
    return len(items(companies, "companies"))
