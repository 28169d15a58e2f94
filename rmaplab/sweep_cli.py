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

import dataclasses
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console

from .cliutil import (
    EXIT_CANNOT_RUN,
    EXIT_INVALID,
    Files,
    Handlers,
    SchemeList,
    guard,
    max_memory_option,
    output_path,
    print_json,
    quiet_options,
    say,
    status_for,
)
from .eras import ERAS
from .report import check_outputs, write_report
from .store import Store, StoreError, db_error
from .sweep import INLINE, Interrupted, SweepOptionError, SweepUnavailable, run_sweep
from .sweep_spec import SpecError, load_spec, with_era

EXIT_FAILED = 1


def _handlers(cmd: str, db: Path) -> Handlers:
    def invalid(e: BaseException) -> int:
        say(cmd, str(e))
        return EXIT_INVALID

    def sqlite_error(e: BaseException) -> int:
        # the file or the machine (locked, damaged, full) is said plainly; else a bug
        assert isinstance(e, sqlite3.Error)
        known = db_error(str(db), e)
        if known is None:
            return status_for(cmd, RuntimeError(f"SQLite: {e}"))
        say(cmd, str(known))
        return EXIT_INVALID

    def unavailable(e: BaseException) -> int:
        say(cmd, str(e))
        return EXIT_CANNOT_RUN

    def interrupted(e: BaseException) -> int:
        say(cmd, "interrupted; every finished point is stored: run the same command again "
            "to run the rest")
        return 128 + getattr(e, "signum", 2)

    return {SpecError: invalid, StoreError: invalid, SweepOptionError: invalid,
            sqlite3.Error: sqlite_error, SweepUnavailable: unavailable,
            Interrupted: interrupted, KeyboardInterrupt: interrupted}


def _guard(cmd: str, body: Callable[[], int], db: Path) -> None:
    """Run a command body; map each way it can end to an exit status (docs/cli.md)."""
    guard(cmd, body, _handlers(cmd, db))


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
@click.option("--schemes", type=SchemeList(), default=None,
              help="Comma-separated rmap schemes, or 'all', instead of the spec's "
                   "(a different sweep: its own points).")
@click.option("--allow-import", is_flag=True,
              help="Let SPEC name an experiment as 'package.module:ATTR': that module is "
                   "imported and runs (trusted code only).")
@max_memory_option("one point (over the local workers)")
@click.option("--era", type=click.Choice(ERAS), default=None,
              help="today or historical instead of the spec's era (docs/eras.md; a "
                   "different sweep: its own points).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@quiet_options
def sweep_cmd(spec: Path, db: Path, scheduler: str | None, workers: int | None,
              retry_failed: bool, schemes: tuple[str, ...] | None, allow_import: bool,
              max_memory: int | None, era: str | None, as_json: bool, quiet: bool,
              no_progress: bool) -> None:
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
        s = load_spec(spec, allow_import=allow_import)
        if schemes:
            s = dataclasses.replace(s, schemes=list(schemes))
        if era is not None:
            s = with_era(s, era)
        res = run_sweep(s, db, scheduler=scheduler, workers=workers, retry_failed=retry_failed,
                        progress=not (quiet or no_progress), console=console,
                        max_memory=max_memory)
        if as_json:
            print_json({"experiment": s.experiment.name, "spec_hash": s.hash, "db": str(db),
                        "points": res.total, "skipped": res.skipped, "done": res.done,
                        "failed": res.failed, "failed_before": res.failed_before,
                        "complete": res.complete, "wall_s": res.wall_s})
            return 0 if res.complete else EXIT_FAILED
        msg = (f"sweep {s.experiment.name} ({s.hash[:12]}): {res.total} points; "
               f"{res.skipped} already stored, {res.done} run now, {res.failed} failed now")
        if res.failed_before:
            msg += f", {res.failed_before} stored as failed (--retry-failed runs them again)"
        if not quiet:
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
@quiet_options
def report_cmd(db: Path, html_path: Path | None, csv_path: Path | None,
               parquet_path: Path | None, quiet: bool, no_progress: bool) -> None:
    """Report on the results file DB: HTML with tables and plots, CSV, Parquet.

    Each file is written beside its name and renamed into place when done;
    none may be DB itself or another output."""
    if not (html_path or csv_path or parquet_path):
        click.echo("rmaplab report: nothing to write: give --html, --csv or --parquet", err=True)
        sys.exit(EXIT_INVALID)

    def body() -> int:
        files = Files()
        files.input("DB", str(db))
        for option, path in (("--html", html_path), ("--csv", csv_path),
                             ("--parquet", parquet_path)):
            if path:
                files.output(option, path)
        files.check()  # before the database is opened: no output may be it
        check_outputs(db, [p for p in (html_path, csv_path, parquet_path) if p is not None])
        with Store(db, readonly=True) as store:
            wrote = []
            if html_path:
                with output_path("--html", html_path) as tmp:
                    write_report(store, tmp)
                wrote.append(str(html_path))
            if csv_path:
                with output_path("--csv", csv_path) as tmp:
                    n = store.export_csv(tmp)
                wrote.append(f"{csv_path} ({n} points)")
            if parquet_path:
                with output_path("--parquet", parquet_path) as tmp:
                    n = store.export_parquet(tmp)
                wrote.append(f"{parquet_path} ({n} points)")
        if not quiet:
            say("report", "wrote " + ", ".join(wrote))
        return 0

    _guard("report", body, db)
