# SPDX-License-Identifier: GPL-2.0-only
"""Running an experiment's grid: records, a table, CSV, Parquet and plots.

run_experiment() is the library call behind ``rmaplab experiment``: it
sweeps schemes x parameter values (each point on a fresh Machine), shows a
progress bar on anything longer than a second, and returns an
ExperimentResult: a list of records (one dict per point: the parameters, the
scheme, every metric, the wall time) that also renders itself in a notebook
and converts to a pandas DataFrame. write_outputs() puts them in
OUT/NAME.csv, .parquet, and one .png and .svg per plot; print_report() shows
the table and the claims.

From Python::

    from rmaplab.experiments import run_experiment
    res = run_experiment("aim7", schemes=["modern", "anon_vma"],
                         params={"procs": [10, 100], "pages": 100})
    res.to_pandas()          # needs the pandas extra: pip install 'rmaplab[pandas]'
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from rich.console import Console
from rich.markup import escape

from ..eras import ERAS, is_era
from ..optional import require_pandas
from ..progress import progress_bar
from ..references import cite
from ..rmap import SCHEMES, VARIANTS
from . import table
from .base import Experiment
from .plots import plot
from .registry import experiments

if TYPE_CHECKING:
    import pandas

#: One value of a parameter, as the experiment's defaults have it.
ParamValue: TypeAlias = int | float | str
#: A record: one point's parameters, scheme, metrics and wall time.
Record: TypeAlias = dict[str, Any]


def _coerce(key: str, value: object, kind: type) -> ParamValue:
    """A Python value as the type of the parameter's default, or ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"parameter {key!r}: {value!r} is a boolean, not {kind.__name__}")
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        raise ValueError(f"parameter {key!r}: {value!r} is not an integer")
    if kind is float:
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
        raise ValueError(f"parameter {key!r}: {value!r} is not a finite number")
    if isinstance(value, str):
        return value
    raise ValueError(f"parameter {key!r}: {value!r} is not a string")


def _check_key(exp: Experiment, key: str, flag: str) -> None:
    if key not in exp.params:
        raise ValueError(f"{flag}{key!r}: {exp.name} has parameters {', '.join(exp.params)}")


def parse_params(exp: Experiment,
                 params: Sequence[str] | Mapping[str, object] = ()) -> dict[str, list[ParamValue]]:
    """The grid: the experiment's defaults, overridden by `params`.

    `params` is either a mapping of Python values (``{"procs": [10, 100],
    "pages": 1000}``: a list or tuple of values, or one value, each of the
    type of the parameter's default; an int does for a float) or the CLI's
    strings (``["procs=10,100", "pages=1000"]``). A bad name or value is a
    ValueError naming it."""
    grid: dict[str, list[ParamValue]] = {k: list(v) for k, v in exp.params.items()}
    if isinstance(params, Mapping):
        for key, given in params.items():
            _check_key(exp, str(key), "parameter ")
            kind = type(exp.params[key][0])
            values = list(given) if isinstance(given, list | tuple | range) else [given]
            if not values:
                raise ValueError(f"parameter {key!r}: no value given")
            grid[key] = [_coerce(key, v, kind) for v in values]
        return grid
    if isinstance(params, str):
        raise ValueError(f"params {params!r}: give a mapping or a list of NAME=VALUE strings")
    for pair in params:
        if "=" not in pair:
            raise ValueError(f"--param {pair!r}: expected NAME=VALUE[,VALUE...]")
        key, _, raw = pair.partition("=")
        _check_key(exp, key, "--param ")
        kind = type(exp.params[key][0])
        try:
            grid[key] = [kind(v) for v in raw.split(",") if v != ""]
        except ValueError:
            raise ValueError(f"--param {key}: {raw!r} is not a list of {kind.__name__}") from None
        if not grid[key]:
            raise ValueError(f"--param {key}: no value given")
    return grid


