"""Sentry for the receiver and the workers, with personal data and secrets kept out of events.

``send_default_pii=False`` keeps IPs, cookies and user data out, but exception messages, local
variables and breadcrumbs can still carry a token or an email address; :func:`scrub_event` walks
the whole event and masks them before it leaves the process.
"""

from __future__ import annotations

import re
from typing import Any

from workers.jobs.logs import scrub
from workers.settings import Settings

_SENSITIVE_KEY = re.compile(
    r"(?i)(token|secret|password|passwd|authorization|api[_-]?key|cookie|signature|dsn|email)"
)
# Keys whose values are personal data (names, phone numbers, addresses). Matched on the whole
# key, so "task_name" or "queue_name" stay; not applied where the SDK itself uses "name"
# (``sdk``, ``contexts``, ``modules``...), which describe the software, not a person.
_PERSONAL_KEY = re.compile(
    r"(?i)(?:(?:first|last|full|display|given|family|middle|contact|customer|user|admin|sender"
    r"|recipient)[_ -]?)?(?:name|surname)|user_?name|(?:[a-z]+[_ -]?)?(?:phone|mobile|telephone"
    r"|fax)(?:[_ -]?(?:number|no))?|tel|(?:street|postal|home|billing|shipping)?[_ -]?address"
    r"|ip_?address|birth_?date|date_?of_?birth|dob"
)
_NOT_PERSONAL = frozenset({"sdk", "contexts", "modules", "debug_meta", "threads", "spans"})
_initialised: set[str] = set()


def _redact_key(key: Any, personal: bool) -> bool:
    if not isinstance(key, str):
        return False
    return bool(_SENSITIVE_KEY.search(key)) or (personal and bool(_PERSONAL_KEY.fullmatch(key)))


def _scrub_value(value: Any, depth: int = 0, personal: bool = True) -> Any:
    if depth > 12:
        return "[truncated]"
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {
            k: "[redacted]" if _redact_key(k, personal) else _scrub_value(v, depth + 1, personal)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub_value(v, depth + 1, personal) for v in value]
    return value


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """``before_send``: mask secrets, emails, phone numbers and personal fields anywhere in the
    event (``extra``, breadcrumbs, frames, the request's query string...); drop request bodies,
    cookies and the user."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
    event.pop("user", None)
    return {
        key: "[redacted]" if _redact_key(key, key not in _NOT_PERSONAL)
        else _scrub_value(value, 1, personal=key not in _NOT_PERSONAL)
        for key, value in event.items()
    }  # fmt: skip


def init_sentry(settings: Settings, component: str) -> bool:
    """Initialise Sentry once per process when ``SENTRY_DSN`` is set; True when it is on."""
    if not settings.SENTRY_DSN or component in _initialised:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.flask import FlaskIntegration

    sentry_sdk.init(
        dsn=settings.SENTRY_DSN.reveal(),
        environment=settings.SENTRY_ENVIRONMENT,
        release=settings.SENTRY_RELEASE,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        integrations=[FlaskIntegration(), CeleryIntegration()],
        traces_sample_rate=0.0,
    )
    sentry_sdk.set_tag("component", component)
    _initialised.add(component)
    return True
