"""The README's sandbox walk-through, run as a user would: the whole path across real processes.

``intercom-sync dev --sandbox`` (gunicorn, a prefork worker, beat, fake Intercom, fake Sanity),
then ``intercom-sync send-test-webhook``, with a real deployment's settings exported: a signed
Sanity publish becomes an article with the right
HTML, an Intercom conversation notification gets its tags, a contact notification its company.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests

from tests.jobs import enqueuer, queued_jobs
from tests.processes import wait_for
from workers.ops.embedded_redis import EmbeddedRedis, free_port
from workers.sandbox.samples import SAMPLE_CONTACT_ID, SAMPLE_CONVERSATION_ID

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).parent / "intercom-sync")


def _state(port: int) -> dict:
    return requests.get(f"http://127.0.0.1:{port}/_fake/state", timeout=5).json()


def _values(collection: dict | list) -> list:
    return list(collection.values()) if isinstance(collection, dict) else list(collection)


def _snapshot(client: redis.Redis) -> dict[bytes, object]:
    """Every key of a small Redis with its type and value: equal snapshots, untouched Redis."""
    out: dict[bytes, object] = {}
    for key in client.keys("*"):
        kind = client.type(key)
        value = client.lrange(key, 0, -1) if kind == b"list" else client.dump(key)
        out[key] = (kind, value)
    return out


def test_sandbox_walkthrough_is_sealed_from_a_real_deployment(tmp_path: Path) -> None:
    """With a "real" deployment's settings exported (a second Redis holding a queued job, its
    webhook secrets and token), the README's walk-through works step by step, the sandbox's
    operator commands see the sandbox, and the real Redis is left exactly as it was."""
    port = free_port(count=3)  # the receiver, the fake Intercom (+1) and the fake Sanity (+2)
    real = EmbeddedRedis().start()
    real_client = redis.Redis.from_url(real.url)
    queued = enqueuer(real.url, real_client).enqueue("articles.sync", ("real-document-1",))
    before = _snapshot(real_client)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTERCOM_", "SANITY_"))}
    env.update(REDIS_URL=real.url, WORKER_CONCURRENCY="2", XDG_RUNTIME_DIR=str(runtime),
               INTERCOM_CLIENT_SECRET="real-intercom-client-secret",
               SANITY_WEBHOOK_SECRET="real-sanity-webhook-secret",
               INTERCOM_ACCESS_TOKEN="real-intercom-token")  # fmt: skip
    log_path = tmp_path / "sandbox.log"
    with log_path.open("wb") as log:
        stack = subprocess.Popen([CLI, "dev", "--sandbox", "--port", str(port)], cwd=tmp_path,
                                 env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    receiver = f"http://127.0.0.1:{port}"

    def output() -> str:
        return log_path.read_text(errors="replace")

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
                raise AssertionError("the sandbox stack exited:\n" + output()[-3000:])
            return check()

        wait_for(lambda: up(ready), 90, "the sandbox stack")
        wait_for(lambda: up(lambda: "ready." in output() and "Acquired lock" in output()), 60,
                 "the worker and beat")  # fmt: skip
        banner = output()
        assert "sandbox: sealed from your settings" in banner
        assert f"receiver listening on http://127.0.0.1:{port}" in banner
        ignored = banner.split("sandbox: ignoring from the environment and .env: ")[1]
        for name in ("REDIS_URL", "INTERCOM_CLIENT_SECRET", "SANITY_WEBHOOK_SECRET",
                     "INTERCOM_ACCESS_TOKEN"):  # fmt: skip
            assert name in ignored.splitlines()[0]
        assert "real-" not in banner  # names only, never values
        workdir = Path(banner.split("temporary files in ")[1].split(" (removed at exit)")[0])
        assert workdir.is_dir()

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run([CLI, *args], env=env, cwd=tmp_path, capture_output=True,
                                  text=True, timeout=60)  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            return done

        def send(*args: str) -> str:
            # As the README says it: no --receiver, the running sandbox is found.
            done = cli("send-test-webhook", *args)
            assert "sending to the sandbox stack" in done.stderr
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

        def enriched() -> bool:
            out = cli("status", "--dev").stdout
            return "never" not in next(line for line in out.splitlines()
                                       if "contacts.enrich" in line)  # fmt: skip

        wait_for(enriched, 60, "the enrichment of the sample contact")
        # sam@acme.example already belongs to "Acme Example": no second company from the domain.
        companies = [c.get("company_id") for c in _values(_state(port + 1)["companies"])]
        assert companies == ["acme-example"]
        contacts = {c["id"]: c for c in _values(_state(port + 1)["contacts"])}
        assert contacts[SAMPLE_CONTACT_ID]["companies"]["total_count"] == 1
        assert len(_values(_state(port + 1)["articles"])) == 1  # the echo created nothing

        # REDIS_URL is exported, so plain commands talk to the real deployment; --dev to the
        # sandbox.
        real_dlq = cli("dlq", "list")  # reads only: the real Redis must stay as it was
        assert "REDIS_URL from the environment" in real_dlq.stderr and real_dlq.stdout == ""
        sandbox_status = cli("status", "--dev")
        assert "using the sandbox stack" in sandbox_status.stderr
        assert "articles       0 waiting" in sandbox_status.stdout
        assert "articles.sync" in sandbox_status.stdout
        assert "never" not in sandbox_status.stdout.split("articles.sync")[1].splitlines()[0]
        # The sandbox's own settings reach the operator commands too (no variable to copy).
        dry = cli("backfill", "articles", "--dry-run", "--dev")
        assert "sandbox" in dry.stderr and "skip" in (dry.stdout + dry.stderr).lower()
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.kill()
        try:
            after = _snapshot(real_client)
            real_jobs = queued_jobs(real_client)
        finally:
            real_client.close()
            real.close()
    assert stack.returncode == 0, output()[-3000:]
    assert after == before  # the queued job is still there; no beat lock, no dedup key
    assert real_jobs == [("articles.sync", ["real-document-1"])] and queued.queued
    assert not workdir.exists()  # the sandbox's temporary folder is gone
    assert list((runtime / "intercom-sync").glob("dev-*.json")) == []
