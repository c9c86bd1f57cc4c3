"""`bitstat consume STREAM`: record the events of a Redis Stream through a consumer group,
exactly once (the logic is bitstat.streams)."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

import click

from ..store import client_from_url, wrapped_errors
from ..streams import Progress, StreamConsumer
from .output import to_json

if TYPE_CHECKING:
    from .main import Settings


@click.command(short_help="Record the events of a Redis Stream (consumer group, exactly once).")
@click.argument("stream")
@click.option("--group", default="bitstat", show_default=True, help="Consumer group name.")
@click.option(
    "--consumer",
    default=None,
    help="This consumer's name; keep it across restarts (default: the host name).",
)
@click.option("--batch", default=500, show_default=True, help="Entries read and recorded at once.")
@click.option(
    "--block",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="Milliseconds a read waits for entries (0: until one comes).",
)
@click.option(
    "--min-idle",
    default=60_000,
    show_default=True,
    help="Milliseconds another consumer's entry stays pending before it is claimed (any value"
    " is exact; a short one makes consumers take each other's batches, work done twice).",
)
@click.option(
    "--field",
    "data_field",
    default="data",
    show_default=True,
    help="Field holding the event as a JSON object; without it, the fields are the event.",
)
@click.option(
    "--from-start/--new-only",
    default=True,
    show_default=True,
    help="A new group reads the stream from its start, or only what is added from now.",
)
@click.option("--stream-url", default=None, help="Redis holding the stream (default: the data's).")
@click.option("--max-events", type=int, default=None, help="Stop after this many events.")
@click.option(
    "--stop-when-idle",
    type=float,
    default=None,
    help="Stop after this many seconds without an entry (for jobs and tests).",
)
@click.pass_obj
def consume(
    settings: Settings,
    stream: str,
    group: str,
    consumer: str | None,
    batch: int,
    block: int,
    min_idle: int,
    data_field: str,
    from_start: bool,
    stream_url: str | None,
    max_events: int | None,
    stop_when_idle: float | None,
) -> None:
    """Read STREAM with XREADGROUP in a consumer group and record each batch under a batch id
    of its own (noted beside the stream), then XACK it. A consumer killed between the two
    leaves its entries pending; started again (same --consumer), or another consumer after
    --min-idle, takes them again (XAUTOCLAIM) under the same batch ids: nothing counts twice.
    An entry is one event: a JSON object in the field --field (as in `redis-cli XADD events
    '*' data '{"event":"login","user":42}'`), or else its fields. Prints what it did as JSON
    when it stops. See docs/streams.md.

    \b
    Example:
        bitstat consume events --group bitstat --consumer worker-1
        bitstat --namespace shop consume events --stop-when-idle 5
    """
    if block == 0 and stop_when_idle is not None:
        raise click.UsageError(
            "--block 0 waits until an entry comes, so --stop-when-idle could never stop it:"
            " give --block MILLISECONDS with --stop-when-idle"
        )
    name = consumer or socket.gethostname()
    # (the consumer calls the stream's client itself: its failures told as the library's are)
    with settings.connect() as st, wrapped_errors(f"consuming the stream {stream!r}"):
        client = stream_client(stream_url) if stream_url else None
        worker = StreamConsumer(
            st,
            stream,
            group=group,
            consumer=name,
            client=client,
            batch=batch,
            block_ms=block,
            min_idle_ms=min_idle,
            data_field=data_field,
            start="0" if from_start else "$",
        )
        seen = [worker.progress.recorded + worker.progress.rejected, time.monotonic()]

        def stop(progress: Progress) -> bool:
            done = progress.recorded + progress.rejected
            if done != seen[0]:
                seen[:] = [done, time.monotonic()]
            if max_events is not None and done >= max_events:
                return True
            idle = time.monotonic() - seen[1]
            return stop_when_idle is not None and idle >= stop_when_idle

        try:
            progress = worker.run(stop=stop)
        except KeyboardInterrupt:
            progress = worker.progress
    click.echo(
        to_json(
            {
                "recorded": progress.recorded,
                "rejected": progress.rejected,
                "batches": progress.batches,
                "taken_again": progress.retried,
            }
        )
    )


def stream_client(url: str) -> Any:
    """The client of `--stream-url`, with the data's timeouts (a server gone silent fails a
    call, not hangs it; a read waits less than the socket timeout: bitstat.streams)."""
    client, _ = client_from_url(url)
    return client


COMMANDS: list[click.Command] = [consume]
