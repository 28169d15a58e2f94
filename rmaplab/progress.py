# SPDX-License-Identifier: GPL-2.0-only
"""A progress bar on stderr for the commands that go op by op (replay,
kernel-run, kernel-diff): shown only on a terminal, gone when done, so
piped output and files stay clean."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def op_progress(description: str, total: int) -> Iterator[Callable[[], None]]:
    """Yield advance(): call it once per op. A no-op off a terminal."""
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} ops"), TimeElapsedColumn(),
                  console=console, transient=True,
                  disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(description, total=total)

        def advance() -> None:
            bar.advance(task)

        yield advance
