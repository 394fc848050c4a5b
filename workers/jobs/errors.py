"""Typed errors for every outbound call, and the one rule that says which are worth a retry.

The retry policy (:mod:`workers.tasks.base`) looks only at :func:`is_transient` and
:func:`retry_after`, so a new error type decides its fate here rather than in each task.
"""

from __future__ import annotations

import redis
import requests


class ServiceError(Exception):
    """An answer or failure of an outside service (Intercom, Sanity, an enrichment source).

    ``status`` is the HTTP status (None for network failures), ``code`` the service's own error
    code (Intercom's ``rate_limit_exceeded``, ``not_found`` ...), ``request_id`` the id the service
    gave the request, for support tickets. The message never holds a token or personal data.
    """

    transient = False

    def __init__(
        self,
        message: str,
        *,
        service: str,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.service = service
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after

    def __reduce__(self):  # keep the fields when Celery pickles the exception for a retry
        return (_rebuild, (type(self), str(self), self.__dict__))


def _rebuild(cls: type[ServiceError], message: str, state: dict) -> ServiceError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class TransientServiceError(ServiceError):
    """Worth retrying: 5xx, timeouts, connection failures."""

    transient = True


class RateLimited(TransientServiceError):
    """429 from the service, or no budget left in our shared limiter: retry after a wait."""


class ServerError(TransientServiceError):
    """5xx."""


class ConnectionFailed(TransientServiceError):
    """Timeout or connection refused/reset: the request may or may not have been applied."""


class PermanentServiceError(ServiceError):
    """Not worth retrying as is: other 4xx. The job is parked in the dead-letter store."""


class Unauthorized(PermanentServiceError):
    """401/403: a wrong or revoked token."""


class NotFound(PermanentServiceError):
    """404 (and 410: Intercom answers it for merged contacts on newer versions)."""


class Conflict(PermanentServiceError):
    """409: already exists, or a Sanity revision mismatch."""


class ValidationFailed(PermanentServiceError):
    """400/422: the request was refused as invalid."""


class InvalidId(ValueError):
    """An id that is not safe to put into a URL path."""


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may succeed where this attempt failed."""
    if isinstance(exc, ServiceError):
        return exc.transient
    return isinstance(
        exc,
        requests.Timeout
        | requests.ConnectionError
        | requests.exceptions.ChunkedEncodingError
        | ConnectionError
        | TimeoutError
        | redis.ConnectionError
        | redis.TimeoutError,
    )


def certainly_not_sent(exc: BaseException) -> bool:
    """Whether a failed write surely changed nothing: our limiter refused it before sending,
    or the service answered 4xx (including 429). Timeouts and 5xx may hide a write that
    happened (Intercom may have created the article, posted the reply)."""
    if isinstance(exc, RateLimited):
        return True
    return isinstance(exc, PermanentServiceError) or (
        isinstance(exc, ServiceError) and exc.status is not None and 400 <= exc.status < 500
    )


def retry_after(exc: BaseException) -> float | None:
    """The wait a service asked for (a 429's reset), if any."""
    return getattr(exc, "retry_after", None)
