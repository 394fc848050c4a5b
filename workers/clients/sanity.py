"""The Sanity HTTP API client: GROQ queries and mutations, on the live (uncached) API host.

Reads go to ``{project}.api.sanity.io`` (never the ``apicdn`` host), so a sync that runs right
after a publish webhook sees the document as published, not a cached older revision. Since API
version 2025-02-19 the default perspective is ``published``; it is still sent explicitly so an
older pinned version cannot read drafts by accident.
"""

from __future__ import annotations

from typing import Any

import requests

from workers.clients.http import JsonApi, safe_id
from workers.jobs.ratelimit import RateLimiter


class SanityClient(JsonApi):
    service = "sanity"

    def __init__(
        self,
        base_url: str,
        dataset: str,
        token: str | None,
        api_version: str,
        *,
        limiter: RateLimiter | None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (3.05, 20.0),
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "intercom-sync"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        super().__init__(base_url, headers=headers, limiter=limiter, session=session,
                         timeout=timeout)  # fmt: skip
        self.dataset = safe_id(dataset)
        version = api_version if api_version in ("1", "X") else api_version.lstrip("v")
        self.prefix = f"/v{version}/data"

    def error_code(self, body: Any) -> tuple[str | None, str | None]:
        # {"error": {"type": "...", "description": "..."}} or {"error": "...", "message": "..."}
        if not isinstance(body, dict):
            return None, None
        error = body.get("error")
        if isinstance(error, dict):
            return error.get("type"), error.get("description") or error.get("message")
        if isinstance(error, str):
            return error, body.get("message")
        return None, None

    def query(self, groq: str, params: dict[str, Any] | None = None, *,
              tag: str | None = None) -> Any:  # fmt: skip
        """Run a GROQ query (POST, so long queries and params fit); return its ``result``.

        ``tag`` names the query in Sanity's request logs (and lets a test server recognise it).
        """
        query_params: dict[str, str] = {"perspective": "published"}
        if tag:
            query_params["tag"] = tag
        body = {"query": groq, "params": params or {}}
        answer = self.call("POST", f"{self.prefix}/query/{self.dataset}", json=body,
                           params=query_params)  # fmt: skip
        return (answer or {}).get("result")

    def mutate(self, mutations: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply mutations in one transaction; visible to queries when this returns."""
        return self.call(
            "POST",
            f"{self.prefix}/mutate/{self.dataset}",
            json={"mutations": mutations},
            params={"returnIds": "true", "visibility": "sync"},
        )

    def patch_set(self, document_id: str, fields: dict[str, Any],
                  if_revision_id: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Set ``fields`` on a document; with ``if_revision_id`` a 409 means it changed since."""
        patch: dict[str, Any] = {"id": safe_id(document_id), "set": fields}
        if if_revision_id:
            patch["ifRevisionID"] = if_revision_id
        return self.mutate([{"patch": patch}])
