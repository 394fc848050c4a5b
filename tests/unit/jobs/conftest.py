"""Fixtures shared by the tests of ``workers/jobs``."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator

import pytest

from workers.jobs.logs import LineHandler, TextFormatter


@pytest.fixture
def text_logger() -> Iterator[Callable[[str], tuple[logging.Logger, io.StringIO]]]:
    """A logger of the given name writing text lines (the service's handler and formatter) into
    a string, on its own (not propagating); detached again after the test."""
    attached: list[tuple[logging.Logger, logging.Handler]] = []

    def make(name: str) -> tuple[logging.Logger, io.StringIO]:
        stream = io.StringIO()
        handler = LineHandler(stream)
        handler.setFormatter(TextFormatter())
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        attached.append((logger, handler))
        return logger, stream

    yield make
    for logger, handler in attached:
        logger.removeHandler(handler)