def points(exp: Experiment, schemes: Sequence[str],
           grid: Mapping[str, Sequence[ParamValue]]) -> list[tuple[str, dict[str, ParamValue]]]:
    """Every (scheme, parameters) point of the grid, scheme by scheme."""
    keys = list(grid)
    out = []
    for scheme in schemes:
        for values in itertools.product(*(grid[k] for k in keys)):
            out.append((scheme, dict(zip(keys, values))))
    return out


def resolve(exp: Experiment | str) -> Experiment:
    """An Experiment, or the registered one of that name (ValueError if none)."""
    if isinstance(exp, Experiment):
        return exp
    reg = experiments()
    if exp not in reg:
        raise ValueError(f"unknown experiment {exp!r}; choose from {', '.join(reg)}")
    return reg[exp]


def _schemes(exp: Experiment, schemes: Sequence[str] | str | None) -> list[str]:
    if schemes is None or schemes == "":
        return list(exp.schemes or SCHEMES)
    if isinstance(schemes, str):
        schemes = list(SCHEMES) if schemes == "all" else [s for s in schemes.split(",") if s]
    chosen = list(schemes)
    for s in chosen:
        if s not in SCHEMES and s not in VARIANTS:  # a variant only by its name
            raise ValueError(f"unknown scheme {s!r}; choose from {', '.join(SCHEMES)} "
                             f"(or the variants {', '.join(VARIANTS)}) or 'all'")
    return chosen


def run_experiment(exp: Experiment | str, *, schemes: Sequence[str] | str | None = None,
                   params: Sequence[str] | Mapping[str, object] = (), progress: bool = True,
                   console: Console | None = None,
                   max_memory: int | None = None, era: str = "today") -> ExperimentResult:
    """Run every point of the grid; return one record per point.

    `exp` is an Experiment or a registered name ("aim7"); `schemes` a list of
    names, "all", or None for the experiment's own; `params` a mapping of
    Python values or the CLI's "NAME=V1,V2" strings (see parse_params);
    `era` "today" or "historical" (docs/eras.md: each point then runs on its
    scheme's own kernel rules, and its record says so in an "era" column).
    Every point is checked against the experiment's limits before any runs:
    a bad point raises ValueError and loses no results. A point that would
    need more host memory than max_memory bytes (default: what the machine
    has available) is refused the same way."""
    exp = resolve(exp)
    if not is_era(era):
        raise ValueError(f"unknown era {era!r}; choose one of {', '.join(ERAS)}")
    if era != "today" and not exp.era_mode:
        raise ValueError(f"experiment {exp.name} does not run in era mode (--era {era}); "
                         "it runs on today's rules only")
    chosen = _schemes(exp, schemes)
    todo = points(exp, chosen, parse_params(exp, params))
    for scheme, p in todo:
        why = exp.problem(p) or exp.memory_problem(scheme, p, max_memory)
        if why is not None:
            raise ValueError(f"--param {why}" if not isinstance(params, Mapping)
                             else f"parameter {why}")
    records: list[Record] = []
    with progress_bar(console, enabled=progress) as bar:
        task = bar.add_task(exp.name, total=len(todo))
        for scheme, p in todo:
            bar.update(task, description=f"{exp.name} {scheme} "
                       + " ".join(f"{k}={v}" for k, v in p.items()))
            point = {**p, "era": era} if era != "today" else p
            t0 = time.perf_counter()
            metrics = exp.run(scheme, point)
            rec = {"experiment": exp.name, "scheme": scheme, **point, **metrics,
                   "wall_s": round(time.perf_counter() - t0, 4)}
            records.append(rec)
            bar.advance(task)
    return ExperimentResult(exp, records)


