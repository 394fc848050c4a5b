"""``intercom-sync backfill articles`` of 1,000 documents through real worker processes, under a
fake Intercom budget small enough that the shared rate limit decides the pace.

The fake answers 429 the moment a 10-second window holds more requests than its budget; the
workers' shared limiter must keep every window at or under it, across all processes, while
leaving little of the budget idle.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import redis

from tests.conftest import REPO_ROOT
from tests.processes import BIN, base_env, celery_worker, wait_for
from tests.unit.articles.test_harness import Fakes, article_doc

pytestmark = pytest.mark.integration

DOCUMENTS = 1000
BUDGET = 300  # per 10-second window: the fake's and ours (INTERCOM_RATE_LIMIT_PER_MINUTE / 6)


def test_backfill_of_1000_documents_respects_the_shared_rate_limit(real_redis: redis.Redis,
                                                                    real_redis_url: str) -> None:
    fakes = Fakes(budget=BUDGET)  # no webhook: the echo is covered by the end-to-end tests
    try:
        fakes.sanity.seed([article_doc(f"bf-{i:04d}", f"Article {i}") for i in range(DOCUMENTS)])
        env = base_env(REDIS_URL=real_redis_url, INTERCOM_RATE_LIMIT_PER_MINUTE=str(BUDGET * 6),
                       **fakes.env())  # fmt: skip
        with celery_worker(env, concurrency=4, name="bf1") as w1, \
                celery_worker(env, concurrency=4, name="bf2") as w2:  # fmt: skip
            started = time.monotonic()
            cli = subprocess.run([str(BIN / "intercom-sync"), "backfill", "articles"], env=env,
                                 cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
            assert cli.returncode == 0, cli.stderr
            assert cli.stdout == f"{DOCUMENTS} documents queued for articles.sync\n"
            assert "backfill: 1000 documents queued" in cli.stderr

            def synced() -> bool:
                docs = fakes.sanity.snapshot()["documents"]
                return sum(1 for d in docs if d.get("intercomArticleId")) == DOCUMENTS

            wait_for(synced, 150, "every document synced")
            elapsed = time.monotonic() - started
            parked = [line for w in (w1, w2) for line in w.json_lines()
                      if line.get("event") == "task.parked"]  # fmt: skip
        stats = fakes.intercom.stats()
        print(f"\nbackfill of {DOCUMENTS}: {elapsed:.1f} s, {stats['served_429']} 429s, "
              f"windows {[w['requests'] for w in stats['windows']]}")
        assert parked == []
        assert stats["served_429"] == 0 and stats["rate_limited"] == 0
        assert stats["requests"] == {"POST /articles": DOCUMENTS}
        # The limit was approached: the limiter left little of the budget idle. Exactly full
        # windows need workers with CPU to spare, which two cores shared by eight worker
        # processes and both fakes do not always have (274 to 300 seen); bench/drain.py measures
        # how full the windows run, this only catches a limiter that holds work back.
        assert max(w["requests"] for w in stats["windows"]) >= BUDGET * 0.85
        mapped = {d["intercomArticleId"] for d in fakes.sanity.snapshot()["documents"]}
        assert mapped == {a["id"] for a in fakes.articles()} and len(mapped) == DOCUMENTS
        assert fakes.violations() == []
    finally:
        fakes.stop()
