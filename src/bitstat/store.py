"""Connects to the server and runs `Transport` requests on blocking redis-py: one Redis, a unix
socket, or a Redis Cluster. Thin: no decisions."""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.backoff
import redis.exceptions as rex
import redis.retry

from .calls import FORKS, SEAL, Call, Driver, Links, Op
from .clusters import Cluster, every_master
from .errors import BitstatError, ConnectionError, ServerError
from .pools import CheckedPool, checked
from .transport import (
    Ahead,
    AheadReplies,
    Direct,
    Doing,
    Moved,
    Pause,
    Pipe,
    Received,
    Request,
    Scan,
    ScriptMissing,
    Sent,
    Transport,
    patient,
)

T = TypeVar("T")
P = ParamSpec("P")
CLUSTER_SCHEME = "redis+cluster"
CLUSTER_TLS_SCHEME = "rediss+cluster"  # a cluster over TLS
CLUSTER_SCHEMES = (CLUSTER_SCHEME, CLUSTER_TLS_SCHEME)
# the TLS options a rediss+cluster:// URL may carry, named as redis-py names them for rediss://
TLS_PARAMS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
TRUE = ("1", "true", "yes", "on")
SCAN_COUNT = 1000  # keys a SCAN call looks at


# replies of a server that cannot take the call for the moment: a cluster moving slots or
# failing over, a server loading its data, a replica promoted or demoted; nothing was written
# (BUSY: another client's script runs past busy-reply-threshold; not BUSYKEY, a RESTORE's)
FOR_NOW = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "LOADING", "READONLY", "BUSY ")
FOR_NOW_ERRORS = (rex.AskError, rex.TryAgainError, rex.ReadOnlyError)  # the cluster parser's


def classified(error: ConnectionError | ServerError, *, transient: bool, refused: bool) -> Any:
    error.transient = transient
    error.refused = refused
    return error


@contextmanager
def wrapped_errors(what: str) -> Iterator[None]:
    """Redis failures surface as bitstat errors, with the cause chained, each saying whether it
    may pass (`transient`) and whether the server answered it (`refused`: nothing written)."""
    try:
        yield
    except (rex.AuthenticationError, rex.AuthorizationError) as exc:
        raise classified(
            ConnectionError(f"{what}: the server refused the credentials: {exc}"),
            transient=False,
            refused=True,
        ) from exc
    except rex.BusyLoadingError as exc:
        raise classified(
            ConnectionError(f"{what}: the server is loading its data: {exc}"),
            transient=True,
            refused=True,
        ) from exc
    except (rex.ConnectionError, rex.TimeoutError) as exc:
        raise ConnectionError(f"{what}: cannot reach the server: {exc}") from exc
    except (rex.ClusterError, rex.RedisClusterException) as exc:
        # the cluster client gave up (slots not covered, redirected too often, nodes
        # unreachable): unless a node answered so, the last try may have reached one
        raise classified(
            ServerError(f"{what}: the cluster cannot take the call now: {exc!r}"),
            transient=True,
            refused=isinstance(exc, rex.ResponseError),
        ) from exc
    except rex.OutOfMemoryError as exc:
        raise ServerError(
            f"{what}: the server is out of memory (maxmemory reached; under the noeviction"
            f" policy it refuses writes until memory is freed or the limit raised): {exc}"
        ) from exc
    except (ScriptMissing, Moved) as exc:  # (a script gone again, a slot moved again)
        error = ServerError(f"{what}: the server answered with an error: {exc}")
        raise classified(error, transient=True, refused=True) from exc
    except rex.RedisError as exc:
        text = reply_text(exc)
        refusal = acl_refusal(exc)
        if refusal is not None:  # (the same until the user's rights change)
            text += f"; {ACL_NEEDS}"
        error = ServerError(f"{what}: the server answered with an error: {text}")
        transient = isinstance(exc, FOR_NOW_ERRORS) or text.startswith(FOR_NOW)
        # what ran before the command refused stays: a pipeline's commands before it (a
        # batch's scripts before WAIT), a script's writes before its refused call
        later = _PIPELINE_COMMAND.match(str(exc))
        partly = (later is not None and int(later[1]) > 1) or bool(refusal and IN_SCRIPT in refusal)
        raise classified(error, transient=transient, refused=not partly) from exc


