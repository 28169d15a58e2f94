# SPDX-License-Identifier: GPL-2.0-only
"""``rmaplab replay``: run a trace on the model and write its records.

Results, snapshots and stats are written as each op finishes, so an
internal error (status 70) loses nothing that was already computed. An
invalid trace is rejected whole before anything runs (status 2).
"""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from pathlib import Path

import click

from .budget import BudgetError, OverBudget, check_trace, parse_size
from .machine import DEFAULT_FRAMES, Config, Machine
from .progress import op_progress
from .replay import run_op, write_snapshot
from .rmap import SCHEMES
from .trace import TraceError, load_trace


def _dump(obj: dict) -> str:
    return json.dumps(obj) + "\n"


def _max_memory(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """--max-memory SIZE as bytes (a bad size: click's usage error, status 2)."""
    try:
        return parse_size(value)
    except BudgetError as e:
        raise click.BadParameter(str(e).removeprefix(f"--max-memory {value!r}: ")) from None


@click.command("replay")
@click.argument("trace", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--scheme", type=click.Choice(SCHEMES), default="modern", show_default=True,
              help="rmap scheme to model.")
@click.option("--results", "results_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Where to write one result per trace op (JSON Lines).")
@click.option("--snapshots", "snapshots_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Where to write the snapshots (JSON Lines).")
@click.option("--stats", "stats_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Where to write stats at each snapshot and at the end.")
@click.option("--check", is_flag=True, help="Run the invariant checker after every op.")
@click.option("--frames", type=click.IntRange(1, 1 << 31), default=DEFAULT_FRAMES,
              show_default=True, help="Physical frames of the machine.")
@click.option("--max-memory", "max_memory", default=None, metavar="SIZE", callback=_max_memory,
              help="Host memory the replay may use (e.g. 2G; default: what the machine has "
                   "available); a trace estimated to need more is refused before it runs.")
def replay_cmd(trace: Path, scheme: str, results_path: Path, snapshots_path: Path,
               stats_path: Path | None, check: bool, frames: int,
               max_memory: int | None) -> None:
    """Replay TRACE on the model (TRACE_FORMAT.md, version 1)."""
    try:
        ops = load_trace(trace)
    except TraceError as e:
        click.echo(f"rmaplab replay: invalid trace {trace}: {e}", err=True)
        sys.exit(2)
    try:
        check_trace(ops, max_memory=max_memory, scheme=scheme)
    except OverBudget as e:
        click.echo(f"rmaplab replay: {trace}: {e}", err=True)
        sys.exit(2)
    m = Machine(Config(scheme=scheme, frames=frames, check=check))
    files = contextlib.ExitStack()
    try:  # the ExitStack closes them (SIM115 cannot see that)
        rf = files.enter_context(open(results_path, "w", encoding="utf-8"))  # noqa: SIM115
        sf = files.enter_context(open(snapshots_path, "w", encoding="utf-8"))  # noqa: SIM115
        tf = None
        if stats_path:
            tf = files.enter_context(open(stats_path, "w", encoding="utf-8"))  # noqa: SIM115
    except OSError as e:
        files.close()
        click.echo(f"rmaplab replay: cannot write output: {e}", err=True)
        sys.exit(2)
    line = 0
    try:
        with files, op_progress("replay", len(ops)) as advance:
            for op in ops:
                advance()
                line = op.line
                res, snap = run_op(m, op)
                rf.write(_dump(res))
                if snap is not None:
                    write_snapshot(sf, snap)
                    if tf:
                        assert op.label is not None  # only a snapshot op returns one
                        tf.write(_dump(m.stats(op.label)))
            if tf:
                tf.write(_dump(m.stats("end")))
    except Exception as e:  # noqa: BLE001 - a model bug: report it, keep what was written
        where = traceback.extract_tb(e.__traceback__)[-1]
        click.echo(f"rmaplab replay: internal error (a bug in rmaplab) at trace line {line}: "
                   f"{type(e).__name__}: {e} [{Path(where.filename).name}:{where.lineno}]; "
                   f"results up to the previous op are in {results_path}", err=True)
        sys.exit(70)
