"""Which stack the command line talks to (.env, REDIS_URL, a running ``intercom-sync dev``), and
the small command-line promises: ``rules test`` inputs, ``dlq`` task names and times, pipes."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import fakeredis
import pytest
import responses

from tests.conftest import REPO_ROOT, make_settings
from workers.clients.services import Services
from workers.jobs import errors
from workers.ops import cli, devstate
from workers.sandbox import stack as sandbox_stack
from workers.settings import get_settings

CLI = Path(sys.executable).parent / "intercom-sync"


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty working directory and runtime directory, and no setting in the environment;
    the environment as it was afterwards (``.env`` files write into it)."""
    saved = dict(os.environ)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    for name in list(os.environ):
        if name.startswith(("REDIS_", "INTERCOM_", "SANITY_", "RULES_", "ENRICHMENT_")):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()
    os.environ.clear()
    os.environ.update(saved)


def run(args: list[str], capsys) -> tuple[int, str, str]:
    get_settings.cache_clear()
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def publish(tmp_path: Path, **fields) -> devstate.DevStack:
    stack = devstate.DevStack(pid=os.getpid(), receiver=fields.pop("receiver", "http://127.0.0.1:8123"),
                              redis_url=fields.pop("redis_url", "redis://127.0.0.1:6390/0"),
                              started_at=time.time(), cwd=str(tmp_path), **fields)  # fmt: skip
    return stack


# --- .env -------------------------------------------------------------------------------------


def test_env_file_is_read_and_the_environment_wins(isolated: Path, monkeypatch) -> None:
    (isolated / ".env").write_text('INTERCOM_ADMIN_ID=from-dotenv\nSANITY_DATASET=production\n'
                                   'CONTACTS_REFRESH_CRON="5 4 * * *"\n')  # fmt: skip
    monkeypatch.setenv("SANITY_DATASET", "staging")
    assert cli.load_env_file() is True
    settings = get_settings()
    assert settings.INTERCOM_ADMIN_ID == "from-dotenv"
    assert settings.SANITY_DATASET == "staging"
    assert settings.CONTACTS_REFRESH_CRON == "5 4 * * *"


def test_a_bad_value_in_env_file_stops_the_cli_in_one_line(isolated: Path, capsys) -> None:
    (isolated / ".env").write_text("LOG_FORMAT=xml\n")
    code, _out, err = run(["status"], capsys)
    assert code == 2 and err.strip() == "intercom-sync: invalid setting: LOG_FORMAT: Must be " \
        "one of: text, json."