# what an error of the server's ACL adds: where to read what a Redis user of bitstat needs
ACL_NEEDS = (
    "the Redis user needs the commands and key patterns of docs/operations.md#redis-users"
    " (reads too: they write scratch keys and apply the events track() queued)"
)
IN_SCRIPT = "ACL failure in script"  # (a refusal inside a script is a plain error reply)
# redis-py's words before the error of a pipeline's command (the first that failed)
_PIPELINE_COMMAND = re.compile(r"Command # ([0-9]+) ")


def acl_refusal(exc: BaseException | None) -> str | None:
    """The server's words if its ACL refused a command or key (NOPERM, or in a script), in
    `exc` or behind it (redis-py's cluster client says "Cluster mode is not enabled" when the
    ACL refuses CLUSTER SLOTS); None for any other error."""
    while exc is not None:
        said = str(exc).rpartition("caused error: ")[2]  # (not the command a pipeline's names)
        if isinstance(exc, rex.NoPermissionError) or said.startswith(IN_SCRIPT):
            return said
        exc = exc.__cause__ or exc.__context__
    return None


def not_connected(shown: str, exc: Exception) -> ConnectionError:
    """The error of a client that could not connect to `shown` (the URL shown): the ACL
    refused what the client asks first, or no node of a cluster answered."""
    refusal = acl_refusal(exc)
    if refusal is not None:
        error = ConnectionError(f"connecting to {shown}: {refusal}; {ACL_NEEDS}")
        classified(error, transient=False, refused=True)
        return error
    return ConnectionError(f"connecting to {shown}: cannot reach the cluster: {exc}")


# the error replies redis-py's cluster parser makes exceptions of, their code taken off
REPLY_CODES = {rex.MovedError: "MOVED", rex.AskError: "ASK", rex.TryAgainError: "TRYAGAIN"}


def reply_text(exc: Exception) -> str:
    """An error reply as the server sent it ("MOVED 12 host:port", not "12 host:port")."""
    code = REPLY_CODES.get(type(exc))
    if code is None:
        return str(exc)
    text = str(exc).rpartition("caused error: ")[2]  # (not the command a pipeline's names)
    return text if text.startswith(code) else f"{code} {text}"


class Unread:
    """Replies still on a connection, to be read (once) by `Received`: the connection goes back
    to its pool then, or is closed if the reading fails or never happens."""

    def __init__(self, pool: Any, conn: Any, count: int) -> None:
        self.pool, self.conn, self.count = pool, conn, count

    def read(self) -> list[Any]:
        conn, self.conn = self.conn, None
        if conn is None:
            raise RuntimeError("these replies were read already")
        replies: list[Any] = []
        try:
            for _ in range(self.count):
                replies.append(answer_or_error(conn.read_response))
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self.pool.release(conn)
        return replies

    def __del__(self) -> None:
        if self.conn is not None:  # never read (the call failed meanwhile): drop the replies
            self.conn.disconnect()
            self.pool.release(self.conn)


def answer_or_error(function: Callable[..., Any], args: tuple[Any, ...] = ()) -> Any:
    """A command's reply, or the error the server answered with (the next replies still
    come)."""
    try:
        return function(*args)
    except rex.ResponseError as exc:
        return exc


def ahead_reply(reply: Any) -> Any:
    """An `Ahead` command's reply, its error as bitstat's (ScriptMissing: run it again)."""
    if isinstance(reply, rex.NoScriptError):
        return ScriptMissing(str(reply))
    if isinstance(reply, rex.ResponseError):
        return ServerError(f"the server answered with an error: {reply}")
    return reply


