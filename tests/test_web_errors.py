"""How the HTTP API turns errors into answers: library errors as data, never a plain-text 500.

The library's errors are raised from the `AsyncStats` methods the handlers call (monkeypatched),
so the mapping is checked whatever the library raises today; the end-to-end case of an event
never recorded is checked against the library itself.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from bitstat.aio import AsyncStats
from bitstat.errors import QueryError, UnknownEvent
from bitstat.web import ServerConfig, create_app, params

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def client(embedded_url: str, namespace: str) -> Iterator[TestClient]:
    with TestClient(create_app(ServerConfig(url=embedded_url, namespace=namespace))) as c:
        yield c


def _raising(exc: Exception) -> Any:
    async def method(self: AsyncStats, *args: Any, **kwargs: Any) -> Any:
        raise exc

    return method


@pytest.mark.parametrize(
    ("method", "path", "query", "parameter"),
    [
        ("unique", "unique", {"event": "nosuch", "start": "2025-11"}, "event"),
        ("funnel", "funnel", {"step": ["visit", "nosuch"], "start": "2025-11"}, "step"),
        (
            "retention",
            "retention",
            {"first_event": "visit", "return_event": "nosuch", "start": "2025-10"},
            "return_event",
        ),
    ],
)
def test_an_unknown_event_is_a_404_naming_the_parameter_that_named_it(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    query: dict[str, Any],
    parameter: str,
) -> None:
    monkeypatch.setattr(AsyncStats, method, _raising(UnknownEvent("nosuch", ["visit"])))
    answer = client.get(f"/v1/{path}", params=query)
    assert answer.status_code == 404, answer.text
    assert answer.json() == {
        "error": "no event 'nosuch' is recorded in this namespace; did you mean 'visit'?",
        "parameter": parameter,
    }


@pytest.mark.parametrize(
    ("param", "query", "parameter"),
    [
        ("where", {"event": "visit", "start": "2025-11"}, "where"),
        ("event", {"event": "visit", "start": "2025-11"}, "event"),
        # the range's end came from `start` alone: that is the parameter to change
        ("end", {"event": "visit", "start": "2025-11"}, "start"),
        ("end", {"event": "visit", "start": "2025-11", "end": "2025-12"}, "end"),
    ],
)
def test_a_query_error_names_the_parameter_the_library_blames(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    param: str,
    query: dict[str, Any],
    parameter: str,
) -> None:
    error = QueryError("this cannot be answered", param=param)
    monkeypatch.setattr(AsyncStats, "unique", _raising(error))
    answer = client.get("/v1/unique", params=query)
    assert answer.status_code == 400
    assert answer.json() == {"error": "this cannot be answered", "parameter": parameter}


def test_a_funnel_error_about_steps_names_the_step_parameter(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AsyncStats, "funnel", _raising(QueryError("bad steps", param="steps")))
    answer = client.get("/v1/funnel", params={"step": ["a", "b"], "start": "2025-11"})
    assert answer.json() == {"error": "bad steps", "parameter": "step"}


def test_a_query_error_without_param_names_no_parameter(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the message is never read for a parameter's name: it is data on the error, or none
    monkeypatch.setattr(AsyncStats, "unique", _raising(QueryError("no segment 'os' here")))
    query = {"event": "visit", "start": "2025-11", "where": "os:ios"}
    answer = client.get("/v1/unique", params=query)
    assert answer.status_code == 400
    assert answer.json() == {"error": "no segment 'os' here"}


def test_the_library_names_the_parameter_of_its_own_errors(client: TestClient) -> None:
    client.post("/v1/track", json={"event": "visit", "user": 1, "time": "2025-11-03"})
    answer = client.get(
        "/v1/unique", params={"event": "visit", "start": "2025-11", "where": "os:x"}
    )
    assert answer.status_code == 400
    assert answer.json()["parameter"] == "where"  # the library's `segment`


@pytest.mark.parametrize("parameter", ["start", "end"])
def test_a_time_whose_plus_came_as_a_space_says_to_escape_it(
    client: TestClient, parameter: str
) -> None:
    client.post("/v1/track", json={"event": "visit", "user": 1, "time": "2025-11-03"})
    times = {"start": "2025-11-03", "end": "2025-11-04", parameter: "2025-11-03T13:00+05:45"}
    # (unescaped in the URL, as a hand-written curl sends it: the query reads '+' as a space)
    answer = client.get(f"/v1/unique?event=visit&start={times['start']}&end={times['end']}")
    assert answer.status_code == 400
    assert answer.json()["parameter"] == parameter
    assert answer.json()["error"].endswith(
        "a '+' in a URL's query reads as a space: send the offset '05:45' as %2B05:45"
    )


def test_a_very_long_time_is_refused_without_the_backtracking_look_for_a_plus(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look for an offset whose '+' came as a space ran a backtracking pattern over the
    whole value, quadratic in its length: start= of 100,000 digits (a query string's length is
    not bounded under uvicorn) held the event loop for about 20 s. Only text as long as a time
    is looked at now."""
    looked_at: list[int] = []
    pattern = params._PLUS_AS_SPACE

    class Spy:
        def fullmatch(self, value: str) -> Any:
            looked_at.append(len(value))
            return pattern.fullmatch(value)

    monkeypatch.setattr(params, "_PLUS_AS_SPACE", Spy())
    answer = client.get("/v1/unique", params={"event": "visit", "start": "1" * 20_000})
    assert answer.status_code == 400 and answer.json()["parameter"] == "start"
    assert max(looked_at, default=0) <= 64


