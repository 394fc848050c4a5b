"""The metrics settings: validated at start with one line naming the variable, the token never
shown, and the receiver's master stopping on a bad one before it forks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, make_settings
from tests.processes import base_env, deployment_command
from workers.settings import SettingsError


def test_defaults_leave_metrics_off_and_listening_everywhere_once_on() -> None:
    settings = make_settings()
    assert settings.METRICS_TOKEN is None and settings.METRICS_PORT is None
    assert settings.METRICS_HOST == "0.0.0.0"  # noqa: S104 - reachable by Prometheus


def test_the_token_is_a_secret() -> None:
    settings = make_settings(METRICS_TOKEN="0123456789abcdefXYZ")
    assert settings.METRICS_TOKEN.reveal() == "0123456789abcdefXYZ"
    assert "0123456789abcdefXYZ" not in repr(settings) + str(settings.summary())


@pytest.mark.parametrize("name, raw, message", [
    ("METRICS_TOKEN", "short-token", "METRICS_TOKEN: must be at least 16 characters."),
    ("METRICS_PORT", "0", "METRICS_PORT: "),
    ("METRICS_PORT", "65536", "METRICS_PORT: "),
    ("METRICS_PORT", "9808x", "METRICS_PORT: "),
    ("METRICS_HOST", "0.0.0.0; rm -rf /", "METRICS_HOST: "),
])  # fmt: skip
def test_malformed_values_name_the_variable(name: str, raw: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        make_settings(**{name: raw})
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_the_metrics_directory_is_created_or_refused(tmp_path: Path) -> None:
    missing = tmp_path / "metrics" / "web"
    assert make_settings(PROMETHEUS_MULTIPROC_DIR=str(missing)).PROMETHEUS_MULTIPROC_DIR
    assert missing.is_dir()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SettingsError, match=r"^PROMETHEUS_MULTIPROC_DIR: cannot create"):
        make_settings(PROMETHEUS_MULTIPROC_DIR=str(blocker / "sub"))


def test_the_receiver_stops_with_one_line_on_a_bad_metrics_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = base_env(PROMETHEUS_MULTIPROC_DIR=str(blocker / "sub"))
    result = subprocess.run(deployment_command("web", "--bind", "127.0.0.1:0"), env=env,
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "intercom-sync:" in line]
    assert lines == ["intercom-sync: PROMETHEUS_MULTIPROC_DIR: cannot create the directory "
                     "(Not a directory)."]
    assert "Traceback" not in result.stderr
