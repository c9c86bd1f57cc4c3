"""Connection pools that hand a write no connection made again after the numbers it writes
were checked (`calls.Links`): a single server's, blocking and asyncio (I/O: the pure
`calls` holds the rule, this the pools that apply it)."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .calls import Links, MadeAgain


def checked(pool_class: type[Any], check: type[Any]) -> type[Any]:
    """`pool_class`, a redis-py connection pool class, with the `get_connection` of `check`
    (`CheckedPool`, or asyncio's)."""
    key = (pool_class, check)
    found = _CHECKED.get(key)
    if found is None:
        found = _CHECKED[key] = type(f"Checked{pool_class.__name__}", (check, pool_class), {})
    return found


_CHECKED: dict[tuple[type[Any], type[Any]], type[Any]] = {}


class CheckedPool:
    """A single server's connection pool that hands a write none of its connections made
    after the numbers it writes were checked (`Links.check`: redis-py makes one found closed
    again as it hands it out, and the write would go to a server restarted meanwhile)."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        conn = super().get_connection(*args, **kwargs)  # type: ignore[misc]
        try:
            Links.check(conn)
        except MadeAgain:
            self.release(conn)  # type: ignore[attr-defined]
            self.connect_idle()
            raise
        except BaseException:
            self.release(conn)  # type: ignore[attr-defined]
            raise
        return conn

    def fill(self, count: int) -> None:
        """Have at least `count` connections made and idle, made now where fewer: a batch whose
        steps wait at once, each on a connection, takes these, not ones made for the first
        time after its numbers were checked (refused to no write, `Links.check`, they could
        reach a server restarted since). A failure to connect is left to the batch."""
        taken: list[Any] = []
        try:
            while len(taken) < count:
                taken.append(self.get_connection())
        except (RedisConnectionError, RedisTimeoutError, OSError):
            pass  # (the server is away: the batch's first step meets it and says so)
        finally:
            for conn in taken:
                self.release(conn)  # type: ignore[attr-defined]

    def connect_idle(self) -> None:
        """Connect now the idle connections found closed (lost with the one refused, or
        dropped with replies unread), so that the next try's look counts them all: made again
        one by one as its writes take them, each would refuse its write in turn, try after
        try (a lost reply cost a batch ten tries). A failure to connect is left to that try."""
        with self._lock:  # type: ignore[attr-defined]
            idle = list(self._available_connections)  # type: ignore[attr-defined]
            self._available_connections.clear()  # type: ignore[attr-defined]
            self._in_use_connections.update(idle)  # type: ignore[attr-defined]
        try:
            for conn in idle:
                conn.connect()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            pass  # (the server is away: the next try meets it and says so)
        finally:
            for conn in idle:
                self.release(conn)  # type: ignore[attr-defined]


class CheckedAsyncPool:
    """`CheckedPool` on asyncio: a write is handed no connection made after the numbers
    it writes were checked (`Links.check`)."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        conn = await super().get_connection(*args, **kwargs)  # type: ignore[misc]
        try:
            Links.check(conn)
        except MadeAgain:
            await self.release(conn)  # type: ignore[attr-defined]
            await self.connect_idle()
            raise
        except BaseException:
            await self.release(conn)  # type: ignore[attr-defined]
            raise
        return conn

    async def fill(self, count: int) -> None:
        """`CheckedPool.fill` on asyncio."""
        taken: list[Any] = []
        try:
            while len(taken) < count:
                taken.append(await self.get_connection())
        except (RedisConnectionError, RedisTimeoutError, OSError):
            pass  # (the server is away: the batch's first step meets it and says so)
        finally:
            for conn in taken:
                await self.release(conn)  # type: ignore[attr-defined]

    async def connect_idle(self) -> None:
        """`CheckedPool.connect_idle` on asyncio."""
        async with self._lock:  # type: ignore[attr-defined]
            idle = list(self._available_connections)  # type: ignore[attr-defined]
            self._available_connections.clear()  # type: ignore[attr-defined]
            self._in_use_connections.update(idle)  # type: ignore[attr-defined]
        try:
            for conn in idle:
                await conn.connect()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            pass  # (the server is away: the next try meets it and says so)
        finally:
            for conn in idle:
                await self.release(conn)  # type: ignore[attr-defined]
