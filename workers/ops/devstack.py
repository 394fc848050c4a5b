"""``intercom-sync dev``: receiver, worker and beat in one terminal, embedded Redis if needed."""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack

from honcho import manager as honcho_manager
from honcho.manager import Manager
from honcho.printer import Printer

from workers.ops.embedded_redis import EmbeddedRedis
from workers.ops.processes import PROCESSES
from workers.sandbox.stack import SandboxPorts, fake_processes, sandbox_env
from workers.settings import Settings


def run_dev(settings: Settings, port: int, concurrency: int, *, sandbox: bool = False) -> int:
    """Run the stack until Ctrl-C (or until one process exits); return the exit code.

    honcho multiplexes the three processes' output with name prefixes and, on SIGINT or SIGTERM,
    sends SIGTERM to each so the worker finishes its job in hand; the embedded Redis (in its own
    session, so the terminal's Ctrl-C does not reach it) is stopped last. With ``sandbox``, local
    fakes of Intercom (port + 1) and Sanity (port + 2) run too, and the stack talks to them.
    """
    env = dict(os.environ)
    env["PORT"] = str(port)
    env.setdefault("WEB_CONCURRENCY", "2")
    env.setdefault("WORKER_CONCURRENCY", str(concurrency))
    env.setdefault("PYTHONUNBUFFERED", "1")
    with ExitStack() as stack:
        if not settings.REDIS_URL:
            redis_server = stack.enter_context(EmbeddedRedis())
            env["REDIS_URL"] = redis_server.url
            print(f"embedded Redis on {redis_server.url} (REDIS_URL is unset)", flush=True)
        # honcho SIGKILLs what is still running 5 s after it asked; give the worker its soft
        # shutdown window (jobs in hand finish or go back to their queues) first.
        grace = settings.WORKER_SHUTDOWN_TIMEOUT + 10
        honcho_manager.KILL_WAIT = max(honcho_manager.KILL_WAIT, grace)
        manager = Manager(Printer(sys.stdout))
        processes = dict(PROCESSES)
        if sandbox:
            ports = SandboxPorts(port, port + 1, port + 2)
            env.update(sandbox_env(ports))
            processes = {**fake_processes(ports), **processes}
            print(f"sandbox: fake Intercom on http://127.0.0.1:{ports.intercom}, fake Sanity on "
                  f"http://127.0.0.1:{ports.sanity}", flush=True)  # fmt: skip
        for name, command in processes.items():
            manager.add_process(name, command, env=env)
        print(f"receiver on http://127.0.0.1:{port} — Ctrl-C stops everything", flush=True)
        manager.loop()
        # Stopped by Ctrl-C or SIGTERM: a clean stop, not a failure.
        return 0 if manager.returncode in (130, 143, None) else manager.returncode
