"""The log formatters' cheap paths write exactly what the general ones write.

The webhook log line is on the receiver's hot path, so the formatters format a record's time once
per second, write numbers without the JSON encoder and skip ``Formatter.format`` for a record
without a traceback; ``log_event`` builds its record without looking for the caller, or writes
its line without a record when the service's own handler is the only one to see it. Each is
compared here with the straightforward version it replaces, over generated records.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import subprocess
import sys
import threading
import time
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.processes import REPO_ROOT
from workers.jobs.logs import JsonFormatter, LineHandler, TextFormatter, log_event, scrub

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# ``Logger.callHandlers`` as the standard library defines it, taken when the tests are collected:
# a test that initialises Sentry leaves it wrapped for the rest of the run (Sentry's logging
# integration), and ``log_event`` then rightly takes the record path.
_STOCK_CALL_HANDLERS = logging.Logger.callHandlers


def _reference_text(record: logging.LogRecord) -> str:
    """The text line as ``logging.Formatter`` and ``json.dumps`` write it."""
    line = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s").format(record)
    extras = []
    for key, value in record.__dict__.items():
        if key in _RESERVED or key.startswith("_") or value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        quote = " " in text or not text or not text.isprintable()
        extras.append(f"{key}={json.dumps(text) if quote else text}")
    if extras:
        head, sep, tail = line.partition("\n")
        line = head + " " + " ".join(extras) + sep + tail
    return scrub(line)


def _reference_json(record: logging.LogRecord) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    payload = {"ts": f"{stamp}.{int(record.msecs):03d}Z", "level": record.levelname,
               "logger": record.name, "event": scrub(record.getMessage())}  # fmt: skip
    for key, value in record.__dict__.items():
        if key not in _RESERVED and not key.startswith("_") and value is not None:
            payload[key] = json.loads(json.dumps(value, default=str))
    return payload


_VALUES = (
    st.none()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.text(max_size=20)
    | st.lists(st.integers() | st.text(max_size=5), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
)
_KEYS = st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True).filter(lambda k: k not in _RESERVED)
# Seconds since the epoch from 2001 to 2100, with the fraction that gives the milliseconds.
_CREATED = st.floats(min_value=1e9, max_value=4.1e9, allow_nan=False)


def _record(created: float, message: str, extra: dict[str, Any]) -> logging.LogRecord:
    record = logging.getLogger("intercom_sync.test").makeRecord(
        "intercom_sync.test", logging.INFO, "f.py", 1, message, (), None, extra=extra)
    record.created = created
    record.msecs = math.floor((created - int(created)) * 1000)
    return record


@settings(max_examples=300, deadline=None)
@given(st.lists(_CREATED, min_size=1, max_size=6), st.text(max_size=30),
       st.dictionaries(_KEYS, _VALUES, max_size=5))  # fmt: skip
def test_text_lines_equal_the_general_formatter(times: list[float], message: str,
                                                extra: dict[str, Any]) -> None:  # fmt: skip
    formatter = TextFormatter()  # one formatter over records of several seconds, in any order
    for created in times:
        record = _record(created, message, extra)
        assert formatter.format(record) == _reference_text(_record(created, message, extra))


@settings(max_examples=300, deadline=None)
@given(st.lists(_CREATED, min_size=1, max_size=6), st.text(max_size=30),
       st.dictionaries(_KEYS, _VALUES, max_size=5))  # fmt: skip
def test_json_lines_equal_the_general_formatter(times: list[float], message: str,
                                                extra: dict[str, Any]) -> None:  # fmt: skip
    formatter = JsonFormatter()
    for created in times:
        line = formatter.format(_record(created, message, extra))
        expected = _reference_json(_record(created, message, extra))
        assert json.loads(line) == json.loads(json.dumps(expected)) or _nan_equal(line, expected)


def _nan_equal(line: str, expected: dict[str, Any]) -> bool:
    """NaN is never equal to itself: compare the texts instead."""
    return line == json.dumps(expected, separators=(",", ":"))


def test_a_traceback_stays_on_the_lines_after_the_fields() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, "f.py", 1, "failed", (), sys.exc_info(), extra={"task_id": "t-1"})
    line = TextFormatter().format(record)
    first, _, rest = line.partition("\n")
    assert first.endswith(" failed task_id=t-1")
    assert rest.startswith("Traceback") and "ValueError: boom" in rest
    assert line == _reference_text(record)


def test_log_event_writes_the_fields_and_leaves_out_none(text_logger) -> None:
    logger, stream = text_logger("intercom_sync.test.log_event")
    log_event(logger, "webhook", status=202, task_id="abc", transaction_id=None, duration_ms=1.5)
    log_event(logger, "hidden", logging.DEBUG, status=1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(
        " INFO intercom_sync.test.log_event webhook status=202 task_id=abc duration_ms=1.5")


@pytest.mark.parametrize("value",
                         ["n-1\nINFO forged line", "a\rb", "a\u2028b", "tab\there", "nul\x00"])
def test_a_value_cannot_break_the_line(text_logger, value: str) -> None:
    """A sender's text (a notification id is one) with a line break or a control character is
    written quoted, escaped as JSON: the line stays one line and nothing in it is forged."""
    logger, stream = text_logger("intercom_sync.test.forged")
    log_event(logger, "webhook", notification_id=value, status=200)
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(f" webhook notification_id={json.dumps(value)} status=200")


def test_fields_of_a_record_from_another_factory_are_found_too() -> None:
    class EarlyRecord(logging.LogRecord):
        """Sets a field before the standard attributes, so they are not where they usually are."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.tenant = "acme"
            super().__init__(*args, **kwargs)

    record = EarlyRecord("t", logging.INFO, "f.py", 1, "done", (), None)
    record.__dict__.update({"task_id": "t-1"})
    assert TextFormatter().format(record).endswith(" done tenant=acme task_id=t-1")
    assert TextFormatter().format(record) == _reference_text(record)


