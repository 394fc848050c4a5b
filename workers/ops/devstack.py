"""``intercom-sync dev``: receiver, worker and beat in one terminal, embedded Redis if needed."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from honcho import manager as honcho_manager
from honcho.manager import Manager
from honcho.printer import Printer

from workers.ops import devstate
from workers.ops.embedded_redis import EmbeddedRedis
from workers.ops.processes import PROCESSES
from workers.sandbox.stack import SandboxPorts, fake_processes, sealed_env
from workers.settings import Settings, load_settings

# gunicorn's own line once its socket is bound: "Listening at: http://127.0.0.1:8000 (1234)".
_LISTENING = re.compile(r"Listening at: (\S+)")


class _ReceiverBanner(Printer):
    """honcho's printer, plus one line with the address gunicorn really listens on, printed
    when gunicorn says it has bound its socket (not what the stack meant to ask for)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listening: str | None = None

    def write(self, message: Any) -> None:
        super().write(message)
        if self.listening is None and message.name == "web":
            data = message.data
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
            found = _LISTENING.search(text)
            if found:
                self.listening = found.group(1)
                print(f"receiver listening on {self.listening} — Ctrl-C stops everything",
                      file=self.output, flush=True)  # fmt: skip


def run_dev(settings: Settings | None, port: int, concurrency: int, *,
            sandbox: bool = False) -> int:  # fmt: skip
    """Run the stack until Ctrl-C (or until one process exits); return the exit code.

    honcho multiplexes the processes' output with name prefixes and, on SIGINT or SIGTERM,
    sends SIGTERM to each so the worker finishes its job in hand; the embedded Redis (in its own
    session, so the terminal's Ctrl-C does not reach it) is stopped last. The receiver listens on
    127.0.0.1 only: a development stack is not for the network.

    With ``sandbox``, local fakes of Intercom (port + 1) and Sanity (port + 2) run too, and the
    stack is sealed from the user's settings (``settings`` is not used): its own embedded Redis,
    tokens, secrets and temporary folder (removed at exit), whatever the environment or ``.env``
    says, so a sandbox can never consume a real deployment's jobs or sign with its secrets.
    """
    with ExitStack() as stack:
        if sandbox:
            workdir = Path(tempfile.mkdtemp(prefix="intercom-sync-sandbox-"))
            stack.callback(shutil.rmtree, workdir, True)  # runs last: after Redis has stopped
            (workdir / "redis").mkdir()
            redis_server = stack.enter_context(EmbeddedRedis(directory=workdir / "redis"))
            ports = SandboxPorts(port, port + 1, port + 2)
            names = [f.name for f in dataclasses.fields(Settings)]
            env, ignored = sealed_env(os.environ, names, ports, workdir, redis_server.url)
            settings = load_settings(env)
            sandbox_env = {name: env[name] for name in (*names, "REDIS_URL") if env.get(name)}
            print(f"sandbox: sealed from your settings — its own Redis on {redis_server.url}, "
                  f"its own tokens and secrets, fake Intercom on http://127.0.0.1:{ports.intercom}"
                  f", fake Sanity on http://127.0.0.1:{ports.sanity}, temporary files in "
                  f"{workdir} (removed at exit)", flush=True)  # fmt: skip
            if ignored:
                print(f"sandbox: ignoring from the environment and .env: {', '.join(ignored)}",
                      flush=True)  # fmt: skip
        else:
            assert settings is not None
            env = dict(os.environ)
            sandbox_env = {}
            if not settings.REDIS_URL:
                redis_server = stack.enter_context(EmbeddedRedis())
                env["REDIS_URL"] = redis_server.url
                print(f"embedded Redis on {redis_server.url} (REDIS_URL is unset)", flush=True)
        env["PORT"] = str(port)
        env.setdefault("WEB_CONCURRENCY", "2")
        env.setdefault("WORKER_CONCURRENCY", str(concurrency))
        env.setdefault("PYTHONUNBUFFERED", "1")
        # gunicorn binds 0.0.0.0:$PORT when PORT is set; a development stack stays on loopback.
        env["GUNICORN_CMD_ARGS"] = f"{env.get('GUNICORN_CMD_ARGS', '')} --bind 127.0.0.1:{port}"
        # honcho SIGKILLs what is still running 5 s after it asked; give the worker its soft
        # shutdown window (jobs in hand finish or go back to their queues) first.
        grace = settings.WORKER_SHUTDOWN_TIMEOUT + 10
        honcho_manager.KILL_WAIT = max(honcho_manager.KILL_WAIT, grace)
        manager = Manager(_ReceiverBanner(sys.stdout))
        processes = dict(PROCESSES)
        if sandbox:
            processes = {**fake_processes(ports), **processes}
        for name, command in processes.items():
            manager.add_process(name, command, env=env)
        me = devstate.DevStack(os.getpid(), f"http://127.0.0.1:{port}", env["REDIS_URL"],
                               time.time(), os.getcwd(), sandbox_env)  # fmt: skip
        stack.enter_context(devstate.published(me))
        manager.loop()
        # Stopped by Ctrl-C or SIGTERM: a clean stop, not a failure.
        return 0 if manager.returncode in (130, 143, None) else manager.returncode
