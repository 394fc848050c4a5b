"""A local fake of the Intercom REST API (version 2.14) for tests, benchmarks and the sandbox.

Why a fake and not mocks: the integration tests run several real Celery worker processes
against one HTTP server, and the properties that matter (a shared rate limit that holds
across processes, no duplicate articles after a lost answer, zero calls for an unchanged
re-publish) only show up when every process talks to the same stateful server that enforces
what Intercom enforces. So this fake is strict where Intercom is strict:

* ``Authorization: Bearer <token>``, ``Accept`` admitting JSON, a pinned ``Intercom-Version``;
* a request budget per 10-second window (windows aligned to Unix time) with
  ``X-RateLimit-Limit/Remaining/Reset`` on every answer and 429 once it is spent;
* request bodies checked against Intercom's OpenAPI description (``openapi_check``), with
  every violation recorded so a test can assert there were none;
* Intercom's semantics where the sync depends on them: tags are created-or-returned by name,
  articles list most recently updated first, contacts answer 409 on duplicates and 404 once
  merged or deleted, custom attributes must exist as data attributes first;
* article bodies as Intercom treats them (``article_html``): ``400`` for what it refuses (an
  image it cannot upload, an empty list, a table in a list item ...), and otherwise stored the
  way a reader sees them (``h3``-``h6`` as ``h2``, unsupported tags dropped, their text moved).

It also lets tests break things on purpose (queued 5xx/429 answers, slow answers that make
clients time out after the write happened, latency on every answer) and look inside
(``/_fake/state``, ``/_fake/stats``). Admin routes live under ``/_fake/``, need no token and
are neither rate limited nor counted, so other processes can drive the fake over HTTP.

Run it as its own process with ``python -m workers.sandbox.fake_intercom --port 8089``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import hmac
import json
import logging
import math
import random
import re
import signal
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from workers.sandbox import article_html

__all__ = [
    "DEFAULT_TOKEN",
    "STATE_EXTENSION",
    "ApiError",
    "FakeIntercomConfig",
    "FakeIntercomState",
    "RateLimitStatus",
    "create_fake_intercom",
    "main",
]

log = logging.getLogger(__name__)

#: The bearer token the fake accepts unless configured otherwise (not a secret).
DEFAULT_TOKEN = "fake-intercom-token"  # noqa: S105
#: ``app.extensions[STATE_EXTENSION]`` is the app's ``FakeIntercomState``.
STATE_EXTENSION = "fake_intercom"

JSON = dict[str, Any]

_MAX_PER_PAGE = 150
_MAX_PARTS_SHOWN = 500
_BOT_AUTHOR = {"type": "bot", "id": "991000000", "name": "Operator", "email": None}
_WRAPPER_TAGS = re.compile(r"</?(html|body|head)\b[^>]*>", re.IGNORECASE)
_BLOCK_START = re.compile(r"^\s*<(p|div|h[1-6]|ul|ol|pre|blockquote|table|img)\b", re.IGNORECASE)
_ATTRIBUTE_NAME_LIMIT = 190  # names must be shorter than this
_ATTRIBUTE_VALUE_LIMIT = 255  # string values must be shorter than this
_DATA_TYPES = ("string", "integer", "float", "boolean", "date", "datetime", "options")


@dataclass(frozen=True)
class FakeIntercomConfig:
    """What the fake enforces and how it introduces itself.

    ``openapi_path`` switches request-body validation on (``None``: off). With
    ``strict_openapi`` a violating request gets Intercom's 400; without it the violation is
    only recorded and the request is served, which keeps a benchmark running.
    """

    token: str = DEFAULT_TOKEN
    version: str = "2.14"
    budget_per_window: int = 1666
    window_seconds: int = 10
    openapi_path: str | Path | None = None
    strict_openapi: bool = True
    latency_seconds: float = 0.0
    app_name: str = "Sandbox"
    app_id_code: str = "sandbox0"
    region: str = "US"
    admin_id: str = "1295"
    admin_name: str = "Sandbox Admin"
    admin_email: str = "admin@sandbox.invalid"
    help_center_slug: str | None = None

    def __post_init__(self) -> None:
        if self.budget_per_window < 1 or self.window_seconds < 1:
            raise ValueError("budget_per_window and window_seconds must be positive")


class ApiError(Exception):
    """An Intercom error answer: ``{"type":"error.list","errors":[{"code","message"}]}``."""

    def __init__(self, status: int, code: str, message: str, *, html: bool = False) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.html = html


class RateLimitStatus(NamedTuple):
    """The budget as the ``X-RateLimit-*`` headers report it after one request."""

    allowed: bool
    limit: int
    remaining: int
    reset: int


@dataclass
class _Rule:
    """A queued fault or delay for the next ``remaining`` matching API requests."""

    remaining: int
    path_prefix: str | None = None
    method: str | None = None
    status: int = 0
    html: bool = False
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)

    def describe(self) -> JSON:
        return {
            "remaining": self.remaining,
            "path_prefix": self.path_prefix,
            "method": self.method,
            "status": self.status or None,
            "seconds": self.seconds or None,
        }


def _std_attr(model: str, name: str, data_type: str, label: str, writable: bool = True) -> JSON:
    return {
        "type": "data_attribute",
        "name": name,
        "full_name": name,
        "label": label,
        "description": label,
        "data_type": data_type,
        "api_writable": writable,
        "ui_writable": False,
        "messenger_writable": False,
        "custom": False,
        "archived": False,
        "model": model,
    }


_STANDARD_ATTRIBUTES: tuple[JSON, ...] = (
    _std_attr("contact", "name", "string", "Name"),
    _std_attr("contact", "email", "string", "Email"),
    _std_attr("contact", "phone", "string", "Phone"),
    _std_attr("contact", "external_id", "string", "User ID"),
    _std_attr("contact", "role", "string", "Role"),
    _std_attr("contact", "owner_id", "integer", "Owner"),
    _std_attr("contact", "signed_up_at", "date", "Signed up"),
    _std_attr("contact", "last_seen_at", "date", "Last seen"),
    _std_attr("contact", "created_at", "date", "First seen", writable=False),
    _std_attr("contact", "updated_at", "date", "Last updated", writable=False),
    _std_attr("contact", "unsubscribed_from_emails", "boolean", "Unsubscribed from emails"),
    _std_attr("company", "name", "string", "Company name"),
    _std_attr("company", "company_id", "string", "Company ID", writable=False),
    _std_attr("company", "plan", "string", "Plan"),
    _std_attr("company", "size", "integer", "Company size"),
    _std_attr("company", "website", "string", "Website"),
    _std_attr("company", "industry", "string", "Industry"),
    _std_attr("company", "monthly_spend", "float", "Monthly spend"),
    _std_attr("company", "remote_created_at", "date", "Company created at"),
    _std_attr("company", "user_count", "integer", "People", writable=False),
    _std_attr("company", "session_count", "integer", "Company web sessions", writable=False),
)

# Contact search: field -> type, which decides the operators Intercom allows (see the
# description of ``single_filter_search_request.operator`` in the 2.14 spec).
_CONTACT_SEARCH_FIELDS: dict[str, str] = {
    "id": "string",
    "role": "string",
    "name": "string",
    "email": "string",
    "email_domain": "string",
    "phone": "string",
    "external_id": "string",
    "owner_id": "integer",
    "unsubscribed_from_emails": "boolean",
    "has_hard_bounced": "boolean",
    "marked_email_as_spam": "boolean",
    "created_at": "date",
    "updated_at": "date",
    "signed_up_at": "date",
    "last_seen_at": "date",
    "last_contacted_at": "date",
    "last_replied_at": "date",
    "last_email_opened_at": "date",
    "last_email_clicked_at": "date",
}
_OPERATORS_BY_TYPE: dict[str, frozenset[str]] = {
    "string": frozenset({"=", "!=", "IN", "NIN", "~", "!~", "^", "$"}),
    "integer": frozenset({"=", "!=", "IN", "NIN", "<", ">", "<=", ">="}),
    "float": frozenset({"=", "!=", "IN", "NIN", "<", ">", "<=", ">="}),
    "boolean": frozenset({"=", "!=", "IN", "NIN"}),
    "date": frozenset({"=", "<", ">"}),
}

_CONTACT_WRITABLE = (
    "role",
    "external_id",
    "email",
    "phone",
    "name",
    "avatar",
    "signed_up_at",
    "last_seen_at",
    "owner_id",
    "unsubscribed_from_emails",
)
_COMPANY_WRITABLE = (
    "name",
    "size",
    "website",
    "industry",
    "monthly_spend",
    "remote_created_at",
)


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "article"


def _type_ok(data_type: str, value: Any) -> bool:
    """Whether a custom attribute value fits the data attribute's type (None clears)."""
    if value is None:
        return True
    if data_type in ("string", "options"):
        return isinstance(value, str)
    if data_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if data_type == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if data_type == "boolean":
        return isinstance(value, bool)
    if data_type in ("date", "datetime"):
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    return False


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return None


def _bad(message: str, code: str = "parameter_invalid") -> ApiError:
    return ApiError(400, code, message)


def _not_found(message: str = "Resource Not Found", code: str = "not_found") -> ApiError:
    return ApiError(404, code, message)


def _article_body(value: Any) -> str:
    """An article body as Intercom stores it, or its 400 for what Intercom refuses (an image
    it cannot upload, an empty list, a table in a list item or table, a foreign iframe).
    Sources: developers.intercom.com docs/guides/help-center/supported-html ("Allowed HTML for
    Articles") and help article 4103903; the rules and how a body is kept are in
    ``workers.sandbox.article_html``."""
    text = "" if value is None else str(value)
    refused = article_html.hard_failures(text)
    if refused:
        raise _bad(f"body is invalid: {refused[0].message}")
    return article_html.keep(text)


