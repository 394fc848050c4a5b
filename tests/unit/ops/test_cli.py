"""``intercom-sync status``, ``check`` and ``dlq``: the plain functions and the command line.

Redis is fakeredis, Intercom and Sanity are ``responses`` mocks; the command line is driven
through ``workers.ops.cli.main`` with its services swapped for those, plus a few real subprocesses
for what only the installed entry point can show (exit codes on bad settings, ``--help``).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import fakeredis
import pytest
import responses
from celery import Celery

from tests.conftest import make_settings
from tests.jobs import queued_jobs
from workers.clients.services import Services
from workers.jobs import errors, routing
from workers.jobs.celery_app import configure_celery
from workers.ops import cli
from workers.ops.operations import Check, run_checks, status_lines
from workers.settings import Settings
from workers.tasks.base import LAST_SUCCESS

CLI = Path(sys.executable).parent / "intercom-sync"
INTERCOM = "https://api.eu.intercom.io"
SANITY = "https://proj1.api.sanity.io"

ME = {"type": "admin", "id": "1295", "email": "admin@example.com",
      "app": {"type": "app", "id_code": "abc123", "name": "Acme Support"}}  # fmt: skip


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def full_settings(**overrides: str | None) -> Settings:
    values: dict[str, str | None] = {
        "INTERCOM_API_BASE": INTERCOM,
        "SANITY_PROJECT_ID": "proj1",
        "SANITY_DATASET": "production",
        "SANITY_TOKEN": "sk_sanity_secret",
        "INTERCOM_RATE_LIMIT_PER_MINUTE": "600",
    }
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture
def services(fake: fakeredis.FakeRedis) -> Services:
    # A Celery app of its own: the process-wide one configures itself from the environment,
    # which a test run does not have to provide.
    settings = full_settings()
    app = configure_celery(Celery("cli-tests", set_as_current=False), settings)
    return Services(settings, redis_client=fake, celery_app=app)


class Run(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path):
    """Run ``intercom-sync ARGS`` in-process against given services; (code, stdout, stderr).

    In an empty working directory and runtime directory: no ``.env`` and no running
    ``intercom-sync dev`` of the machine can reach these tests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))

    def run(args: list[str], services: Services, stdin: object | None = None) -> Run:
        monkeypatch.setattr(cli, "get_settings", lambda: services.settings)
        monkeypatch.setattr(cli, "_services", lambda settings: services)
        monkeypatch.setattr(sys, "stdin", stdin if stdin is not None else io.StringIO(""))
        code = cli.main(args)
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def mock_services_ok(rsps: responses.RequestsMock) -> None:
    reset = str(int(time.time()) + 5)
    rsps.add("GET", INTERCOM + "/me", json=ME,
             headers={"X-RateLimit-Remaining": "99", "X-RateLimit-Reset": reset})
    rsps.add("POST", SANITY + "/v2025-02-19/data/query/production", json={"result": 12, "ms": 2})


def verdicts(lines: list[str]) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in lines}


# --- status -----------------------------------------------------------------------------------


def test_status_lists_queues_dead_letters_budget_and_last_success(services, fake) -> None:
    fake.lpush("articles", b"m1", b"m2", b"m3")
    fake.lpush("contacts", b"m4")
    fake.hset("unacked", mapping={"tag1": b"x", "tag2": b"y"})
    services.dead_letters.park("conversations.tag", ["1"], ValueError("x"), attempts=1)
    if time.time() % 10 > 8:  # the acquisitions and the status must share one 10 s window
        time.sleep(10 - time.time() % 10 + 0.05)
    for _ in range(7):
        services.intercom_limiter.acquire()
    succeeded = 1_763_712_000.0  # 2025-11-21 08:00:00 UTC
    fake.set(LAST_SUCCESS + routing.ARTICLES_SYNC, repr(succeeded))

    lines = status_lines(services)
    text = "\n".join(lines)
    queue_lines = {line.split()[0]: line for line in lines if line.endswith("waiting")}
    assert set(queue_lines) == set(routing.QUEUES)
    assert queue_lines["articles"].split()[1] == "3"
    assert queue_lines["contacts"].split()[1] == "1"
    assert queue_lines["conversations"].split()[1] == "0"
    assert "in progress    2 delivered" in text
    assert "dead letters:    1" in lines
    assert "intercom budget: 93 of 100 left in this window" in text
    assert f"{routing.ARTICLES_SYNC:<32} 2025-11-21 08:00:00 UTC" in text
    for name in set(routing.TASK_NAMES) - {routing.ARTICLES_SYNC}:
        assert f"{name:<32} never" in text


