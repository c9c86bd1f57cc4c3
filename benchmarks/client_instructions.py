"""Client instructions a door costs per event, counted by callgrind: an A/B of the client that
the machine's noise does not move.

The client's CPU time moved ±20-40% from run to run on the project's shared machine, which
hides a change of a few percent. This runs the client twice under valgrind's callgrind, with
the same events made and the same warm-up, once recording N more events and once not, against
a private server without persistence, and prints the difference per event: what recording an
event cost the client in instructions (the server, a process of its own, is not counted;
benchmarks/instructions.py counts it).

    python benchmarks/client_instructions.py live                # track_many by 5,000
    python benchmarks/client_instructions.py backfill --batch 50000
    python benchmarks/client_instructions.py track               # blocking track(), flushes in
    python benchmarks/client_instructions.py track-ahead         # track_ahead's pushes alone
    python benchmarks/client_instructions.py live --src ../other/src   # another tree (A/B)

The events are the realistic profile's (realistic_data.py). Doors: `live` and `backfill`
(`st.track_many` by --batch), `frame` (`st.track_frame` of a pyarrow table of the live
stream), `track` (one blocking `st.track(e)` a call; the queue recorded every `flush_at`
events, as it is by default, so flushes are in the figure), `track-ahead` (`track_ahead=100`,
N below `flush_at`: the pushes alone, no flush). Both runs use PYTHONHASHSEED=0 and a flush
interval no run reaches, so that nothing depends on the clock, and go one after the other:
so run, counts of one tree repeat within 0.1% (side by side, the server's replies came in
other pieces, more or fewer reads, and counts moved up to 9%). Needs valgrind.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DOORS = ("live", "backfill", "frame", "track", "track-ahead")
DEFAULT_EVENTS = {"live": 20_000, "backfill": 20_000, "frame": 50_000}  # others: 1,000
NEVER = 3600.0  # seconds: a flush_interval no run reaches
STREAM = 200_000  # events of a stream (realistic.py's)


def child(door: str, n: int, warm: int, batch: int, url: str, src: str, record: bool) -> None:
    """Under callgrind: the warm-up, then, if `record`, `n` events through `door`. Both runs
    make the same events (and frame), so that only the recording differs; exits without
    clean-up (the same in both runs, and not the door's cost)."""
    sys.path[:0] = [src, str(HERE)]
    import bitstat
    import realistic_data as rd

    kind = "backfill" if door == "backfill" else "live"
    # the first events of realistic.py's stream, whatever N (a shorter stream spreads the
    # same 14 days or 8 weeks over fewer events: other batches)
    events = rd.events(STREAM, kind, 2026).head(warm + n).dicts()
    options: dict[str, Any] = {"flush_interval": NEVER}
    if door == "track-ahead":
        options["track_ahead"] = 100
    st = bitstat.connect(
        url, namespace=f"ci-{door}-{n}-{time.time_ns()}", schema=rd.SCHEMA, **options
    )
    warm_part, measured = events[:warm], events[warm : warm + n] if record else []
    if door in ("track", "track-ahead"):
        for e in warm_part:
            st.track(e)
        if door == "track":
            st.flush()
        gc.collect()
        gc.freeze()
        for e in measured:
            st.track(e)
    elif door == "frame":
        import pyarrow as pa

        st.track_frame(pa.Table.from_pylist(warm_part))
        table = pa.Table.from_pylist(events[warm : warm + n])
        gc.collect()
        gc.freeze()
        if record:
            st.track_frame(table)
    else:
        for i in range(0, warm, batch):
            st.track_many(warm_part[i : i + batch])
        gc.collect()
        gc.freeze()
        for i in range(0, n, batch):
            st.track_many(measured[i : i + batch])
    os._exit(0)


def counted(args: list[str], out: Path) -> int:
    """Instructions of this script run as a child under callgrind."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1"}
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    cmd += [sys.executable, __file__, "--child", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the child failed ({done.returncode}):\n{done.stderr[-2000:]}")
    from instructions import total_instructions  # (imports bitstat: not in the child)

    return total_instructions(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("door", choices=DOORS)
    p.add_argument("--events", type=int, help="events measured (live/backfill 20,000, ...)")
    p.add_argument("--warm", type=int, help="events recorded first, not counted")
    p.add_argument("--batch", type=int, default=5000, help="events per track_many call")
    p.add_argument("--src", default=str(HERE.parent / "src"), help="the bitstat tree to count")
    p.add_argument("--url", help="a server (default: a private valkey without persistence)")
    a = p.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    n = a.events or DEFAULT_EVENTS.get(a.door, 1000)
    # the one-event doors: a warm-up that loads the scripts and fills the client's caches;
    # track-ahead's stays below flush_at (2,000) with its measured events, so nothing flushes
    warm = a.warm if a.warm is not None else (300 if a.door.startswith("track") else 20_000)
    if warm + n > STREAM:
        raise SystemExit(f"--warm plus --events must stay within the stream's {STREAM:,}")
    if a.door == "track-ahead" and warm + n >= 2000:
        raise SystemExit("track-ahead: --warm plus --events must stay below flush_at (2,000)")
    import realistic  # (here, not at the top: a child imports bitstat from --src first)

    # (no URL: a private valkey without persistence)
    with (
        realistic.Server(a.url) as server,
        tempfile.TemporaryDirectory(prefix="bitstat-client-callgrind-") as tmp,
    ):
        # one after the other: run side by side, the server's replies came in other pieces
        # (reads), which moved the count by several percent
        args = [a.door, str(n), str(warm), str(a.batch), server.url, a.src]
        none = counted([*args, "0"], Path(tmp) / "none.out")
        some = counted([*args, "1"], Path(tmp) / "some.out")
    print(
        f"{a.door}: {(some - none) / n:,.0f} client instructions an event ({n:,} events after"
        f" {warm:,}, batches of {a.batch:,}; tree {a.src})"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:  # (the run under callgrind)
        door, n, warm, batch, url, src, record = sys.argv[2:9]
        child(door, int(n), int(warm), int(batch), url, src, record == "1")
    main()