def replies_of(replies: list[Any]) -> list[Any]:
    """`Received`'s replies: a missing script as ScriptMissing, any other error raised."""
    for r in replies:
        if isinstance(r, Exception) and not isinstance(r, rex.NoScriptError):
            raise r
    return [ScriptMissing(str(r)) if isinstance(r, rex.NoScriptError) else r for r in replies]


class Driving:
    """One request run step by step, by `Store.perform` or `AsyncStore.perform`: what it is
    doing (for the error a failure becomes), the reply or error sent back in, its answer."""

    def __init__(self, call: Call, io: Transport) -> None:
        self.request = call.method(io, *call.args, **call.kwargs)
        self.what = "calling the server"
        self.reply: Any = None
        self.error: Exception | None = None
        self.going = True
        self.answer: Any = None

    def next_step(self) -> Any:
        """The next step to take (a `Doing` is noted, not taken); at the end `going` turns
        false and `answer` holds the request's. A failure it lets through is one of bitstat's
        errors when it leaves here."""
        try:
            while True:
                if self.error is not None:
                    error, self.error = self.error, None
                    step = self.request.throw(error)
                else:
                    step = self.request.send(self.reply)
                if not isinstance(step, Doing):
                    return step
                self.what, self.reply = step.what, None
        except StopIteration as stop:
            self.going, self.answer = False, stop.value
        except BitstatError:
            raise
        except Exception:
            with wrapped_errors(self.what):
                raise


def resolve_url(url: str | None, data_dir: Any, appendfsync: str) -> str:
    """`url`, else $BITSTAT_URL, else the embedded server of `data_dir` (started if needed)."""
    if url is None:
        url = os.environ.get("BITSTAT_URL") or None
    if url is None:
        from . import embedded

        url = embedded.ensure_server(data_dir, appendfsync=appendfsync)
    return url


def shown_url(url: str) -> str:
    """`url` as errors and output may show it: its password (in the address or a `?password=`)
    replaced by `***`, so an error message or a log line never carries it."""
    parts = urlsplit(url)
    shown = url
    user, at, host = parts.netloc.rpartition("@")
    if at and ":" in user:
        shown = shown.replace(parts.netloc, f"{user.partition(':')[0]}:***@{host}", 1)
    return _PASSWORD_PARAM.sub(r"\1***", shown)


_PASSWORD_PARAM = re.compile(r"([?&]password=)[^&#]*")

DEFAULT_TIMEOUT = 30.0  # seconds a call waits for the server's answer (a big batch takes ~1 s)
CONNECT_TIMEOUT = 10.0  # seconds to open a connection
HEALTH_CHECK = 30  # seconds
TIMEOUT_PARAMS = ("socket_timeout", "socket_connect_timeout")


def timeouts(url: str, timeout: float | None) -> dict[str, Any]:
    """Client options that keep a call from waiting forever on a server that vanished without
    closing the connection (a half-open TCP connection): a read timeout (`timeout`, else
    `?socket_timeout=` in the URL, else DEFAULT_TIMEOUT), a connect timeout, TCP keep-alive,
    and a health check of a connection idle for HEALTH_CHECK seconds."""
    given = {
        k: float(v[-1]) for k, v in parse_qs(urlsplit(url).query).items() if k in TIMEOUT_PARAMS
    }
    options: dict[str, Any] = {
        "socket_timeout": timeout or given.get("socket_timeout", DEFAULT_TIMEOUT),
        "socket_connect_timeout": given.get("socket_connect_timeout", CONNECT_TIMEOUT),
        # a connection idle this long is checked (PING) before it carries a call again
        "health_check_interval": HEALTH_CHECK,
    }
    if not url.startswith("unix:"):  # TCP only: a unix socket has no keep-alive to ask for
        options["socket_keepalive"] = True
    return options