def test_status_command_prints_the_same_and_exits_0(services, run_cli) -> None:
    code, out, _err = run_cli(["status"], services)
    assert code == 0
    # The budget line carries a countdown that moves between the two calls.
    countdown = re.compile(r"\(resets in [0-9.]+s\)")
    printed = [countdown.sub("(resets in …)", line) for line in out.splitlines()]
    expected = [countdown.sub("(resets in …)", line) for line in status_lines(services)]
    assert printed == expected
    assert "intercom budget: 100 of 100 left in this window (resets in …)" in printed


def test_status_with_redis_down_says_so_and_exits_1(run_cli) -> None:
    down = Services(full_settings(REDIS_URL="redis://127.0.0.1:1/0"))
    code, _out, err = run_cli(["status"], down)
    assert code == 1
    assert "Redis is unreachable" in err and "REDIS_URL" in err
    assert "Traceback" not in err


# --- check ------------------------------------------------------------------------------------


def test_check_all_ok(services, run_cli) -> None:
    with responses.RequestsMock() as rsps:
        mock_services_ok(rsps)
        code, out, _err = run_cli(["check"], services)
    assert code == 0
    lines = out.splitlines()
    assert verdicts(lines) == {"settings": "ok", "features": "ok", "redis": "ok",
                               "intercom": "ok", "sanity": "ok"}  # fmt: skip
    intercom = next(line for line in lines if " intercom " in line)
    for part in ("admin 1295", "Acme Support", "region EU", "version 2.14"):
        assert part in intercom
    assert "12 supportArticle documents" in out
    assert "sk_sanity_secret" not in out and "tok_test_intercom" not in out


def test_check_fails_on_a_bad_intercom_token(services, run_cli) -> None:
    with responses.RequestsMock() as rsps:
        rsps.add("GET", INTERCOM + "/me", status=401,
                 json={"type": "error.list", "errors": [{"code": "unauthorized",
                                                         "message": "Access Token Invalid"}]})
        rsps.add("POST", SANITY + "/v2025-02-19/data/query/production", json={"result": 0})
        code, out, _err = run_cli(["check"], services)
    assert code == 1
    assert verdicts(out.splitlines())["intercom"] == "FAIL"
    assert verdicts(out.splitlines())["sanity"] == "ok"
    assert "401 unauthorized" in out


def test_check_fails_when_sanity_is_unreachable(services, run_cli) -> None:
    import requests

    with responses.RequestsMock() as rsps:
        rsps.add("GET", INTERCOM + "/me", json=ME)
        rsps.add("POST", SANITY + "/v2025-02-19/data/query/production",
                 body=requests.exceptions.ConnectTimeout("timed out"))
        code, out, _err = run_cli(["check"], services)
    assert code == 1
    assert verdicts(out.splitlines()) == {"settings": "ok", "features": "ok", "redis": "ok",
                                          "intercom": "ok", "sanity": "FAIL"}  # fmt: skip
    assert "ConnectTimeout" in out


def test_check_skips_switched_off_features_and_still_passes(fake, run_cli) -> None:
    # Only enrichment is on (an access token): Sanity is skipped, and check passes.
    bare = Services(make_settings(), redis_client=fake)
    with responses.RequestsMock() as rsps:
        rsps.add("GET", "https://api.intercom.io/me", json=ME)
        code, out, _err = run_cli(["check"], bare)
    assert code == 0, out
    lines = out.splitlines()
    assert verdicts(lines) == {"settings": "ok", "features": "ok", "redis": "ok",
                               "intercom": "ok", "sanity": "skip"}  # fmt: skip
    settings_line = next(line for line in lines if " settings " in line)
    assert "articles (needs" in settings_line and "INTERCOM_AUTHOR_ID" in settings_line
    assert "on: enrichment" in next(line for line in lines if " features " in line)


