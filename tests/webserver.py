"""A real `bitstat serve` app under uvicorn in a thread, and a shop's known events to serve.

`running(config)` yields the base URL of a server listening on a free loopback port; `SHOP`
and `shop_events()` are a small deterministic data set (visits, signups, purchases over
October and November 2025) that the web and dashboard tests load and ask about.
"""

from __future__ import annotations

import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import uvicorn

import bitstat
from bitstat.web import ServerConfig, create_app

SHOP = bitstat.Schema(
    ids="map",
    timezone="Europe/Amsterdam",
    count=["country", "country~platform"],
    sum=["amount", "amount by country"],
    top=["item"],
    unique=["ip"],
    segment=["country"],
)
FIRST_DAY = datetime(2025, 10, 1)
DAYS = 61  # October and November 2025


def shop_events(seed: int = 7, visitors: int = 400) -> list[dict[str, Any]]:
    """Visits, then some signups and purchases a few days later: a funnel, cohorts, churn."""
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    for n in range(visitors):
        user = f"u{n:04d}"
        country = rnd.choice(["NL", "NL", "DE", "FR", "BE"])
        platform = rnd.choice(["ios", "android", "web"])
        day = rnd.randrange(DAYS)
        for visit in range(rnd.randrange(1, 6)):
            when = FIRST_DAY + timedelta(
                days=min(DAYS - 1, day + 3 * visit), hours=rnd.randrange(24)
            )
            out.append(
                {
                    "event": "visit",
                    "user": user,
                    "time": when.isoformat(),
                    "country": country,
                    "platform": platform,
                    "ip": f"10.0.{n % 50}.{visit}",
                }
            )
        if rnd.random() < 0.5:
            signup = FIRST_DAY + timedelta(days=min(DAYS - 1, day + rnd.randrange(3)), hours=12)
            out.append(
                {
                    "event": "signup",
                    "user": user,
                    "time": signup.isoformat(),
                    "country": country,
                    "platform": platform,
                }
            )
            for k in range(rnd.randrange(0, 4)):
                when = signup + timedelta(days=rnd.randrange(0, 10) + k)
                if when >= FIRST_DAY + timedelta(days=DAYS):
                    continue
                out.append(
                    {
                        "event": "purchase",
                        "user": user,
                        "time": when.isoformat(),
                        "country": country,
                        "platform": platform,
                        "item": f"sku-{rnd.randrange(1, 9)}",
                        "amount": round(rnd.uniform(5, 120), 2),
                    }
                )
    return out


@contextmanager
def shop_stats(url: str, prefix: str) -> Iterator[bitstat.Stats]:
    """A new namespace `prefix-...` of the shop's schema holding `shop_events()`; dropped
    after."""
    st = bitstat.connect(url, namespace=f"{prefix}-{uuid.uuid4().hex[:8]}", schema=SHOP)
    try:
        assert not st.track_many(shop_events()).rejected
        yield st
    finally:
        st.drop()
        st.close()


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def running(config: ServerConfig, timeout: float = 20.0) -> Iterator[str]:
    """Serve `create_app(config)` with uvicorn in a thread; yield its base URL."""
    sock = _free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
