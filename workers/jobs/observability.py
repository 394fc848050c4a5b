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
_initialised: set[str] = set()


def _scrub_value(value: Any, depth: int = 0) -> Any:
    if depth > 12:
        return "[truncated]"
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {
            k: "[redacted]" if isinstance(k, str) and _SENSITIVE_KEY.search(k)
            else _scrub_value(v, depth + 1)
            for k, v in value.items()
        }  # fmt: skip
    if isinstance(value, list | tuple):
        return [_scrub_value(v, depth + 1) for v in value]
    return value


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """``before_send``: mask secrets and emails anywhere in the event; drop request bodies."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
    event.pop("user", None)
    return _scrub_value(event)


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