def test_check_fails_when_no_feature_is_on(fake, run_cli) -> None:
    # Webhook secrets alone: jobs would be queued for features that are all off.
    bare = Services(make_settings(INTERCOM_ACCESS_TOKEN=None), redis_client=fake)
    with responses.RequestsMock():  # no request may go out
        code, out, _err = run_cli(["check"], bare)
    assert code == 1
    verdict = verdicts(out.splitlines())
    assert verdict["features"] == "FAIL" and verdict["intercom"] == "skip"
    features = next(line for line in out.splitlines() if " features " in line)
    assert "none is on" in features and "tagging needs" in features and "RULES_PATH" in features


def test_check_validates_the_rules_file(fake, run_cli, tmp_path) -> None:
    good = tmp_path / "rules.yaml"
    good.write_text("rules:\n  - tag: billing\n    when: {text_any: [refund]}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - tag: billing\n    when: {text_any: [refund]}\n"
                   "  - tag: vip\n    when: {text_anyy: [x]}\n")  # fmt: skip
    for path, verdict in ((good, "ok"), (bad, "FAIL")):
        settings = make_settings(RULES_PATH=str(path), INTERCOM_ADMIN_ID="1295")
        with responses.RequestsMock() as rsps:
            rsps.add("GET", "https://api.intercom.io/me", json=ME)
            code, out, _err = run_cli(["check"], Services(settings, redis_client=fake))
        rules = next(line for line in out.splitlines() if " rules " in line)
        assert rules.split()[0] == verdict and str(path) in rules
        assert code == (0 if verdict == "ok" else 1)
    assert "rules[1].when" in rules and "text_anyy" in rules


def test_check_result_lines_have_fixed_columns() -> None:
    assert Check("redis", True, "answers").line() == "ok    redis      answers"
    assert Check("intercom", False, "401").line() == "FAIL  intercom   401"
    assert Check("sanity", None, "off").line() == "skip  sanity     off"


def test_check_with_redis_down_still_reports_each_check(run_cli) -> None:
    # ``check`` is what an operator runs when something is wrong. With Redis down, the Intercom
    # check needs the Redis limiter, raises RedisError out of run_checks, and the command
    # prints only "Redis is unreachable": no per-check lines, and Intercom/Sanity untested.
    down = Services(full_settings(REDIS_URL="redis://127.0.0.1:1/0"))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        mock_services_ok(rsps)
        checks = run_checks(down)
        code, out, _err = run_cli(["check"], down)
    assert {c.name: c.ok for c in checks}["redis"] is False
    assert code == 1
    assert verdicts(out.splitlines())["redis"] == "FAIL"


def test_run_checks_reports_a_token_error_without_the_token(fake) -> None:
    services = Services(full_settings(INTERCOM_ACCESS_TOKEN="tok_secret_abc"), redis_client=fake)
    with responses.RequestsMock() as rsps:
        rsps.add("GET", INTERCOM + "/me", status=403, json={})
        rsps.add("POST", SANITY + "/v2025-02-19/data/query/production", json={"result": 1})
        checks = run_checks(services)
    intercom = next(c for c in checks if c.name == "intercom")
    assert intercom.ok is False and "403" in intercom.detail
    assert all("tok_secret_abc" not in c.line() for c in checks)


# --- dlq --------------------------------------------------------------------------------------


def park_two(services: Services) -> tuple[str, str]:
    first = services.dead_letters.park(
        "conversations.tag", ["5000001"],
        errors.NotFound("intercom GET /conversations/5000001: 404 not_found",
                        service="intercom", status=404, code="not_found"),
        attempts=1)  # fmt: skip
    second = services.dead_letters.park(
        "contacts.enrich", ["6762f0"], errors.ServerError("intercom: 503", service="intercom",
                                                          status=503), attempts=9)  # fmt: skip
    return first.id, second.id


def test_dlq_list_prints_one_line_per_job(services, run_cli) -> None:
    first, second = park_two(services)
    code, out, err = run_cli(["dlq", "list"], services)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(first) and "conversations.tag(5000001)" in lines[0]
    assert "NotFound [404]" in lines[0]
    assert lines[1].startswith(second) and "contacts.enrich(6762f0)" in lines[1]
    assert "2 parked job(s)" in err


def test_dlq_list_json_and_task_filter(services, run_cli) -> None:
    first, _ = park_two(services)
    code, out, _err = run_cli(["dlq", "list", "--json", "--task", "conversations.tag"], services)
    assert code == 0
    [row] = [json.loads(line) for line in out.splitlines()]
    assert row["id"] == first and row["args"] == ["5000001"] and row["status"] == 404


