"""Every process refuses a misconfiguration at start, in one line, with a non-zero exit.

The web process (the Procfile's gunicorn command), the worker and beat are started for real with
each misconfiguration; none may boot into answering errors, print a traceback, or say more than
the one line naming the variable (or the rules file, rule and problem).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.processes import BIN, base_env, deployment_command
from workers.ops.embedded_redis import free_port

pytestmark = pytest.mark.integration

NOWHERE = "redis://127.0.0.1:1/0"  # valid, but nothing listens: start must fail before using it

MISCONFIGURATIONS = {
    "redis-url-unset": ({"REDIS_URL": None}, "REDIS_URL: not set"),
    "redis-url-http": ({"REDIS_URL": "http://x"},
                       "REDIS_URL: must be a redis://, rediss://, unix:// or sentinel:// URL"),
    "time-limit-vs-visibility": ({"REDIS_URL": NOWHERE, "TASK_TIME_LIMIT": "2000"},
                                 "BROKER_VISIBILITY_TIMEOUT: must be more than twice "
                                 "TASK_TIME_LIMIT (2000)"),
}  # fmt: skip


def _env(changes: dict[str, str | None]) -> dict[str, str]:
    env = base_env()
    env.pop("REDIS_URL", None)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _start(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def _our_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "intercom-sync:" in line]


def assert_one_line(code: int, output: str, expected: str) -> None:
    assert code != 0, output
    assert "Traceback" not in output, output
    lines = _our_lines(output)
    assert len(lines) == 1, output  # once, even from a gunicorn with several workers
    assert lines[0].startswith("intercom-sync: ") and expected in lines[0], output


@pytest.mark.parametrize("case", sorted(MISCONFIGURATIONS))
def test_web_refuses_to_start(case: str) -> None:
    changes, expected = MISCONFIGURATIONS[case]
    port = free_port()
    env = _env(changes)
    proc = subprocess.Popen(deployment_command("web", "--bind", f"127.0.0.1:{port}",
                                               "--workers", "2"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, stdin=subprocess.DEVNULL)  # fmt: skip
    answers = []
    try:
        # While it lives, the receiver must never answer anything (it must not boot).
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                answers.append(requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                               .status_code)  # fmt: skip
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
        if proc.poll() is None:
            proc.terminate()
        output = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert answers == []
    assert_one_line(proc.returncode, output, expected)


@pytest.mark.parametrize("case", sorted(MISCONFIGURATIONS))
@pytest.mark.parametrize("process", ["worker", "beat"])
def test_worker_and_beat_refuse_to_start(process: str, case: str) -> None:
    changes, expected = MISCONFIGURATIONS[case]
    code, output = _start(deployment_command(process), _env(changes))
    assert_one_line(code, output, expected)


def _rules_cases(tmp_path: Path) -> dict[str, tuple[str, str]]:
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - tag: billing\n    when: {text_any: [refund]}\n"
                      "  - tag: bug\n    when: {text_regex: '(unclosed'}\n")  # fmt: skip
    unparsable = tmp_path / "unparsable.yaml"
    unparsable.write_text("rules: [\n")
    missing = tmp_path / "missing.yaml"
    return {
        "missing": (str(missing), f"RULES_PATH: {missing}: cannot read rules file"),
        "bad-rule": (str(broken), f"RULES_PATH: {broken}: rules[1].when.text_regex"),
        "unparsable": (str(unparsable), f"RULES_PATH: {unparsable}: cannot parse YAML"),
    }


@pytest.mark.parametrize("case", ["missing", "bad-rule", "unparsable"])
def test_worker_refuses_a_broken_rules_file_and_check_fails_on_it(tmp_path: Path,
                                                                  case: str) -> None:
    path, expected = _rules_cases(tmp_path)[case]
    env = _env({"REDIS_URL": NOWHERE, "RULES_PATH": path, "INTERCOM_ACCESS_TOKEN": "tok",
                "INTERCOM_ADMIN_ID": "1295"})  # fmt: skip
    code, output = _start(deployment_command("worker"), env)
    assert_one_line(code, output, expected)

    checked = subprocess.run([str(BIN / "intercom-sync"), "check"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 1, checked.stdout + checked.stderr
    [rules_line] = [line for line in checked.stdout.splitlines() if " rules " in line]
    assert rules_line.startswith("FAIL") and expected in rules_line


@pytest.mark.parametrize("case", sorted(MISCONFIGURATIONS))
def test_check_refuses_in_one_line(tmp_path: Path, case: str) -> None:
    changes, expected = MISCONFIGURATIONS[case]
    env = {**_env(changes), "XDG_RUNTIME_DIR": str(tmp_path)}  # no dev stack to fall back on
    code, output = _start([str(BIN / "intercom-sync"), "check"], env)
    assert_one_line(code, output, expected)
    assert len(output.strip().splitlines()) == 1, output
