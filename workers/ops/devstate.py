"""Where a running ``intercom-sync dev`` says it runs, so operator commands can find it.

``dev`` writes a small JSON file into the user's runtime directory (``$XDG_RUNTIME_DIR``, else a
per-user folder in the temporary directory, both readable by that user only) and removes it at
exit. ``status``, ``check``, ``dlq``, ``backfill``, ``rules test`` and ``send-test-webhook`` read
it when ``REDIS_URL`` is unset (or with ``--dev``): the embedded Redis's random port and the
sandbox's own settings are known without copying them from the banner. A file whose process has
died (a ``kill -9``) is ignored and removed by the next reader.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from workers.jobs.pids import pid_alive

PREFIX = "dev-"


def runtime_dir() -> Path:
    """The user's runtime directory for these files (created, mode 0700)."""
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if base and Path(base).is_dir():
        folder = Path(base) / "intercom-sync"
    else:
        folder = Path(tempfile.gettempdir()) / f"intercom-sync-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


@dataclass(frozen=True)
class DevStack:
    """One running ``intercom-sync dev``: where its receiver and Redis are."""

    pid: int
    receiver: str
    redis_url: str
    started_at: float
    cwd: str
    # The sandbox's own settings (they only open its local fakes); empty for a plain dev stack.
    sandbox_env: dict[str, str] = field(default_factory=dict)

    @property
    def sandbox(self) -> bool:
        return bool(self.sandbox_env)

    def describe(self) -> str:
        kind = "sandbox" if self.sandbox else "dev"
        return f"the {kind} stack of `intercom-sync dev` (pid {self.pid}) at {self.receiver}"

    def port(self) -> int:
        return int(self.receiver.rsplit(":", 1)[1])


@contextlib.contextmanager
def published(stack: DevStack) -> Iterator[Path]:
    """Publish ``stack`` for the operator commands while the block runs; remove it after."""
    path = runtime_dir() / f"{PREFIX}{stack.pid}.json"
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(stack), out)
    partial.replace(path)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _read(path: Path) -> DevStack | None:
    try:
        data: Mapping[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return DevStack(int(data["pid"]), str(data["receiver"]), str(data["redis_url"]),
                        float(data["started_at"]), str(data["cwd"]),
                        {str(k): str(v) for k, v in dict(data.get("sandbox_env") or {}).items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def running() -> list[DevStack]:
    """The dev stacks running now, newest first (files of dead ones are removed)."""
    stacks = []
    for path in runtime_dir().glob(f"{PREFIX}*.json"):
        stack = _read(path)
        if stack is None or not pid_alive(stack.pid):
            if stack is not None or time.time() - path.stat().st_mtime > 60:
                path.unlink(missing_ok=True)
            continue
        stacks.append(stack)
    return sorted(stacks, key=lambda s: s.started_at, reverse=True)


def find(receiver: str | None = None) -> DevStack | None:
    """The stack whose receiver is ``receiver`` (by port on a loopback host), else the newest."""
    stacks = running()
    if receiver is None:
        return stacks[0] if stacks else None
    parts = urlsplit(receiver)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):  # noqa: S104
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return next((s for s in stacks if s.port() == port), None)
