"""Shared fixtures: settings from a dict, a real Redis (the machine's or an embedded one)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from workers.ops.embedded_redis import EmbeddedRedis
from workers.settings import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
VENDOR = REPO_ROOT / "tests" / "fixtures" / "vendor"  # vendor files, with their licences
VECTORS = VENDOR / "vectors"
OPENAPI = VENDOR / "intercom-openapi" / "api.intercom.io.2.14.yaml"  # Intercom's, API 2.14

BASE_ENV = {
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "INTERCOM_CLIENT_SECRET": "c1ient-secret-for-tests",
    "SANITY_WEBHOOK_SECRET": "whsec-local-dev",
    "INTERCOM_ACCESS_TOKEN": "tok_test_intercom",
}


def make_settings(**overrides: str | None) -> Settings:
    """Settings from ``BASE_ENV`` plus overrides (``None`` removes a variable)."""
    env = dict(BASE_ENV)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return load_settings(env)


def load_json(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def real_redis_url() -> Iterator[str]:
    """A real Redis server: ``REDIS_URL`` when set (CI points it at Redis 7), else embedded."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def real_redis(real_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(real_redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
