"""Intercom calls are counted by method, route template and status — never by a path with ids
in it — and budget refusals by service (mocked HTTP, as in ``test_http_clients``)."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest
import requests

from tests.scrape import by_labels, local, value
from tests.unit.clients import test_http_clients as clients
from tests.unit.clients.test_http_clients import BASE, CALLS, TOKEN, RecordingLimiter
from workers.clients.http import JsonApi
from workers.clients.intercom import IntercomClient
from workers.clients.sanity import SanityClient
from workers.jobs import errors

mock, limiter, intercom = clients.mock, clients.limiter, clients.intercom
REQUESTS = "intercom_sync_intercom_requests_total"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_each_call_is_counted_under_its_route_template(name, intercom, mock) -> None:
    call, method, path, _, _ = CALLS[name]
    clients.answer_everything(mock)
    before = local()
    call(intercom)
    after = local()
    moved = {labels: n - by_labels(before, REQUESTS).get(labels, 0)
             for labels, n in by_labels(after, REQUESTS).items()
             if n != by_labels(before, REQUESTS).get(labels, 0)}  # fmt: skip
    [(labels, count)] = moved.items()
    labels = dict(labels)
    assert count == 1 and labels["method"] == method and labels["status"] == "200"
    template = labels["route"]
    # The template is the path with each id replaced by {id}, and holds none of the ids.
    assert template.count("/") == path.count("/")
    for sent, named in zip(path.split("/"), template.split("/"), strict=True):
        assert named in (sent, "{id}")
        if named == "{id}":
            assert sent != named
    duration = "intercom_sync_intercom_request_duration_seconds_count"
    assert value(after, duration, method=method, route=template) == (
        value(before, duration, method=method, route=template) + 1)


def test_errors_and_lost_answers_are_counted_with_their_status(intercom, mock) -> None:
    mock.add("GET", BASE + "/conversations/c-1", status=404, json={"type": "error.list"})
    mock.add("GET", BASE + "/conversations/c-2", body=requests.ConnectionError("refused"))
    before = local()
    with pytest.raises(errors.NotFound):
        intercom.get_conversation("c-1")
    with pytest.raises(errors.ConnectionFailed):
        intercom.get_conversation("c-2")
    after = local()
    for status in ("404", "error"):
        labels = dict(method="GET", route="/conversations/{id}", status=status)
        assert value(after, REQUESTS, **labels) == value(before, REQUESTS, **labels) + 1


def test_a_spent_budget_is_counted_and_sends_nothing(mock) -> None:
    client = IntercomClient(BASE, TOKEN, "2.14", limiter=RecordingLimiter(refuse=True))  # type: ignore[arg-type]
    before = local()
    with pytest.raises(errors.RateLimited):
        client.me()
    after = local()
    name = "intercom_sync_rate_limit_exhausted_total"
    assert value(after, name, service="intercom") == value(before, name, service="intercom") + 1
    assert by_labels(after, REQUESTS) == by_labels(before, REQUESTS)


def test_sanity_calls_are_not_counted_as_intercom_requests(mock) -> None:
    mock.add("POST", "https://p.api.sanity.test/v2025-02-19/data/query/production",
             json={"result": [], "ms": 1})  # fmt: skip
    client = SanityClient("https://p.api.sanity.test", "production", None, "2025-02-19",
                          limiter=None)  # fmt: skip
    before = local()
    client.query("*[_type == $t]", {"t": "x"})
    assert by_labels(local(), REQUESTS) == by_labels(before, REQUESTS)


def _call_paths(cls: type) -> list[ast.expr]:
    """The path argument of every ``self.call(...)`` in ``cls``'s own source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    return [node.args[1] for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "call" and len(node.args) >= 2]  # fmt: skip


def bounded_route_problems(cls: type) -> list[str]:
    """Paths that would put ids into the route label: anything but a literal without
    placeholders or ``self.path("<template>", ...)``."""
    problems = []
    for arg in _call_paths(cls):
        literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
        if literal and "{" not in arg.value:
            continue
        templated = (isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute)
                     and arg.func.attr == "path" and arg.args
                     and isinstance(arg.args[0], ast.Constant))  # fmt: skip
        if not templated:
            problems.append(ast.unparse(arg))
    return problems


def test_every_intercom_path_is_a_literal_or_a_template() -> None:
    assert len(_call_paths(IntercomClient)) >= len(CALLS) - 2
    assert bounded_route_problems(IntercomClient) == []


def test_the_route_check_can_fail() -> None:
    class Leaky(JsonApi):
        def get(self, conversation_id: str) -> object:
            return self.call("GET", f"/conversations/{conversation_id}")

        def put(self, contact_id: str) -> object:
            return self.call("PUT", "/contacts/" + contact_id)

    assert len(bounded_route_problems(Leaky)) == 2