class FakeIntercomState:
    """Everything the fake knows, behind one lock, so one process can serve many clients.

    Methods named like Intercom operations take request bodies and return answer bodies
    (fresh copies, safe to serialise outside the lock); they raise ``ApiError`` for error
    answers. The rest injects faults, seeds data and reports what happened. ``clock``
    returns Unix seconds; tests pass their own to control timestamps and rate-limit windows
    (sleeps for delays and latency always use real time).
    """

    def __init__(
        self,
        config: FakeIntercomConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config or FakeIntercomConfig()
        self._clock = clock or time.time
        self._lock = threading.RLock()
        self._rng = random.Random()  # noqa: S311 (latency jitter, not security)
        self.reset()

    # ------------------------------------------------------------------ lifecycle

    def now(self) -> int:
        """Current Unix time in whole seconds, from the injected clock."""
        return int(self._clock())

    def reset(self, *, stats_only: bool = False) -> None:
        """Forget statistics (and, unless ``stats_only``, all data, faults and settings)."""
        with self._lock:
            self._requests: dict[str, int] = {}
            self._statuses: dict[int, int] = {}
            self._windows: dict[int, dict[str, int]] = {}
            self._throttled = 0
            self._served_429 = 0
            self._injected = 0
            self._delayed = 0
            self._violations: list[JSON] = []
            self._puts_without_state = 0
            self._tag_applications = 0
            self._replies = 0
            self._attribute_updates = 0
            if stats_only:
                return
            self._budget = self.config.budget_per_window
            self._latency = max(0.0, self.config.latency_seconds)
            self._jitter = 0.0
            self._faults: list[_Rule] = []
            self._delays: list[_Rule] = []
            self._admins: dict[str, JSON] = {}
            self._articles: dict[str, JSON] = {}
            self._tags: dict[str, JSON] = {}
            self._conversations: dict[str, JSON] = {}
            self._contacts: dict[str, JSON] = {}
            self._gone_contacts: dict[str, str] = {}
            self._companies: dict[str, JSON] = {}
            self._custom_attributes: list[JSON] = []
            self._next = {
                "article": 9_000_001,
                "tag": 7_000_001,
                "conversation": 5_000_001,
                "part": 1,
                "contact": 1,
                "company": 1,
                "data_attribute": 1,
                "source": 403_900_001,
                "admin": 991_000_001,
            }
            self._add_admin(
                {
                    "id": self.config.admin_id,
                    "name": self.config.admin_name,
                    "email": self.config.admin_email,
                }
            )

    def _new_id(self, kind: str) -> str:
        value = self._next[kind]
        self._next[kind] = value + 1
        if kind in ("contact", "company"):
            prefix = "6762f0" if kind == "contact" else "6762c0"
            return f"{prefix}{value:018x}"
        return str(value)

    def _claim_id(self, kind: str, wanted: Any, existing: Mapping[str, Any]) -> str:
        """Use a seeded id as given (bumping the counter past it) or make a new one."""
        if wanted is None:
            return self._new_id(kind)
        ident = str(wanted)
        if not re.fullmatch(r"[A-Za-z0-9_-]+", ident) or ident in existing:
            raise _bad(f"seed id {ident!r} is not a plain id or already exists")
        if ident.isdigit() and int(ident) >= self._next[kind]:
            self._next[kind] = int(ident) + 1
        return ident

    # ------------------------------------------------------------------ rate limit

    def _window_start(self, now: float) -> int:
        size = self.config.window_seconds
        return int(now // size) * size

    def consume_budget(self) -> RateLimitStatus:
        """Spend one request of the current window, or report that it is spent (429)."""
        with self._lock:
            start = self._window_start(self._clock())
            window = self._windows.setdefault(start, {"requests": 0, "throttled": 0})
            reset = start + self.config.window_seconds
            if window["requests"] >= self._budget:
                window["throttled"] += 1
                self._throttled += 1
                return RateLimitStatus(False, self._budget, 0, reset)
            window["requests"] += 1
            remaining = max(0, self._budget - window["requests"])
            return RateLimitStatus(True, self._budget, remaining, reset)

    def peek_budget(self) -> RateLimitStatus:
        """The current window's budget without spending any (for unauthenticated answers)."""
        with self._lock:
            start = self._window_start(self._clock())
            used = self._windows.get(start, {}).get("requests", 0)
            reset = start + self.config.window_seconds
            return RateLimitStatus(True, self._budget, max(0, self._budget - used), reset)

    def set_budget(self, budget_per_window: int) -> None:
        """Change the per-window budget from now on (e.g. to simulate a smaller plan)."""
        if budget_per_window < 1:
            raise ValueError("budget_per_window must be positive")
        with self._lock:
            self._budget = budget_per_window

    # ------------------------------------------------------------------ fault injection

    def inject_fault(
        self,
        status: int,
        count: int = 1,
        *,
        path_prefix: str | None = None,
        method: str | None = None,
        html: bool | None = None,
    ) -> None:
        """Answer the next ``count`` matching API requests with ``status`` instead.

        Typical statuses are 500, 502, 503, 504 and 429. 502-504 come as an HTML page, as a
        load balancer sends them (``html`` overrides); the rest as Intercom's error list.
        The request is not processed, but it has spent budget (Intercom counts it too).
        """
        if not 400 <= status <= 599 or count < 1:
            raise ValueError("status must be 4xx/5xx and count positive")
        as_html = status in (502, 503, 504) if html is None else html
        rule = _Rule(count, path_prefix, method.upper() if method else None, status, as_html)
        with self._lock:
            self._faults.append(rule)

    def inject_delay(
        self,
        seconds: float,
        count: int = 1,
        *,
        path_prefix: str | None = None,
        method: str | None = None,
    ) -> None:
        """Hold the answer to the next ``count`` matching API requests for ``seconds``.

        The request is processed first and only the answer is late, so a client that times
        out has still created or changed the object: the "lost answer" case.
        """
        if seconds < 0 or count < 1:
            raise ValueError("seconds must be >= 0 and count positive")
        rule = _Rule(count, path_prefix, method.upper() if method else None, seconds=seconds)
        with self._lock:
            self._delays.append(rule)

    def set_latency(self, seconds: float, jitter: float = 0.0) -> None:
        """Add ``seconds`` (± up to ``jitter``) to every API answer, like a real network."""
        if seconds < 0 or jitter < 0:
            raise ValueError("latency and jitter must be >= 0")
        with self._lock:
            self._latency = seconds
            self._jitter = jitter

    def clear_faults(self) -> None:
        """Drop queued faults and delays and set latency to zero."""
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            self._latency = 0.0
            self._jitter = 0.0

    @staticmethod
    def _take(rules: list[_Rule], method: str, path: str) -> _Rule | None:
        for rule in rules:
            if rule.matches(method, path):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    rules.remove(rule)
                return rule
        return None

    def take_fault(self, method: str, path: str) -> _Rule | None:
        """The queued fault for this request, if any (used once)."""
        with self._lock:
            rule = self._take(self._faults, method, path)
            if rule is not None:
                self._injected += 1
            return rule

    def latency(self) -> float:
        """Seconds every API answer is held for (latency, varied by up to ± jitter)."""
        with self._lock:
            wait = self._latency
            if self._jitter:
                wait += self._rng.uniform(-self._jitter, self._jitter)
            return max(0.0, wait)

    def take_delay(self, method: str, path: str) -> float:
        """Extra seconds for this request's answer from a queued delay (used once), or 0."""
        with self._lock:
            rule = self._take(self._delays, method, path)
            if rule is None:
                return 0.0
            self._delayed += 1
            return rule.seconds

    # ------------------------------------------------------------------ recording

    def record_request(self, method: str, template: str) -> None:
        """Count one API request by ``"METHOD /route/{template}"``."""
        key = f"{method} {template}"
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1

    def record_response(self, status: int) -> None:
        """Count one API answer by status (429s also in ``served_429``)."""
        with self._lock:
            self._statuses[status] = self._statuses.get(status, 0) + 1
            if status == 429:
                self._served_429 += 1

    def record_violation(self, violation: Mapping[str, Any]) -> None:
        """Keep an OpenAPI (or body format) violation for ``violations()`` and the stats."""
        with self._lock:
            self._violations.append(dict(violation))

    def violations(self) -> list[JSON]:
        """Every recorded request violation, oldest first."""
        with self._lock:
            return copy.deepcopy(self._violations)

    def request_count(self, method: str, template: str) -> int:
        """Requests received for one route, e.g. ``("PUT", "/articles/{article_id}")``."""
        with self._lock:
            return self._requests.get(f"{method.upper()} {template}", 0)

    @property
    def article_puts_without_state(self) -> int:
        """``PUT /articles/{id}`` requests that omitted ``state`` (they publish edits live)."""
        with self._lock:
            return self._puts_without_state

    def stats(self) -> JSON:
        """Counters for tests and benchmarks (``GET /_fake/stats``)."""
        with self._lock:
            windows = [
                {"start": start, "requests": w["requests"], "throttled": w["throttled"]}
                for start, w in sorted(self._windows.items())
            ]
            return {
                "requests": dict(sorted(self._requests.items())),
                "requests_total": sum(self._requests.values()),
                "responses": {str(k): v for k, v in sorted(self._statuses.items())},
                "rate_limited": self._throttled,
                "served_429": self._served_429,
                "injected_faults": self._injected,
                "delayed": self._delayed,
                "budget_per_window": self._budget,
                "window_seconds": self.config.window_seconds,
                "windows": windows,
                "violations": copy.deepcopy(self._violations),
                "article_puts_without_state": self._puts_without_state,
                "tag_applications": self._tag_applications,
                "conversation_replies": self._replies,
                "conversation_attribute_updates": self._attribute_updates,
                "pending_faults": [rule.describe() for rule in self._faults],
                "pending_delays": [rule.describe() for rule in self._delays],
                "latency_seconds": self._latency,
                "openapi_validation": self.config.openapi_path is not None,
            }

    # ------------------------------------------------------------------ admins, /me

    def _add_admin(self, admin: Mapping[str, Any]) -> str:
        ident = str(admin.get("id") or self._new_id("admin"))
        self._admins[ident] = {
            "type": "admin",
            "id": ident,
            "name": str(admin.get("name") or f"Admin {ident}"),
            "email": str(admin.get("email") or f"admin{ident}@sandbox.invalid"),
        }
        return ident

    def _admin(self, admin_id: Any) -> JSON:
        admin = self._admins.get(str(admin_id))
        if admin is None:
            raise _not_found("Admin not found", "admin_not_found")
        return admin

    def me(self) -> JSON:
        """``GET /me``: the token's admin with its app (workspace)."""
        with self._lock:
            admin = copy.deepcopy(self._admins[self.config.admin_id])
        admin.update(
            {
                "email_verified": True,
                "has_inbox_seat": True,
                "avatar": {"type": "avatar", "image_url": None},
                "app": {
                    "type": "app",
                    "id_code": self.config.app_id_code,
                    "name": self.config.app_name,
                    "created_at": 1_600_000_000,
                    "secure": False,
                    "identity_verification": False,
                    "timezone": "UTC",
                    "region": self.config.region,
                },
            }
        )
        return admin

    # ------------------------------------------------------------------ articles

    @property
    def _help_center_slug(self) -> str:
        return self.config.help_center_slug or _slug(self.config.app_name)

    def _render_article(self, article: JSON) -> JSON:
        parent = article["parent_id"]
        out = {
            "id": article["id"],
            "type": "article",
            "workspace_id": self.config.app_id_code,
            "parent_id": parent,
            "parent_type": article["parent_type"],
            "parent_ids": [parent] if parent is not None else [],
            "statistics": {
                "type": "article_statistics",
                "views": 0,
                "conversations": 0,
                "reactions": 0,
                "happy_reaction_percentage": 0,
                "neutral_reaction_percentage": 0,
                "sad_reaction_percentage": 0,
            },
            "tags": {"type": "tag.list", "tags": []},
            "title": article["title"],
            "description": article["description"],
            "body": article["body"],
            "author_id": article["author_id"],
            "state": article["state"],
            "created_at": article["created_at"],
            "updated_at": article["updated_at"],
            "url": (
                f"https://intercom.help/{self._help_center_slug}/en/articles/"
                f"{article['id']}-{_slug(article['title'])}"
            ),
        }
        if article["translated_content"] is not None:
            out["translated_content"] = copy.deepcopy(article["translated_content"])
        return out

    def _article_fields(self, body: Mapping[str, Any], article: JSON) -> None:
        """Apply the writable fields of a create/update body to ``article`` (checked)."""
        if "title" in body:
            if not isinstance(body["title"], str) or not body["title"].strip():
                raise _bad("title must be a non-empty string")
            article["title"] = body["title"]
        if "description" in body:
            article["description"] = "" if body["description"] is None else str(body["description"])
        if "body" in body:
            article["body"] = _article_body(body["body"])
        if "author_id" in body:
            author = _as_int(body["author_id"])
            if author is None or str(author) not in self._admins:
                raise _bad("author_id must be the id of a teammate of this workspace")
            article["author_id"] = author
        if "state" in body:
            if body["state"] not in ("published", "draft"):
                raise _bad("state must be one of published, draft")
            article["state"] = body["state"]
        if "parent_id" in body:
            if body["parent_id"] is None:
                article["parent_id"] = None
            else:
                parent = _as_int(body["parent_id"])
                if parent is None:
                    raise _bad("parent_id must be the id of a collection or section")
                article["parent_id"] = parent
                article["parent_type"] = article["parent_type"] or "collection"
        if "parent_type" in body:
            if body["parent_type"] not in ("collection", "section", None):
                raise _bad("parent_type must be collection or section")
            article["parent_type"] = body["parent_type"]
        content = body.get("translated_content")
        if content is not None:
            if not isinstance(content, Mapping):
                raise _bad("translated_content must be an object")
            # Locales sent replace those locales; locales not sent are kept.
            merged = copy.deepcopy(article["translated_content"] or {})
            sent = copy.deepcopy(dict(content))
            for locale in sent.values():
                if isinstance(locale, dict) and "body" in locale:
                    locale["body"] = _article_body(locale["body"])
            merged.update(sent)
            article["translated_content"] = merged

    def create_article(self, body: Mapping[str, Any]) -> JSON:
        """``POST /articles``; ``title`` and ``author_id`` required, ``state`` default draft."""
        if "title" not in body or "author_id" not in body:
            raise _bad(
                "title and author_id must be in the main body or default locale "
                "translated_content object",
                "parameter_not_found",
            )
        with self._lock:
            now = self.now()
            article: JSON = {
                "id": "",
                "title": "",
                "description": "",
                "body": "",
                "author_id": 0,
                "state": "draft",
                "parent_id": None,
                "parent_type": None,
                "translated_content": None,
                "created_at": now,
                "updated_at": now,
            }
            self._article_fields(body, article)
            article["id"] = self._new_id("article")
            self._articles[article["id"]] = article
            return self._render_article(article)

    def _article(self, article_id: str) -> JSON:
        article = self._articles.get(str(article_id))
        if article is None:
            raise _not_found()
        return article

    def get_article(self, article_id: str) -> JSON:
        """``GET /articles/{id}``."""
        with self._lock:
            return self._render_article(self._article(article_id))

    def update_article(self, article_id: str, body: Mapping[str, Any]) -> JSON:
        """``PUT /articles/{id}``; a body without ``state`` is counted (it publishes edits)."""
        with self._lock:
            article = self._article(article_id)
            changed = copy.deepcopy(article)
            self._article_fields(body, changed)
            if "state" not in body:
                self._puts_without_state += 1
            changed["updated_at"] = self.now()
            article.update(changed)
            return self._render_article(article)

    def delete_article(self, article_id: str) -> JSON:
        """``DELETE /articles/{id}``."""
        with self._lock:
            article = self._article(article_id)
            del self._articles[article["id"]]
            return {"id": article["id"], "object": "article", "deleted": True}

    def list_articles(self, page: int = 1, per_page: int = 25) -> JSON:
        """``GET /articles``: most recently updated first, as Intercom documents it.

        Ties (same second) go to the higher id, i.e. the later created article, so a
        freshly created article is always ahead of older ones.
        """
        if page < 1 or not 1 <= per_page <= _MAX_PER_PAGE:
            raise _bad(f"page must be >= 1 and per_page between 1 and {_MAX_PER_PAGE}")
        with self._lock:
            ordered = sorted(
                self._articles.values(),
                key=lambda a: (a["updated_at"], int(a["id"])),
                reverse=True,
            )
            total = len(ordered)
            chosen = ordered[(page - 1) * per_page : page * per_page]
            return {
                "type": "list",
                "pages": {
                    "type": "pages",
                    "page": page,
                    "per_page": per_page,
                    "total_pages": math.ceil(total / per_page),
                },
                "total_count": total,
                "data": [self._render_article(a) for a in chosen],
            }

    # ------------------------------------------------------------------ tags

    def _tag_by_name(self, name: str) -> JSON | None:
        wanted = name.casefold()
        for tag in self._tags.values():
            if tag["name"].casefold() == wanted:
                return tag
        return None

    def _tag(self, tag_id: Any) -> JSON:
        tag = self._tags.get(str(tag_id))
        if tag is None:
            raise _not_found("Tag not found", "tag_not_found")
        return tag

    def create_or_update_tag(self, body: Mapping[str, Any]) -> JSON:
        """``POST /tags``: the tag with this name (names are case-insensitive), made if new.

        With ``id`` it renames that tag. Tagging companies or users through this endpoint
        is not implemented by the fake (501), rather than silently ignored.
        """
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _bad("invalid tag parameters")
        if "companies" in body or "users" in body:
            raise ApiError(501, "not_implemented", "tagging companies/users: not in the fake")
        with self._lock:
            if body.get("id") is not None:
                tag = self._tag(body["id"])
                other = self._tag_by_name(name)
                if other is not None and other is not tag:
                    raise _bad(f"a tag named {name!r} already exists")
                tag["name"] = name
                return dict(tag)
            tag = self._tag_by_name(name)
            if tag is None:
                tag = {"type": "tag", "id": self._new_id("tag"), "name": name}
                self._tags[tag["id"]] = tag
            return dict(tag)

    def list_tags(self) -> JSON:
        """``GET /tags``."""
        with self._lock:
            return {"type": "list", "data": [dict(t) for t in self._tags.values()]}

    def delete_tag(self, tag_id: str) -> None:
        """``DELETE /tags/{id}``; the tag also leaves every conversation."""
        with self._lock:
            if str(tag_id) not in self._tags:
                raise _not_found()
            del self._tags[str(tag_id)]
            for conversation in self._conversations.values():
                conversation["tags"] = [t for t in conversation["tags"] if t["id"] != tag_id]

    # ------------------------------------------------------------------ conversations

    def _conversation(self, conversation_id: str) -> JSON:
        conversation = self._conversations.get(str(conversation_id))
        if conversation is None:
            raise _not_found("Conversation not found")
        return conversation

    def _author(self, author: Mapping[str, Any] | None) -> JSON:
        author = dict(author or {})
        kind = str(author.get("type") or "user")
        ident = str(author.get("id") or "")
        if kind == "admin":
            admin = self._admins.get(ident) or self._admins[self.config.admin_id]
            return {
                "type": "admin",
                "id": admin["id"],
                "name": admin["name"],
                "email": admin["email"],
            }
        contact = self._contacts.get(ident)
        return {
            "type": kind,
            "id": ident,
            "name": author.get("name", contact.get("name") if contact else None),
            "email": author.get("email", contact.get("email") if contact else None),
        }

    def _render_conversation(self, conversation: JSON) -> JSON:
        out = copy.deepcopy({k: v for k, v in conversation.items() if k not in ("tags", "parts")})
        out["type"] = "conversation"
        out["tags"] = {
            "type": "tag.list",
            "tags": [
                {
                    "type": "tag",
                    "id": applied["id"],
                    "name": self._tags[applied["id"]]["name"],
                    "applied_at": applied["applied_at"],
                    "applied_by": dict(applied["applied_by"]),
                }
                for applied in conversation["tags"]
                if applied["id"] in self._tags
            ],
        }
        # "The maximum number of conversation parts that can be returned via the API is 500 ...
        # we will return the 500 most recent" (2.14 reference, Retrieve a conversation).
        parts = copy.deepcopy(conversation["parts"][-_MAX_PARTS_SHOWN:])
        out["conversation_parts"] = {
            "type": "conversation_part.list",
            "conversation_parts": parts,
            "total_count": len(parts),
        }
        return out

    def _make_part(
        self,
        part_type: str,
        body: str | None,
        author: JSON,
        *,
        assigned_to: JSON | None = None,
        created_at: int | None = None,
    ) -> JSON:
        when = self.now() if created_at is None else created_at
        return {
            "type": "conversation_part",
            "id": self._new_id("part"),
            "part_type": part_type,
            "body": body,
            "created_at": when,
            "updated_at": when,
            "notified_at": when,
            "assigned_to": assigned_to,
            "author": author,
            "attachments": [],
            "external_id": None,
            "redacted": False,
        }

    def add_conversation(self, seed: Mapping[str, Any]) -> str:
        """Create a conversation from a short description; returns its id.

        Keys: ``id`` (digits), ``subject``, ``body`` (first message, HTML), ``author``
        (``{"type": "user"|"lead"|"admin", "id"}``; default the first contact),
        ``contact_ids``, ``parts`` (``[{"body", "part_type", "author"}]``), ``tags``
        (names), ``state``, ``created_at``, ``custom_attributes``, ``title``.
        """
        with self._lock:
            wanted = seed.get("id")
            if wanted is not None and not str(wanted).isdigit():
                raise _bad("conversation ids are digits")
            ident = self._claim_id("conversation", wanted, self._conversations)
            created = int(seed.get("created_at") or self.now())
            contact_ids = [str(c) for c in seed.get("contact_ids") or []]
            author_seed = seed.get("author")
            if author_seed is None and contact_ids:
                first = self._contacts.get(contact_ids[0], {})
                author_seed = {"type": first.get("role", "user"), "id": contact_ids[0]}
            author = self._author(author_seed)
            if author["type"] in ("user", "lead") and author["id"] and not contact_ids:
                contact_ids = [author["id"]]
            state = str(seed.get("state") or "open")
            conversation: JSON = {
                "id": ident,
                "created_at": created,
                "updated_at": int(seed.get("updated_at") or created),
                "waiting_since": None,
                "snoozed_until": None,
                "title": seed.get("title"),
                "source": {
                    "type": "conversation",
                    "id": self._new_id("source"),
                    "delivered_as": "customer_initiated",
                    "subject": str(seed.get("subject") or ""),
                    "body": str(seed.get("body") or ""),
                    "author": author,
                    "attachments": [],
                    "url": None,
                    "redacted": False,
                },
                "contacts": {
                    "type": "contact.list",
                    "contacts": [
                        {
                            "type": "contact",
                            "id": cid,
                            "external_id": self._contacts.get(cid, {}).get("external_id"),
                        }
                        for cid in contact_ids
                    ],
                },
                "admin_assignee_id": None,
                "team_assignee_id": None,
                "open": state != "closed",
                "state": state,
                "read": False,
                "priority": "not_priority",
                "custom_attributes": copy.deepcopy(dict(seed.get("custom_attributes") or {})),
                "tags": [],
                "parts": [],
            }
            for part in seed.get("parts") or []:
                conversation["parts"].append(
                    self._make_part(
                        str(part.get("part_type") or "comment"),
                        part.get("body"),
                        self._author(part.get("author") or author_seed),
                        created_at=part.get("created_at") or created,
                    )
                )
            self._conversations[ident] = conversation
            for name in seed.get("tags") or []:
                tag = self.create_or_update_tag({"name": name})
                conversation["tags"].append(
                    {
                        "id": tag["id"],
                        "applied_at": created,
                        "applied_by": {"type": "admin", "id": self.config.admin_id},
                    }
                )
            return ident

    def add_conversation_part(
        self,
        conversation_id: str,
        body: str,
        *,
        author: Mapping[str, Any] | None = None,
        part_type: str = "comment",
    ) -> JSON:
        """Append a part (default: a customer reply by the conversation's first contact)."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            if author is None:
                contacts = conversation["contacts"]["contacts"]
                author = {"type": "user", "id": contacts[0]["id"] if contacts else ""}
            part = self._make_part(part_type, body, self._author(author))
            conversation["parts"].append(part)
            conversation["updated_at"] = self.now()
            # "A snoozed conversation automatically reopens when ... a customer or teammate
            # replies" (Intercom help, "Snooze a conversation", article 883709).
            if conversation["state"] == "snoozed" and part["author"]["type"] in ("user", "lead"):
                conversation.update(state="open", open=True, snoozed_until=None)
            return copy.deepcopy(part)

    def get_conversation(self, conversation_id: str) -> JSON:
        """``GET /conversations/{id}`` with parts, tags, contacts and source."""
        with self._lock:
            return self._render_conversation(self._conversation(conversation_id))

    def tag_conversation(self, conversation_id: str, body: Mapping[str, Any]) -> JSON:
        """``POST /conversations/{id}/tags`` ``{"id": tag_id, "admin_id"}``; idempotent."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            tag = self._tag(body.get("id"))
            admin = self._admin(body.get("admin_id"))
            self._tag_applications += 1
            for applied in conversation["tags"]:
                if applied["id"] == tag["id"]:
                    break
            else:
                applied = {
                    "id": tag["id"],
                    "applied_at": self.now(),
                    "applied_by": {"type": "admin", "id": admin["id"]},
                }
                conversation["tags"].append(applied)
                conversation["updated_at"] = self.now()
            return {
                "type": "tag",
                "id": tag["id"],
                "name": tag["name"],
                "applied_at": applied["applied_at"],
                "applied_by": dict(applied["applied_by"]),
            }

    def untag_conversation(
        self, conversation_id: str, tag_id: str, body: Mapping[str, Any]
    ) -> JSON:
        """``DELETE /conversations/{id}/tags/{tag_id}`` ``{"admin_id"}``."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            tag = self._tag(tag_id)
            admin = self._admin(body.get("admin_id"))
            conversation["tags"] = [t for t in conversation["tags"] if t["id"] != tag["id"]]
            return {
                "type": "tag",
                "id": tag["id"],
                "name": tag["name"],
                "applied_at": self.now(),
                "applied_by": {"type": "admin", "id": admin["id"]},
            }

    def manage_conversation(self, conversation_id: str, body: Mapping[str, Any]) -> JSON:
        """``POST /conversations/{id}/parts``: assignment, close, open or snooze."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            admin = self._admin(body.get("admin_id"))
            author = self._author({"type": "admin", "id": admin["id"]})
            kind = body.get("message_type")
            text = body.get("body")
            if kind == "assignment":
                assignee_type = body.get("type", "admin")
                assignee = str(body.get("assignee_id", "0"))
                value = None if assignee == "0" else _as_int(assignee)
                if assignee_type == "team":
                    conversation["team_assignee_id"] = value
                else:
                    conversation["admin_assignee_id"] = value
                reopen = conversation["state"] != "open"
                conversation.update(state="open", open=True)
                part = self._make_part(
                    "assign_and_reopen" if reopen else "assignment",
                    text,
                    author,
                    assigned_to={"type": assignee_type, "id": assignee},
                )
            elif kind == "close":
                conversation.update(state="closed", open=False)
                part = self._make_part("close", text, author)
            elif kind == "open":
                conversation.update(state="open", open=True, snoozed_until=None)
                part = self._make_part("open", None, author)
            elif kind == "snoozed":
                conversation.update(state="snoozed", snoozed_until=body.get("snoozed_until"))
                part = self._make_part("snoozed", None, author)
            else:
                raise _bad("message_type must be assignment, close, open or snoozed")
            conversation["parts"].append(part)
            conversation["updated_at"] = self.now()
            return self._render_conversation(conversation)

    @staticmethod
    def _stored_body(body: str) -> str:
        """The body as Intercom stores a reply or note: the 2.14 reference's examples show
        a plain-text reply ("Thanks again :)") answered as ``<p>Thanks again :)</p>`` and a
        note sent inside ``<html> <body>`` stored without that wrapper, reflowed. So: the
        document wrapper is dropped, whitespace between tags collapsed, and text that does
        not start with a block element is wrapped in a paragraph."""
        text = _WRAPPER_TAGS.sub("", body)
        text = re.sub(r">\s+<", ">\n<", text.strip())
        return text if _BLOCK_START.match(text) else f"<p>{text}</p>"

    def reply_conversation(self, conversation_id: str, body: Mapping[str, Any]) -> JSON:
        """``POST /conversations/{id}/reply`` by an admin: ``comment`` or ``note``.

        As the 2.14 reference (Reply to a conversation) documents it: ``body`` must be present
        for comment and note; the answer is the conversation with the new part as its only
        ``conversation_parts`` entry. Every call adds a part: nothing is idempotent. Replies on
        behalf of a contact (``type: user``) are not modelled here.
        """
        kind = body.get("message_type")
        if body.get("type") != "admin":
            raise _bad("only admin replies are modelled by this fake (type must be admin)")
        if kind not in ("comment", "note"):
            raise _bad("message_type must be comment or note")
        text = body.get("body")
        if not isinstance(text, str) or not text.strip():
            raise _bad("body is required for comment and note", "parameter_not_found")
        with self._lock:
            conversation = self._conversation(conversation_id)
            admin = self._admin(body.get("admin_id"))
            author = self._author({"type": "admin", "id": admin["id"]})
            part = self._make_part(kind, self._stored_body(text), author)
            conversation["parts"].append(part)
            conversation["updated_at"] = self.now()
            self._replies += 1
            out = self._render_conversation(conversation)
            out["conversation_parts"] = {"type": "conversation_part.list",
                                         "conversation_parts": [copy.deepcopy(part)],
                                         "total_count": 1}  # fmt: skip
            return out

    def update_conversation(self, conversation_id: str, body: Mapping[str, Any]) -> JSON:
        """``PUT /conversations/{id}``: ``read``, ``title`` and ``custom_attributes``.

        Each custom attribute must exist as a conversation data attribute (they cannot be
        created through the 2.14 API: ``POST /data_attributes`` takes contact or company
        only); as for contacts, an unknown one is a 400. The reference's example answer shows
        one ``conversation_attribute_updated_by_admin`` part per attribute, by a bot.
        """
        with self._lock:
            conversation = self._conversation(conversation_id)
            values = self._check_custom_attributes("conversation", body.get("custom_attributes"))
            if "title" in body:
                conversation["title"] = body["title"]
            if "read" in body:
                conversation["read"] = bool(body["read"])
            for name, value in values.items():
                conversation["custom_attributes"][name] = value
                conversation["parts"].append(self._make_part(
                    "conversation_attribute_updated_by_admin", None, dict(_BOT_AUTHOR)))
            conversation["updated_at"] = self.now()
            self._attribute_updates += 1
            return self._render_conversation(conversation)

    def add_conversation_attribute(self, item: Mapping[str, Any]) -> JSON:
        """A conversation data attribute, as a teammate creates it in Intercom's settings (the
        2.14 API cannot): ``{"name", "data_type"?, "api_writable"?, "archived"?}``."""
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _bad("conversation attributes need a name")
        with self._lock:
            if self._custom_attribute("conversation", name) is not None:
                raise _bad("A conversation attribute with that name already exists")
            now = self.now()
            attr = {
                "id": int(self._new_id("data_attribute")), "type": "data_attribute",
                "name": name, "full_name": f"custom_attributes.{name}", "label": name,
                "description": "", "data_type": str(item.get("data_type") or "string"),
                "api_writable": bool(item.get("api_writable", True)), "ui_writable": True,
                "messenger_writable": False, "custom": True,
                "archived": bool(item.get("archived", False)), "admin_id": self.config.admin_id,
                "created_at": now, "updated_at": now, "model": "conversation",
            }  # fmt: skip
            self._custom_attributes.append(attr)
            return copy.deepcopy(attr)

    # ------------------------------------------------------------------ data attributes

    def _custom_attribute(self, model: str, name: str) -> JSON | None:
        for attr in self._custom_attributes:
            if attr["model"] == model and attr["name"] == name:
                return attr
        return None

    def list_data_attributes(self, model: str | None = None) -> JSON:
        """``GET /data_attributes?model=contact|company``: standard then custom attributes."""
        if model not in (None, "contact", "company", "conversation"):
            raise _bad("model must be contact, company or conversation")
        with self._lock:
            every = [*_STANDARD_ATTRIBUTES, *self._custom_attributes]
            # "By default we return only non archived data attributes" (2.14 reference).
            chosen = [a for a in every if (model is None or a["model"] == model)
                      and not a.get("archived")]  # fmt: skip
            return {"type": "list", "data": copy.deepcopy(chosen)}

    def create_data_attribute(self, body: Mapping[str, Any]) -> JSON:
        """``POST /data_attributes``; 400 when the model already has that name."""
        name, model, data_type = body.get("name"), body.get("model"), body.get("data_type")
        if not isinstance(name, str) or not name.strip() or "." in name:
            raise _bad("Your name for this attribute must only contain alphanumeric characters")
        if len(name) >= _ATTRIBUTE_NAME_LIMIT:
            raise _bad(f"attribute names must be shorter than {_ATTRIBUTE_NAME_LIMIT} characters")
        if model not in ("contact", "company"):
            raise _bad("The Data Attribute model field must be either contact or company")
        if data_type not in _DATA_TYPES:
            raise _bad("Data Type isn't an option")
        with self._lock:
            taken = any(a["model"] == model and a["name"] == name for a in _STANDARD_ATTRIBUTES)
            if taken or self._custom_attribute(model, name) is not None:
                raise _bad(
                    f"You already have '{name}' in your {model} data. To save this as new "
                    f"{model} data, use a different name."
                )
            now = self.now()
            attr = {
                "id": int(self._new_id("data_attribute")),
                "type": "data_attribute",
                "name": name,
                "full_name": f"custom_attributes.{name}",
                "label": name,
                "description": str(body.get("description") or ""),
                "data_type": data_type,
                "api_writable": True,
                "ui_writable": False,
                "messenger_writable": bool(body.get("messenger_writable", False)),
                "custom": True,
                "archived": False,
                "admin_id": self.config.admin_id,
                "created_at": now,
                "updated_at": now,
                "model": model,
            }
            if data_type == "options":
                attr["options"] = copy.deepcopy(body.get("options") or [])
            self._custom_attributes.append(attr)
            return copy.deepcopy(attr)

    def _check_custom_attributes(self, model: str, values: Any) -> dict[str, Any]:
        """Intercom's rules: the attribute must exist, names < 190, strings < 255 chars."""
        if values is None:
            return {}
        if not isinstance(values, Mapping):
            raise _bad("custom_attributes must be an object")
        for name, value in values.items():
            if len(name) >= _ATTRIBUTE_NAME_LIMIT:
                raise _bad(
                    f"Custom attribute names must be shorter than {_ATTRIBUTE_NAME_LIMIT} "
                    "characters"
                )
            attr = self._custom_attribute(model, name)
            if attr is None:
                raise _bad(f"Custom attribute '{name}' does not exist")
            if isinstance(value, str) and len(value) >= _ATTRIBUTE_VALUE_LIMIT:
                raise _bad(
                    f"Custom attribute '{name}' value must be shorter than "
                    f"{_ATTRIBUTE_VALUE_LIMIT} characters"
                )
            if not _type_ok(attr["data_type"], value):
                raise _bad(f"Custom attribute '{name}' must be of type {attr['data_type']}")
        return copy.deepcopy(dict(values))

    # ------------------------------------------------------------------ contacts

    def _contact(self, contact_id: str) -> JSON:
        contact = self._contacts.get(str(contact_id))
        if contact is None:
            raise _not_found("User Not Found")
        return contact

    def _render_contact(self, contact: JSON) -> JSON:
        out = copy.deepcopy({k: v for k, v in contact.items() if k != "company_ids"})
        ident = contact["id"]
        out.update(
            {
                "type": "contact",
                "workspace_id": self.config.app_id_code,
                "tags": {
                    "type": "list",
                    "data": [],
                    "url": f"/contacts/{ident}/tags",
                    "total_count": 0,
                    "has_more": False,
                },
                "notes": {
                    "type": "list",
                    "data": [],
                    "url": f"/contacts/{ident}/notes",
                    "total_count": 0,
                    "has_more": False,
                },
                "companies": {
                    "type": "list",
                    "data": [
                        {"id": cid, "type": "company", "url": f"/companies/{cid}"}
                        for cid in contact["company_ids"]
                    ],
                    "url": f"/contacts/{ident}/companies",
                    "total_count": len(contact["company_ids"]),
                    "has_more": False,
                },
            }
        )
        return out

    def _conflicting_contact(self, body: Mapping[str, Any], role: str) -> JSON | None:
        external_id, email = body.get("external_id"), body.get("email")
        for other in self._contacts.values():
            if external_id is not None and other["external_id"] == external_id:
                return other
            if (
                role == "user"
                and other["role"] == "user"
                and isinstance(email, str)
                and isinstance(other["email"], str)
                and other["email"].casefold() == email.casefold()
            ):
                return other
        return None

    def _new_contact(self, body: Mapping[str, Any], ident: str) -> JSON:
        now = self.now()
        contact: JSON = {
            "id": ident,
            "external_id": None,
            "role": "user",
            "email": None,
            "phone": None,
            "name": None,
            "avatar": None,
            "owner_id": None,
            "social_profiles": {"type": "list", "data": []},
            "has_hard_bounced": False,
            "marked_email_as_spam": False,
            "unsubscribed_from_emails": False,
            "created_at": now,
            "updated_at": now,
            "signed_up_at": None,
            "last_seen_at": None,
            "last_replied_at": None,
            "last_contacted_at": None,
            "last_email_opened_at": None,
            "last_email_clicked_at": None,
            "language_override": None,
            "location": {
                "type": "location",
                "country": None,
                "region": None,
                "city": None,
                "country_code": None,
                "continent_code": None,
            },
            "custom_attributes": {},
            "company_ids": [],
        }
        for key in _CONTACT_WRITABLE:
            if key in body:
                contact[key] = copy.deepcopy(body[key])
        return contact

    def create_contact(self, body: Mapping[str, Any]) -> JSON:
        """``POST /contacts``; 409 when the external_id (or a user's email) exists."""
        role = body.get("role", "user")
        if role not in ("user", "lead"):
            raise _bad("role must be user or lead")
        if not any(body.get(k) is not None for k in ("email", "external_id", "role")):
            raise _bad("email, external_id or role is required", "parameter_not_found")
        with self._lock:
            existing = self._conflicting_contact(body, role)
            if existing is not None:
                raise ApiError(
                    409,
                    "conflict",
                    f"A contact matching those details already exists with id={existing['id']}",
                )
            custom = self._check_custom_attributes("contact", body.get("custom_attributes"))
            contact = self._new_contact(body, self._new_id("contact"))
            contact["role"] = role
            contact["custom_attributes"] = custom
            self._contacts[contact["id"]] = contact
            return self._render_contact(contact)

    def get_contact(self, contact_id: str) -> JSON:
        """``GET /contacts/{id}``; merged or deleted contacts answer 404."""
        with self._lock:
            return self._render_contact(self._contact(contact_id))

    def update_contact(self, contact_id: str, body: Mapping[str, Any]) -> JSON:
        """``PUT /contacts/{id}``; custom attributes must exist as data attributes first."""
        with self._lock:
            contact = self._contact(contact_id)
            custom = self._check_custom_attributes("contact", body.get("custom_attributes"))
            if "role" in body and body["role"] not in ("user", "lead"):
                raise _bad("role must be user or lead")
            external_id = body.get("external_id")
            if external_id is not None and any(
                c["external_id"] == external_id and c is not contact
                for c in self._contacts.values()
            ):
                raise ApiError(409, "conflict", "A contact with that external_id exists")
            for key in _CONTACT_WRITABLE:
                if key in body:
                    contact[key] = copy.deepcopy(body[key])
            contact["custom_attributes"].update(custom)
            contact["updated_at"] = self.now()
            return self._render_contact(contact)

    def delete_contact(self, contact_id: str) -> JSON:
        """Delete a contact (``DELETE /contacts/{id}``); its id answers 404 from now on."""
        with self._lock:
            contact = self._contact(contact_id)
            del self._contacts[contact["id"]]
            self._gone_contacts[contact["id"]] = "deleted"
            return {
                "id": contact["id"],
                "external_id": contact["external_id"],
                "type": "contact",
                "deleted": True,
            }

    def merge_contact(self, from_id: str, into_id: str | None = None) -> JSON:
        """Merge ``from_id`` into ``into_id``, or give it a new id when ``into_id`` is None.

        Either way the old id answers 404 afterwards, as after a merge in Intercom; the
        ``external_id`` stays findable by search. Returns the surviving contact.
        """
        with self._lock:
            source = self._contact(from_id)
            if into_id is None:
                target = copy.deepcopy(source)
                target["id"] = self._new_id("contact")
                self._contacts[target["id"]] = target
            else:
                target = self._contact(into_id)
                if target is source:
                    raise _bad("cannot merge a contact into itself")
                for key, value in source.items():
                    if key == "custom_attributes":
                        for name, attr_value in value.items():
                            target[key].setdefault(name, copy.deepcopy(attr_value))
                    elif key == "company_ids":
                        target[key].extend(c for c in value if c not in target[key])
                    elif target.get(key) is None and value is not None:
                        target[key] = copy.deepcopy(value)
            del self._contacts[source["id"]]
            self._gone_contacts[source["id"]] = f"merged into {target['id']}"
            target["updated_at"] = self.now()
            for conversation in self._conversations.values():
                for ref in conversation["contacts"]["contacts"]:
                    if ref["id"] == source["id"]:
                        ref["id"] = target["id"]
            return self._render_contact(target)

    # -- search

    def _check_query(self, node: Any, depth: int = 0) -> None:
        if not isinstance(node, Mapping):
            raise _bad("query must be an object")
        if "field" in node:
            field = node.get("field")
            operator = node.get("operator")
            if not isinstance(field, str):
                raise _bad("query field must be a string")
            if field.startswith("custom_attributes."):
                attr = self._custom_attribute("contact", field.split(".", 1)[1])
                if attr is None:
                    raise _bad(f"{field} is not a valid search field")
                kind = "date" if attr["data_type"] in ("date", "datetime") else attr["data_type"]
                kind = "string" if kind == "options" else kind
            elif field in _CONTACT_SEARCH_FIELDS:
                kind = _CONTACT_SEARCH_FIELDS[field]
            else:
                raise _bad(f"{field} is not a valid search field")
            if operator not in _OPERATORS_BY_TYPE[kind]:
                raise _bad(f"operator {operator!r} is not supported for {field} ({kind})")
            if operator in ("IN", "NIN") and not isinstance(node.get("value"), list):
                raise _bad(f"operator {operator} needs a list value")
            return
        if node.get("operator") not in ("AND", "OR") or not isinstance(node.get("value"), list):
            raise _bad("a query group needs operator AND/OR and a list value")
        if depth >= 2 and any(isinstance(v, Mapping) and "field" not in v for v in node["value"]):
            raise _bad("queries can be nested at most two levels deep")
        for child in node["value"]:
            self._check_query(child, depth + 1)

    @staticmethod
    def _field_value(contact: JSON, field: str) -> Any:
        if field.startswith("custom_attributes."):
            return contact["custom_attributes"].get(field.split(".", 1)[1])
        if field == "email_domain":
            email = contact.get("email")
            return email.rsplit("@", 1)[-1] if isinstance(email, str) and "@" in email else None
        return contact.get(field)

    def _matches(self, contact: JSON, node: Mapping[str, Any]) -> bool:
        if "field" not in node:
            results = (self._matches(contact, child) for child in node["value"])
            return all(results) if node["operator"] == "AND" else any(results)
        actual = self._field_value(contact, node["field"])
        operator, wanted = node["operator"], node.get("value")
        if isinstance(actual, int) and not isinstance(actual, bool):
            # Timestamps and integers may be sent as numeric strings.
            def numeric(value: Any) -> Any:
                as_int = _as_int(value)
                return value if as_int is None else as_int

            wanted = [numeric(w) for w in wanted] if isinstance(wanted, list) else numeric(wanted)
        if operator == "=":
            return actual == wanted
        if operator == "!=":
            return actual != wanted
        if operator == "IN":
            return actual in wanted
        if operator == "NIN":
            return actual not in wanted
        if operator in ("<", ">", "<=", ">="):
            if actual is None or not isinstance(wanted, int | float) or isinstance(actual, str):
                return False
            return {
                "<": actual < wanted,
                ">": actual > wanted,
                "<=": actual <= wanted,
                ">=": actual >= wanted,
            }[operator]
        if not isinstance(actual, str) or not isinstance(wanted, str):
            return operator == "!~"
        haystack, needle = actual.casefold(), wanted.casefold()
        return {
            "~": needle in haystack,
            "!~": needle not in haystack,
            "^": haystack.startswith(needle),
            "$": haystack.endswith(needle),
        }[operator]

    @staticmethod
    def _encode_cursor(contact: JSON) -> str:
        raw = json.dumps([contact["created_at"], contact["id"]]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(cursor: str) -> tuple[int, str]:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            created, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
            return int(created), str(ident)
        except (ValueError, TypeError, binascii.Error) as exc:
            raise _bad("starting_after is not a cursor from this API") from exc

    def search_contacts(self, body: Mapping[str, Any]) -> JSON:
        """``POST /contacts/search`` with Intercom's query tree and cursor pagination."""
        query = body.get("query")
        pagination = body.get("pagination") or {}
        per_page = pagination.get("per_page", 50)
        if not isinstance(per_page, int) or not 1 <= per_page <= _MAX_PER_PAGE:
            raise _bad(f"per_page must be between 1 and {_MAX_PER_PAGE}")
        cursor = pagination.get("starting_after")
        with self._lock:
            self._check_query(query)
            found = sorted(
                (c for c in self._contacts.values() if self._matches(c, query)),
                key=lambda c: (c["created_at"], c["id"]),
            )
            start = 0
            if cursor:
                after = self._decode_cursor(cursor)
                start = sum(1 for c in found if (c["created_at"], c["id"]) <= after)
            chosen = found[start : start + per_page]
            pages: JSON = {
                "type": "pages",
                "page": start // per_page + 1,
                "per_page": per_page,
                "total_pages": math.ceil(len(found) / per_page),
            }
            if start + per_page < len(found):
                pages["next"] = {
                    "per_page": per_page,
                    "starting_after": self._encode_cursor(chosen[-1]),
                }
            return {
                "type": "list",
                "data": [self._render_contact(c) for c in chosen],
                "total_count": len(found),
                "pages": pages,
            }

    # ------------------------------------------------------------------ companies

    def _company(self, company_id: str) -> JSON:
        company = self._companies.get(str(company_id))
        if company is None:
            raise _not_found("Company Not Found", "company_not_found")
        return company

    def _render_company(self, company: JSON) -> JSON:
        out = copy.deepcopy(company)
        out["user_count"] = sum(
            1 for c in self._contacts.values() if company["id"] in c["company_ids"]
        )
        return out

    def upsert_company(self, body: Mapping[str, Any]) -> JSON:
        """``POST /companies``: create, or update the company with this ``company_id``."""
        company_id = body.get("company_id")
        if not isinstance(company_id, str) or not company_id:
            raise _bad("company_id must be given", "parameter_not_found")
        with self._lock:
            custom = self._check_custom_attributes("company", body.get("custom_attributes"))
            company = next(
                (c for c in self._companies.values() if c["company_id"] == company_id), None
            )
            now = self.now()
            if company is None:
                ident = self._new_id("company")
                company = {
                    "type": "company",
                    "company_id": company_id,
                    "id": ident,
                    "app_id": self.config.app_id_code,
                    "name": None,
                    "remote_created_at": None,
                    "created_at": now,
                    "updated_at": now,
                    "monthly_spend": 0,
                    "session_count": 0,
                    "user_count": 0,
                    "size": None,
                    "website": None,
                    "industry": None,
                    "tags": {"type": "tag.list", "tags": []},
                    "segments": {"type": "segment.list", "segments": []},
                    "plan": {},
                    "custom_attributes": {},
                }
                self._companies[ident] = company
            for key in _COMPANY_WRITABLE:
                if key in body:
                    company[key] = copy.deepcopy(body[key])
            if "plan" in body:
                plan = body["plan"]
                company["plan"] = (
                    {"type": "plan", "id": str(zlib.crc32(str(plan).encode())), "name": plan}
                    if plan
                    else {}
                )
            company["custom_attributes"].update(custom)
            company["updated_at"] = now
            return self._render_company(company)

    def get_company(self, company_id: str) -> JSON:
        """``GET /companies/{id}`` by Intercom id."""
        with self._lock:
            return self._render_company(self._company(company_id))

    def attach_company(self, contact_id: str, body: Mapping[str, Any]) -> JSON:
        """``POST /contacts/{id}/companies`` ``{"id": company intercom id}``."""
        with self._lock:
            contact = self._contact(contact_id)
            if not body.get("id"):
                raise _bad("company not specified", "parameter_not_found")
            company = self._company(str(body["id"]))
            if company["id"] not in contact["company_ids"]:
                contact["company_ids"].append(company["id"])
                contact["updated_at"] = self.now()
            return self._render_company(company)

    def list_contact_companies(self, contact_id: str) -> JSON:
        """``GET /contacts/{id}/companies``: the full company objects."""
        with self._lock:
            contact = self._contact(contact_id)
            data = [self._render_company(self._companies[c]) for c in contact["company_ids"]]
            return {
                "type": "list",
                "data": data,
                "pages": {"type": "pages", "page": 1, "per_page": 50, "total_pages": 1},
                "total_count": len(data),
            }

    # ------------------------------------------------------------------ seed and snapshot

    def seed(self, payload: Mapping[str, Any]) -> JSON:
        """Load data directly (no validation of custom attributes, no budget spent).

        ``payload`` keys, each a list: ``admins`` (``{"id","name","email"}``),
        ``data_attributes`` (``create_data_attribute`` bodies), ``tags`` (names),
        ``companies`` (``{"company_id","name","plan","custom_attributes",...,"id"?}``),
        ``contacts`` (contact fields, ``id``?, ``companies``: company_ids to attach,
        ``created_at``/``updated_at``?), ``articles`` (create bodies plus ``id``,
        ``created_at``, ``updated_at`` if wanted), ``conversations`` (see
        ``add_conversation``), ``conversation_attributes`` (see
        ``add_conversation_attribute``). Returns the ids created, per kind, in order.
        """
        created: JSON = {}
        with self._lock:
            for admin in payload.get("admins") or []:
                created.setdefault("admins", []).append(self._add_admin(admin))
            for attr in payload.get("data_attributes") or []:
                made = self.create_data_attribute(attr)
                created.setdefault("data_attributes", []).append(made["id"])
            for attr in payload.get("conversation_attributes") or []:
                made = self.add_conversation_attribute(attr)
                created.setdefault("conversation_attributes", []).append(made["id"])
            for name in payload.get("tags") or []:
                tag = self.create_or_update_tag({"name": name})
                created.setdefault("tags", []).append(tag["id"])
            for item in payload.get("companies") or []:
                created.setdefault("companies", []).append(self._seed_company(item))
            for item in payload.get("contacts") or []:
                created.setdefault("contacts", []).append(self._seed_contact(item))
            for item in payload.get("articles") or []:
                created.setdefault("articles", []).append(self._seed_article(item))
            for item in payload.get("conversations") or []:
                created.setdefault("conversations", []).append(self.add_conversation(item))
        return created

    def _seed_company(self, item: Mapping[str, Any]) -> str:
        fields = {k: v for k, v in item.items() if k not in ("id", "custom_attributes")}
        company = self.upsert_company(fields)
        stored = self._companies[company["id"]]
        stored["custom_attributes"].update(copy.deepcopy(dict(item.get("custom_attributes") or {})))
        if item.get("id") is not None and item["id"] != stored["id"]:
            ident = self._claim_id("company", item["id"], self._companies)
            del self._companies[stored["id"]]
            stored["id"] = ident
            self._companies[ident] = stored
        return str(stored["id"])

    def _seed_contact(self, item: Mapping[str, Any]) -> str:
        ident = self._claim_id("contact", item.get("id"), self._contacts)
        contact = self._new_contact(item, ident)
        contact["custom_attributes"] = copy.deepcopy(dict(item.get("custom_attributes") or {}))
        for key in ("created_at", "updated_at"):
            if item.get(key) is not None:
                contact[key] = int(item[key])
        for company_ref in item.get("companies") or []:
            match = next(
                (c for c in self._companies.values() if company_ref in (c["company_id"], c["id"])),
                None,
            )
            if match is None:
                raise _bad(f"seed contact refers to unknown company {company_ref!r}")
            contact["company_ids"].append(match["id"])
        self._contacts[ident] = contact
        return ident

    def _seed_article(self, item: Mapping[str, Any]) -> str:
        fields = {k: v for k, v in item.items() if k not in ("id", "created_at", "updated_at")}
        fields.setdefault("author_id", int(self.config.admin_id))
        made = self.create_article(fields)
        article = self._articles.pop(made["id"])
        if item.get("id") is not None:
            article["id"] = self._claim_id("article", item["id"], self._articles)
        for key in ("created_at", "updated_at"):
            if item.get(key) is not None:
                article[key] = int(item[key])
        if item.get("created_at") is not None and item.get("updated_at") is None:
            article["updated_at"] = article["created_at"]
        self._articles[article["id"]] = article
        return str(article["id"])

    def snapshot(self) -> JSON:
        """Everything stored, for assertions (``GET /_fake/state``)."""
        with self._lock:
            conversation_tags = {
                cid: sorted(self._tags[t["id"]]["name"] for t in c["tags"] if t["id"] in self._tags)
                for cid, c in self._conversations.items()
            }
            return {
                "admins": copy.deepcopy(list(self._admins.values())),
                "articles": [
                    self._render_article(a)
                    for a in sorted(self._articles.values(), key=lambda a: int(a["id"]))
                ],
                "tags": [dict(t) for t in self._tags.values()],
                "conversation_tags": conversation_tags,
                "conversations": [
                    self._render_conversation(c) for c in self._conversations.values()
                ],
                "contacts": [self._render_contact(c) for c in self._contacts.values()],
                "gone_contacts": dict(self._gone_contacts),
                "companies": [self._render_company(c) for c in self._companies.values()],
                "data_attributes": copy.deepcopy(self._custom_attributes),
                "article_puts_without_state": self._puts_without_state,
            }


# ============================================================================================
# HTTP layer
# ============================================================================================


class _IdConverter(BaseConverter):
    """Plain ids only: ``/articles/../admins`` is not a route, as at Intercom."""

    regex = r"[A-Za-z0-9_\-]+"


class _NumericIdConverter(BaseConverter):
    """Article and conversation ids are integers in the 2.14 description."""

    regex = r"\d+"


def _template(rule: str) -> str:
    return re.sub(r"<(?:[a-z_]+:)?([A-Za-z_]+)>", r"{\1}", rule)


def _json(payload: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")), status=status, mimetype="application/json"
    )


_HTML_ERROR = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
)
_FAULT_TEXT = {
    429: ("rate_limit_exceeded", "Too Many Requests"),
    500: ("server_error", "Internal Server Error"),
    502: ("bad_gateway", "Bad Gateway"),
    503: ("service_unavailable", "Service Unavailable"),
    504: ("gateway_timeout", "Gateway Timeout"),
}


def _error_response(error: ApiError) -> Response:
    if error.html:
        reason = _FAULT_TEXT.get(error.status, ("", "Error"))[1]
        page = _HTML_ERROR.format(status=error.status, reason=reason)
        return Response(page, status=error.status, mimetype="text/html")
    body = {
        "type": "error.list",
        "request_id": g.get("request_id"),
        "errors": [{"code": error.code, "message": error.message}],
    }
    return _json(body, error.status)


def _admin_body() -> JSON:
    body = request.get_json(silent=True)
    if body is None and request.get_data().strip():
        raise _bad("admin routes take a JSON object body")
    if body is not None and not isinstance(body, dict):
        raise _bad("admin routes take a JSON object body")
    return body or {}


def create_fake_intercom(
    config: FakeIntercomConfig | None = None,
    *,
    state: FakeIntercomState | None = None,
    clock: Callable[[], float] | None = None,
) -> Flask:
    """A Flask app that answers like ``https://api.intercom.io`` (2.14) plus ``/_fake/``.

    Pass ``state`` to share or pre-build one (its config wins), or ``clock`` to control
    time. The state is ``app.extensions["fake_intercom"]``.
    """
    if state is None:
        state = FakeIntercomState(config, clock=clock)
    config = state.config
    checker = None
    if config.openapi_path is not None:
        from workers.sandbox.openapi_check import get_checker

        checker = get_checker(config.openapi_path)  # fail at start, not on first request

    app = Flask(__name__)
    app.url_map.converters["id"] = _IdConverter
    app.url_map.converters["num"] = _NumericIdConverter
    app.url_map.strict_slashes = False
    app.extensions[STATE_EXTENSION] = state
    expected_auth = f"Bearer {config.token}".encode()

    def body() -> JSON:
        value = g.get("body")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _bad("the request body must be a JSON object")
        return value

    # -------------------------------------------------------------- request pipeline

    @app.before_request
    def _pipeline() -> Response | None:
        g.request_id = str(uuid.uuid4())
        g.admin = request.path == "/_fake" or request.path.startswith("/_fake/")
        if g.admin:
            return None
        g.wait = state.latency()
        rule = request.url_rule
        template = _template(rule.rule) if rule is not None else "<no route>"
        state.record_request(request.method, template)

        supplied = request.headers.get("Authorization", "")
        scheme, _, token = supplied.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            f"Bearer {token.strip()}".encode(), expected_auth
        ):
            g.rate = state.peek_budget()
            raise ApiError(401, "unauthorized", "Access Token Invalid")
        g.rate = state.consume_budget()
        if not g.rate.allowed:
            raise ApiError(
                429,
                "rate_limit_exceeded",
                f"Exceeded rate limit of {g.rate.limit} in {config.window_seconds}_seconds",
            )
        accept = request.headers.get("Accept")
        if accept and request.accept_mimetypes.quality("application/json") <= 0:
            raise ApiError(406, "not_acceptable", "Accept must admit application/json")
        version = request.headers.get("Intercom-Version")
        if version != config.version:
            raise ApiError(
                400,
                "intercom_version_invalid",
                f"Intercom-Version must be {config.version!r} on this server (got {version!r})",
            )
        fault = state.take_fault(request.method, request.path)
        if fault is not None:
            code, text = _FAULT_TEXT.get(fault.status, ("error", "Injected error"))
            if fault.status == 429:
                g.rate = g.rate._replace(remaining=0)
                text = f"Exceeded rate limit of {g.rate.limit} in {config.window_seconds}_seconds"
            raise ApiError(fault.status, code, text, html=fault.html)
        if rule is None:
            raise _not_found()
        _read_body(template)
        g.wait += state.take_delay(request.method, request.path)
        return None

    def _read_body(template: str) -> None:
        raw = request.get_data(cache=True)
        g.body = None
        if not raw.strip():
            parsed: Any = None
        else:
            if request.mimetype != "application/json":
                _violation(
                    template,
                    "/",
                    f"body sent as {request.mimetype or 'no type'!r}, "
                    "Intercom needs Content-Type: application/json",
                )
                raise _bad("Content-Type must be application/json")
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                _violation(template, "/", f"body is not JSON: {exc}")
                raise _bad("Request body is not valid JSON", "bad_request") from exc
        if checker is not None:
            query = request.args.to_dict()
            problems = checker.check(request.method, template, parsed, query=query)
            problems = [p for p in problems if not p.pointer.startswith("path:")]
            for problem in problems:
                state.record_violation(problem.as_dict() | {"path": request.path})
            if problems and config.strict_openapi:
                first = problems[0]
                raise _bad(f"{first.pointer}: {first.message}")
        g.body = parsed

    def _violation(template: str, pointer: str, message: str) -> None:
        state.record_violation(
            {
                "operation": template,
                "method": request.method,
                "path": request.path,
                "template": template,
                "pointer": pointer,
                "message": message,
            }
        )

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id") or str(uuid.uuid4())
        if g.get("admin", False):
            return response
        rate: RateLimitStatus | None = g.get("rate")
        if rate is None:
            rate = state.peek_budget()
        response.headers["X-RateLimit-Limit"] = str(rate.limit)
        response.headers["X-RateLimit-Remaining"] = str(rate.remaining)
        response.headers["X-RateLimit-Reset"] = str(rate.reset)
        state.record_response(response.status_code)
        wait = g.get("wait", 0.0)
        if wait > 0:
            time.sleep(wait)
        return response

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return _error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        # Unknown routes and wrong methods are both "not a route" at Intercom: 404.
        if isinstance(error.code, int) and error.code in (404, 405):
            return _error_response(_not_found())
        return _error_response(ApiError(error.code or 500, "bad_request", error.description or ""))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("fake intercom: unhandled error")
        return _error_response(ApiError(500, "server_error", f"fake error: {error!r}"))

    # -------------------------------------------------------------- Intercom routes

    @app.get("/me")
    def me() -> Response:
        return _json(state.me())

    @app.get("/articles")
    def list_articles() -> Response:
        page = _as_int(request.args.get("page", "1"))
        per_page = _as_int(request.args.get("per_page", "25"))
        if page is None or per_page is None:
            raise _bad("page and per_page must be integers")
        return _json(state.list_articles(page, per_page))

    @app.post("/articles")
    def create_article() -> Response:
        return _json(state.create_article(body()))

    @app.get("/articles/<num:article_id>")
    def get_article(article_id: str) -> Response:
        return _json(state.get_article(article_id))

    @app.put("/articles/<num:article_id>")
    def update_article(article_id: str) -> Response:
        return _json(state.update_article(article_id, body()))

    @app.delete("/articles/<num:article_id>")
    def delete_article(article_id: str) -> Response:
        return _json(state.delete_article(article_id))

    @app.get("/tags")
    def list_tags() -> Response:
        return _json(state.list_tags())

    @app.post("/tags")
    def create_tag() -> Response:
        return _json(state.create_or_update_tag(body()))

    @app.delete("/tags/<id:tag_id>")
    def delete_tag(tag_id: str) -> Response:
        state.delete_tag(tag_id)
        return Response(status=200)

    @app.get("/conversations/<num:conversation_id>")
    def get_conversation(conversation_id: str) -> Response:
        return _json(state.get_conversation(conversation_id))

    @app.post("/conversations/<num:conversation_id>/tags")
    def tag_conversation(conversation_id: str) -> Response:
        return _json(state.tag_conversation(conversation_id, body()))

    @app.delete("/conversations/<num:conversation_id>/tags/<id:tag_id>")
    def untag_conversation(conversation_id: str, tag_id: str) -> Response:
        return _json(state.untag_conversation(conversation_id, tag_id, body()))

    @app.post("/conversations/<num:conversation_id>/parts")
    def manage_conversation(conversation_id: str) -> Response:
        return _json(state.manage_conversation(conversation_id, body()))

    @app.post("/conversations/<num:conversation_id>/reply")
    def reply_conversation(conversation_id: str) -> Response:
        return _json(state.reply_conversation(conversation_id, body()))

    @app.put("/conversations/<num:conversation_id>")
    def update_conversation(conversation_id: str) -> Response:
        return _json(state.update_conversation(conversation_id, body()))

    @app.post("/contacts")
    def create_contact() -> Response:
        return _json(state.create_contact(body()))

    @app.post("/contacts/search")
    def search_contacts() -> Response:
        return _json(state.search_contacts(body()))

    @app.post("/contacts/merge")
    def merge_contacts() -> Response:
        data = body()
        if not data.get("from") or not data.get("into"):
            raise _bad("from and into are required", "parameter_not_found")
        return _json(state.merge_contact(str(data["from"]), str(data["into"])))

    @app.get("/contacts/<id:contact_id>")
    def get_contact(contact_id: str) -> Response:
        return _json(state.get_contact(contact_id))

    @app.put("/contacts/<id:contact_id>")
    def update_contact(contact_id: str) -> Response:
        return _json(state.update_contact(contact_id, body()))

    @app.delete("/contacts/<id:contact_id>")
    def delete_contact(contact_id: str) -> Response:
        return _json(state.delete_contact(contact_id))

    @app.get("/contacts/<id:contact_id>/companies")
    def list_contact_companies(contact_id: str) -> Response:
        return _json(state.list_contact_companies(contact_id))

    @app.post("/contacts/<id:contact_id>/companies")
    def attach_company(contact_id: str) -> Response:
        return _json(state.attach_company(contact_id, body()))

    @app.post("/companies")
    def upsert_company() -> Response:
        return _json(state.upsert_company(body()))

    @app.get("/companies/<id:company_id>")
    def get_company(company_id: str) -> Response:
        return _json(state.get_company(company_id))

    @app.get("/data_attributes")
    def list_data_attributes() -> Response:
        return _json(state.list_data_attributes(request.args.get("model")))

    @app.post("/data_attributes")
    def create_data_attribute() -> Response:
        return _json(state.create_data_attribute(body()))

    # -------------------------------------------------------------- admin routes

    @app.get("/_fake/health")
    def fake_health() -> Response:
        return _json({"ok": True})

    @app.get("/_fake/state")
    def fake_state() -> Response:
        return _json(state.snapshot())

    @app.get("/_fake/stats")
    def fake_stats() -> Response:
        return _json(state.stats())

    @app.post("/_fake/seed")
    def fake_seed() -> Response:
        return _json(state.seed(_admin_body()))

    @app.post("/_fake/reset")
    def fake_reset() -> Response:
        state.reset(stats_only=bool(_admin_body().get("stats_only", False)))
        return _json({"reset": True})

    @app.post("/_fake/faults")
    def fake_faults() -> Response:
        data = _admin_body()
        try:
            state.inject_fault(
                int(data["status"]),
                int(data.get("count", 1)),
                path_prefix=data.get("path_prefix"),
                method=data.get("method"),
                html=data.get("html"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(f"faults need status (4xx/5xx) and a positive count: {exc}") from exc
        return _json(state.stats()["pending_faults"])

    @app.delete("/_fake/faults")
    def fake_clear_faults() -> Response:
        state.clear_faults()
        return _json({"cleared": True})

    @app.post("/_fake/delay")
    def fake_delay() -> Response:
        data = _admin_body()
        try:
            state.inject_delay(
                float(data["seconds"]),
                int(data.get("count", 1)),
                path_prefix=data.get("path_prefix"),
                method=data.get("method"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(f"delay needs seconds >= 0 and a positive count: {exc}") from exc
        return _json(state.stats()["pending_delays"])

    @app.post("/_fake/latency")
    def fake_latency() -> Response:
        data = _admin_body()
        try:
            state.set_latency(float(data["seconds"]), float(data.get("jitter", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(f"latency needs seconds >= 0: {exc}") from exc
        return _json({"latency_seconds": state.stats()["latency_seconds"]})

    @app.post("/_fake/budget")
    def fake_budget() -> Response:
        data = _admin_body()
        try:
            state.set_budget(int(data["budget_per_window"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(f"budget needs a positive budget_per_window: {exc}") from exc
        return _json({"budget_per_window": state.stats()["budget_per_window"]})

    @app.post("/_fake/contacts/<id:contact_id>/merge")
    def fake_merge(contact_id: str) -> Response:
        into = _admin_body().get("into")
        return _json(state.merge_contact(contact_id, None if into is None else str(into)))

    @app.post("/_fake/contacts/<id:contact_id>/delete")
    def fake_delete_contact(contact_id: str) -> Response:
        return _json(state.delete_contact(contact_id))

    @app.post("/_fake/conversations/<num:conversation_id>/parts")
    def fake_add_part(conversation_id: str) -> Response:
        data = _admin_body()
        part = state.add_conversation_part(
            conversation_id,
            str(data.get("body") or ""),
            author=data.get("author"),
            part_type=str(data.get("part_type") or "comment"),
        )
        return _json(part)

    return app


# ============================================================================================
# python -m workers.sandbox.fake_intercom
# ============================================================================================


def _parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workers.sandbox.fake_intercom",
        description="Serve a local fake of the Intercom REST API (2.14).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--budget", type=int, default=1666, help="requests per window")
    parser.add_argument("--window", type=int, default=10, help="window length in seconds")
    parser.add_argument("--openapi", type=Path, default=None, help="Intercom OpenAPI YAML")
    parser.add_argument("--lenient", action="store_true", help="record violations, serve anyway")
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--version", default="2.14", help="required Intercom-Version")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per answer")
    parser.add_argument("--conversation-attribute", action="append", default=[], metavar="NAME",
                        help="a conversation data attribute that exists from the start "
                        "(repeatable; the API cannot create them)")  # fmt: skip
    return parser.parse_args(None if argv is None else list(argv))


def main(argv: Iterable[str] | None = None) -> int:
    """Run the fake in the foreground; prints ``fake-intercom listening on <url>`` first."""
    args = _parse_args(argv)
    from workers.sandbox.server import BackgroundServer

    config = FakeIntercomConfig(
        token=args.token,
        version=args.version,
        budget_per_window=args.budget,
        window_seconds=args.window,
        openapi_path=args.openapi,
        strict_openapi=not args.lenient,
        latency_seconds=args.latency,
    )
    app = create_fake_intercom(config)
    for name in args.conversation_attribute:
        app.extensions[STATE_EXTENSION].add_conversation_attribute({"name": name})
    server = BackgroundServer(app, host=args.host, port=args.port)

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # leave serve_forever and close the socket cleanly

    signal.signal(signal.SIGTERM, _terminate)
    print(f"fake-intercom listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
