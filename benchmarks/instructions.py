"""Server instructions a stream costs, counted by callgrind: an A/B that the machine's noise does
not move.

Wall-clock and CPU time of the server moved ±20% from run to run on the project's shared
machine, which hides a change of a few percent in apply.lua. This replays the very same script
calls against a Valkey run under valgrind's callgrind and reports the instructions it executed:
the same calls and script give the same count, to a few tenths of a percent.

    python benchmarks/instructions.py capture live 20000 live.pkl       # record, keep the calls
    python benchmarks/instructions.py count live.pkl                    # apply.lua of this tree
    python benchmarks/instructions.py count live.pkl --script other.lua # a variant, same calls

`capture` records a stream (`live` or `backfill` of the realistic profile, `full` of run.py's
1c, `track`: the live stream sent one `track()` a call) on a private embedded server and saves
each apply.lua call (keys and arguments) as the client sent it, and each call of the scripts
that number actor ids and values (ids.lua, values.lua); `count` starts a fresh server under
callgrind, loads the script (its includes expanded), replays the calls, and prints the
instructions in all and per event (`--keep FILE`: callgrind's own output, for
`callgrind_annotate`). Calls are replayed in order on an empty server, as they were made.
apply.lua's calls need no numbering first: the numbers ids.lua and values.lua gave actors and
values are in their arguments; `--of ids` (or `values`) counts those scripts' calls alone.
Compare scripts on one capture, or two captures made by two versions of the client, each with
its own script.
Needs valgrind.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bitstat
import bitstat.record as record
import bitstat.transport as transport
from bitstat import embedded

BATCH = 5000


def stream(kind: str, n: int) -> tuple[list[dict[str, Any]], bitstat.Schema, int]:
    """The events of `kind`, the schema they are recorded with, and the batch size."""
    if kind == "full":
        import scenarios
        import workload

        return (
            workload.full_stream(n, seed=13).dicts(),
            bitstat.Schema(**scenarios.FULL_SCHEMA),
            10_000,
        )
    import realistic_data as rd

    return rd.events(n, kind, 2026, rd.population(2026)).dicts(), rd.SCHEMA, BATCH


def capture(kind: str, n: int, out: Path) -> None:
    one_by_one = kind == "track"
    events, schema, batch = stream("live" if one_by_one else kind, n)
    calls: list[tuple[list[str], list[Any]]] = []
    numbering: dict[str, list[tuple[list[str], list[Any]]]] = {"ids": [], "values": []}
    made = transport.apply_call
    made_ids, made_values = transport.ids_call, transport.values_call

    def keeping(group: Any, ttl: int) -> tuple[list[str], list[Any]]:
        keys, args = made(group, ttl)
        calls.append((list(keys), list(args)))
        return keys, args

    def keeping_ids(*args: Any, **kwargs: Any) -> tuple[list[str], list[Any]]:
        call = made_ids(*args, **kwargs)
        numbering["ids"].append(call)
        return call

    def keeping_values(*args: Any, **kwargs: Any) -> tuple[list[str], list[Any]]:
        call = made_values(*args, **kwargs)
        numbering["values"].append(call)
        return call

    with tempfile.TemporaryDirectory(prefix="bitstat-instructions-") as tmp:
        url = embedded.ensure_server(tmp)
        try:
            st = bitstat.connect(url, namespace="instructions", schema=schema)
            # record.py imports it by name (the calls of a batch in parts are made there)
            transport.apply_call = record.apply_call = keeping  # type: ignore[assignment]
            transport.ids_call = keeping_ids  # type: ignore[assignment]
            record.values_call = keeping_values  # type: ignore[assignment]
            try:
                if one_by_one:  # as a web app calls it: the single-event path of track()
                    for event in events:
                        st.track(event)
                else:
                    for start in range(0, len(events), batch):
                        st.track_many(events[start : start + batch])
            finally:
                transport.apply_call = record.apply_call = made  # type: ignore[assignment]
                transport.ids_call, record.values_call = made_ids, made_values  # type: ignore[assignment]
                st.close()
        finally:
            embedded.stop(tmp)
    with out.open("wb") as f:
        saved = {"kind": kind, "events": len(events), "calls": calls, "numbering": numbering}
        pickle.dump(saved, f)
    print(f"{len(calls)} script calls of {len(events):,} {kind} events -> {out}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def count(path: Path, script: Path | None, keep: Path | None = None, of: str = "apply") -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    saved = pickle.loads(path.read_bytes())
    counted = f"{of}.lua"
    source = transport.with_includes(
        script.read_text("utf-8") if script else transport.load_script(counted)
    )
    calls = saved["calls"] if of == "apply" else saved.get("numbering", {}).get(of, [])
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bitstat-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        binary = embedded.find_server_binary()
        valkey = [binary, "--port", str(port), "--save", ""]
        for name, value in embedded.tuning(binary):  # as bitstat runs its own server
            valkey += [f"--{name}", value]
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *valkey],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=embedded.environment(),
        )
        r = redis.Redis(port=port)
        deadline = time.monotonic() + 120
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server under valgrind did not start") from None
                time.sleep(0.5)
        sha = r.script_load(source)
        for keys, args in calls:
            r.evalsha(sha, len(keys), *keys, *args)
        r.shutdown(nosave=True)
        server.wait(timeout=300)
        total = total_instructions(out)
        if keep:  # for callgrind_annotate: where the instructions went, function by function
            shutil.copyfile(out, keep)
    n = saved["events"]
    print(
        f"{total:,} instructions, {total / n:,.0f} an event ({n:,} {saved['kind']} events,"
        f" {len(calls)} calls of {script or counted + ' of this tree'})"
    )


def total_instructions(out: Path) -> int:
    """The 'summary:' (or 'totals:') line of a callgrind output file."""
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("capture", help="record a stream and keep its script calls")
    c.add_argument("kind", choices=["live", "backfill", "full", "track"])
    c.add_argument("events", type=int)
    c.add_argument("out", type=Path)
    k = sub.add_parser("count", help="replay kept calls under callgrind; print instructions")
    k.add_argument("calls", type=Path)
    k.add_argument("--script", type=Path, help="a script to use instead of this tree's")
    k.add_argument("--keep", type=Path, help="keep callgrind's output file here")
    k.add_argument(
        "--of", choices=["apply", "ids", "values"], default="apply", help="whose calls to count"
    )
    a = p.parse_args()
    if a.command == "capture":
        capture(a.kind, a.events, a.out)
    else:
        count(a.calls, a.script, a.keep, a.of)


if __name__ == "__main__":
    main()
