"""A replicated Redis watched by Sentinels, from the Redis binary the tests already use.

One master, one replica and three Sentinels (a quorum of two), each a real ``redis-server``
process on 127.0.0.1 (``redis-server <conf> --sentinel`` is Sentinel mode). The timings are
shortened so a failover takes seconds: a master is judged down after ``down_after_ms`` without
an answer (Redis' default is 30 s), and a failover that stalls is retried after
``failover_timeout_ms`` (default 3 min). Sentinel rewrites its configuration file as the
topology changes, so each Sentinel gets a file of its own in the group's directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path
from types import TracebackType

import redis

from workers.ops.embedded_redis import free_port, redis_server_binary

MASTER_NAME = "intercom-sync"


class SentinelGroup:
    def __init__(self, directory: Path, *, down_after_ms: int = 1000,
                 failover_timeout_ms: int = 5000) -> None:  # fmt: skip
        self.directory = directory
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """``REDIS_URL`` for the deployment (with ``REDIS_SENTINEL_MASTER`` = MASTER_NAME)."""
        return ";".join(f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports) + "/0"

    @staticmethod
    def redis_env() -> dict[str, str]:
        """What goes with :attr:`url` in the deployment's environment."""
        return {"REDIS_SENTINEL_MASTER": MASTER_NAME}

    def _server(self, name: str, port: int, *extra: str) -> None:
        folder = self.directory / name
        folder.mkdir(parents=True, exist_ok=True)
        args = [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port),
                "--dir", str(folder), "--save", "", "--appendonly", "no",
                "--maxmemory-policy", "noeviction", "--loglevel", "notice",
                "--logfile", str(folder / "redis.log"), *extra]  # fmt: skip
        self.processes[name] = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                                start_new_session=True)  # fmt: skip

    def _sentinel(self, n: int, port: int) -> None:
        folder = self.directory / f"sentinel-{n}"
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile {folder / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self.processes[f"sentinel-{n}"] = subprocess.Popen(
            [redis_server_binary(), str(conf), "--sentinel"], stdin=subprocess.DEVNULL,
            start_new_session=True)  # fmt: skip

    def start(self, timeout: float = 30) -> SentinelGroup:
        self._server("master", self.master_port)
        self._server("replica", self.replica_port,
                     "--replicaof", "127.0.0.1", str(self.master_port))  # fmt: skip
        for n, port in enumerate(self.sentinel_ports):
            self._sentinel(n, port)
        deadline = time.monotonic() + timeout
        while not self._ready():
            dead = [name for name, p in self.processes.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sentinel group did not start (exited: {dead}):\n"
                                   f"{self.logs()}")  # fmt: skip
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        """The replica is in sync and every Sentinel knows the master, its replica and the
        two other Sentinels (a failover needs them to have found each other)."""
        try:
            replica = redis.Redis(port=self.replica_port, socket_timeout=1)
            with replica:
                if replica.info("replication").get("master_link_status") != "up":
                    return False
            for port in self.sentinel_ports:
                with redis.Redis(port=port, socket_timeout=1) as sentinel:
                    master = sentinel.sentinel_master(MASTER_NAME)
                    if int(master.get("num-slaves", 0)) < 1 or \
                            int(master.get("num-other-sentinels", 0)) < 2:  # fmt: skip
                        return False
        except redis.RedisError:
            return False
        return True

    def master_address(self) -> tuple[str, int] | None:
        """Where a majority of Sentinels say the master is (None while they disagree)."""
        seen: dict[tuple[str, int], int] = {}
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=1) as sentinel:
                    host, master_port = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)
            except (redis.RedisError, TypeError):
                continue
            address = (host.decode() if isinstance(host, bytes) else str(host), int(master_port))
            seen[address] = seen.get(address, 0) + 1
        best = max(seen.items(), key=lambda item: item[1], default=None)
        return best[0] if best and best[1] >= 2 else None

    def kill_master(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL the master, as a crash or an OOM kill would: no goodbye to anyone. With
        SIGSTOP it stops answering but its connections stay open, as when its host or network
        goes away (celery/celery#6348's case); ``stop`` kills it at the end."""
        process = self.processes["master"]
        os.kill(process.pid, sig)
        if sig == signal.SIGKILL:
            process.wait(timeout=10)

    def logs(self, chars: int = 1500) -> str:
        parts = []
        for path in sorted(self.directory.glob("*/*.log")):
            text = path.read_text(errors="replace")[-chars:]
            parts.append(f"--- {path.parent.name}/{path.name}:\n{text}")
        return "\n".join(parts)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        for process in self.processes.values():
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()
