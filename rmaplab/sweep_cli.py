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

import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console

from .report import write_report
from .store import Store, StoreError
from .sweep import INLINE, Interrupted, SweepUnavailable, run_sweep
from .sweep_spec import SpecError, load_spec

EXIT_FAILED, EXIT_INVALID, EXIT_CANNOT_RUN, EXIT_INTERNAL = 1, 2, 3, 70


def _guard(cmd: str, body: Callable[[], int]) -> None:
    """Run a command body; map each way it can end to an exit status."""
    try:
        code = body()
    except (SpecError, StoreError) as e:
        click.echo(f"rmaplab {cmd}: {e}", err=True)
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
        click.echo(f"rmaplab {cmd}: {e}", err=True)
        code = EXIT_INVALID
    except Exception as e:  # noqa: BLE001 - our bug, said so
        where = traceback.extract_tb(e.__traceback__)[-1]
        click.echo(f"rmaplab {cmd}: internal error (a bug in rmaplab): {type(e).__name__}: {e} "
                   f"[{Path(where.filename).name}:{where.lineno}]", err=True)
        code = EXIT_INTERNAL
    sys.exit(code)


@click.command("sweep")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="SQLite results file (created if missing; points already in it are skipped).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="An existing Dask scheduler (default: a LocalCluster on 127.0.0.1; "
                   "'inline': this process, no Dask).")
@click.option("--workers", type=click.IntRange(1, 1024), default=None,
              help="Worker processes of the LocalCluster (default: one per CPU).")
@click.option("--retry-failed", is_flag=True, help="Run again the points stored as failed.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def sweep_cmd(spec: Path, db: Path, scheduler: str | None, workers: int | None,
              retry_failed: bool, no_progress: bool) -> None:
    """Run the grid of SPEC (a TOML file: docs/sweeps.md) on Dask into --db."""
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
        s = load_spec(spec)
        res = run_sweep(s, db, scheduler=scheduler, workers=workers, retry_failed=retry_failed,
                        progress=not no_progress, console=console)
        msg = (f"sweep {s.experiment.name} ({s.hash[:12]}): {res.total} points; "
               f"{res.skipped} already stored, {res.done} run now, {res.failed} failed now")
        if res.failed_before:
            msg += f", {res.failed_before} stored as failed (--retry-failed runs them again)"
        click.echo(f"{msg}; {db} ({res.wall_s:.1f} s)")
        return 0 if res.complete else EXIT_FAILED

    _guard("sweep", body)


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
    if not (html_path or csv_path or parquet_path):
        click.echo("rmaplab report: nothing to write: give --html, --csv or --parquet", err=True)
        sys.exit(EXIT_INVALID)

    def body() -> int:
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

    _guard("report", body)
