"""Reading a body: the JSON front equals the standard library's parser, answers' JSON equals
``json.dumps``, and greenlets' body deadlines interrupt exactly the late ones."""

from __future__ import annotations

import json
import time
from typing import Any

import gevent
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.body import BodyError, GreenletDeadlines, _loads, _Timeout, parse_object
from workers.jobs import json_text

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
_space = st.text(st.sampled_from(" \t\n\r\x0b\x0c\u00a0\ufeff"), max_size=3)
# JSON texts, texts near JSON (cut, padded, followed by more) and any text at all.
_texts = (
    st.builds(lambda a, v, b: a + json.dumps(v) + b, _space, _values, _space)
    | st.builds(lambda v, cut: json.dumps(v)[:cut], _values, st.integers(0, 40))
    | st.builds(lambda v, w: json.dumps(v) + w, _values, st.text(max_size=5))
    | st.text(max_size=20)
)


def _outcome(parse: Any, text: str) -> Any:
    try:
        return ("value", json.dumps(parse(text)))  # NaN compares by its text
    except ValueError:
        return ("refused",)


@settings(max_examples=1000, deadline=None)
@given(_texts)
def test_loads_takes_and_refuses_what_json_loads_does(text: str) -> None:
    assert _outcome(_loads, text) == _outcome(json.loads, text)


@pytest.mark.parametrize("raw", ['{"a": 1}'.encode("utf-16"), b"\xef\xbb\xbf{}", b'{"a": "\xff"}'])
def test_a_body_that_is_not_utf_8_json_is_refused(raw: bytes) -> None:
    with pytest.raises(BodyError) as refused:
        parse_object(raw, 32)
    assert refused.value.status == 400


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8) | _values, max_size=4)
       | st.lists(st.text(max_size=8), max_size=4) | _values)  # fmt: skip
def test_json_text_is_json_dumps(value: Any) -> None:
    assert json_text.dumps(value) == json.dumps(value)


def _blocked(deadlines: GreenletDeadlines, seconds: float, wait: float) -> float:
    """Run a block that waits ``wait`` seconds under a ``seconds`` deadline; its duration."""
    started = time.monotonic()
    greenlet = deadlines.start(seconds)
    try:
        gevent.sleep(wait)
    finally:
        deadlines.finish(greenlet)
    return time.monotonic() - started


def test_a_greenlet_past_its_deadline_is_interrupted_and_only_it() -> None:
    deadlines = GreenletDeadlines(tick=0.01)
    late = gevent.spawn(_blocked, deadlines, 0.05, 5.0)
    in_time = gevent.spawn(_blocked, deadlines, 5.0, 0.2)
    gevent.joinall([late, in_time], timeout=3)
    assert isinstance(late.exception, _Timeout)
    assert in_time.successful() and 0.2 <= in_time.value < 1.0


def test_a_block_that_ended_is_not_interrupted_later() -> None:
    deadlines = GreenletDeadlines(tick=0.01)

    def ends_then_waits() -> float:
        _blocked(deadlines, 0.05, 0.0)
        gevent.sleep(0.2)  # past the ended block's deadline, in the same greenlet
        return _blocked(deadlines, 0.05, 0.0)

    greenlet = gevent.spawn(ends_then_waits)
    greenlet.join(timeout=3)
    assert greenlet.successful(), greenlet.exception


def test_the_deadline_is_total_not_per_wait() -> None:
    """A block that waits many short times (a client sending a byte at a time) still ends."""
    deadlines = GreenletDeadlines(tick=0.01)

    def dribbles() -> None:
        greenlet = deadlines.start(0.1)
        try:
            for _ in range(100):
                gevent.sleep(0.01)
        finally:
            deadlines.finish(greenlet)

    started = time.monotonic()
    greenlet = gevent.spawn(dribbles)
    greenlet.join(timeout=3)
    assert isinstance(greenlet.exception, _Timeout)
    assert time.monotonic() - started < 0.5
