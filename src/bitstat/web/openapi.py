"""The OpenAPI 3.0 document of the HTTP API, built from the same declarations the server checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import __version__
from .endpoints import ENDPOINTS, Endpoint, json_object
from .params import NAMESPACE, Param
from .span import PARAMS as SPAN_PARAMS

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong, in words."},
        "parameter": {"type": "string", "description": "The parameter at fault, if one is."},
        "field": {
            "type": "string",
            "description": "The event field at fault, when a single event is rejected.",
        },
    },
}
TRACK_RESULT = json_object(
    recorded={"type": "integer", "minimum": 0},
    rejected={
        "type": "array",
        "items": json_object(index={"type": "integer", "minimum": 0}, reason={"type": "string"}),
    },
)
TRACK_RESULT["properties"]["expired"] = {
    "type": "object",
    "description": "Only when some are: per period (`hour`, `day`, ...), how many recorded"
    " events fell in buckets already past that period's retention (the schema's `expire`),"
    " so that period keeps nothing of them.",
    "additionalProperties": {"type": "integer", "minimum": 1},
}
ID = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
FORGOTTEN = json_object(
    actor=ID,
    found={"type": "boolean"},
    ids={"type": "array", "items": ID},
    removed={"type": "integer", "minimum": 0},
    scanned={"type": "integer", "minimum": 0},
    kept={"type": "array", "items": {"type": "string"}},
)
EVENT_BODY = {
    "type": "object",
    "description": "An event: `event` (its name), the actor property (default `user`), an"
    " optional `time` (ISO 8601 or epoch seconds), and any other properties.",
    "additionalProperties": True,
}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    ref = schema if schema is not None else {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _errors(*extra: int) -> dict[str, Any]:
    out = {
        "400": _answer(
            "A bad parameter (named in `parameter`) or a query that cannot be answered."
        ),
        "401": _answer("The token is missing or wrong (only when the server has one)."),
        "404": _answer(
            "An event the namespace never recorded (a typo, most likely), named in `parameter`;"
            " the message lists the closest recorded names."
        ),
        "503": _answer("Redis cannot be reached."),
    }
    if 413 in extra:
        out["413"] = _answer("The body is over the server's limit (10 MB unless configured).")
    if 415 in extra:
        out["415"] = _answer(
            "The body is not sent as `application/json` (a form, `text/plain`, ...); a request"
            " without Content-Type is read as JSON."
        )
    return dict(sorted(out.items()))


def _parameter(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": p.name,
        "in": "query",
        "required": p.required,
        "schema": p.json_schema(),
    }
    if p.description:
        out["description"] = p.description
    if p.multiple:
        out["style"], out["explode"] = "form", True
    return out


def _get(
    summary: str, params: tuple[Param, ...], answer: dict[str, Any], op: str
) -> dict[str, Any]:
    return {
        "get": {
            "operationId": op,
            "summary": summary,
            "parameters": [_parameter(p) for p in params],
            "security": [{"read": []}],
            "responses": {"200": _answer("The answer.", answer), **_errors()},
        }
    }


def _probe(op: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    """A probe for load balancers and Kubernetes: no parameters, no token."""
    return {
        "get": {
            "operationId": op,
            "summary": summary,
            "security": [],
            "responses": responses,
        }
    }


def _endpoint(e: Endpoint) -> dict[str, Any]:
    return _get(e.summary, e.params, e.answer, e.name)


def document(endpoints: Sequence[Endpoint] = ENDPOINTS) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/track": {
            "post": {
                "operationId": "track",
                "summary": "Record one event (a JSON object) or a batch (a JSON array).",
                "description": "A single event that is rejected is a 400 naming the `field` at"
                " fault; in a batch, each rejected event is listed by index and the rest is"
                " recorded.",
                "parameters": [
                    _parameter(NAMESPACE),
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "Batch id: a batch sent again with the same key (within"
                        " 7 days) records nothing.",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    EVENT_BODY,
                                    {
                                        "type": "array",
                                        "description": "A batch of events; an item that is"
                                        " not a valid event is rejected alone, by index.",
                                        "items": {},
                                    },
                                ]
                            }
                        }
                    },
                },
                "security": [{"write": []}],
                "responses": {
                    "200": _answer(
                        "How many events were recorded; which were rejected, and why (a"
                        " rejected event records nothing).",
                        TRACK_RESULT,
                    ),
                    **_errors(413, 415),
                },
            }
        },
        **{e.path: _endpoint(e) for e in endpoints},
        "/v1/span": _get(
            "First and last day the event was recorded on (null if never).",
            SPAN_PARAMS,
            json_object(
                first={"type": "string", "format": "date", "nullable": True},
                last={"type": "string", "format": "date", "nullable": True},
            ),
            "span",
        ),
        "/v1/namespaces": _get(
            "The server's default namespace and the namespaces it has seen holding data.",
            (),
            json_object(
                default={"type": "string"},
                namespaces={"type": "array", "items": {"type": "string"}},
                refresh_seconds={"type": "integer", "minimum": 0},
            ),
            "namespaces",
        ),
    }
    paths["/v1/actors/{actor}"] = {
        "delete": {
            "operationId": "forget",
            "summary": "Erase one actor: out of every actor set of the namespace, its id mapping"
            " freed (docs/identity.md). Counters hold no identity and are kept.",
            "parameters": [
                {
                    "name": "actor",
                    "in": "path",
                    "required": True,
                    "description": "The actor's id, as it was recorded.",
                    "schema": {"type": "string", "minLength": 1},
                },
                _parameter(NAMESPACE),
            ],
            "security": [{"write": []}],
            "responses": {
                "200": _answer("What was erased, and which aggregates are kept.", FORGOTTEN),
                "400": _answer("An id that cannot be an actor of the namespace."),
                "401": _answer(
                    "The write token is missing or wrong (only when the server has one)."
                ),
                "503": _answer("Redis cannot be reached."),
            },
        }
    }
    paths["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "summary": "The server's own health in Prometheus' text format: requests, events"
            " recorded and rejected, Redis up and its latency.",
            "security": [{"read": []}],
            "responses": {
                "200": {
                    "description": "The metrics (text exposition format 0.0.4).",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": _answer(
                    "The read token is missing or wrong (only when the server has one)."
                ),
            },
        }
    }
    paths["/healthz"] = _probe(
        "healthz",
        "Liveness: the process answers (it does not ask Redis).",
        {"200": _answer("Alive.", json_object(status={"type": "string", "enum": ["ok"]}))},
    )
    paths["/readyz"] = _probe(
        "readyz",
        "Readiness: Redis answers and holds bitstat's scripts (loaded again if it forgot them).",
        {
            "200": _answer("Ready.", json_object(status={"type": "string", "enum": ["ready"]})),
            "503": _answer(
                "Not ready, and why.",
                json_object(
                    status={"type": "string", "enum": ["unavailable"]},
                    error={"type": "string"},
                ),
            ),
        },
    )
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "bitstat",
            "version": __version__,
            "description": "Real-time event analytics on Redis bitmaps: record events, ask"
            " unique actors, totals, series, counts, sums, top values, retention, funnels.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "read": {"type": "http", "scheme": "bearer", "description": "The read token."},
                "write": {"type": "http", "scheme": "bearer", "description": "The write token."},
            },
        },
    }