def test_dlq_show(services, run_cli) -> None:
    first, _ = park_two(services)
    code, out, _ = run_cli(["dlq", "show", first], services)
    assert code == 0 and json.loads(out)["task"] == "conversations.tag"
    code, out, err = run_cli(["dlq", "show", "0000000000000000"], services)
    assert code == 1 and "no parked job" in err


def test_dlq_replay_one_id_queues_it_and_removes_it(services, fake, run_cli) -> None:
    first, second = park_two(services)
    code, out, _err = run_cli(["dlq", "replay", first], services)
    assert code == 0
    assert f"replayed {first} conversations.tag(5000001) as task" in out
    assert queued_jobs(fake) == [("conversations.tag", ["5000001"])]
    assert [e.id for e in services.dead_letters.list()] == [second]


def test_dlq_replay_all(services, fake, run_cli) -> None:
    park_two(services)
    code, _out, err = run_cli(["dlq", "replay", "--all"], services)
    assert code == 0 and "2 job(s) replayed" in err
    assert sorted(queued_jobs(fake)) == [("contacts.enrich", ["6762f0"]),
                                         ("conversations.tag", ["5000001"])]
    assert services.dead_letters.count() == 0


def test_dlq_replay_and_purge_need_a_selection(services, run_cli) -> None:
    park_two(services)
    for action in ("replay", "purge"):
        code, _out, err = run_cli(["dlq", action], services)
        assert code == 1 and "name a job ID, --task NAME or --all" in err
    assert services.dead_letters.count() == 2


def test_dlq_purge_refuses_without_yes_and_without_a_terminal(services, run_cli) -> None:
    park_two(services)
    code, _out, err = run_cli(["dlq", "purge", "--all"], services)
    assert code == 1 and "pass --yes" in err
    assert services.dead_letters.count() == 2


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer, purged", [("y\n", True), ("yes\n", True), ("\n", False),
                                            ("n\n", False)])
def test_dlq_purge_asks_on_a_terminal(services, run_cli, answer, purged) -> None:
    park_two(services)
    code, _out, _err = run_cli(["dlq", "purge", "--all"], services, stdin=Terminal(answer))
    assert services.dead_letters.count() == (0 if purged else 2)
    assert code == (0 if purged else 1)


def test_dlq_purge_with_yes_purges_only_what_was_selected(services, run_cli) -> None:
    park_two(services)
    code, out, _ = run_cli(["dlq", "purge", "--task", "contacts.enrich", "--yes"], services)
    assert code == 0 and "1 job(s) purged" in out
    assert [e.task for e in services.dead_letters.list()] == ["conversations.tag"]
    code, out, _ = run_cli(["dlq", "purge", "--all", "--yes"], services)
    assert code == 0 and services.dead_letters.count() == 0


# --- the command line itself ------------------------------------------------------------------

def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every subcommand path of the real parser (``("dlq", "list")`` ...), found by walking it,
    so a command added later is covered without editing this file."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from command_paths(sub, (*prefix, name))


COMMANDS = sorted(command_paths(cli.build_parser()))


def test_the_documented_commands_exist() -> None:
    assert {("dev",), ("check",), ("status",), ("dlq",), ("dlq", "list"), ("dlq", "show"),
            ("dlq", "replay"), ("dlq", "purge")} <= set(COMMANDS)  # fmt: skip


@pytest.mark.parametrize("words", [(), *COMMANDS], ids=lambda w: " ".join(w) or "top")
def test_every_subcommand_has_help(words, capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main([*words, "--help"])
    assert raised.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: intercom-sync")
    assert len(out.splitlines()) >= 3


def test_top_level_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("dev", "check", "status", "dlq"):
        assert f"    {command} " in out or f"    {command}\n" in out


def test_installed_entry_point_runs_and_bad_settings_exit_2() -> None:
    help_run = subprocess.run([str(CLI), "dlq", "--help"], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    assert help_run.returncode == 0 and "replay" in help_run.stdout
    bad = subprocess.run([str(CLI), "status"], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "INTERCOM_RATE_LIMIT_PER_MINUTE": "lots",
                              "REDIS_URL": "redis://127.0.0.1:1/0"})  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "intercom-sync: invalid setting: INTERCOM_RATE_LIMIT_PER_MINUTE: Not a valid integer."]
