# SPDX-License-Identifier: GPL-2.0-only
"""``rmaplab experiment NAME``: run a named experiment's grid, print its
table and claims (or, with --json, its records), write CSV, Parquet and
plots; ``--list-params`` says what NAME can be asked for."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .cliutil import (
    CliError,
    SchemeList,
    era_option,
    guard,
    json_option,
    max_memory_option,
    print_json,
    quiet_options,
    say,
)
from .experiments import Experiment, experiments, print_report, run_experiment, write_outputs


def param_rows(exp: Experiment) -> list[dict[str, Any]]:
    """Each parameter of exp: name, default values, type, limits or choices, meaning."""
    rows = []
    for name, default in exp.params.items():
        row: dict[str, Any] = {"name": name, "default": list(default),
                               "type": type(default[0]).__name__}
        if name in exp.limits:
            row["min"], row["max"] = exp.limits[name]
        if name in exp.choices:
            row["choices"] = list(exp.choices[name])
        row["meaning"] = exp.param_help.get(name, "")
        rows.append(row)
    return rows


def _allowed(row: dict[str, Any]) -> str:
    if "choices" in row:
        return ", ".join(map(str, row["choices"]))
    if "min" in row:
        return f"{row['min']:,} to {row['max']:,}"
    return "any " + row["type"]


def _epilog() -> str:
    lines = ["\b", "Parameters and defaults (--param NAME=V1,V2,...;",
             "NAME --list-params gives their limits and meanings):"]
    for name, exp in sorted(experiments().items()):
        text = f"{name}: " + " ".join(f"{k}={','.join(map(str, v))}"
                                      for k, v in exp.params.items())
        lines += textwrap.wrap(text, 76, initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)


def _list_params(exp: Experiment, as_json: bool) -> None:
    rows = param_rows(exp)
    if as_json:
        print_json({"experiment": exp.name, "params": rows})
        return
    table = Table(title=f"{exp.name}: parameters (--param NAME=V1,V2,...)")
    for col in ("name", "default", "allowed", "meaning"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], ",".join(map(str, r["default"])), _allowed(r), r["meaning"])
    Console(width=None if sys.stdout.isatty() else 120).print(table)


def _document(exp: Experiment, records: list[dict]) -> dict[str, Any]:
    """What --json prints: the records themselves, not the table drawn from them."""
    return {"experiment": exp.name, "title": exp.title,
            "claims": [{"ref": c.ref, "text": c.text, "published": c.published,
                        "ours": c.ours(records), "verdict": c.verdict(records, exp.doc)}
                       for c in exp.claims],
            "records": records}


@click.command("experiment", epilog=_epilog())
@click.argument("name", type=click.Choice(sorted(experiments())))
@click.option("--schemes", type=SchemeList(), default=None,
              help="Comma-separated rmap schemes, or 'all' (default: the experiment's own).")
@click.option("--param", "params", multiple=True, metavar="NAME=V1[,V2...]",
              help="Override a parameter's values (repeatable; see below).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out"),
              show_default=True, help="Directory for CSV, Parquet and plots.")
@max_memory_option("one point")
@click.option("--list-params", is_flag=True,
              help="List NAME's parameters (defaults, limits, meanings) and exit.")
@era_option
@json_option
@quiet_options
def experiment_cmd(name: str, schemes: tuple[str, ...] | None, params: tuple[str, ...],
                   out: Path, max_memory: int | None, list_params: bool, era: str,
                   as_json: bool, quiet: bool, no_progress: bool) -> None:
    """Run experiment NAME (see docs/experiments/NAME.md)."""
    exp = experiments()[name]

    def body() -> int:
        if list_params:
            _list_params(exp, as_json)
            return 0
        # a table as wide as it needs when written to a file or a pipe
        console = Console(width=None if sys.stdout.isatty() else 200)
        try:  # before anything runs: a bad --out must not cost the run
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CliError(f"--out {out}: {e.strerror or e}") from None
        try:
            records = run_experiment(exp, schemes=list(schemes) if schemes else None,
                                     params=params, progress=not (quiet or no_progress),
                                     console=Console(stderr=True), max_memory=max_memory,
                                     era=era)
        except ValueError as e:
            raise CliError(str(e)) from None
        if as_json:
            print_json(_document(exp, records))
        elif not quiet:
            print_report(exp, records, console)
        try:  # written aside, then renamed: a failed write leaves the old files as they were
            with tempfile.TemporaryDirectory(dir=out, prefix=".rmaplab-") as tmp:
                files = [out / f.name for f in write_outputs(exp, records, Path(tmp))]
                for f in files:
                    os.replace(Path(tmp) / f.name, f)
        except OSError as e:  # the table above is the run's result; say what was not written
            why = "no space left" if e.errno in (errno.ENOSPC, errno.EDQUOT) else \
                (e.strerror or str(e))
            raise CliError(f"cannot write the outputs to {out}: {why}") from None
        if not quiet:
            say("experiment", "wrote " + ", ".join(str(f) for f in files))
        return 0

    guard("experiment", body)
