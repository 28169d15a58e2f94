# SPDX-License-Identifier: GPL-2.0-only
"""``rmaplab sweep`` and ``rmaplab report``: grids on Dask into SQLite, and
one self-contained HTML page (plus CSV/Parquet) out of it.

Exit statuses, as the other commands: 0 done (sweep: every point of the
spec stored ok), 1 some points failed (stored with their errors), 2 bad
input (the spec, the file or an option; the problem named), 3 cannot run
here (no cluster), 70 internal error, 130/143 interrupted by SIGINT/SIGTERM
(every point already stored is kept; run the same command again to go on).
"""

from __future__ import annotations

import errno
import sqlite3
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console

from .budget import BudgetError, parse_size

EXIT_FAILED, EXIT_INVALID, EXIT_CANNOT_RUN, EXIT_INTERNAL = 1, 2, 3, 70


def _guard(cmd: str, body: Callable[[], int], db: Path) -> None:
    """Run a command body; map each way it can end to an exit status."""
    from .store import StoreError, db_error
    from .sweep import Interrupted, SweepOptionError, SweepUnavailable
    from .sweep_spec import SpecError

    try:
        code = body()
    except (SpecError, StoreError, SweepOptionError) as e:
        click.echo(f"rmaplab {cmd}: {e}", err=True)
        code = EXIT_INVALID
    except sqlite3.Error as e:  # the file or the machine (locked, damaged, full), else a bug
        known = db_error(str(db), e)
        if known is None:
            raise
        click.echo(f"rmaplab {cmd}: {known}", err=True)
        code = EXIT_INVALID
    except SweepUnavailable as e:
        click.echo(f"rmaplab {cmd}: {e}", err=True)
        code = EXIT_CANNOT_RUN
    except (Interrupted, KeyboardInterrupt) as e:
        signum = getattr(e, "signum", 2)
        click.echo(f"rmaplab {cmd}: interrupted; every finished point is stored: run the same "
                   "command again to run the rest", err=True)
        code = 128 + signum
    except OSError as e:
        if e.errno == errno.ENOSPC:
            click.echo(f"rmaplab {cmd}: cannot write {e.filename or 'an output'}: the disk is "
                       "full", err=True)
        else:
            click.echo(f"rmaplab {cmd}: {e}", err=True)
        code = EXIT_INVALID
    except Exception as e:  # noqa: BLE001 - our bug, said so
        where = traceback.extract_tb(e.__traceback__)[-1]
        click.echo(f"rmaplab {cmd}: internal error (a bug in rmaplab): {type(e).__name__}: {e} "
                   f"[{Path(where.filename).name}:{where.lineno}]", err=True)
        code = EXIT_INTERNAL
    sys.exit(code)


def _max_memory(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """--max-memory SIZE as bytes (a bad size: click's usage error, status 2)."""
    try:
        return parse_size(value)
    except BudgetError as e:
        raise click.BadParameter(str(e).removeprefix(f"--max-memory {value!r}: ")) from None


@click.command("sweep")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="SQLite results file (created if missing; points already in it are skipped).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="An existing Dask scheduler (default: a LocalCluster on 127.0.0.1; "
                   "'inline': this process, no Dask).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes of the LocalCluster (default: one per CPU; at most "
                   "4 per CPU).")
@click.option("--retry-failed", is_flag=True, help="Run again the points stored as failed.")
@click.option("--allow-import", is_flag=True,
              help="Let SPEC name an experiment as 'package.module:ATTR': that module is "
                   "imported and runs (trusted code only).")
@click.option("--max-memory", "max_memory", default=None, metavar="SIZE", callback=_max_memory,
              help="Host memory one point may use (e.g. 2G; default: what the machine has "
                   "available, over the local workers); a bigger point is refused before "
                   "any runs.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def sweep_cmd(spec: Path, db: Path, scheduler: str | None, workers: int | None,
              retry_failed: bool, allow_import: bool, max_memory: int | None,
              no_progress: bool) -> None:
    """Run the grid of SPEC (a TOML file: docs/sweeps.md) on Dask into --db."""
    from .sweep import INLINE, run_sweep
    from .sweep_spec import load_spec

    if scheduler is not None and scheduler != INLINE and "://" not in scheduler:
        click.echo(f"rmaplab sweep: --scheduler {scheduler!r}: expected an address like "
                   "tcp://HOST:PORT, or 'inline'", err=True)
        sys.exit(EXIT_INVALID)
    if scheduler is not None and workers is not None:
        click.echo("rmaplab sweep: --workers is for the local cluster; an existing scheduler "
                   "has its own workers", err=True)
        sys.exit(EXIT_INVALID)
    console = Console(stderr=True)

    def body() -> int:
        s = load_spec(spec, allow_import=allow_import)
        res = run_sweep(s, db, scheduler=scheduler, workers=workers, retry_failed=retry_failed,
                        progress=not no_progress, console=console,
                        max_memory=max_memory)
        msg = (f"sweep {s.experiment.name} ({s.hash[:12]}): {res.total} points; "
               f"{res.skipped} already stored, {res.done} run now, {res.failed} failed now")
        if res.failed_before:
            msg += f", {res.failed_before} stored as failed (--retry-failed runs them again)"
        click.echo(f"{msg}; {db} ({res.wall_s:.1f} s)")
        return 0 if res.complete else EXIT_FAILED

    _guard("sweep", body, db)


@click.command("report")
@click.argument("db", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write one self-contained HTML page here.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write every stored point as CSV.")
@click.option("--parquet", "parquet_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write every stored point as Parquet.")
def report_cmd(db: Path, html_path: Path | None, csv_path: Path | None,
               parquet_path: Path | None) -> None:
    """Report on the results file DB: HTML with tables and plots, CSV, Parquet."""
    from .report import check_outputs, write_report
    from .store import Store

    if not (html_path or csv_path or parquet_path):
        click.echo("rmaplab report: nothing to write: give --html, --csv or --parquet", err=True)
        sys.exit(EXIT_INVALID)

    def body() -> int:
        check_outputs(db, [p for p in (html_path, csv_path, parquet_path) if p is not None])
        with Store(db, readonly=True) as store:
            wrote = []
            if html_path:
                write_report(store, html_path)
                wrote.append(str(html_path))
            if csv_path:
                n = store.export_csv(csv_path)
                wrote.append(f"{csv_path} ({n} points)")
            if parquet_path:
                n = store.export_parquet(parquet_path)
                wrote.append(f"{parquet_path} ({n} points)")
        click.echo("wrote " + ", ".join(wrote))
        return 0

    _guard("report", body, db)
