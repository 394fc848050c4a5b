"""``intercom-sync dev --sandbox``: the stack wired to local fakes of Intercom and Sanity.

The fakes are the ones the test suite uses. The fake Sanity sends a signed webhook to the
receiver after every published change, as a real GROQ webhook would, so publishing a document
there runs the whole path: webhook → receiver → Redis → worker → fake Intercom.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from workers.sandbox.samples import SAMPLE_CONVERSATION_ATTRIBUTE, SANDBOX_RULES

# Public on purpose: they only open the local fakes.
INTERCOM_TOKEN = "sandbox-intercom-token"  # noqa: S105
INTERCOM_CLIENT_SECRET = "sandbox-intercom-client-secret"  # noqa: S105
SANITY_TOKEN = "sandbox-sanity-token"  # noqa: S105
SANITY_WEBHOOK_SECRET = "sandbox-sanity-webhook-secret"  # noqa: S105
ADMIN_ID = "1295"  # the fake Intercom's built-in admin
COLLECTION_ID = "1"


@dataclass(frozen=True)
class SandboxPorts:
    receiver: int = 8000
    intercom: int = 8001
    sanity: int = 8002


def sandbox_env(ports: SandboxPorts, workdir: Path) -> dict[str, str]:
    """The settings that point the stack at the fakes; the sample rules go into ``workdir``."""
    rules = workdir / "rules.yaml"
    rules.write_text(SANDBOX_RULES)
    return {
        "INTERCOM_API_BASE": f"http://127.0.0.1:{ports.intercom}",
        "INTERCOM_ACCESS_TOKEN": INTERCOM_TOKEN,
        "INTERCOM_CLIENT_SECRET": INTERCOM_CLIENT_SECRET,
        "INTERCOM_ADMIN_ID": ADMIN_ID,
        "INTERCOM_AUTHOR_ID": ADMIN_ID,
        "INTERCOM_DEFAULT_COLLECTION_ID": COLLECTION_ID,
        "SANITY_API_BASE": f"http://127.0.0.1:{ports.sanity}",
        "SANITY_PROJECT_ID": "sandbox",
        "SANITY_DATASET": "production",
        "SANITY_TOKEN": SANITY_TOKEN,
        "SANITY_WEBHOOK_SECRET": SANITY_WEBHOOK_SECRET,
        "RULES_PATH": str(rules),
        "ENRICHMENT_SOURCES": "email_domain",
    }


# Kept from the user's environment: how logs look is a preference, not a connection to anything.
KEPT = ("LOG_LEVEL", "LOG_FORMAT")
# Prefixes of variables that may reach a real deployment (its Redis, vendors, error reporting).
_REAL_PREFIXES = ("REDIS_", "INTERCOM_", "SANITY_", "ENRICHMENT_", "SENTRY_", "RULES_",
                  "METRICS_", "GUNICORN_CMD_ARGS")  # fmt: skip


def sealed_env(environ: Mapping[str, str], setting_names: Iterable[str], ports: SandboxPorts,
               workdir: Path, redis_url: str) -> tuple[dict[str, str], list[str]]:
    """The environment of a sandbox: the user's minus every setting (and anything else that may
    reach a real deployment), plus the sandbox's own settings, Redis and temporary folder.

    Returns the environment and the names of the variables it left out (names only), so the
    banner can say what was ignored. Whatever the environment or ``.env`` says, the sandbox
    talks only to its own Redis and fakes.
    """
    names = set(setting_names)
    env: dict[str, str] = {}
    ignored = []
    for name, value in environ.items():
        if name in KEPT:
            env[name] = value
        elif name in names or name.startswith(_REAL_PREFIXES):
            if value.strip():
                ignored.append(name)
        else:
            env[name] = value
    env.update(sandbox_env(ports, workdir))
    env["REDIS_URL"] = redis_url
    # Every process's temporary files (gunicorn's heartbeat files, anything a library writes)
    # land in the sandbox's folder, which is removed at exit.
    env["TMPDIR"] = str(workdir)
    return env, sorted(ignored)


def fake_processes(ports: SandboxPorts) -> dict[str, str]:
    """The two fakes as commands for the process manager."""
    python = sys.executable
    return {
        "intercom": f"{python} -m workers.sandbox.fake_intercom --port {ports.intercom} "
        f"--token {INTERCOM_TOKEN} --conversation-attribute {SAMPLE_CONVERSATION_ATTRIBUTE}",
        "sanity": f"{python} -m workers.sandbox.fake_sanity --port {ports.sanity} "
        f"--token {SANITY_TOKEN} "
        f"--webhook-url http://127.0.0.1:{ports.receiver}/webhooks/sanity "
        f"--webhook-secret {SANITY_WEBHOOK_SECRET}",
    }
