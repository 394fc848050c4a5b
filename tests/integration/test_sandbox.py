"""The README's sandbox walk-through, run as a user would: the whole path across real processes.

``intercom-sync dev --sandbox`` (gunicorn, a prefork worker, beat, fake Intercom, fake Sanity),
then ``intercom-sync send-test-webhook``: a signed Sanity publish becomes an article with the right
HTML, an Intercom conversation notification gets its tags, a contact notification its company.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO_ROOT
from tests.processes import wait_for
from workers.ops.embedded_redis import free_port
from workers.sandbox.samples import SAMPLE_CONTACT_ID, SAMPLE_CONVERSATION_ID

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).parent / "intercom-sync")


def _state(port: int) -> dict:
    return requests.get(f"http://127.0.0.1:{port}/_fake/state", timeout=5).json()


def _values(collection: dict | list) -> list:
    return list(collection.values()) if isinstance(collection, dict) else list(collection)


def test_sandbox_walkthrough(tmp_path: Path, real_redis, real_redis_url: str) -> None:
    port = free_port(count=3)  # the receiver, the fake Intercom (+1) and the fake Sanity (+2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTERCOM_", "SANITY_"))}
    env.update(REDIS_URL=real_redis_url, WORKER_CONCURRENCY="2")
    log_path = tmp_path / "sandbox.log"
    with log_path.open("wb") as log:
        stack = subprocess.Popen([CLI, "dev", "--sandbox", "--port", str(port)], cwd=REPO_ROOT,
                                 env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    receiver = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            try:
                ok = requests.get(receiver + "/readyz", timeout=1).ok
                return ok and requests.get(f"http://127.0.0.1:{port + 1}/_fake/health",
                                           timeout=1).ok  # fmt: skip
            except requests.RequestException:
                return False

        def up(check) -> bool:
            if stack.poll() is not None:
                raise AssertionError("the sandbox stack exited:\n"
                                     + log_path.read_text(errors="replace")[-3000:])
            return check()

        wait_for(lambda: up(ready), 90, "the sandbox stack")
        wait_for(lambda: up(lambda: "ready." in log_path.read_text(errors="replace")), 60,
                 "the worker")  # fmt: skip

        def send(*args: str) -> str:
            done = subprocess.run([CLI, "send-test-webhook", *args, "--receiver", receiver],
                                  env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        assert '"status": "queued"' in send("sanity")

        def article() -> dict | None:
            found = _values(_state(port + 1)["articles"])
            return found[0] if found else None

        made = wait_for(article, 60, "the article in the fake Intercom")
        assert made["title"] == "How refunds work" and made["state"] == "published"
        assert made["body"].startswith("<h2>Refunds</h2><p>Refunds reach your card in "
                                       "<strong>5 to 10 days</strong>")  # fmt: skip
        assert '<a href="https://example.com/terms">terms</a>' in made["body"]

        send("intercom")

        def tags() -> list[str]:
            # The fake lists each conversation's tag names, sorted.
            return _state(port + 1)["conversation_tags"].get(SAMPLE_CONVERSATION_ID) or []

        assert wait_for(tags, 60, "tags on the sample conversation") == ["billing", "enterprise"]

        def our_parts() -> dict[str, list[dict]] | None:
            state = _state(port + 1)
            [conversation] = [c for c in _values(state["conversations"])
                              if c["id"] == SAMPLE_CONVERSATION_ID]  # fmt: skip
            found: dict[str, list[dict]] = {}
            for part in conversation["conversation_parts"]["conversation_parts"]:
                if part["author"]["type"] == "admin":
                    found.setdefault(part["part_type"], []).append(part)
            return found if {"note", "comment", "snoozed"} <= set(found) else None

        # The sample rule with every action: a note for the team, an article reply, a snooze.
        actions = wait_for(our_parts, 60, "the sample rule's note, reply and snooze")
        [note], [reply] = actions["note"], actions["comment"]
        assert note["body"] == "<p>Refund asked by Sam Sandbox (Acme Example, plan enterprise)</p>"
        assert f'<a href="{made["url"]}">How refunds work</a>' in reply["body"]
        done = log_path.read_text(errors="replace").count("tag.done")
        send("intercom", "--no-seed")  # the same conversation again: nothing twice
        wait_for(lambda: log_path.read_text(errors="replace").count("tag.done") > done, 60,
                 "the second job on the sample conversation")  # fmt: skip
        again = our_parts() or {}
        assert [len(again.get(k, [])) for k in ("note", "comment", "snoozed")] == [1, 1, 1]
        # The worker checked at start that the attribute the sample rule sets exists.
        log_text = log_path.read_text(errors="replace")
        assert "rules.attributes_checked" in log_text and "rules.config_error" not in log_text

        send("intercom", "--topic", "contact.user.created", "--no-seed")

        def domain_company() -> bool:
            companies = _values(_state(port + 1)["companies"])
            return any(c.get("company_id") == "acme.example" for c in companies)

        wait_for(domain_company, 60, "the email-domain company on the sample contact")
        contacts = {c["id"]: c for c in _values(_state(port + 1)["contacts"])}
        assert contacts[SAMPLE_CONTACT_ID]["companies"]["total_count"] >= 1
        assert len(_values(_state(port + 1)["articles"])) == 1  # the echo created nothing
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.kill()
    assert stack.returncode == 0, log_path.read_text(errors="replace")[-3000:]