def cluster_address(url: str) -> dict[str, Any] | None:
    """RedisCluster arguments for a redis+cluster:// or rediss+cluster:// (TLS) URL, None for a
    single-server URL; any other scheme is refused. Shared by the blocking and the asyncio
    stores."""
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        address: dict[str, Any] = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 6379,
            "username": parts.username,
            "password": parts.password,
        }
        if parts.scheme == CLUSTER_TLS_SCHEME:  # every node is then reached over TLS
            address["ssl"] = True
            given = parse_qs(parts.query)
            address.update({k: given[k][-1] for k in TLS_PARAMS if k in given})
            if "ssl_check_hostname" in address:
                address["ssl_check_hostname"] = address["ssl_check_hostname"].lower() in TRUE
        return address
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConnectionError(
            f"unsupported URL scheme {parts.scheme!r} in {shown_url(url)!r}: "
            "use redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://"
        )
    return None


DURABILITY = ("fast", "replicated")


def durability(url: str, given: str | None) -> tuple[str, int]:
    """(`url` without its `?durability=`, how many replicas must confirm a batch): `given`, else
    the URL's, else "fast" (0: acknowledged once the master has it)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    in_url = [v for k, v in query if k == "durability"]
    mode = given or (in_url[-1] if in_url else "fast")
    if mode not in DURABILITY:
        raise ConnectionError(f"durability must be one of {', '.join(DURABILITY)}, got {mode!r}")
    if in_url:
        rest = urlencode([(k, v) for k, v in query if k != "durability"])
        url = urlunsplit(parts._replace(query=rest))
        if parts.scheme == "unix" and not parts.netloc:  # urlunsplit drops an empty "//"
            url = url.replace("unix:", "unix://", 1)
    return url, int(mode == "replicated")


def client_from_url(
    url: str, timeout: float | None = None, links: Links | None = None
) -> tuple[Any, bool]:
    """(redis-py client, is_cluster) for redis://, rediss://, unix:// or cluster URLs;
    `links` counts the connections it makes."""
    address = cluster_address(url)
    options = timeouts(url, timeout)
    if address is not None:
        if links is not None:
            options["redis_connect_func"] = links.counting_after
        try:  # (the cluster client reads the slot map as it is made)
            return Cluster(**address, **options), True
        except (rex.RedisClusterException, rex.ResponseError) as exc:  # (an ACL's NOPERM)
            raise not_connected(shown_url(url), exc) from exc
    if links is None:
        return redis.Redis.from_url(url, **options), False
    options.update(redis_connect_func=links.counting, retry=NO_RETRY)
    client = redis.Redis.from_url(url, **options)
    client.connection_pool.__class__ = checked(type(client.connection_pool), CheckedPool)
    return client, False


# A call is not sent again by redis-py on a connection it made again (redis-py 6 does by
# default): the server there may have restarted with less than it had, and a batch planned
# with the numbers learnt before must be planned again (Recording.check_links); bitstat's own
# tries do that.
NO_RETRY = redis.retry.Retry(redis.backoff.NoBackoff(), 0)


# The connection pools of the blocking stores (a single server's). redis-py holds a pool's
# locks while a thread takes a connection or gives one back; a child forked meanwhile would
# inherit them taken, by a thread it does not have, and its first call would wait for ever
# (redis-py resets the pool in the child, not its locks). A fork waits until they are free.
_POOLS: weakref.WeakSet[Any] = weakref.WeakSet()
# the locks the forking thread took, per thread: two threads forking at once must each free
# their own (with one list, the first to free took the second's too, while it forked)
_HELD_AT_FORK = threading.local()


def _take_pool_locks() -> None:
    held = _HELD_AT_FORK.locks = []
    for pool in list(_POOLS):
        for name in ("_fork_lock", "_lock"):  # (the order redis-py takes them in)
            lock = getattr(pool, name, None)
            if lock is not None and lock.acquire():
                held.append(lock)


def _free_pool_locks() -> None:
    held = getattr(_HELD_AT_FORK, "locks", [])
    while held:
        held.pop().release()


os.register_at_fork(
    before=_take_pool_locks, after_in_parent=_free_pool_locks, after_in_child=_free_pool_locks
)


class Store:
    """Runs `Transport` requests on blocking redis-py: one Redis, a unix socket or a Cluster."""

    def __init__(
        self, client: Any, cluster: bool, replicas: int = 0, read_timeout: float | None = None
    ) -> None:
        self.client = client
        self.cluster = cluster
        self.io = Transport(cluster, replicas, read_timeout)
        self.spare: list[Any] = []  # connections of `Direct` calls, not in use
        self.forks = FORKS[0]
        self.ahead: Any = None  # the connection of `Ahead` commands
        self.ahead_unread = 0  # replies waiting on it
        self.ahead_kept: list[Any] = []  # replies before those: a cluster's, None for lost ones
        self.links = Links()  # (from_url's counts the connections its client makes)
        if not cluster:
            _POOLS.add(client.connection_pool)

    @classmethod
    def from_url(cls, url: str, timeout: float | None = None, durable: str | None = None) -> Store:
        url, replicas = durability(url, durable)
        links = Links()
        client, cluster = client_from_url(url, timeout, links)
        store = cls(client, cluster, replicas, timeouts(url, timeout)["socket_timeout"])
        store.links = links
        shown = shown_url(url)
        with wrapped_errors(f"connecting to {shown}"):
            try:
                client.ping()
            except rex.NoPermissionError as exc:
                raise not_connected(shown, exc) from exc
        return store

    def close(self) -> None:
        for conn in self.spare:
            conn.disconnect()
        self.spare = []
        self.drop_ahead()
        self.client.close()

    def perform(self, call: Call) -> Any:
        """The answer of one call: its request run step by step."""
        run = Driving(call, self.io)
        sealed = SEAL.set(call.seal)
        try:
            while (step := run.next_step()) or run.going:
                try:
                    run.reply = self.take(step)
                except Exception as exc:  # thrown in at the step, which may handle it
                    run.error = exc
        finally:
            SEAL.reset(sealed)
        return run.answer

    def take(self, step: Any) -> Any:
        try:
            if isinstance(step, Ahead):  # (first: one a track() call)
                return self.send_ahead(step.command)
            if isinstance(step, Pipe):
                client = self.client if step.on is None else self.master_of(step.on)
                pipe = client.pipeline(transaction=False)
                step.fill(pipe)
                return pipe.execute()
            if isinstance(step, Pause):
                return time.sleep(step.seconds)
            if isinstance(step, Scan):
                return self.scan(step.pattern)
            if isinstance(step, Direct):
                return self.direct(step.command)
            if isinstance(step, AheadReplies):
                return self.ahead_replies()
            if isinstance(step, Sent):
                return self.send(step.commands)
            if isinstance(step, Received):
                return replies_of(
                    step.ticket.read() if isinstance(step.ticket, Unread) else step.ticket
                )
            return step(self.client)
        except rex.NoScriptError as exc:
            raise ScriptMissing(str(exc)) from exc
        except rex.MovedError as exc:  # (only a `Pipe` on a key's master meets one)
            raise Moved(reply_text(exc)) from exc

    def master_of(self, key: str) -> Any:
        """The client of the master of `key`'s slot, as this client knows the slot map (the
        store's own on a single server)."""
        if not self.cluster:
            return self.client
        return self.client.get_redis_connection(self.client.get_node_from_key(key))

    def scan(self, pattern: str) -> list[Any]:
        """`Scan`: the keys matching `pattern`, on every master of a cluster there is now."""
        if not self.cluster:
            return list(self.client.scan_iter(match=pattern, count=SCAN_COUNT))
        return [
            key
            for node in every_master(self.client)
            for key in self.client.scan_iter(match=pattern, count=SCAN_COUNT, target_nodes=node)
        ]

    def direct(self, command: tuple[Any, ...]) -> Any:
        """`Direct`: the command on a spare connection of the store's own (a forked child
        makes its own), put back after a reply and dropped after a failure."""
        if self.cluster:
            return self.client.execute_command(*command)
        self.forked_check()
        try:
            conn = self.spare.pop()
        except IndexError:
            conn = self.client.connection_pool.make_connection()
        try:
            conn.send_packed_command(conn.pack_command(*command), check_health=False)
            reply = conn.read_response()
        except rex.ResponseError:
            self.spare.append(conn)
            raise
        except BaseException:
            conn.disconnect()
            raise
        self.spare.append(conn)
        return reply

    def forked_check(self) -> None:
        """In a forked child: the connections kept out of the pool, and the replies waiting on
        them, are the parent's (left alone, not closed)."""
        if self.forks != FORKS[0]:
            self.spare, self.forks = [], FORKS[0]
            self.ahead, self.ahead_unread, self.ahead_kept = None, 0, []

    def send_ahead(self, command: tuple[Any, ...]) -> bool:
        """`Ahead`: the command written, its reply left on the connection (a cluster, whose
        client routes each command, runs it now and keeps the reply). False: the connection
        failed (its unread replies are lost, and this command may have gone)."""
        self.forked_check()
        if self.cluster:
            try:
                self.ahead_kept.append(answer_or_error(self.client.execute_command, command))
            except Exception:
                self.ahead_kept.append(None)
                return False
            return True
        if self.ahead is None:
            self.ahead = self.client.connection_pool.make_connection()
        self.ahead_unread += 1
        try:
            self.ahead.send_packed_command(self.ahead.pack_command(*command), check_health=False)
        except Exception:
            self.drop_ahead()
            return False
        except BaseException:
            self.drop_ahead()
            raise
        return True

    def ahead_replies(self) -> list[Any]:
        """`AheadReplies`: every reply not read yet, in order; a reading that fails loses the
        connection and the replies left on it (None each)."""
        self.forked_check()
        replies, self.ahead_kept = self.ahead_kept, []
        try:
            while self.ahead_unread:
                replies.append(answer_or_error(self.ahead.read_response))
                self.ahead_unread -= 1
        except BaseException as exc:
            self.drop_ahead()
            replies += self.ahead_kept
            self.ahead_kept = []
            if not isinstance(exc, Exception):
                self.ahead_kept = replies  # (read again after an interrupt)
                raise
        return [ahead_reply(r) for r in replies]

    def drop_ahead(self) -> None:
        """Close the `Ahead` connection: its unread replies are lost (None each)."""
        self.ahead_kept += [None] * self.ahead_unread
        self.ahead_unread = 0
        if self.ahead is not None:
            self.ahead.disconnect()
            self.ahead = None

    def send(self, commands: list[tuple[Any, ...]]) -> Any:
        """Write `commands` on a connection of their own and return at once (`Sent`); on a
        cluster, whose client routes and redirects each command, run them now."""
        if self.cluster:
            return [answer_or_error(self.client.execute_command, c) for c in commands]
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command(conn.pack_commands(commands))
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        return Unread(pool, conn, len(commands))

    def call(
        self,
        method: Callable[Concatenate[Transport, P], Request[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """One request, run now: `store.call(Transport.get, key)`."""
        return self.perform(Call(method, args, kwargs))  # type: ignore[no-any-return]


def run(store: Any, op: Op[T], deadline: float = 0.0) -> T:
    """Drive an operation with a blocking store; reads refused for the moment are made again
    for up to `deadline` seconds (`patient`)."""
    driver = Driver(patient(op, deadline) if deadline > 0 else op)
    try:
        while (call := driver.next()) is not None:
            try:  # (Driver.replying, written out: a context manager costs ~1 µs a call)
                driver.reply = store.perform(call)
            except BitstatError as exc:
                driver.error = exc
    except BaseException:  # (an interrupt, a gevent timeout)
        driver.stop(op)
        raise
    return driver.answer
