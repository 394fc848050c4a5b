"""The gunicorn settings module stays light enough to import before gevent patches anything."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.conftest import REPO_ROOT
from workers.ops.processes import PROCESSES

# Imported before gevent's monkey-patching (in gunicorn's master), any of these would keep
# unpatched sockets or ssl classes in every worker (gevent/gevent#1016: RecursionError in ssl).
HEAVY = ("ssl", "socket", "urllib3", "requests", "redis", "sentry_sdk", "flask", "celery",
         "kombu", "werkzeug", "workers")  # fmt: skip


def test_importing_the_gunicorn_settings_loads_nothing_that_gevent_must_patch_first() -> None:
    code = ("import sys, app.gunicorn_conf; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")  # fmt: skip
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()  # fmt: skip
    assert loaded == ""


def test_the_web_command_uses_the_settings_module() -> None:
    assert PROCESSES["web"] == "gunicorn --config python:app.gunicorn_conf 'app:create_app()'"
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert 'CMD ["gunicorn", "--config", "python:app.gunicorn_conf", "app:create_app()"]' in (
        dockerfile)


def test_gunicorn_refusals_are_written_as_json() -> None:
    from app import gunicorn_conf

    left, right = socket.socketpair()
    with left, right:
        gunicorn_conf.json_error(left, 414, "URI Too Long", "uri too long: <script>")
        left.close()
        sent = right.recv(65536)
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 URI Too Long\r\n")
    assert b"Content-Type: application/json" in head
    assert body == b'{"error": "uri_too_long", "reason": "uri too long: <script>"}'