_EVENT_FIELDS = st.dictionaries(_KEYS, _VALUES | st.none(), max_size=5)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([TextFormatter, JsonFormatter]), _CREATED, st.text(max_size=30),
       st.sampled_from([logging.INFO, logging.WARNING, logging.ERROR]), _EVENT_FIELDS)  # fmt: skip
def test_log_event_writes_without_a_record_what_the_record_path_writes(
        formatter: type[logging.Formatter], created: float, event: str, level: int,
        fields: dict[str, Any]) -> None:  # fmt: skip
    stream = io.StringIO()
    handler = LineHandler(stream)
    handler.setFormatter(formatter())
    logger = logging.getLogger("intercom_sync.test.direct")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        # The record path is not taken (it would raise), and the clock stands still.
        with mock.patch.object(logging.Logger, "handle", side_effect=AssertionError), \
                mock.patch.object(logging.Logger, "callHandlers", _STOCK_CALL_HANDLERS), \
                mock.patch("time.time", return_value=created):  # fmt: skip
            log_event(logger, event, level, **fields)
    finally:
        logger.handlers.clear()
    record = logging.LogRecord(logger.name, level, "(unknown file)", 0, event, (), None,
                               "(unknown function)")  # fmt: skip
    record.created, record.msecs = created, (created - int(created)) * 1000
    record.__dict__.update({k: v for k, v in fields.items() if v is not None})
    assert stream.getvalue() == formatter().format(record) + "\n"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@mock.patch.object(logging.Logger, "callHandlers", _STOCK_CALL_HANDLERS)
def test_every_other_observer_of_records_still_gets_log_event_s(text_logger) -> None:
    logger, stream = text_logger("intercom_sync.test.observers")
    collect = _Collect()
    seen: list[str] = []
    stock = _STOCK_CALL_HANDLERS

    def wrapped(self: logging.Logger, record: logging.LogRecord) -> None:  # as Sentry wraps it
        seen.append(record.getMessage())
        stock(self, record)

    log_event(logger, "alone", task_id="t-0")
    logger.addHandler(collect)  # a second handler (pytest's caplog adds one the same way)
    log_event(logger, "two handlers", task_id="t-1")
    logger.removeHandler(collect)
    second = LineHandler(io.StringIO())  # two of this module's own: each writes the line
    second.setFormatter(TextFormatter())
    logger.addHandler(second)
    log_event(logger, "two lines", task_id="t-5")
    logger.removeHandler(second)
    with mock.patch.object(logging.Logger, "callHandlers", wrapped):
        log_event(logger, "wrapped", task_id="t-2")
    logger.addFilter(lambda record: record.getMessage() != "filtered")
    log_event(logger, "filtered", task_id="t-3")
    logger.filters.clear()
    factory = logging.getLogRecordFactory()

    def tagged(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.tenant = "acme"
        return record

    logging.setLogRecordFactory(tagged)
    try:
        log_event(logger, "factory", task_id="t-4")
    finally:
        logging.setLogRecordFactory(factory)
    assert [(r.getMessage(), r.task_id) for r in collect.records] == [("two handlers", "t-1")]
    assert seen == ["wrapped"]
    assert second.stream.getvalue().endswith(" two lines task_id=t-5\n")
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 4)[4] for line in lines] == [
        "alone task_id=t-0", "two handlers task_id=t-1", "two lines task_id=t-5",
        "wrapped task_id=t-2",
        "factory tenant=acme task_id=t-4"]  # fmt: skip


class _Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("disk full")


def test_a_line_that_cannot_be_written_goes_to_handle_error_with_its_record(text_logger) -> None:
    logger, _ = text_logger("intercom_sync.test.broken")
    handler = logger.handlers[0]
    handler.setStream(_Broken())
    failed: list[logging.LogRecord] = []
    with mock.patch.object(handler, "handleError", failed.append):
        log_event(logger, "webhook", task_id="t-1")  # the record-less path
        logger.info("plain")  # the record's path
    assert [(r.getMessage(), getattr(r, "task_id", None)) for r in failed] == [
        ("webhook", "t-1"), ("plain", None)]  # fmt: skip


def test_the_handler_keeps_the_interpreter_s_lock_where_gevent_patched_threading() -> None:
    """The receiver's workers run gevent-patched: the stock handler then gets the pure-Python
    RLock, this one the interpreter's."""
    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import _thread, io, logging\n"
        "from workers.jobs.logs import LineHandler\n"
        "assert type(logging.StreamHandler().lock) is not _thread.RLock\n"
        "assert type(LineHandler(io.StringIO()).lock) is _thread.RLock\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr


class _SlowStream(io.StringIO):
    """Writes a line a character at a time, letting other threads run in between."""

    def write(self, text: str) -> int:
        for char in text:
            super().write(char)
            time.sleep(0)
        return len(text)


def test_lines_from_many_threads_stay_whole(text_logger) -> None:
    logger, _ = text_logger("intercom_sync.test.threads")
    stream = _SlowStream()
    logger.handlers[0].setStream(stream)

    def write(n: int) -> None:
        for i in range(50):
            log_event(logger, "event", writer=n, line=i)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 300
    assert all(re.search(r" event writer=\d line=\d+$", line) for line in lines), lines[:5]
