"""The worker-start check of conversation attributes (the ``worker_ready`` hook)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import fakeredis
import pytest
from celery.signals import worker_ready

import workers.tasks.conversations as tasks
from tests.unit.conversations.test_tagging import FakeIntercom, services_for, write_rules
from workers.jobs.logs import TextFormatter

RULES = """
rules:
  - name: refund-request
    when: {text_any: [refund]}
    attributes: {Category: Billing, Tier: gold}
"""


@pytest.mark.parametrize(("seeded", "event", "level"), [
    (["Category"], "rules.config_error", logging.ERROR),
    (["Category", "Tier"], "rules.attributes_checked", logging.INFO),
])  # fmt: skip
def test_the_worker_names_missing_conversation_attributes_at_start(
    seeded: list[str], event: str, level: int, tmp_path: Path, monkeypatch, caplog
) -> None:
    fake = FakeIntercom()
    try:
        fake.state.seed({"conversation_attributes": [{"name": n} for n in seeded]})
        services = services_for(fake, fakeredis.FakeRedis(server=fakeredis.FakeServer()),
                                RULES_PATH=write_rules(tmp_path, RULES))  # fmt: skip
        monkeypatch.setattr(tasks, "get_services", lambda: services)
        with caplog.at_level(logging.INFO, logger="intercom_sync.triage"):
            worker_ready.send(sender=None)  # what Celery sends once the worker is up
            for thread in threading.enumerate():
                if thread.name == "attributes-check":
                    thread.join(timeout=30)
        [record] = [r for r in caplog.records if r.getMessage() == event]
        assert record.levelno == level
        line = TextFormatter().format(record)
        assert ("'Tier'" in line and "refund-request" in line) == (event == "rules.config_error")
        assert "'Category'" not in line
    finally:
        fake.server.stop()


def test_an_unreachable_intercom_does_not_stop_the_worker(tmp_path: Path, monkeypatch,
                                                          caplog) -> None:  # fmt: skip
    fake = FakeIntercom()
    url = fake.url
    fake.server.stop()  # nothing answers there any more
    fake.url = url
    services = services_for(fake, fakeredis.FakeRedis(server=fakeredis.FakeServer()),
                            RULES_PATH=write_rules(tmp_path, RULES))  # fmt: skip
    monkeypatch.setattr(tasks, "get_services", lambda: services)
    with caplog.at_level(logging.INFO, logger="intercom_sync.triage"):
        tasks.report_attribute_problems(attempts=2, pause=0.01)
    assert [r.getMessage() for r in caplog.records] == ["rules.attributes_unchecked"]
