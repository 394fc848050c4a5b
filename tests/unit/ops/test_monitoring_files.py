"""What ships for monitoring (docs/monitoring, the compose profile) agrees with the metrics
the code defines: every metric an alert or a panel uses exists, with the labels it selects or
groups by, and every metric defined is on the dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from workers.jobs import metrics

MONITORING = REPO_ROOT / "docs" / "monitoring"
RULES = MONITORING / "alerts.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "intercom-sync.json"
PROMETHEUS = MONITORING / "prometheus.yml"
ALERT_TESTS = REPO_ROOT / "tests" / "fixtures" / "monitoring" / "alerts.test.yml"

# Labels Prometheus adds to every scraped series, and the histogram bucket label.
TARGET_LABELS = {"job", "instance"}
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": (), "gauge": ()}
NAME = re.compile(r"\bintercom_sync_[a-z0-9_]+")
SELECTOR = re.compile(r"\b(intercom_sync_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def family_of(name: str, families: dict) -> tuple[str, str] | None:
    """(family, suffix) that an exposed sample name belongs to."""
    if name in families:
        return name, ""
    for family, (kind, _) in families.items():
        for suffix in SUFFIXES[kind]:
            if name == family + suffix:
                return family, suffix
    return None


def problems(exprs: list[str], families: dict | None = None) -> list[str]:
    families = families or metrics.definitions()
    found = []
    for expr in exprs:
        used = set()
        for name in NAME.findall(expr):
            owner = family_of(name, families)
            if owner is None:
                found.append(f"{name}: no such metric ({expr})")
            else:
                used.add(owner)
        for name, matchers in SELECTOR.findall(expr):
            owner = family_of(name, families)
            if owner is None:
                continue
            allowed = set(families[owner[0]][1]) | TARGET_LABELS
            allowed |= {"le"} if owner[1] == "_bucket" else set()
            for label, _ in MATCHER.findall(matchers):
                if label not in allowed:
                    found.append(f"{name}{{{label}}}: no such label")
        known = set(TARGET_LABELS)
        for family, suffix in used:
            known |= set(families[family][1]) | ({"le"} if suffix == "_bucket" else set())
        for labels in GROUPING.findall(expr):
            for label in filter(None, (part.strip() for part in labels.split(","))):
                if label not in known:
                    found.append(f"by ({label}): no metric of {expr!r} has it")
    return found


def test_alert_rules_use_only_defined_metrics_and_labels() -> None:
    exprs = rule_exprs()
    assert len(exprs) >= 5
    assert problems(exprs) == []


def test_dashboard_uses_only_defined_metrics_and_labels() -> None:
    assert problems(dashboard_exprs()) == []


def test_the_check_can_fail() -> None:
    assert problems(["rate(intercom_sync_webhook_total[5m])"])  # a typo
    assert problems(['intercom_sync_queue_length{queu="articles"}'])  # a wrong label
    assert problems(["sum by (route) (intercom_sync_tasks_total)"])  # grouped by a foreign label
    assert problems(["intercom_sync_dead_letters_count"])  # no suffix on a gauge
    assert problems(["histogram_quantile(0.9, sum by (le) (rate("
                     "intercom_sync_webhook_duration_seconds_bucket[5m])))"]) == []


def test_every_metric_is_on_the_dashboard() -> None:
    shown = {family_of(name, metrics.definitions())[0]
             for expr in dashboard_exprs() for name in NAME.findall(expr)}  # fmt: skip
    assert set(metrics.definitions()) - shown == set()


def test_the_alerts_cover_what_an_operator_pages_on() -> None:
    text = "\n".join(rule_exprs())
    names = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
             for rule in group["rules"]}  # fmt: skip
    assert {"IntercomSyncWorkerDown", "IntercomSyncQueueGrowing",
            "IntercomSyncDeadLettersRising", "IntercomSyncBudgetExhausted",
            "IntercomSyncWebhooksUnavailable"} <= names  # fmt: skip
    jobs = {scrape["job_name"] for scrape in yaml.safe_load(PROMETHEUS.read_text())[
        "scrape_configs"]}  # fmt: skip
    assert set(re.findall(r'job="([^"]+)"', text)) <= jobs


def test_prometheus_scrapes_both_endpoints_with_the_token() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    ports = {}
    for scrape in config["scrape_configs"]:
        assert scrape["authorization"] == {"type": "Bearer",
                                           "credentials_file": "/run/secrets/metrics_token"}
        assert scrape["metrics_path"] == "/metrics"
        [sd] = scrape["dns_sd_configs"]
        ports[sd["names"][0]] = sd["port"]
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    worker_env = compose["services"]["worker"]["environment"]
    assert ports == {"web": int(compose["services"]["web"]["environment"]["PORT"]),
                     "worker": int(worker_env["METRICS_PORT"])}  # fmt: skip
    assert worker_env["REDIS_URL"] == compose["x-app"]["environment"]["REDIS_URL"]


def test_compose_profile_monitoring_mounts_files_that_exist() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {name for name, s in services.items() if "monitoring" in s.get("profiles", [])} == {
        "prometheus", "grafana"}  # fmt: skip
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), volume
    assert services["prometheus"]["secrets"] == ["metrics_token"]
    assert compose["secrets"]["metrics_token"] == {"environment": "METRICS_TOKEN"}
    provider = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "dashboards" /
                               "intercom-sync.yml").read_text())  # fmt: skip
    mounted = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    path = provider["providers"][0]["options"]["path"]
    assert (REPO_ROOT / mounted[path] / DASHBOARD.name).exists()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules_and_the_config(tmp_path: Path) -> None:
    subprocess.run(["promtool", "check", "rules", str(RULES)], check=True, timeout=60,
                   capture_output=True)  # fmt: skip
    token = tmp_path / "token"
    token.write_text("x" * 20)
    config = PROMETHEUS.read_text().replace("/etc/prometheus/alerts.yml", str(RULES)).replace(
        "/run/secrets/metrics_token", str(token))
    (tmp_path / "prometheus.yml").write_text(config)
    subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                   check=True, timeout=60, capture_output=True)  # fmt: skip


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_the_alerts_fire_on_made_up_series() -> None:
    # Worker down after 2 minutes, a growing queue, new dead letters, a budget spent for 10
    # minutes, 503s to a source; nothing for a healthy receiver.
    result = subprocess.run(["promtool", "test", "rules", str(ALERT_TESTS)], timeout=120,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
