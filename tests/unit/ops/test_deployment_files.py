"""docker-compose.yml, the Procfile and .env.example agree with the code and the specs."""

from __future__ import annotations

import dataclasses
import json
import re

import jsonschema
import yaml

from tests.conftest import REPO_ROOT, VENDOR
from workers.ops.processes import PROCESSES
from workers.settings import Settings


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((VENDOR / "compose-spec" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(_compose())


def test_compose_spec_check_can_fail() -> None:
    schema = json.loads((VENDOR / "compose-spec" / "compose-spec.json").read_text())
    broken = _compose()
    broken["services"]["web"]["restart_policy"] = "always"  # not a service key
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_compose_runs_the_same_commands_as_the_procfile_and_dev() -> None:
    services = _compose()["services"]
    for name, command in PROCESSES.items():
        assert services[name]["command"] == command
    procfile = dict(
        line.split(": ", 1) for line in (REPO_ROOT / "Procfile").read_text().splitlines() if line
    )
    assert procfile == PROCESSES


def test_compose_redis_is_persistent_and_never_evicts() -> None:
    redis_cmd = " ".join(_compose()["services"]["redis"]["command"])
    assert "--appendonly yes" in redis_cmd
    assert "--maxmemory-policy noeviction" in redis_cmd


def test_env_example_lists_every_setting() -> None:
    text = (REPO_ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z_]+)=", text, flags=re.MULTILINE))
    known = {f.name for f in dataclasses.fields(Settings)}
    assert listed == known


def test_readme_documents_every_setting() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    missing = [f.name for f in dataclasses.fields(Settings) if f"`{f.name}`" not in text]
    assert missing == []
