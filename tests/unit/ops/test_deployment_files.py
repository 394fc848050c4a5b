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


def _lock() -> dict[str, tuple[str, list[str]]]:
    """requirements.txt as {normalised name: (version, hashes)}."""
    from packaging.utils import canonicalize_name

    pins: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line)
        if pin:
            current = canonicalize_name(pin.group(1))
            pins[current] = (pin.group(2), [])
        for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            assert current is not None
            pins[current][1].append(digest)
    return pins


def test_the_lock_pins_every_dependency_with_hashes_within_its_range() -> None:
    # requirements.txt is what Procfile buildpacks and the Dockerfile install: it must hold every
    # dependency of pyproject.toml (and the flower extra the image carries), pinned to a version
    # the range allows, each with hashes. Regenerate it with the command at its top.
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in
              [*project["dependencies"], *project["optional-dependencies"]["flower"]]]  # fmt: skip
    pins = _lock()
    problems = []
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement.name}: not in requirements.txt")
            continue
        version, hashes = pins[name]
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}: {version} outside {requirement.specifier}")
        if not hashes:
            problems.append(f"{requirement.name}: no hash")
    assert problems == []
    assert all(hashes for _version, hashes in pins.values())


def test_the_image_installs_from_the_lock() -> None:
    steps = [line.strip() for line in (REPO_ROOT / "Dockerfile").read_text().splitlines()]
    install = "RUN pip install --no-cache-dir --require-hashes -r requirements.txt"
    project = "RUN pip install --no-cache-dir --no-deps ."
    assert install in steps and project in steps
    assert steps.index(install) < steps.index(project)


def test_compose_redis_has_a_memory_cap_and_flower_is_protected() -> None:
    services = _compose()["services"]
    redis_cmd = services["redis"]["command"]
    assert "--maxmemory" in redis_cmd and redis_cmd[redis_cmd.index("--maxmemory") + 1]
    flower = services["flower"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert "FLOWER_BASIC_AUTH" in " ".join(flower["command"])
    mounts = _compose()["x-app"]["volumes"]
    assert "./config:/config:ro" in mounts
