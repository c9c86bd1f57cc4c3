"""Build the Online Retail sample shipped in `src/bitstat/data/`, reproducibly.

The sample keeps every invoice line, over the whole year, of the customers whose CustomerID is a
multiple of `--every` (10: 445 of 4,372 customers), so retention questions have whole customer
histories to answer from; and every line of one anonymous invoice (no CustomerID) in `--every`,
chosen by the CRC32 of its number, so the events without an actor stay represented too.
Rows keep the source order and columns, except `Description`, which goes to a second file with
one description per stock code (the most frequent one) to keep the package small.

    python scripts/make_sample.py                 # write the sample
    python scripts/make_sample.py --check         # verify the committed sample is up to date
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "online-retail"
DEFAULT_OUT = ROOT / "src" / "bitstat" / "data"
SAMPLE = "online_retail_sample.csv.gz"
ITEMS = "online_retail_items.csv.gz"
SOURCE_COLUMNS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
SAMPLE_COLUMNS = [c for c in SOURCE_COLUMNS if c != "Description"]


def source_rows(source: Path) -> Iterator[dict[str, str]]:
    files = sorted(source.glob("online_retail_*.csv.gz"))
    if not files:
        raise SystemExit(f"no online_retail_*.csv.gz files in {source}")
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames != SOURCE_COLUMNS:
                raise SystemExit(f"{path}: unexpected columns {reader.fieldnames}")
            yield from reader


def selected(row: dict[str, str], every: int) -> bool:
    customer = row["CustomerID"]
    if customer:
        return int(float(customer)) % every == 0
    return zlib.crc32(row["InvoiceNo"].encode("ascii")) % every == 0


def gzipped_csv(header: list[str], rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    # mtime=0 and no file name in the header: the same input always gives the same bytes
    return gzip.compress(text.getvalue().encode("utf-8"), compresslevel=9, mtime=0)


def build(source: Path, every: int) -> dict[str, bytes]:
    """The sample files by name, as bytes."""
    sample: list[list[str]] = []
    descriptions: dict[str, Counter[str]] = {}
    for row in source_rows(source):
        text = row["Description"].strip()
        if text:
            descriptions.setdefault(row["StockCode"], Counter())[text] += 1
        if selected(row, every):
            sample.append([row[c] for c in SAMPLE_COLUMNS])
    codes = sorted({r[SAMPLE_COLUMNS.index("StockCode")] for r in sample})
    items = []
    for code in codes:
        seen = descriptions.get(code)
        if seen:  # most frequent description, ties broken alphabetically
            items.append([code, min(seen.items(), key=lambda kv: (-kv[1], kv[0]))[0]])
    return {
        SAMPLE: gzipped_csv(SAMPLE_COLUMNS, sample),
        ITEMS: gzipped_csv(["StockCode", "Description"], items),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="%(default)s")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="%(default)s")
    parser.add_argument("--every", type=int, default=10, help="keep 1 customer in N (%(default)s)")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    files = build(args.source, args.every)
    stale = []
    for name, data in files.items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        print(f"{path}: {len(data) / 1024:.0f} KB")
    if stale:
        print(f"out of date: {', '.join(stale)} (run scripts/make_sample.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
