"""bitstat against bitmapist, on the same server in the same run.

    python benchmarks/run.py                      # full size, private embedded server
    python benchmarks/run.py --quick              # small sizes, < 1 minute (smoke test)
    python benchmarks/run.py --only 1a 2 --json out.json
    python benchmarks/run.py --url redis://127.0.0.1:6379/0

Scenarios: 1a live stream, 1b backfill, 1c full schema (recording); 2 queries over 1M actors
(2a 30-day unique, 2b year unique, 2c counts/sums/top); 3 memory with 1M random ids.
See benchmarks/README.md for what each one measures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Row, Server, absent, fmt, fmt_ratio, machine_info
from scenarios import ALIASES, FULL, QUICK, SCENARIOS, Bench


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark bitstat against bitmapist on one server, in one run.",
    )
    p.add_argument(
        "--url",
        help="a Redis/Valkey server to use (redis://, rediss://, unix://); default: a private"
        " embedded server in a temp dir, stopped at the end. Only keys the run writes are"
        " deleted; the server is never flushed.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: the whole run takes < 60 s")
    p.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="scenarios to run: 1a 1b 1c 2 3, or 1 (= 1a 1b 1c), live, backfill, full,"
        " queries, memory",
    )
    p.add_argument("--json", metavar="PATH", help="write every figure and machine info as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    p.add_argument("--repeats", type=int, help="runs per recording figure (default 3, quick 1)")
    p.add_argument("--batch", type=int, default=10_000, help="events per track_many call")
    p.add_argument(
        "--computed-bitmapist-memory",
        action="store_true",
        help="scenario 3: compute bitmapist's day-key size from the max id instead of"
        " allocating it (3 keys of ~512 MB each)",
    )
    return p.parse_args(argv)


def selected(names: list[str] | None) -> list[str]:
    if not names:
        return list(SCENARIOS)
    out: list[str] = []
    for name in names:
        key = ALIASES.get(name.lower(), name.lower())
        keys = [k for k in SCENARIOS if k.startswith(key)] if key == "1" else [key]
        for k in keys:
            if k not in SCENARIOS:
                raise SystemExit(
                    f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}"
                    f" or {', '.join(ALIASES)}"
                )
            if k not in out:
                out.append(k)
    return [k for k in SCENARIOS if k in out]


# --------------------------------------------------------------------------------------------
# Rendering


def bitstat_text(row: Row, rich: bool) -> str:
    cell = row.bitstat
    if cell.value is None:
        return cell.text
    text = fmt(cell.value, cell.unit)
    met = row.met()
    if rich and met is not None:
        text = f"[green]{text}[/]" if met else f"[red]{text}[/]"
    return text


def bitmapist_lines(row: Row) -> list[str]:
    out = []
    for cell in row.bitmapist:
        if cell.value is None:
            out.append(cell.text)
        else:
            out.append(fmt(cell.value, cell.unit) + (f" ({cell.label})" if cell.label else ""))
    return out


def target_text(row: Row) -> str:
    if row.target is None:
        return "—"
    met = row.met()
    return row.target.text() + ("" if met is None else " ✓" if met else " ✗")


def ratio_lines(row: Row) -> list[str]:
    ratios = row.ratios()
    if all(r is None for r in ratios):
        return ["—"]
    if len(ratios) == 1:
        return [fmt_ratio(ratios[0])]
    return [f"{fmt_ratio(r)} vs {c.label}" for r, c in zip(ratios, row.bitmapist, strict=True)]


def notes(rows: list[Row]) -> list[str]:
    seen: list[str] = []
    for row in rows:
        for who, cells in (("bitstat", [row.bitstat]), ("bitmapist", row.bitmapist)):
            for cell in cells:
                if cell.note:
                    line = f"[{row.scenario}] {who}" + (
                        f" {cell.label}" if cell.label and who == "bitmapist" else ""
                    )
                    line += f": {cell.note}"
                    if line not in seen:
                        seen.append(line)
    return seen


def rich_table(rows: list[Row], title: str) -> Table:
    table = Table(title=title, show_lines=True)
    table.add_column("scenario", min_width=30, max_width=48)
    table.add_column("bitstat", justify="right", max_width=34)
    table.add_column("bitmapist 3.119", justify="right", max_width=44)
    table.add_column("target", justify="right", no_wrap=True)
    table.add_column("ratio", justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            f"{row.scenario} {row.title}",
            bitstat_text(row, rich=True),
            "\n".join(bitmapist_lines(row)),
            target_text(row),
            "\n".join(ratio_lines(row)),
        )
    return table


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| scenario | bitstat | bitmapist 3.119 | target | ratio |",
        "|---|--:|--:|--:|--:|",
    ]
    for row in rows:
        cells = [
            f"{row.scenario} {row.title}",
            bitstat_text(row, rich=False),
            "<br>".join(bitmapist_lines(row)),
            target_text(row),
            "<br>".join(ratio_lines(row)),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def public_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password or parts.username:
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = selected(args.only)
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or (1 if args.quick else 3)
    if repeats < 1 or args.batch < 1:
        raise SystemExit("--repeats and --batch must be positive")
    out = Console()
    if not out.is_terminal:
        out = Console(width=170)  # a file or pipe: wide enough that no column is squeezed
    log = Console(stderr=True)
    if not log.is_terminal:
        log = Console(stderr=True, width=140)
    started = time.perf_counter()
    with Server(args.url) as server:
        info = machine_info(server)
        where = "private embedded server" if server.private else public_url(server.url)
        log.log(
            f"server: {info['server']['name']} {info['server']['version']} ({where});"
            f" {info['cores']} cores, {info['cpu_model']}"
        )
        bench = Bench(
            server=server,
            sizes=sizes,
            repeats=repeats,
            batch=args.batch,
            console=log,
            bitmapist_memory_real=not args.computed_bitmapist_memory,
        )
        for key in keys:
            t0 = time.perf_counter()
            try:
                SCENARIOS[key](bench)
            except Exception as exc:
                log.print_exception(max_frames=4)
                bench.rows.append(
                    Row(key, f"scenario failed: {type(exc).__name__}: {exc}"[:120], absent("—"), [])
                )
            log.log(f"{key} done in {time.perf_counter() - t0:.1f} s")
    elapsed = time.perf_counter() - started
    title = (
        f"bitstat vs bitmapist — {info['date'][:10]} — {info['cores']} cores {info['cpu_model']},"
        f" {info['server']['name']} {info['server']['version']}"
        + (" (quick sizes)" if args.quick else "")
    )
    out.print(rich_table(bench.rows, title))
    for line in notes(bench.rows):
        out.print(line, markup=False, highlight=False)
    failed = [c for c in bench.checks if not c["ok"]]
    out.print(
        f"{len(bench.checks) - len(failed)} of {len(bench.checks)} correctness checks passed;"
        f" run took {elapsed:.0f} s; timings waited {server.waits} times, {server.waited:.1f} s"
        " in all, for a background AOF rewrite to end",
        style="red" if failed else None,
    )
    for c in failed:
        out.print(
            f"  FAILED [{c['scenario']}] {c['what']}: expected {c['expected']!r}, got {c['got']!r}"[
                :300
            ],
            markup=False,
        )
    if args.markdown:
        body = markdown_table(bench.rows) + "\n" + "\n".join(f"- {n}" for n in notes(bench.rows))
        Path(args.markdown).write_text(body + "\n", encoding="utf-8")
    if args.json:
        report: dict[str, Any] = {
            "machine": info,
            "settings": {
                "quick": args.quick,
                "scenarios": keys,
                "repeats": repeats,
                "batch": args.batch,
                "sizes": asdict(sizes),
                "url": "private embedded server" if server.private else public_url(server.url),
            },
            "rows": [r.to_json() for r in bench.rows],
            "checks": bench.checks,
            "elapsed_s": elapsed,
            "waited_for_background_saves": {"times": server.waits, "seconds": server.waited},
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        }
        Path(args.json).write_text(
            json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
