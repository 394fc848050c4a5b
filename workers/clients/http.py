"""The one way the workers call an HTTP JSON API: budget, timeouts, safe paths, typed errors.

Intercom, Sanity and the enrichment source differ only in their base URL, headers, limiter and
how they spell an error; everything else (taking budget before the call, feeding the answer's
rate-limit headers back, turning statuses into :mod:`workers.jobs.errors` types, validating every id
that goes into a path) is here once.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests

from workers.jobs import errors, metrics
from workers.jobs.logs import log_event, scrub
from workers.jobs.ratelimit import RateLimiter

logger = logging.getLogger("intercom_sync.http")

SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
DEFAULT_TIMEOUT = (3.05, 20.0)


def safe_id(value: object) -> str:
    """``value`` as a URL path segment; :class:`~workers.jobs.errors.InvalidId` when unsafe."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not SAFE_ID.fullmatch(text) or ".." in text:
        raise errors.InvalidId(f"not a valid id for a URL path: {str(value)[:40]!r}")
    return quote(text, safe="")


_STATUS_ERRORS: dict[int, type[errors.ServiceError]] = {
    400: errors.ValidationFailed,
    401: errors.Unauthorized,
    403: errors.Unauthorized,
    404: errors.NotFound,
    409: errors.Conflict,
    410: errors.NotFound,
    422: errors.ValidationFailed,
    429: errors.RateLimited,
}


class Route(str):
    """A path filled in from a template, which it keeps: metrics label calls by the template
    (``/articles/{id}``), never by the ids in the path."""

    template: str


class JsonApi:
    """A JSON API at ``base_url`` whose calls all go through ``limiter``."""

    service = "http"
    # Whether each call is counted in the Intercom request metrics (by route template).
    counts_requests = False

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        limiter: RateLimiter | None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers.update(headers)

    def path(self, template: str, *ids: object) -> str:
        """Fill ``{}`` placeholders of ``template`` with validated ids."""
        route = Route(template.format(*(safe_id(i) for i in ids)))
        route.template = template.replace("{}", "{id}")
        return route

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        base_url: str | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON body (None for an empty one)."""
        if self.limiter is not None:
            try:
                self.limiter.acquire()
            except errors.RateLimited:
                metrics.rate_limit_exhausted(self.service)
                raise
        url = (base_url or self.base_url) + path
        started = time.monotonic()
        try:
            response = self.session.request(
                method, url, json=json, params=params, timeout=self.timeout
            )
        except (requests.Timeout, requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError) as exc:  # fmt: skip
            self._count(method, path, None, started)
            raise errors.ConnectionFailed(
                f"{self.service} {method} {path}: {type(exc).__name__}", service=self.service
            ) from None
        self._count(method, path, response.status_code, started)
        if self.limiter is not None:
            self.limiter.observe(response.headers)
        request_id = self.request_id(response)
        log_event(
            logger, "http.call", logging.DEBUG, service=self.service, method=method, path=path,
            status=response.status_code, request_id=request_id,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )  # fmt: skip
        if response.status_code >= 400:
            raise self.error_for(method, path, response, request_id)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise errors.ServerError(
                f"{self.service} {method} {path}: answer is not JSON",
                service=self.service, status=response.status_code, request_id=request_id,
            ) from None  # fmt: skip

    def _count(self, method: str, path: str, status: int | None, started: float) -> None:
        if self.counts_requests:
            # A literal path (``/me``) is its own template; a filled one is a Route.
            route = getattr(path, "template", path)
            metrics.intercom_request(method, route, status, time.monotonic() - started)

    def request_id(self, response: requests.Response) -> str | None:
        return response.headers.get("X-Request-Id")

    def error_code(self, body: Any) -> tuple[str | None, str | None]:
        """The service's (code, message) from an error body."""
        return None, None

    def error_for(
        self, method: str, path: str, response: requests.Response, request_id: str | None
    ) -> errors.ServiceError:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        code, message = self.error_code(body)
        cls = _STATUS_ERRORS.get(status)
        if cls is None:
            cls = errors.ServerError if status >= 500 else errors.PermanentServiceError
        retry_after = None
        if status == 429:
            retry_after = self._retry_after(response)
            if self.limiter is not None:
                reset = response.headers.get("X-RateLimit-Reset")
                if reset and reset.isdigit():
                    self.limiter.exhausted_until(int(reset))
        text = f"{self.service} {method} {path}: {status}"
        if code:
            text += f" {code}"
        if message:
            text += f": {scrub(message[:200])}"
        return cls(text, service=self.service, status=status, code=code,
                   request_id=request_id, retry_after=retry_after)  # fmt: skip

    @staticmethod
    def _retry_after(response: requests.Response) -> float:
        header = response.headers.get("Retry-After")
        if header and header.replace(".", "", 1).isdigit():
            return float(header)
        reset = response.headers.get("X-RateLimit-Reset")
        if reset and reset.isdigit():
            return max(1.0, int(reset) - time.time())
        return 10.0
