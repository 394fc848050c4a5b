"""What the operator commands report: ``status`` and ``check``, as plain functions of services."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis

from workers.articles import queries
from workers.clients.services import Services
from workers.conversations.rules import load_rules
from workers.conversations.tagging import rules_file_problem
from workers.conversations.triage import attribute_problems
from workers.jobs import routing
from workers.jobs.errors import ServiceError
from workers.settings import Settings
from workers.tasks.base import LAST_SUCCESS

REGIONS = {"api.intercom.io": "US", "api.eu.intercom.io": "EU", "api.au.intercom.io": "AU"}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: skipped (feature off)
    detail: str

    def line(self) -> str:
        verdict = {True: "ok  ", False: "FAIL", None: "skip"}[self.ok]
        return f"{verdict}  {self.name:<10} {self.detail}"


def run_checks(services: Services) -> list[Check]:
    """Settings, Redis, Intercom (``GET /me``) and Sanity (a query), one verdict each."""
    settings = services.settings
    features = [f for f in settings.FEATURES if f != "sentry"]
    off = [f"{f} (needs {', '.join(settings.missing(f))})" for f in features
           if settings.missing(f)]  # fmt: skip
    checks = [Check("settings", True, "valid" + (f"; off: {'; '.join(off)}" if off else ""))]
    checks.extend(feature_checks(settings))
    try:
        services.redis.ping()
        detail = "answers"
        try:
            policy = services.redis.config_get("maxmemory-policy").get("maxmemory-policy")
            if policy and policy != "noeviction":
                detail += f"; WARNING maxmemory-policy is {policy}, jobs may be evicted"
        except redis.ResponseError:
            detail += "; CONFIG not allowed, could not read maxmemory-policy"
        checks.append(Check("redis", True, detail))
    except redis.RedisError as exc:
        checks.append(Check("redis", False, f"unreachable: {type(exc).__name__}"))

    if settings.missing("intercom_api"):
        checks.append(Check("intercom", None, "off: set INTERCOM_ACCESS_TOKEN"))
    else:
        host = urlsplit(settings.INTERCOM_API_BASE).hostname or ""
        try:
            me = services.intercom.me()
            app = me.get("app") or {}
            workspace = app.get("name") or app.get("id_code") or "?"
            checks.append(Check("intercom", True,
                                f"token valid for admin {me.get('id')}, workspace {workspace}, "
                                f"region {REGIONS.get(host, host)}, "
                                f"version {settings.INTERCOM_VERSION}"))  # fmt: skip
        except (ServiceError, ValueError) as exc:
            checks.append(Check("intercom", False, str(exc)))
        except redis.RedisError as exc:  # the shared limiter lives in Redis
            reason = f"not checked: Redis unreachable ({type(exc).__name__})"
            checks.append(Check("intercom", False, reason))

    attributes = conversation_attributes_check(services)
    if attributes is not None:
        checks.append(attributes)

    if not settings.SANITY_PROJECT_ID or not settings.SANITY_DATASET:
        checks.append(Check("sanity", None, "off: set SANITY_PROJECT_ID and SANITY_DATASET"))
    else:
        try:
            count = queries.COUNT.run(services.sanity, type=settings.SANITY_ARTICLE_TYPE)
            checks.append(Check("sanity", True,
                                f"dataset {settings.SANITY_DATASET}: {count} "
                                f"{settings.SANITY_ARTICLE_TYPE} documents"))  # fmt: skip
        except ServiceError as exc:
            checks.append(Check("sanity", False, str(exc)))
        except redis.RedisError as exc:
            reason = f"not checked: Redis unreachable ({type(exc).__name__})"
            checks.append(Check("sanity", False, reason))
    return checks


def conversation_attributes_check(services: Services) -> Check | None:
    """Every conversation attribute a rule sets exists in Intercom (the 2.14 API cannot create
    them); None when no rule sets one."""
    try:
        problems = attribute_problems(services)
    except (ServiceError, ValueError) as exc:
        return Check("attributes", False, f"not checked: {exc}")
    except redis.RedisError as exc:
        return Check("attributes", False, f"not checked: Redis unreachable ({type(exc).__name__})")
    if problems is None:
        return None
    if problems:
        return Check("attributes", False, "configuration error: " + "; ".join(problems))
    return Check("attributes", True, "every conversation attribute the rules set exists")


# What the service does; webhooks alone only fill queues nobody may work on.
WORK_FEATURES = ("articles", "tagging", "enrichment")


def feature_checks(settings: Settings) -> list[Check]:
    """At least one feature on, and a rules file that loads whenever one is named."""
    checks = []
    on = [f for f in WORK_FEATURES if settings.enabled(f)]
    if on:
        checks.append(Check("features", True, "on: " + ", ".join(on)))
    else:
        needs = "; ".join(f"{f} needs {', '.join(settings.missing(f))}" for f in WORK_FEATURES)
        checks.append(Check("features", False, f"none is on ({needs})"))
    if settings.RULES_PATH:
        problem = rules_file_problem(settings.RULES_PATH)
        if problem:
            checks.append(Check("rules", False, problem))
        else:
            ruleset = load_rules(Path(settings.RULES_PATH))
            tags = ", ".join(ruleset.tag_names) or "none"
            checks.append(Check("rules", True, f"{settings.RULES_PATH}: {len(ruleset)} rules, "
                                               f"tags: {tags}"))  # fmt: skip
    return checks


def status_lines(services: Services, now: float | None = None) -> list[str]:
    """Queue depths, dead letters, rate-limit budget and last successes, for ``status``."""
    now = time.time() if now is None else now
    client = services.redis
    lines = ["queues:"]
    for queue in routing.QUEUES:
        lines.append(f"  {queue:<14} {client.llen(queue)} waiting")
    lines.append(f"  {'in progress':<14} {client.hlen('unacked')} delivered, not yet acknowledged")
    lines.append(f"dead letters:    {services.dead_letters.count()}")
    budget = services.intercom_limiter.peek()
    lines.append(
        f"intercom budget: {budget.remaining} of {budget.cap} left in this window "
        f"(resets in {max(0.0, budget.window_end - now):.1f}s)"
    )
    lines.append("last success:")
    for name in routing.TASK_NAMES:
        raw = client.get(LAST_SUCCESS + name)
        when = "never" if raw is None else (
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(raw))))  # fmt: skip
        lines.append(f"  {name:<32} {when}")
    return lines
