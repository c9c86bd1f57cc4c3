"""Long loads (`bitstat ingest`, the demo): how long their batch ids are remembered, and the
progress bar they show."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

# Batch ids of a load are remembered this long, so loading the same file again, or running the
# demo again, years later still records nothing twice.
LOAD_BATCH_TTL = 10 * 365 * 86400


class _EventRate(ProgressColumn):
    """`12,345 events  250,000/s`, from the task's `events` field (else its completed count)."""

    def render(self, task: Task) -> Text:
        n = int(task.fields.get("events", task.completed))
        elapsed = task.finished_time if task.finished else task.elapsed
        rate = f"  {n / elapsed:,.0f}/s" if elapsed and n else ""
        return Text(f"{n:,} events{rate}", style="progress.data.speed")


def progress_bar(console: Console) -> Progress:
    """file  ━━━━━━━━━━━━  42%  120,000 events  95,000/s  0:00:03 (time left, then taken)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=16),  # the whole line fits 80 columns
        TaskProgressColumn(),
        _EventRate(),
        TimeRemainingColumn(elapsed_when_finished=True),
        console=console,
    )