def test_env_example_is_sourceable_by_a_posix_shell() -> None:
    # `set -a; . ./.env.example` is how users load it into a shell: every value must survive.
    script = "set -a; . ./.env.example; printf '%s\\n' \"$CONTACTS_REFRESH_CRON\" \"$LOG_LEVEL\""
    done = subprocess.run(["sh", "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=10)  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.splitlines() == ["17 3 * * *", "INFO"]


# --- a running dev stack ----------------------------------------------------------------------


def test_status_uses_the_running_dev_stack_when_redis_url_is_unset(isolated, capsys,
                                                                    monkeypatch) -> None:
    fake = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    fake.lpush("articles", b"m1")
    seen = {}

    def services(settings):
        seen["redis_url"] = settings.REDIS_URL
        return Services(settings, redis_client=fake)

    monkeypatch.setattr(cli, "_services", services)
    with devstate.published(publish(isolated)) as path:
        assert devstate.find() is not None
        code, out, err = run(["status"], capsys)
    assert not path.exists()
    assert code == 0 and "articles       1 waiting" in out
    assert seen["redis_url"] == "redis://127.0.0.1:6390/0"
    assert "using the dev stack of `intercom-sync dev`" in err and "6390" in err


def test_explicit_redis_url_wins_over_the_dev_stack_unless_dev_is_asked(isolated, capsys,
                                                                        monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(cli, "_services", lambda settings: seen.append(settings.REDIS_URL) or
                        Services(settings, redis_client=fakeredis.FakeRedis(
                            server=fakeredis.FakeServer())))  # fmt: skip
    monkeypatch.setenv("REDIS_URL", "redis://real.example:6379/0")
    with devstate.published(publish(isolated)):
        assert run(["dlq", "list"], capsys)[0] == 0
        _code, _out, err = run(["dlq", "list", "--dev"], capsys)
    assert seen == ["redis://real.example:6379/0", "redis://127.0.0.1:6390/0"]
    assert "using the dev stack" in err


def test_dev_without_a_running_stack_says_so(isolated, capsys) -> None:
    code, _out, err = run(["status", "--dev"], capsys)
    assert code == 2 and "no `intercom-sync dev` is running" in err


def test_a_dead_stack_is_ignored_and_its_file_removed(isolated) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = publish(isolated)
    path = devstate.runtime_dir() / f"dev-{dead.pid}.json"
    path.write_text(json.dumps({**stale.__dict__, "pid": dead.pid}))
    assert devstate.running() == []
    assert not path.exists()


def test_a_sandbox_stack_brings_its_own_settings(isolated, capsys, monkeypatch) -> None:
    sandbox_env = {"REDIS_URL": "redis://127.0.0.1:6391/0", "INTERCOM_ACCESS_TOKEN": "sbx",
                   "SANITY_PROJECT_ID": "sandbox", "SANITY_DATASET": "production",
                   "SANITY_API_BASE": "http://127.0.0.1:8125"}  # fmt: skip
    monkeypatch.setenv("INTERCOM_ACCESS_TOKEN", "real-token")
    seen = {}
    monkeypatch.setattr(cli, "_services", lambda settings: seen.setdefault("s", settings) and
                        Services(settings, redis_client=fakeredis.FakeRedis(
                            server=fakeredis.FakeServer())))  # fmt: skip
    with devstate.published(publish(isolated, sandbox_env=sandbox_env)):
        run(["status"], capsys)
    settings = seen["s"]
    assert settings.INTERCOM_ACCESS_TOKEN.reveal() == "sbx"
    assert settings.sanity_api_base == "http://127.0.0.1:8125"


@responses.activate
def test_send_test_webhook_signs_with_the_target_sandboxs_secret(isolated, capsys,
                                                                 monkeypatch) -> None:
    monkeypatch.setenv("INTERCOM_CLIENT_SECRET", "real-deployment-secret")
    receiver = "http://127.0.0.1:8123"
    sandbox_env = {"INTERCOM_CLIENT_SECRET": sandbox_stack.INTERCOM_CLIENT_SECRET,
                   "INTERCOM_API_BASE": "http://127.0.0.1:8124",
                   "REDIS_URL": "redis://127.0.0.1:6391/0"}  # fmt: skip
    responses.add("POST", "http://127.0.0.1:8124/_fake/seed", json={})
    responses.add("POST", receiver + "/webhooks/intercom", status=202, json={"status": "queued"})
    with devstate.published(publish(isolated, receiver=receiver, sandbox_env=sandbox_env)):
        code, _out, err = run(["send-test-webhook", "intercom"], capsys)
    assert code == 0, err
    sent = responses.calls[-1].request
    expected = hmac.new(sandbox_stack.INTERCOM_CLIENT_SECRET.encode(), sent.body,
                        hashlib.sha1).hexdigest()  # fmt: skip
    assert sent.headers["X-Hub-Signature"] == f"sha1={expected}"
    assert "sending to the sandbox stack" in err


@responses.activate
def test_send_test_webhook_to_another_receiver_uses_the_configured_secret(isolated, capsys,
                                                                          monkeypatch) -> None:
    monkeypatch.setenv("INTERCOM_CLIENT_SECRET", "configured-secret")
    responses.add("POST", "http://127.0.0.1:9000/webhooks/intercom", status=202, json={})
    code, _out, _err = run(["send-test-webhook", "intercom", "--no-seed", "--receiver",
                            "http://127.0.0.1:9000"], capsys)  # fmt: skip
    assert code == 0
    sent = responses.calls[-1].request
    expected = hmac.new(b"configured-secret", sent.body, hashlib.sha1).hexdigest()
    assert sent.headers["X-Hub-Signature"] == f"sha1={expected}"
    monkeypatch.delenv("INTERCOM_CLIENT_SECRET")
    code, _out, err = run(["send-test-webhook", "intercom", "--no-seed", "--receiver",
                           "http://127.0.0.1:9000"], capsys)  # fmt: skip
    assert code == 2 and "set INTERCOM_CLIENT_SECRET" in err


# --- rules test -------------------------------------------------------------------------------

EXAMPLE_RULES = REPO_ROOT / "docs" / "examples" / "rules.yaml"


@pytest.mark.parametrize("argument, fragment", [
    ("conversation.json", "conversation.json: no such file"),
    ("samples/conv.txt", "samples/conv.txt: no such file"),
    ("./missing", "./missing: no such file"),
])  # fmt: skip
def test_rules_test_names_a_missing_file(isolated, capsys, argument, fragment) -> None:
    code, out, err = run(["rules", "test", "--rules", str(EXAMPLE_RULES), argument], capsys)
    assert code == 2 and fragment in err and out == ""


def test_rules_test_names_a_file_that_does_not_parse(isolated, capsys) -> None:
    (isolated / "broken.json").write_text('{"type": "conversation", ')
    code, _out, err = run(["rules", "test", "--rules", str(EXAMPLE_RULES), "broken.json"], capsys)
    assert code == 2 and "broken.json: not valid JSON" in err


def test_rules_test_names_a_missing_rules_file(isolated, capsys) -> None:
    code, _out, err = run(["rules", "test", "--rules", "nope.yaml", "refund"], capsys)
    assert code == 2 and "nope.yaml: no such rules file" in err


@pytest.mark.parametrize("text, tags", [
    ("I was charged twice, please refund", "tags: billing"),
    ("refund", "tags: billing"),
    ("the export button does nothing", "tags: bug"),
])  # fmt: skip
def test_rules_test_still_matches_text(isolated, capsys, text, tags) -> None:
    code, out, _err = run(["rules", "test", "--rules", str(EXAMPLE_RULES), text], capsys)
    assert code == 0 and out.splitlines()[-1] == tags


def test_the_readme_example_rules_are_the_shipped_file() -> None:
    import yaml

    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("## Tagging rules", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(block) == yaml.safe_load(EXAMPLE_RULES.read_text())
    assert "--rules docs/examples/rules.yaml" in readme


# --- dlq --------------------------------------------------------------------------------------


@pytest.fixture
def parked(monkeypatch) -> Services:
    services = Services(make_settings(), redis_client=fakeredis.FakeRedis(
        server=fakeredis.FakeServer()))  # fmt: skip
    monkeypatch.setattr(cli, "get_settings", lambda: services.settings)
    monkeypatch.setattr(cli, "_services", lambda settings: services)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    services.dead_letters.park("contacts.enrich", ["c1"], errors.ServerError(
        "intercom: 503", service="intercom", status=503), attempts=2)  # fmt: skip
    return services


@pytest.mark.parametrize("action", [["list"], ["replay"], ["purge", "--yes"]])
def test_dlq_with_an_unknown_task_names_the_known_ones(isolated, parked, capsys,
                                                       action) -> None:
    code, _out, err = run(["dlq", *action, "--task", "no.such.task"], capsys)
    assert code == 2
    assert "no task 'no.such.task'" in err and "contacts.enrich" in err
    assert "conversations.tag" in err and parked.dead_letters.count() == 1


def test_dlq_show_prints_times_in_iso_utc(isolated, parked, capsys) -> None:
    [entry] = parked.dead_letters.list()
    code, out, _err = run(["dlq", "show", entry.id], capsys)
    shown = json.loads(out)
    assert code == 0
    from datetime import UTC, datetime

    for name in ("first_failed_at", "last_failed_at"):
        assert shown[name].endswith("Z")
        when = datetime.fromisoformat(shown[name].replace("Z", "+00:00"))
        assert abs(when.timestamp() - getattr(entry, name)) < 1 and when.tzinfo == UTC


def test_dlq_replay_has_no_yes_flag(isolated, parked, capsys) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.main(["dlq", "replay", "--all", "--yes"])
    assert refused.value.code == 2
    assert "--yes" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["dlq", "replay", "--help"])
    assert "--yes" not in capsys.readouterr().out


# --- pipes ------------------------------------------------------------------------------------


def test_output_into_a_closed_pipe_ends_without_a_traceback(real_redis_url: str,
                                                             tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`head`) has gone: every write fails with EPIPE
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": real_redis_url, "XDG_RUNTIME_DIR": str(tmp_path)}
    try:
        done = subprocess.run([str(CLI), "status"], stdout=write_end, stderr=subprocess.PIPE,
                              env=env, cwd=tmp_path, text=True, timeout=60)  # fmt: skip
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 141
