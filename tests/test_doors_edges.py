"""Edges of the doors that bring events in, found by a review on 2026-12-06 (each test failed
before its fix): a namespace another process of `serve --workers` met first, the same TSV from
a file and from stdin (in test_cli.py), a Segment rejection naming the message's own field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import bitstat
from bitstat.web import ServerConfig, create_app

try:
    from starlette.testclient import TestClient
except ImportError:  # pragma: no cover
    pytest.skip("starlette's test client needs httpx", allow_module_level=True)


WHEN = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")


def segment_batch(*mids: str) -> dict[str, Any]:
    return {
        "batch": [
            {
                "type": "track",
                "event": "purchase",
                "userId": f"user-{m}",
                "messageId": m,
                "timestamp": WHEN,
            }
            for m in mids
        ]
    }


def test_serve_workers_a_process_that_met_the_namespace_first_takes_sdk_text_ids(
    embedded_url: str, namespace: str
) -> None:
    """`serve --workers 2`: process B met the namespace (a dashboard read) before it had a
    schema; process A stores Schema(ids="map") on the first SDK message; B's next SDK message
    found a schema stored (so it stored none) but recorded with the default schema it had
    cached, ids="int": the SDK's text ids were rejected for up to schema_ttl seconds (the SDK,
    answered 200, drops them). B now reads the schema again."""
    config = ServerConfig(url=embedded_url, namespace=namespace, write_keys={})
    with TestClient(create_app(config)) as a, TestClient(create_app(config)) as b:
        assert b.get("/v1/events").status_code == 200  # B meets the namespace
        first = a.post("/v1/batch", json=segment_batch("m-1"))
        assert first.json()["recorded"] == 1, first.json()
        second = b.post("/v1/batch", json=segment_batch("m-2"))
        assert second.json()["rejected"] == [], second.json()
        assert second.json()["recorded"] == 1


# the HTTP API: Segment


def test_segment_identify_rejected_for_a_trait_names_the_trait_not_a_property(
    embedded_url: str, namespace: str
) -> None:
    """docs/ingest.md: a rejected message is listed with "the field in the message's own
    spelling". An identify message carries `traits`, not `properties`; a trait the schema
    cannot take is blamed on `properties.<name>`, a field the message does not have."""
    bitstat.connect(
        embedded_url, namespace=namespace, schema=bitstat.Schema(ids="map", sum=["ltv"])
    ).close()
    config = ServerConfig(url=embedded_url, namespace=namespace, write_keys={})
    message = {
        "type": "identify",
        "userId": "user-1",
        "messageId": "id-1",
        "timestamp": WHEN,
        "traits": {"ltv": "lots"},
    }
    with TestClient(create_app(config)) as client:
        answer = client.post("/v1/batch", json={"batch": [message]}).json()
    assert answer["recorded"] == 0
    assert [r["field"] for r in answer["rejected"]] == ["traits.ltv"], answer
