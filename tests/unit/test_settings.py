"""Settings: one clear line naming a bad variable, features off when unset, secrets hidden."""

from __future__ import annotations

import pytest

from tests.conftest import make_settings
from workers.ops import cli
from workers.settings import Settings, SettingsError, load_settings


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("INTERCOM_RATE_LIMIT_PER_MINUTE", "lots", "Not a valid integer"),
        ("INTERCOM_RATE_LIMIT_PER_MINUTE", "999999", "less than or equal"),
        ("LOG_FORMAT", "xml", "Must be one of"),
        ("REDIS_URL", "http://localhost", "redis"),
        ("INTERCOM_API_BASE", "api.intercom.io", "http"),
        ("ARTICLE_DELETE_POLICY", "shred", "Must be one of"),
        ("INTERCOM_AUTHOR_ID", "12a", "pattern"),
        ("SANITY_LOCALE_FIELD", "lang; drop", "pattern"),
        ("WEBHOOK_MAX_BODY_BYTES", "-1", "greater than or equal"),
    ],
)
def test_malformed_value_names_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        make_settings(**{name: value})
    message = str(info.value)
    assert message.startswith(f"{name}: ")
    assert fragment.lower() in message.lower()
    assert "\n" not in message


def test_defaults_follow_the_design() -> None:
    settings = load_settings({})
    assert settings.INTERCOM_API_BASE == "https://api.intercom.io"
    assert settings.INTERCOM_VERSION == "2.14"
    assert settings.INTERCOM_RATE_LIMIT_PER_MINUTE == 9000
    assert settings.intercom_budget_per_window == 1500
    assert settings.SANITY_API_VERSION == "2025-02-19"
    assert (settings.SANITY_ARTICLE_TYPE, settings.SANITY_LOCALE_FIELD, settings.DEFAULT_LOCALE) \
        == ("supportArticle", "language", "en")
    assert settings.ARTICLE_DELETE_POLICY == "draft"
    assert (settings.LOG_LEVEL, settings.LOG_FORMAT) == ("INFO", "text")
    assert settings.WEBHOOK_MAX_BODY_BYTES == 1024 * 1024
    assert settings.REDIS_URL is None


def test_features_switch_off_and_name_what_is_missing() -> None:
    settings = load_settings({"SANITY_PROJECT_ID": "abc123"})
    assert settings.missing("sanity_webhooks") == ["SANITY_WEBHOOK_SECRET"]
    assert "INTERCOM_ACCESS_TOKEN" in settings.missing("articles")
    assert settings.sanity_api_base == "https://abc123.api.sanity.io"
    assert make_settings().enabled("intercom_webhooks")


def test_secrets_never_show(capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(
        REDIS_URL="redis://:hunter2@redis:6379/0",
        INTERCOM_CLIENT_SECRET="old-secret-1, new-secret-2",
        SENTRY_DSN="https://key123@o1.ingest.sentry.io/1",
    )
    assert [s.reveal() for s in settings.INTERCOM_CLIENT_SECRET] == ["old-secret-1", "new-secret-2"]
    shown = repr(settings) + str(settings.summary())
    for secret in ("old-secret-1", "new-secret-2", "tok_test_intercom", "key123", "hunter2"):
        assert secret not in shown
    assert settings.summary()["INTERCOM_CLIENT_SECRET"] == "set"


def test_empty_variable_counts_as_unset() -> None:
    settings = load_settings({"INTERCOM_ACCESS_TOKEN": "", "LOG_LEVEL": " "})
    assert settings.INTERCOM_ACCESS_TOKEN is None and settings.LOG_LEVEL == "INFO"


def test_cli_reports_a_bad_setting_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("LOG_FORMAT", "yaml")
    monkeypatch.setattr(cli, "get_settings", lambda: load_settings())
    assert cli.main(["dev"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "LOG_FORMAT" in err


def test_cli_help_lists_commands(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert "dev" in capsys.readouterr().out


def test_settings_is_frozen() -> None:
    settings = make_settings()
    with pytest.raises(AttributeError):
        settings.LOG_LEVEL = "DEBUG"  # type: ignore[misc]
    assert isinstance(settings, Settings)


def test_setting_errors_read_naturally() -> None:
    with pytest.raises(SettingsError) as redis_url:
        make_settings(REDIS_URL="http://x")
    assert str(redis_url.value) == (
        "REDIS_URL: must be a redis://, rediss://, unix:// or sentinel:// URL."
    )
    with pytest.raises(SettingsError) as base:
        make_settings(INTERCOM_API_BASE="api.intercom.io")
    assert str(base.value) == "INTERCOM_API_BASE: must be an http:// or https:// URL."


@pytest.mark.parametrize("written", ["info", "Info", " debug ", "WARNING"])
def test_log_level_is_read_in_any_case(written: str) -> None:
    assert written.strip().upper() == make_settings(LOG_LEVEL=written).LOG_LEVEL


@pytest.mark.parametrize("overrides", [
    {"TASK_TIME_LIMIT": "2000"},
    {"RETRY_BACKOFF_MAX": "1800"},
    {"TASK_TIME_LIMIT": "400", "BROKER_VISIBILITY_TIMEOUT": "800"},
])  # fmt: skip
def test_cross_field_rules_fail_in_one_line_naming_both_sides(overrides) -> None:
    with pytest.raises(SettingsError) as info:
        make_settings(**overrides)
    message = str(info.value)
    assert message.startswith("BROKER_VISIBILITY_TIMEOUT: must be more than twice TASK_TIME_LIMIT")
    assert "RETRY_BACKOFF_MAX" in message and "\n" not in message
