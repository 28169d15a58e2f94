# SPDX-License-Identifier: GPL-2.0-only
"""``rmaplab gen-trace``: write a seeded random valid trace, line by line as it
is made, so any size streams in bounded memory."""

from __future__ import annotations

import click

from .cliutil import STDIO, Files, guard, quiet_options
from .consts import MAX_PAGES
from .gentrace import trace_lines


@click.command("gen-trace")
@click.option("--seed", type=int, required=True, help="Random seed; same seed, same trace.")
@click.option("--ops", "ops", type=click.IntRange(min=0), required=True,
              help="Lines to write, snapshots included.")
@click.option("--tasks", type=click.IntRange(min=1), default=4, show_default=True,
              help="Most tasks alive at once.")
@click.option("--kernel-only", is_flag=True, help="Leave out model-only ops (reclaim, volatile).")
@click.option("--no-swap", is_flag=True, help="Leave out swapon/swapoff/reclaim/free/pageout.")
@click.option("--swap-pages", type=click.IntRange(1, MAX_PAGES), default=256,
              show_default=True, help="Slots of the swap area the trace turns on.")
@click.option("-o", "--output", default=STDIO, show_default=True, metavar="FILE",
              help="Trace file to write ('-': stdout); a file appears whole when done.")
@quiet_options
def gen_trace_cmd(seed: int, ops: int, tasks: int, kernel_only: bool, no_swap: bool,
                  swap_pages: int, output: str, quiet: bool, no_progress: bool) -> None:
    """Write a random, valid trace (docs/trace-format.md) for SEED."""

    def body() -> int:
        files = Files()
        out = files.output("--output", output)
        files.check()
        with files.opened():
            for line in trace_lines(seed, ops, tasks=tasks, kernel_only=kernel_only,
                                    no_swap=no_swap, swap_pages=swap_pages):
                out.write(line + "\n")
        return 0

    guard("gen-trace", body)
