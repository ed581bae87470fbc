"""The progress bar a job's `wait` shows on stderr while it follows the job's events: its state,
steps (or rows) done of the total, and, for training, the loss and the time left."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from aiaas.client.generated.training import JobEventsEventJobEvents as JobEvent

__all__ = ["job_progress_bar"]


@contextlib.contextmanager
def job_progress_bar(
    wanted: bool, title: str, *, unit: str = "", with_loss: bool = False
) -> Iterator[Callable[[JobEvent], None]]:
    """A function that shows each event, under `title`; one that does nothing unless `wanted`.
    The bar is transient in a terminal and stays as a log line elsewhere."""
    if not wanted:
        yield lambda event: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    columns = [TextColumn(f"{title} [{{task.fields[state]}}]"), BarColumn(), MofNCompleteColumn()]
    if unit:
        columns.append(TextColumn(unit))
    if with_loss:
        columns += [TextColumn("loss {task.fields[loss]}"), TextColumn("ETA {task.fields[eta]}")]
    with Progress(*columns, console=console, transient=console.is_terminal) as bar:
        task = bar.add_task(title, total=None, state="QUEUED", loss="-", eta="-")

        def show(event: JobEvent) -> None:
            changes: dict[str, Any] = {}
            if event.state is not None:
                changes["state"] = event.state.value
            if event.total_steps:
                changes["total"] = event.total_steps
            if event.step is not None:
                changes["completed"] = event.step
            loss = (event.metrics or {}).get("loss") if event.type == "progress" else None
            if with_loss and isinstance(loss, int | float):
                changes["loss"] = f"{loss:.4g}"
            if with_loss and event.eta_seconds is not None:
                changes["eta"] = f"{event.eta_seconds:.0f} s"
            bar.update(task, **changes)

        yield show