def test_an_unexpected_exception_is_a_logged_json_500(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(AsyncStats, "unique", _raising(RuntimeError("boom")))
    with caplog.at_level(logging.ERROR, logger="bitstat.web"):
        answer = client.get("/v1/unique", params={"event": "visit", "start": "2025-11"})
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": "internal error: RuntimeError: boom"}
    [record] = [r for r in caplog.records if r.name == "bitstat.web"]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


def test_an_exception_outside_the_handlers_is_a_json_500(
    embedded_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bitstat.web import app as web_app

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("the page is gone")

    monkeypatch.setattr(web_app, "FileResponse", broken)
    config = ServerConfig(url=embedded_url, namespace=namespace)
    with TestClient(create_app(config), raise_server_exceptions=False) as c:
        answer = c.get("/")
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error: OSError: the page is gone"}


def unreadable(name: str, text: str) -> str:
    why = f"cannot read {text!r} as a time: Invalid isoformat string: {text!r}"
    return f"{name} {text!r}: {why}"


@pytest.mark.parametrize(
    ("path", "query", "error"),
    [
        ("unique", {"event": "visit", "start": "soon"}, unreadable("start", "soon")),
        (
            "unique",
            {"event": "visit", "start": "2025-11", "end": "later"},
            unreadable("end", "later"),
        ),
        (
            "unique",
            {"event": "visit", "start": "2025-11", "end": "0001-01-01"},
            "end '0001-01-01' is outside the dates bitstat supports (1970-01-01 to 9998-12-31)",
        ),
        (
            "lifecycle",
            {"event": "visit", "start": "2025-10", "now": "later"},
            unreadable("now", "later"),
        ),
        (
            "retention",
            {"first_event": "a", "return_event": "b", "start": "2025-10", "now": "9999-12"},
            "now '9999-12': the month of 9999-12-01 is outside the dates bitstat supports"
            " (1970-01-01 to 9998-12-31)",
        ),
    ],
)
def test_a_time_that_cannot_be_read_is_named_as_it_was_given(
    client: TestClient, path: str, query: dict[str, Any], error: str
) -> None:
    """The library reads each end of a range alone, as a `start`: the message names the
    parameter the client sent, not "start"."""
    answer = client.get(f"/v1/{path}", params=query)
    assert answer.status_code == 400, answer.text
    # (the message names it once: it said "start: start 'soon': ...")
    assert answer.json() == {"error": error, "parameter": error.partition(" ")[0]}
