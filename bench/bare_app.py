"""The baseline: a bare Flask app that answers every POST with 200 and does nothing else."""

from __future__ import annotations

from flask import Flask, Response

app = Flask(__name__)


@app.post("/webhooks/<source>")
def webhook(source: str) -> Response:
    return Response('{"status":"ok"}', status=200, mimetype="application/json")


@app.get("/readyz")
def readyz() -> Response:
    return Response('{"status":"ready"}', status=200, mimetype="application/json")
