# SPDX-License-Identifier: GPL-2.0-only
"""``rmaplab experiment NAME``: run a named experiment's grid, print its
table and claims, write CSV, Parquet and plots."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from .budget import BudgetError, parse_size
from .experiments import experiments, print_report, run_experiment, write_outputs


def _max_memory(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """--max-memory SIZE as bytes (a bad size: click's usage error, status 2)."""
    try:
        return parse_size(value)
    except BudgetError as e:
        raise click.BadParameter(str(e).removeprefix(f"--max-memory {value!r}: ")) from None


@click.command("experiment")
@click.argument("name", type=click.Choice(sorted(experiments())))
@click.option("--schemes", default=None,
              help="Comma-separated rmap schemes, or 'all' (default: the experiment's own).")
@click.option("--param", "params", multiple=True, metavar="NAME=V1[,V2...]",
              help="Override a parameter's values (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out"),
              show_default=True, help="Directory for CSV, Parquet and plots.")
@click.option("--max-memory", "max_memory", default=None, metavar="SIZE", callback=_max_memory,
              help="Host memory a point may use (e.g. 2G; default: what the machine has "
                   "available); a bigger point is refused before any runs.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def experiment_cmd(name: str, schemes: str | None, params: tuple[str, ...], out: Path,
                   max_memory: int | None, no_progress: bool) -> None:
    """Run experiment NAME (see docs/experiments/NAME.md)."""
    from .rmap import SCHEMES

    exp = experiments()[name]
    chosen = None
    if schemes:
        chosen = list(SCHEMES) if schemes == "all" else [s for s in schemes.split(",") if s]
    # a table as wide as it needs when written to a file or a pipe
    console = Console(width=None if sys.stdout.isatty() else 200)
    try:  # before anything runs: a bad --out must not cost the run
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        click.echo(f"rmaplab experiment: --out {out}: {e.strerror or e}", err=True)
        sys.exit(2)
    try:
        records = run_experiment(exp, schemes=chosen, params=params, progress=not no_progress,
                                 console=console, max_memory=max_memory)
    except ValueError as e:
        click.echo(f"rmaplab experiment: {e}", err=True)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - a bug in rmaplab, not in the request
        click.echo(f"rmaplab experiment: internal error (a bug in rmaplab) in {name}: "
                   f"{type(e).__name__}: {e}", err=True)
        sys.exit(70)
    print_report(exp, records, console)
    try:
        files = write_outputs(exp, records, out)
    except OSError as e:  # the table above is the run's result; say what was not written
        click.echo(f"rmaplab experiment: cannot write the outputs to {out}: {e}", err=True)
        sys.exit(1)
    console.print("wrote " + ", ".join(str(f) for f in files))
