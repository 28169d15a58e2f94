# SPDX-License-Identifier: GPL-2.0-only
"""Running an experiment's grid: records, a table, CSV, Parquet and plots.

run_experiment() is the library call behind ``rmaplab experiment``: it
sweeps schemes x parameter values (each point on a fresh Machine), shows a
progress bar on anything longer than a second, and returns the records
(one dict per point: the parameters, the scheme, every metric, the wall
time). write_outputs() puts them in OUT/NAME.csv, .parquet, and one .png
and .svg per plot; print_report() shows the table and the claims.
"""

from __future__ import annotations

import csv
import itertools
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..rmap import SCHEMES
from .base import Experiment


def parse_params(exp: Experiment, pairs: Sequence[str]) -> dict[str, list]:
    """--param k=v1,v2 pairs over the experiment's defaults; values keep the
    type of the default (int, float or str)."""
    grid = {k: list(v) for k, v in exp.params.items()}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--param {pair!r}: expected NAME=VALUE[,VALUE...]")
        key, _, raw = pair.partition("=")
        if key not in grid:
            raise ValueError(f"--param {key!r}: {exp.name} has parameters {', '.join(grid)}")
        kind = type(exp.params[key][0])
        try:
            grid[key] = [kind(v) for v in raw.split(",") if v != ""]
        except ValueError:
            raise ValueError(f"--param {key}: {raw!r} is not a list of {kind.__name__}") from None
        if not grid[key]:
            raise ValueError(f"--param {key}: no value given")
    return grid


def points(exp: Experiment, schemes: Sequence[str],
           grid: dict[str, list]) -> list[tuple[str, dict]]:
    keys = list(grid)
    out = []
    for scheme in schemes:
        for values in itertools.product(*(grid[k] for k in keys)):
            out.append((scheme, dict(zip(keys, values))))
    return out


def run_experiment(exp: Experiment, *, schemes: Sequence[str] | None = None,
                   params: Sequence[str] = (), progress: bool = True,
                   console: Console | None = None, max_memory: int | None = None) -> list[dict]:
    """Run every point of the grid; return one record per point. A point
    that would need more host memory than max_memory bytes (default: what
    the machine has available) is refused before any runs."""
    schemes = list(schemes or exp.schemes or SCHEMES)
    for s in schemes:
        if s not in SCHEMES:
            raise ValueError(f"unknown scheme {s!r}; choose from {', '.join(SCHEMES)}")
    todo = points(exp, schemes, parse_params(exp, params))
    for scheme, p in todo:  # all of them before any runs: a bad point loses no results
        why = exp.problem(p) or exp.memory_problem(scheme, p, max_memory)
        if why is not None:
            raise ValueError(f"--param {why}")
    records: list[dict] = []
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, disable=not progress, transient=True) as bar:
        task = bar.add_task(exp.name, total=len(todo))
        for scheme, p in todo:
            bar.update(task, description=f"{exp.name} {scheme} "
                       + " ".join(f"{k}={v}" for k, v in p.items()))
            t0 = time.perf_counter()
            metrics = exp.run(scheme, p)
            rec = {"experiment": exp.name, "scheme": scheme, **p, **metrics,
                   "wall_s": round(time.perf_counter() - t0, 4)}
            records.append(rec)
            bar.advance(task)
    return records


def write_outputs(exp: Experiment, records: list[dict], out: Path) -> list[Path]:
    """CSV and Parquet of every point, PNG and SVG of every plot."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    cols = list(dict.fromkeys(k for r in records for k in r))
    path = out / f"{exp.name}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(records)
    files.append(path)
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = out / f"{exp.name}.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    files.append(path)
    files.extend(plot(exp, records, out))
    return files


def plot(exp: Experiment, records: list[dict], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for k, spec in enumerate(exp.plots):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        series = sorted({r[spec.series] for r in records}, key=str)
        for s in series:
            pts = sorted((r[spec.x], r[spec.y]) for r in records if r[spec.series] == s)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=str(s))
        ax.set_xlabel(spec.xlabel)
        ax.set_ylabel(spec.ylabel)
        if spec.logx:
            ax.set_xscale("log")
        if spec.logy:
            ax.set_yscale("log")
        ax.set_title(f"{exp.title}")
        ax.grid(True, alpha=0.3)
        ax.legend(title=spec.series)
        fig.tight_layout()
        stem = out / f"{exp.name}-{spec.y}" if len(exp.plots) > 1 else out / exp.name
        for ext in ("png", "svg"):
            path = stem.with_suffix(f".{ext}")
            fig.savefig(path)
            files.append(path)
        plt.close(fig)
        del k
    return files


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def print_report(exp: Experiment, records: list[dict], console: Console | None = None) -> None:
    console = console or Console()
    # parameters that take one value in this run go in the title, not the columns
    params = [k for k in exp.params if len({r.get(k) for r in records}) > 1]
    fixed = [f"{k}={records[0].get(k)}" for k in exp.params if k not in params and records]
    table = Table(title=exp.title + (f" ({', '.join(fixed)})" if fixed else ""))
    for c in ["scheme", *params, *exp.columns]:
        table.add_column(c, justify="left" if c == "scheme" else "right")
    for r in records:
        table.add_row(*[_fmt(r.get(c, "")) for c in ["scheme", *params, *exp.columns]])
    console.print(table)
    for claim in exp.claims:
        console.print(f"[bold]REFERENCES.md row {claim.row}[/bold]: {claim.text}\n"
                      f"  published: {claim.published}\n  rmaplab:   {claim.ours(records)}")