def write_outputs(exp: Experiment, records: Sequence[Record], out: Path) -> list[Path]:
    """CSV and Parquet of every point, PNG and SVG of every plot."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
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
    pq.write_table(pa.Table.from_pylist(list(records)), path)
    files.append(path)
    files.extend(plot(exp, list(records), out))
    return files


def print_report(exp: Experiment, records: Sequence[Record],
                 console: Console | None = None) -> None:
    """The table of every point, then each claim: its source, the published
    figure and ours."""
    console = console or Console()
    # parameters that take one value in this run go in the title, not the columns
    params = [k for k in exp.params if len({r.get(k) for r in records}) > 1]
    fixed = [f"{k}={records[0].get(k)}" for k in exp.params if k not in params and records]
    if records and "era" in records[0]:
        fixed.insert(0, f"era={records[0]['era']}")
    title = exp.title + (f" ({', '.join(fixed)})" if fixed else "")
    legend = exp.column_legend()
    table.render(console, title, records, table.columns_for(["scheme", *params], legend),
                 table.columns_for(exp.columns, legend))
    for claim in exp.claims:
        console.print(f"[bold]{escape(claim.text)}[/bold]\n"
                      f"  source:    {escape(cite(claim.ref))}\n"
                      f"  published: {escape(claim.published)}\n"
                      f"  rmaplab:   {escape(claim.ours(list(records)))}\n"
                      f"  verdict:   {escape(claim.verdict(list(records), exp.doc))}",
                      highlight=False)


class ExperimentResult(list[Record]):
    """What run_experiment returns: the records, one dict per point, in a
    list that also knows its experiment, for a notebook or a script.

    ``to_pandas()`` gives a DataFrame (the ``pandas`` extra); in Jupyter the
    result shows as its table, its claims and its plots (``_repr_html_``;
    ``_repr_svg_`` is the first plot, ``plot_svgs()`` every one)."""

    __slots__ = ("experiment",)

    def __init__(self, experiment: Experiment, records: Iterable[Record] = ()) -> None:
        super().__init__(records)
        self.experiment = experiment

    def __repr__(self) -> str:
        return f"<ExperimentResult {self.experiment.name}: {len(self)} points>"

    def __reduce__(self) -> tuple[Any, ...]:
        # an Experiment holds functions: pickle a registered one by name, and
        # an experiment of the caller's own as its records alone
        if experiments().get(self.experiment.name) is self.experiment:
            return (_registered_result, (self.experiment.name, list(self)))
        return (list, (list(self),))

    def to_pandas(self) -> pandas.DataFrame:
        """The records as a pandas DataFrame, one row per point."""
        pd = require_pandas("ExperimentResult.to_pandas()")
        frame: pandas.DataFrame = pd.DataFrame.from_records(list(self))
        return frame

    def report_text(self, width: int = 100) -> str:
        """The table and the claims as print_report prints them, as plain text."""
        console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
        print_report(self.experiment, self, console)
        return console.export_text()

    def _repr_html_(self) -> str:
        console = Console(file=io.StringIO(), width=160, record=True)
        print_report(self.experiment, self, console)
        page = console.export_html(inline_styles=True, code_format=_HTML_FORMAT)
        # the plots inline, without the XML prologue each SVG file starts with
        return page + "".join(f"<div>{svg[svg.find('<svg'):]}</div>"
                              for svg in self.plot_svgs())

    def plot_svgs(self) -> list[str]:
        """Every plot of the experiment, drawn from these records, as SVG text."""
        if not self.experiment.plots or not self:
            return []
        with tempfile.TemporaryDirectory(prefix="rmaplab-plot-") as tmp:
            files = plot(self.experiment, self, Path(tmp))
            return [f.read_text(encoding="utf-8") for f in files if f.suffix == ".svg"]

    def _repr_svg_(self) -> str | None:
        svgs = self.plot_svgs()
        return svgs[0] if svgs else None


def _registered_result(name: str, records: list[Record]) -> ExperimentResult:
    """Unpickle an ExperimentResult of the registered experiment `name`."""
    return ExperimentResult(experiments()[name], records)


#: Rich's HTML export as one <pre> block, to sit in a notebook cell.
_HTML_FORMAT = ('<pre style="font-family:Menlo,\'DejaVu Sans Mono\',consolas,monospace;'
                'line-height:1.25">{code}</pre>')
