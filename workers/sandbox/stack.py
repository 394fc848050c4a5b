"""``intercom-sync dev --sandbox``: the stack wired to local fakes of Intercom and Sanity.

The fakes are the ones the test suite uses. The fake Sanity sends a signed webhook to the
receiver after every published change, as a real GROQ webhook would, so publishing a document
there runs the whole path: webhook → receiver → Redis → worker → fake Intercom.
"""

from __future__ import annotations

import sys
import tempfile
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


def sandbox_env(ports: SandboxPorts) -> dict[str, str]:
    """The settings that point the stack at the fakes (they override the environment)."""
    rules = Path(tempfile.mkdtemp(prefix="intercom-sync-sandbox-")) / "rules.yaml"
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
