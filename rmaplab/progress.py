# SPDX-License-Identifier: GPL-2.0-only
"""Progress bars on stderr: shown only on a terminal, gone when done, so piped
output and files stay clean. Every bar has the same columns: what is running
(cut with an ellipsis, never the bar), a fixed-width bar, done/total, time
elapsed and time left."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column

#: Characters the bar itself always keeps, however long the description.
BAR_WIDTH = 24


def columns(*extra: ProgressColumn) -> list[ProgressColumn]:
    """The columns of every rmaplab bar, with `extra` ones after done/total."""
    return [TextColumn("{task.description}",
                       table_column=Column(no_wrap=True, overflow="ellipsis", min_width=8,
                                           ratio=1)),
            BarColumn(bar_width=BAR_WIDTH), MofNCompleteColumn(), *extra,
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn()]


def progress_bar(console: Console | None = None, *, enabled: bool = True,
                 extra: tuple[ProgressColumn, ...] = ()) -> Progress:
    """A transient bar on `console` (default stderr), drawn only on a terminal."""
    console = console or Console(stderr=True)
    return Progress(*columns(*extra), console=console, transient=True, expand=True,
                    disable=not enabled or not console.is_terminal)


@contextmanager
def op_progress(description: str, total: int,
                enabled: bool = True) -> Iterator[Callable[[], None]]:
    """Yield advance(): call it once per op. A no-op off a terminal or when not enabled."""
    console = Console(stderr=True)
    with progress_bar(console, enabled=enabled and sys.stderr.isatty()) as bar:
        task = bar.add_task(description, total=total)

        def advance() -> None:
            bar.advance(task)

        yield advance
